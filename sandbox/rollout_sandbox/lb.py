"""The sandbox's load balancer: nginx on the control machine, loopback only, in
front of the sandbox hosts; and the drain / enable commands the batch hooks call.

    rollout-sandbox up --hosts 5 --lb          # fleet + nginx on 127.0.0.1:8080
    rollout-sandbox lb drain camera-2          # out of the pool, in-flight requests done
    rollout-sandbox lb enable camera-2         # back in the pool
    rollout-sandbox lb status

A drain rewrites the upstream list (``server ... down;``) atomically, reloads
nginx and returns only when every worker that could still send a request to a
drained host has exited: nginx lets old workers finish their requests before
they go, so that moment is a condition to wait on, not a sleep.

The pure part (``upstream_conf``, ``plan_pool``) is unit-tested; the rest is I/O.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import jinja2

from rollout.project import defaults
from rollout_sandbox.procs import children, wait_gone
from rollout_sandbox.settings import RUN_DIR

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
LB_PORT = int(os.environ.get("ROLLOUT_SANDBOX_LB_PORT", "8080"))
BACKEND_PORT = defaults()["bind_port"]  # the service's port, from group_data/all.py


class LbError(RuntimeError):
    """The load balancer cannot do what was asked; one line."""


# --- pure --------------------------------------------------------------------------------------


def plan_pool(hosts: list[str], drained: set[str], drain: Sequence[str] = (), enable: Sequence[str] = ()) -> set[str]:
    """The drained set after draining ``drain`` and enabling ``enable``. Unknown
    names are refused, and so is a pool left with no host serving."""
    unknown = sorted(n for n in set(drain) | set(enable) if n not in hosts)
    if unknown:
        raise LbError(f"not a host behind the load balancer: {', '.join(unknown)} "
                      f"(hosts: {', '.join(hosts)})")
    result = (set(drained) | set(drain)) - set(enable)
    if hosts and result >= set(hosts):
        raise LbError(f"draining {', '.join(sorted(drain))} would leave no host serving "
                      f"(drained already: {', '.join(sorted(drained)) or 'none'})")
    return result


def upstream_conf(hosts: list[dict], drained: set[str]) -> str:
    """The ``server`` lines of the upstream block; a drained host is ``down``."""
    lines = [f"# written by rollout_sandbox.lb; drained: {', '.join(sorted(drained)) or 'none'}"]
    for host in hosts:
        down = " down" if host["name"] in drained else ""
        lines.append(f"server {host['address']}:{BACKEND_PORT}{down};  # {host['name']}")
    return "\n".join(lines) + "\n"


def nginx_conf(directory: str, port: int) -> str:
    """nginx's own config (templates/nginx.conf.j2): loopback only, the pool included."""
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
                                   undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return templates.get_template("nginx.conf.j2").render(dir=directory, port=port)


# --- I/O ---------------------------------------------------------------------------------------


def _dir() -> Path:
    return RUN_DIR / "lb"


def _state_path() -> Path:
    return _dir() / "state.json"


def _read_state() -> dict:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def master_pid() -> int | None:
    """The pid of our nginx master, or None (a stale pid file names no nginx of ours)."""
    try:
        pid = int((_dir() / "nginx.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # nginx rewrites its argv to one string: "nginx: master process nginx -e ... -c CONF"
    text = b" ".join(cmdline).decode(errors="replace")
    ours = text.startswith("nginx: master process") and f"-c {_dir() / 'nginx.conf'}" in text
    return pid if ours else None


def _workers(master: int) -> set[int]:
    """The master's worker processes (its children)."""
    return set(children(master))


def address() -> str:
    return f"http://127.0.0.1:{LB_PORT}"


def _nginx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nginx", "-e", str(_dir() / "error.log"), "-c", str(_dir() / "nginx.conf"), *args],
                          text=True, capture_output=True, stdin=subprocess.DEVNULL)


def _write_pool(hosts: list[dict], drained: set[str]) -> None:
    """The upstream list nginx reads and the state the commands read, together."""
    _write_atomic(_dir() / "upstream.conf", upstream_conf(hosts, drained))
    _write_atomic(_state_path(), json.dumps({"hosts": hosts, "drained": sorted(drained)}, indent=1))


def _apply(hosts: list[dict], drained: set[str], timeout_s: float = 30) -> None:
    """Write the pool, check the config, reload, and wait until no old worker is left."""
    _write_pool(hosts, drained)
    checked = _nginx("-t")
    if checked.returncode != 0:
        raise LbError(f"nginx refused the config: {checked.stderr.strip().splitlines()[-1]}")
    master = master_pid()
    if master is None:
        raise LbError("the sandbox load balancer is not running (rollout-sandbox up --lb)")
    old = _workers(master)
    os.kill(master, signal.SIGHUP)
    # Old workers finish their in-flight requests, then exit; new ones use the new pool.
    deadline = time.monotonic() + timeout_s
    while _workers(master) & old or not _workers(master) - old:
        if time.monotonic() > deadline:
            raise LbError(f"nginx did not finish its reload within {timeout_s:.0f}s "
                          f"(old workers {sorted(_workers(master) & old)})")
        time.sleep(0.05)


def start(hosts: list[dict]) -> str:
    """Start (or re-point) nginx on 127.0.0.1:LB_PORT in front of ``hosts``, every
    host in the pool (``sandbox up`` is a reset)."""
    directory = _dir()
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    drained: set[str] = set()
    (directory / "nginx.conf").write_text(nginx_conf(str(directory), LB_PORT))
    if master_pid() is not None:
        _apply(hosts, drained)
        return address()
    _write_pool(hosts, drained)
    started = _nginx()
    if started.returncode != 0:
        detail = (started.stderr.strip().splitlines() or ["no output"])[-1]
        raise LbError(f"nginx did not start: {detail}")
    deadline = time.monotonic() + 10
    while (pid := master_pid()) is None or not _workers(pid):
        if time.monotonic() > deadline:
            raise LbError(f"nginx did not come up (see {directory / 'error.log'})")
        time.sleep(0.05)
    return address()


def stop() -> bool:
    """Stop our nginx by its own pid; True when one was running."""
    pid = master_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGQUIT)  # graceful: in-flight requests finish
    if not wait_gone(pid, 20):
        os.kill(pid, signal.SIGTERM)
    return True


def change(drain: Sequence[str] = (), enable: Sequence[str] = ()) -> set[str]:
    """Drain and/or enable hosts; returns the drained set once nginx uses it."""
    state = _read_state()
    if not state or master_pid() is None:
        raise LbError("the sandbox load balancer is not running (rollout-sandbox up --lb)")
    hosts = state["hosts"]
    drained = plan_pool([h["name"] for h in hosts], set(state.get("drained", [])), drain, enable)
    _apply(hosts, drained)
    return drained


def status() -> dict:
    state = _read_state()
    return {"running": master_pid() is not None, "address": address(),
            "hosts": [h["name"] for h in state.get("hosts", [])], "drained": state.get("drained", [])}

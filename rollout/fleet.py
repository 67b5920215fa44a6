"""The CLI's view of a fleet: its inventory, its hosts, pyinfra runs against it,
and the per-host reports those runs write.

``ENV`` is ``inventories/ENV.py`` or a path to an inventory file. The inventory
is loaded with pyinfra's own loader, so group_data applies as in a pyinfra run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout.inputs import InputError, check_secrets_for_writing, check_settings, settings_of

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_inventory(env: str) -> Path:
    """``prod`` -> ``inventories/prod.py``; a path must be an inventory ``.py`` file."""
    path = Path(env)
    if "/" in env or path.suffix:
        if path.suffix != ".py":
            raise InputError(f"environment {env!r} is not an inventory: give a name from inventories/ "
                             "or the path of an inventory .py file")
        if not path.is_file():
            raise InputError(f"inventory file {env!r} does not exist")
        if path.resolve().parent in (PROJECT_ROOT, PROJECT_ROOT / "tasks"):
            raise InputError(f"{env!r} is a deploy file of this project, not an inventory "
                             "(inventories/ holds those)")
        return path.resolve()
    candidate = PROJECT_ROOT / "inventories" / f"{env}.py"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (PROJECT_ROOT / "inventories").glob("*.py"))
    raise InputError(f"unknown environment {env!r}: no inventories/{env}.py (known: {', '.join(known)})")


@dataclass
class Fleet:
    inventory: Path
    hosts: list[str]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)

    def setting(self, key: str, default: Any = None) -> Any:
        """A setting all hosts share (from group_data); refused when they differ."""
        values = {json.dumps(self.data[h].get(key, default), sort_keys=True, default=str) for h in self.hosts}
        if len(values) > 1:
            raise InputError(f"hosts disagree on {key}: set it for the whole inventory")
        value = self.data[self.hosts[0]].get(key)
        return default if value is None else value

    def check_names(self, names: list[str], what: str = "host") -> None:
        unknown = [n for n in names if n not in self.hosts]
        if unknown:
            raise InputError(f"unknown {what}(s) {', '.join(unknown)}: the inventory has {', '.join(self.hosts)}")


def _load_error(error: BaseException) -> str:
    """One line for an inventory that raised while loading (it is user code)."""
    from pyinfra_cli.exceptions import UnexpectedExternalError

    if isinstance(error, UnexpectedExternalError):  # pyinfra's wrapper has no message of its own
        error = error.exception
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"


def _check_ssh_files(name: str, data) -> None:
    """The SSH key and known-hosts file a host names must exist here: pyinfra
    would otherwise fail deep inside a connection with an unrelated message."""
    for key in ("ssh_key", "ssh_known_hosts_file"):
        value = data.get(key)
        if value and not os.path.isfile(os.path.expanduser(str(value))):
            raise InputError(f"{key} {value} of host {name} does not exist")


def load_fleet(env: str) -> Fleet:
    """Hosts and data of an inventory, through pyinfra's loader (group_data too),
    every setting checked: no host is contacted here."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    inventory = resolve_inventory(env)
    ctx_state.set(State())
    cwd = os.getcwd()
    os.chdir(PROJECT_ROOT)
    try:
        loaded = make_inventory(str(inventory), cwd=str(PROJECT_ROOT))
    except Exception as error:  # an inventory file is user code: any error is possible
        raise InputError(f"inventory {inventory.name} failed to load: {_load_error(error)}") from None
    finally:
        os.chdir(cwd)
    hosts = [host.name for host in loaded]
    if not hosts:
        raise InputError(f"inventory {inventory.name} has no hosts")
    data = {}
    for host in loaded:
        settings = settings_of(host.data.get)
        check_settings(settings, host.name)
        if settings["write_secrets"]:
            check_secrets_for_writing(settings["secret_variables"], host.data.get, host.name)
        _check_ssh_files(host.name, host.data)
        # Only settings and connection details: never the secrets.
        data[host.name] = {**settings, **{key: host.data.get(key) for key in _CONNECTION_KEYS}}
    return Fleet(inventory, hosts, data)


_CONNECTION_KEYS = ("ssh_hostname", "ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file",
                    "ssh_strict_host_key_checking", "_sudo")


@dataclass
class Run:
    """One pyinfra run: its exit code, its output and the reports it wrote."""

    returncode: int
    output: str
    reports: dict[str, dict[str, dict]]

    def report(self, host: str, check: str) -> dict | None:
        return self.reports.get(host, {}).get(check)

    def unreachable(self, hosts: list[str]) -> list[str]:
        """Hosts the run never reached (no connection): every entry file marks
        the hosts it is loaded for (tasks/entry.begin), which pyinfra does only
        for the hosts it connected to."""
        return [h for h in hosts if self.report(h, "reached") is None]


def pyinfra(
    fleet: Fleet,
    files: list[str],
    data: dict[str, Any] | None = None,
    limit: list[str] | None = None,
    dry: bool = False,
    stream: bool = False,
) -> Run:
    """Run the pyinfra CLI on the fleet from the project root (so group_data
    loads), limited to ``limit`` hosts (checked against the inventory first:
    pyinfra's own --limit deploys nothing, silently, on a typo)."""
    if limit is not None:
        fleet.check_names(limit)
    with tempfile.TemporaryDirectory(prefix="rollout-reports-") as reports_dir:
        command = [sys.executable, "-m", "pyinfra", str(fleet.inventory), *files]
        command += ["--dry", "--diff"] if dry else ["-y"]
        for name in limit or []:
            command += ["--limit", name]  # one pattern per --limit
        for key, value in {**(data or {}), "report_dir": reports_dir}.items():
            command += ["--data", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if stream:
                sys.stderr.write(line)
        process.wait()
        reports: dict[str, dict[str, dict]] = {}
        for path in Path(reports_dir).glob("*.json"):
            host, check = path.name[: -len(".json")].rsplit(".", 1)
            reports.setdefault(host, {})[check] = json.loads(path.read_text())
    return Run(process.returncode, "".join(lines), reports)

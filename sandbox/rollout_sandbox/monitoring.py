"""The sandbox's monitoring on the control machine: a real Prometheus (Debian
``prometheus``) scraping every host's app (``/metrics``) and node_exporter
(its textfile collector holds the rollout's own state), evaluating the
project's ``monitoring/rules.yml``; a real Alertmanager (Debian
``prometheus-alertmanager``) routing every alert to a webhook receiver the
sandbox runs (rollout_sandbox/alert_log.py, one JSON line per delivery).

All three listen on the bridge's gateway address only (one set per fleet),
keep their data in the run directory, and are started and stopped by their
own process ids (a pid file, checked against the process's command line).

The pure part (``prometheus_config``, ``alertmanager_config``) is unit-tested.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from rollout.project import defaults
from rollout_sandbox.procs import cmdline, wait_gone
from rollout_sandbox.settings import PROJECT_ROOT, RUN_DIR, SandboxError, gateway

PROMETHEUS_PORT, ALERTMANAGER_PORT, RECEIVER_PORT = 9090, 9093, 9095
NODE_EXPORTER_PORT = 9100
#: Scrapes and rule evaluations every 2 s: a gate window of 6 s holds three scrapes.
INTERVAL = "2s"
RULES_FILE = PROJECT_ROOT / "monitoring" / "rules.yml"


def urls() -> dict[str, str]:
    """What fleet.json records under "monitoring"."""
    return {"prometheus_url": f"http://{gateway()}:{PROMETHEUS_PORT}",
            "alertmanager_url": f"http://{gateway()}:{ALERTMANAGER_PORT}",
            "receiver_url": f"http://{gateway()}:{RECEIVER_PORT}/alerts",
            "alert_log": str(RUN_DIR / "alerts.jsonl")}


def prometheus_config(hosts: list[dict], app_port: int, address: str, rules: Path | None) -> dict:
    """Prometheus' configuration: both jobs with a ``host`` label per target (the
    inventory name the gate's queries and the rules use)."""
    def targets(port: int) -> list[dict]:
        return [{"targets": [f"{h['address']}:{port}"], "labels": {"host": h["name"]}} for h in hosts]
    config = {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL, "scrape_timeout": "1s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{address}:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": [
            {"job_name": "camera-api", "metrics_path": "/metrics", "static_configs": targets(app_port)},
            {"job_name": "node", "static_configs": targets(NODE_EXPORTER_PORT)},
        ],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    return config


def alertmanager_config(receiver_url: str) -> dict:
    """Every alert to the sandbox's receiver, fast (a sandbox waits seconds, not minutes)."""
    return {
        "route": {"receiver": "sandbox", "group_by": ["alertname", "host", "implementation"],
                  "group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"},
        "receivers": [{"name": "sandbox", "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}],
    }


# --- processes ---------------------------------------------------------------------------------

#: name -> (what its command line starts with, pid file)
PROCESSES = {
    "prometheus": ("/usr/bin/prometheus", RUN_DIR / "prometheus.pid"),
    "alertmanager": ("/usr/bin/prometheus-alertmanager", RUN_DIR / "alertmanager.pid"),
    "receiver": (sys.executable, RUN_DIR / "alert-receiver.pid"),
}


def _pid(name: str) -> int | None:
    program, pid_file = PROCESSES[name]
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    command = cmdline(pid)
    if not command or command[0] != program:
        return None
    if name == "receiver" and "rollout_sandbox.alert_log" not in command:
        return None
    return pid


def _start(name: str, command: list[str]) -> int:
    log_file = open(RUN_DIR / f"{name}.log", "ab")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                               start_new_session=True, cwd=RUN_DIR)
    log_file.close()
    PROCESSES[name][1].write_text(f"{process.pid}\n")
    return process.pid


def _alive(pid: int) -> bool:
    """Still there and not a zombie (a child that exited is reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    except ChildProcessError:
        pass
    return Path(f"/proc/{pid}").exists()


def _wait_ready(name: str, url: str, timeout_s: float = 60) -> None:
    """Until ``url`` answers 200; the process checked by its pid file (its
    command line may not be exec'd yet just after the start)."""
    deadline = time.monotonic() + timeout_s
    pid = int(PROCESSES[name][1].read_text().strip())
    while True:
        if not _alive(pid):
            raise SandboxError(f"{name} exited at start (see {RUN_DIR / (name + '.log')})")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            raise SandboxError(f"{name} not ready at {url} within {timeout_s:.0f} s")
        time.sleep(0.2)


def _write(path: Path, document: dict) -> bool:
    """Replace ``path`` atomically; True when its content changed."""
    text = yaml.safe_dump(document, sort_keys=True)
    if path.exists() and path.read_text() == text:
        return False
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
    return True


def start(hosts: list[dict]) -> dict[str, str]:
    """Start (or keep, re-pointed at ``hosts``) Prometheus, Alertmanager and the
    receiver; returns their URLs."""
    for program in ("/usr/bin/prometheus", "/usr/bin/prometheus-alertmanager"):
        if not Path(program).exists():
            raise SandboxError(f"{program} is missing (scripts/setup.sh installs prometheus and "
                               "prometheus-alertmanager)")
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    address, where = gateway(), urls()

    if _pid("receiver") is None:
        _start("receiver", [sys.executable, "-m", "rollout_sandbox.alert_log", "--listen",
                            f"{address}:{RECEIVER_PORT}", "--log", where["alert_log"]])
    _wait_ready("receiver", f"http://{address}:{RECEIVER_PORT}/ready")

    am_config = RUN_DIR / "alertmanager.yml"
    changed = _write(am_config, alertmanager_config(where["receiver_url"]))
    pid = _pid("alertmanager")
    if pid is not None and changed:
        os.kill(pid, signal.SIGHUP)
    if pid is None:
        # A fresh state: the notification log of an earlier fleet would hold back a new
        # firing of the same alert (same host and implementation) for its repeat interval.
        shutil.rmtree(RUN_DIR / "alertmanager-data", ignore_errors=True)
        (RUN_DIR / "alertmanager-data").mkdir()
        _start("alertmanager", ["/usr/bin/prometheus-alertmanager", f"--config.file={am_config}",
                                f"--storage.path={RUN_DIR / 'alertmanager-data'}",
                                f"--web.listen-address={address}:{ALERTMANAGER_PORT}",
                                "--cluster.listen-address="])
    _wait_ready("alertmanager", f"{where['alertmanager_url']}/-/ready")

    rules = RULES_FILE if RULES_FILE.is_file() else None
    prom_config = RUN_DIR / "prometheus.yml"
    changed = _write(prom_config, prometheus_config(hosts, int(defaults()["bind_port"]), address, rules))
    pid = _pid("prometheus")
    if pid is not None and changed:
        os.kill(pid, signal.SIGHUP)  # re-read: the hosts or the rules changed
    if pid is None:
        (RUN_DIR / "prometheus-data").mkdir(exist_ok=True)
        _start("prometheus", ["/usr/bin/prometheus", f"--config.file={prom_config}",
                              f"--storage.tsdb.path={RUN_DIR / 'prometheus-data'}",
                              "--storage.tsdb.retention.time=7d",
                              f"--web.listen-address={address}:{PROMETHEUS_PORT}"])
    _wait_ready("prometheus", f"{where['prometheus_url']}/-/ready")
    return where


def stop() -> list[str]:
    """Stop the three by their own pids; the names of those that ran."""
    stopped = []
    for name in ("prometheus", "alertmanager", "receiver"):
        pid = _pid(name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, 30):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 10)
        PROCESSES[name][1].unlink(missing_ok=True)
        stopped.append(name)
    return stopped


def running() -> dict[str, int | None]:
    return {name: _pid(name) for name in PROCESSES}

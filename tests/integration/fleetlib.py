"""Helpers for the integration tests: a sandbox host as testinfra sees it, and
pyinfra / HTTP calls against the fleet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import testinfra

from rollout.hoststate import state_spec
from rollout.probe import probe_shell
from rollout.project import defaults
from rollout_sandbox.settings import STATE_DIR as SANDBOX_DIR  # ROLLOUT_SANDBOX_DIR: each lane's fleet

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FleetHost:
    name: str
    address: str
    ssh_config: str

    @property
    def testinfra(self):
        """The host as root: directly, or through sudo while the fleet is reached
        as its non-root sudoer (``rollout-sandbox ssh-login deploy``)."""
        user = json.loads((SANDBOX_DIR / "fleet.json").read_text()).get("ssh_user") or "root"
        return testinfra.get_host(f"ssh://{self.name}", ssh_config=self.ssh_config, sudo=user != "root")

    def url(self, path: str) -> str:
        return f"http://{self.address}:8000{path}"

    def main_pid(self) -> int:
        return int(self.testinfra.check_output("systemctl show -p MainPID --value camera-api.service"))

    def process_switch(self) -> dict[str, str]:
        """USE_DOMAIN_SERVICE / ROLLOUT_PERCENT of the running uvicorn, read by the
        product's one reader (the probe's ``state``, filtered on the host so no
        secret comes back)."""
        settings = defaults()
        known = json.loads(self.testinfra.check_output(probe_shell("state", state_spec(settings))))
        return known["process_switch"] or {}


#: The sandbox inventory with some host data changed. Named sandbox.py so its hosts
#: stay in group sandbox (group_data/sandbox.py).
SANDBOX_INVENTORY = """import runpy
_base = runpy.run_path({base!r})
camera_api = [(n, {{**d, {extra}}}) for n, d in _base['camera_api']]
"""


def sandbox_inventory(directory: Path, **extra) -> str:
    """Write that inventory into ``directory``, each of ``extra`` (literal values)
    replacing a host data key; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sandbox.py"
    fields = ", ".join(f"{k!r}: {v!r}" for k, v in extra.items())
    path.write_text(SANDBOX_INVENTORY.format(base=str(ROOT / "inventories" / "sandbox.py"), extra=fields))
    return str(path)


#: Less evidence for a gate's pass than production's 500 requests of each
#: implementation: 150, a window of seconds on the sandbox's paired traffic.
#: These tests prove what the tool does with a verdict, not the statistics behind
#: it (tests/unit/test_gate*.py and bench/sensitivity.py do).
EVIDENCE = {"min_requests_per_implementation": 150, "responses_min_pairs": 50}
#: The same for a plain pyinfra run.
LESS_EVIDENCE = ("--data", f"gate={json.dumps(EVIDENCE)}")


def run_pyinfra(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    yes = [] if "--dry" in args else ["-y"]
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *yes, "inventories/sandbox.py", *args],
        cwd=ROOT, text=True, capture_output=True, timeout=timeout,
    )


def implementations(host: FleetHost, count: int, path: str = "/api/v1/alerts/rules") -> list[str]:
    """Send ``count`` unforced requests; return the X-Rollout-Implementation of each."""
    seen = []
    with requests.Session() as session:
        for _ in range(count):
            response = session.get(host.url(path), timeout=10)
            assert response.status_code == 200, response.text[:200]
            seen.append(response.headers.get("X-Rollout-Implementation"))
    return seen


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.2):
    """Poll ``condition`` until it returns a truthy value, at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def run_rollout(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    """The operator CLI, as an operator runs it (no terminal: --yes where needed)."""
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args],
        cwd=ROOT, text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env,
    )


def run_sandbox(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The sandbox's own CLI (``rollout-sandbox``): up, power-off, power-on, ..."""
    return subprocess.run(
        [sys.executable, "-m", "rollout_sandbox", *args],
        cwd=ROOT, text=True, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def start_rollout(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The operator CLI in the background (a second operator, a fault mid-run)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rollout", *args],
        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
    )


def status() -> dict:
    """`rollout status sandbox --json`: per host, stage in the file and the process, lock."""
    result = run_rollout("--json", "status", "sandbox")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stages() -> dict[str, tuple]:
    return {h: (s["file_stage"], s["process_stage"]) for h, s in status()["hosts"].items()}

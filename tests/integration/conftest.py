"""The sandbox fleet for integration tests: real Debian hosts booting systemd
under systemd-nspawn, reached over SSH by pyinfra and by testinfra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from fleetlib import ROOT, SANDBOX_DIR, FleetHost

#: Three hosts: a canary, a quarter (one host) and the rest, each batch of the
#: default plan its own; ROLLOUT_TEST_HOSTS=4 for the fleet of docs/benchmarks.md.
FLEET_SIZE = int(os.environ.get("ROLLOUT_TEST_HOSTS", "3"))
UP = [sys.executable, "-m", "rollout_sandbox", "up", "--hosts", str(FLEET_SIZE)]
#: The fleet's boot, started as soon as the session knows it will need it, so the
#: unit tests and the reference service's run while the hosts boot (the fleet
#: fixture waits for it): (process, its output file).
_booting: list[tuple[subprocess.Popen, object]] = []


def pytest_collection_modifyitems(config, items):
    wanted = False
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            wanted = True
    if wanted and os.geteuid() == 0 and not _booting:
        output = tempfile.TemporaryFile(mode="w+")
        _booting.append((subprocess.Popen(UP, cwd=ROOT, text=True, stdout=output, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL), output))


@pytest.fixture(scope="session")
def fleet() -> list[FleetHost]:
    if os.geteuid() != 0:
        pytest.skip("integration tests boot systemd-nspawn hosts and need root")
    if _booting:
        process, output = _booting[0]
        returncode = process.wait(timeout=1200)
        output.seek(0)
        assert returncode == 0, f"sandbox up failed:\n{output.read()}"
    else:
        result = subprocess.run(UP, cwd=ROOT, text=True, capture_output=True, timeout=1200)
        assert result.returncode == 0, f"sandbox up failed:\n{result.stdout}\n{result.stderr}"
    state = json.loads((SANDBOX_DIR / "fleet.json").read_text())
    hosts = [FleetHost(h["name"], h["address"], state["ssh_config"]) for h in state["hosts"]]
    yield hosts
    if not os.environ.get("ROLLOUT_KEEP_SANDBOX"):
        subprocess.run([sys.executable, "-m", "rollout_sandbox", "down"], cwd=ROOT, timeout=300)


@pytest.fixture(scope="session")
def secret_values() -> list[str]:
    """The sandbox's generated passwords: must never appear in any output."""
    data = json.loads((SANDBOX_DIR / "secrets.json").read_text())
    return [data["db_password"], data["redis_password"]]




# --- fault drill report (drills/faults.py) ---------------------------------------------------------

_DRILLS: list[dict] = []


@pytest.fixture
def drill(request):
    """Record one fault drill's row: scenario, expected, observed, data lost.
    drills/faults.py collects the rows into a table (ROLLOUT_DRILL_REPORT)."""
    row = {"test": request.node.name}
    _DRILLS.append(row)

    def record(scenario: str, expected: str, observed: str, data_lost: list[str]) -> None:
        row.update(scenario=scenario, expected=expected, observed=observed,
                   data_lost="; ".join(data_lost) or "none")

    yield record
    report = getattr(request.node, "rep_call", None)
    row["passed"] = bool(report and report.passed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def pytest_sessionfinish(session):
    path = os.environ.get("ROLLOUT_DRILL_REPORT")
    if path and _DRILLS:
        with open(path, "w") as out:
            json.dump(_DRILLS, out, indent=2)

"""The autopilot (tasks/autopilot.py) on a real control host: one sandbox host is
the control host, its timer's service reaches the whole fleet over SSH as the
rollout-watch user with the key the install put there, and logs to the journal.
Installed twice (the second run changes nothing), refused without an alert
value (nothing changed), removed twice (everything gone, then nothing to do).

The tick runs ``rollout watch`` on a fleet at stage 0 (the project turns
auto_promote off): it reads every host and changes nothing. The autopilot is
removed when the module ends, whatever happened: a timer left behind would
tick into the other tests."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleetlib import ROOT, run_pyinfra
from rollout.autopilot import alerts_env
from rollout_sandbox.image import product_wheelhouse
from rollout_sandbox.settings import STATE_DIR

COMMAND = "watch"
USER = "rollout-watch"
HOME = "/var/lib/rollout-watch"
UNITS = ("/etc/systemd/system/rollout-watch.service", "/etc/systemd/system/rollout-watch.timer")
ALERTS = "/etc/rollout-watch/alerts.env"
HOOK_VARIABLE = "ROLLOUT_TEST_AUTOPILOT_HOOK"
HOOK_URL = "https://hooks.example.invalid/services/T0/B0/autopilotHookSecret5521"

# The project the control host gets: the sandbox hosts by address, the key and
# known hosts where the install puts them (the rollout-watch user's home).
PROJECT_INVENTORY = """\
_ssh = {{"ssh_user": "root", "ssh_key": "~/.ssh/id_rollout", "ssh_known_hosts_file": "~/.ssh/known_hosts",
        "ssh_strict_host_key_checking": "yes"}}
camera_api = [{hosts}]
"""

CONTROL_INVENTORY = """\
control = [({name!r}, {{"ssh_hostname": {address!r}, "ssh_user": "root", "ssh_key": {key!r},
                        "ssh_known_hosts_file": {known_hosts!r}, "ssh_strict_host_key_checking": "yes"}})]
"""


@pytest.fixture(scope="module")
def setup(fleet, tmp_path_factory):
    state = json.loads((STATE_DIR / "fleet.json").read_text())
    staged = run_pyinfra("tasks/rollback.py", "--data", "checks=false")  # stage 0: the watch changes nothing
    assert staged.returncode == 0, staged.stdout[-3000:]
    work = tmp_path_factory.mktemp("autopilot")
    project = work / "project"
    (project / "inventories").mkdir(parents=True)
    (project / "group_data").mkdir()
    hosts = ", ".join(f'({h.name!r}, {{"ssh_hostname": {h.address!r}, **_ssh}})' for h in fleet)
    (project / "inventories" / "sandbox.py").write_text(PROJECT_INVENTORY.format(hosts=hosts))
    (project / "group_data" / "sandbox.py").write_text((ROOT / "group_data" / "sandbox.py").read_text()
                                                       + "\nauto_promote = False\n")
    control = fleet[0]
    inventory = work / "control.py"
    inventory.write_text(CONTROL_INVENTORY.format(name=control.name, address=control.address,
                                                  key=state["ssh_key"], known_hosts=state["known_hosts"]))
    data = ["--data", "autopilot_env=sandbox", "--data", f"autopilot_command={COMMAND}",
            "--data", f"autopilot_wheelhouse={product_wheelhouse()}", "--data", f"autopilot_project={project}",
            "--data", f"autopilot_ssh_key={state['ssh_key']}",
            "--data", f"autopilot_known_hosts={state['known_hosts']}",
            "--data", f'autopilot_alert_env=["{HOOK_VARIABLE}"]']
    prepared = {"work": work, "inventory": inventory, "control": control, "data": data, "key": state["ssh_key"]}
    yield prepared
    removed = autopilot(prepared, "--data", "autopilot_state=absent")
    assert removed.returncode == 0, removed.stdout[-3000:]


def autopilot(setup, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``pyinfra -y --diff -v CONTROL tasks/autopilot.py ARGS`` from a directory of
    its own (a pyinfra-debug.log lands there, never in the checkout)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "--diff", "-v", str(setup["inventory"]),
         str(ROOT / "tasks" / "autopilot.py"), *args],
        cwd=setup["work"], text=True, capture_output=True, timeout=900, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )


def install(setup, **env: str) -> subprocess.CompletedProcess:
    return autopilot(setup, *setup["data"], env={HOOK_VARIABLE: HOOK_URL, **env})


def changed_operations(result: subprocess.CompletedProcess) -> int:
    """Operations pyinfra reports as changed ("Success" column of its results)."""
    output = result.stdout + result.stderr
    match = re.search(r"Grand total\s+\d+\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, output[-2000:]
    assert match.group(2) == "-", output[-3000:]  # no error
    return 0 if match.group(1) == "-" else int(match.group(1))


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_install_runs_the_timer_s_command_against_the_fleet_and_a_second_install_changes_nothing(setup, fleet):
    host = setup["control"].testinfra
    assert autopilot(setup, "--data", "autopilot_state=absent").returncode == 0  # a clean start

    first = install(setup)
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-3000:]
    assert changed_operations(first) > 0
    # --diff -v: the units are shown, the key and the webhook URL never.
    assert ("+ ExecStart=/var/lib/rollout-watch/venv/bin/rollout --project /var/lib/rollout-watch/project "
            f"{COMMAND} sandbox") in output
    assert "id_rollout (secret: contents not shown)" in output
    assert HOOK_URL not in output and "autopilotHookSecret5521" not in output
    key_lines = [line for line in Path(setup["key"]).read_text().splitlines() if line and "-----" not in line]
    assert key_lines and not any(line in output for line in key_lines)

    user = host.user(USER)
    assert user.exists and user.home == HOME and user.shell == "/usr/sbin/nologin" and user.uid < 1000
    for unit in UNITS:
        assert host.file(unit).is_file and host.file(unit).user == "root"
    # Root owns all root writes into; the user reads it and writes only its state.
    key = host.file(f"{HOME}/.ssh/id_rollout")
    assert (key.mode, key.user, key.group) == (0o640, "root", USER)
    assert key.sha256sum == sha256(setup["key"])
    for path in (HOME, f"{HOME}/.ssh", f"{HOME}/project", f"{HOME}/project/inventories"):
        assert (host.file(path).mode, host.file(path).user, host.file(path).group) == (0o750, "root", USER), path
    for path in (f"{HOME}/.ssh/known_hosts", f"{HOME}/project/inventories/sandbox.py"):
        assert (host.file(path).mode, host.file(path).user) == (0o640, "root"), path
    state = host.file(f"{HOME}/state")
    assert (state.mode, state.user) == (0o700, USER)
    assert host.run(f"runuser -u {USER} -- ln -s /etc {HOME}/project/planted").rc != 0
    alerts = host.file(ALERTS)
    assert (alerts.mode, alerts.user, alerts.group) == (0o640, "root", USER)
    assert alerts.sha256sum == hashlib.sha256(alerts_env({HOOK_VARIABLE: HOOK_URL}).encode()).hexdigest()
    timer = host.service("rollout-watch.timer")
    assert timer.is_running and timer.is_enabled

    # One tick now (oneshot: returns when it is done), as the rollout-watch user.
    assert host.run("systemctl start rollout-watch.service").rc == 0
    assert host.check_output("systemctl show -P Result rollout-watch.service") == "success"
    uid = host.check_output(f"id -u {USER}")
    logged = host.check_output(f"journalctl -u rollout-watch.service _UID={uid} -o cat --no-pager")
    fleet_lines = [line for line in logged.splitlines() if line.startswith("fleet: ")]
    assert fleet_lines and all(f"{h.name} 0/0" in fleet_lines[-1] for h in fleet), logged[-2000:]
    assert "stage 0: nothing to watch" in logged, logged[-2000:]

    # The same install again: nothing changes, the timer is not restarted.
    started = host.check_output("systemctl show -P ActiveEnterTimestampMonotonic rollout-watch.timer")
    second = install(setup)
    assert second.returncode == 0, second.stdout[-3000:]
    assert changed_operations(second) == 0
    assert host.check_output("systemctl show -P ActiveEnterTimestampMonotonic rollout-watch.timer") == started


def test_an_alert_variable_without_a_value_is_refused_before_any_change(setup):
    host = setup["control"].testinfra
    assert install(setup).returncode == 0
    before = {path: host.file(path).sha256sum for path in (*UNITS, ALERTS)}
    env = {k: v for k, v in os.environ.items() if k != HOOK_VARIABLE}
    for value in ("", "   "):
        result = autopilot(setup, *setup["data"], env={**env, HOOK_VARIABLE: value})
        output = result.stdout + result.stderr
        assert result.returncode != 0
        errors = [line for line in output.splitlines() if "pyinfra error" in line.lower()]
        assert len(errors) == 1 and f"{HOOK_VARIABLE} has no value" in errors[0], output[-2000:]
        assert "Starting operation" not in output
    assert {path: host.file(path).sha256sum for path in before} == before


def test_remove_takes_away_everything_it_installed_and_again_changes_nothing(setup):
    host = setup["control"].testinfra
    assert install(setup).returncode == 0
    first = autopilot(setup, "--data", "autopilot_state=absent")
    assert first.returncode == 0, first.stdout[-3000:]
    assert changed_operations(first) > 0
    for path in (*UNITS, ALERTS, "/etc/rollout-watch", HOME):
        assert not host.file(path).exists, path
    assert not host.user(USER).exists and not host.group(USER).exists
    assert host.check_output("systemctl show -P LoadState rollout-watch.timer") == "not-found"
    assert host.check_output("systemctl show -P LoadState rollout-watch.service") == "not-found"
    again = autopilot(setup, "--data", "autopilot_state=absent")
    assert again.returncode == 0 and changed_operations(again) == 0

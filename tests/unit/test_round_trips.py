"""Round trips per host, counted on @fake hosts (pyinfra's fake connector logs
every command and upload it simulates), and the decisions the stage task makes
from the one read of the host's state (the HostState fact)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from fake_inventory import host_state

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = "tests/unit/fake_inventory.py"
SIMULATED = re.compile(r"\[fake\] simulating (command|put_file) on @fake/api-1:? (.*)$")
#: What a command got on stdin (tests/unit/fake_pyinfra.py): a probe write's files, content as a checksum.
STDIN = re.compile(r"\[fake\] stdin on @fake/api-1: (.*)$")
PROBE_MODE = re.compile(r"camera-rollout-probe (\w+)")
LEGACY = {"status": 200, "implementation": "legacy", "body": "{}", "content_type": "application/json",
          "error": None}


def responses(state: dict, **more) -> dict:
    return {
        "camera-rollout-probe state": json.dumps(state),
        "camera-rollout-probe record": json.dumps({"recorded": True, "record": {"stage": None}}),
        "camera-rollout-probe lock": json.dumps({"acquired": True, "holder": {}}),
        "camera-rollout-probe unlock": json.dumps({"released": True, "holder": None}),
        "camera-rollout-probe requests": json.dumps([LEGACY] * 40),
        **more,
    }


def run(files: list[str], state: dict, *data: str, **more) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run pyinfra on the fake hosts; the commands (and uploads) of host api-1,
    a probe call named by its mode (``probe state``), a probe write by what it
    writes (``probe write /etc/camera-api/rollout.env root:camera-api 640``)."""
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    result = subprocess.run(
        [sys.executable, "tests/unit/fake_pyinfra.py", "-y", "--debug", INVENTORY, *files,
         "--data", f"fake_responses={json.dumps(responses(state, **more))}", *data],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=120,
    )
    commands: list[str] = []
    stdin = ""  # logged just before the command that gets it
    for line in (result.stdout + result.stderr).splitlines():
        written = STDIN.search(line)
        if written:
            stdin = "".join(f" {w['path']} {w.get('user')}:{w.get('group')} {w.get('mode')}"
                            for w in json.loads(written.group(1)))
        match = SIMULATED.search(line)
        if match:
            kind, text = match.groups()
            probe = PROBE_MODE.search(text)
            commands.append(f"probe {probe.group(1)}{stdin if probe.group(1) == 'write' else ''}"
                            if kind == "command" and probe else f"{kind} {text}" if kind == "put_file" else text)
            stdin = ""
    return result, commands


def test_the_same_stage_again_costs_two_round_trips():
    """A no-change apply (checks off): one read of the host's whole state, and
    the record of the run. It was 14 round trips (docs/benchmarks.md)."""
    result, commands = run(["deploy.py"], host_state(10), "--data", "stage=10", "--data", "checks=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert commands == ["probe state", "probe record"]
    assert len(commands) <= 3


def test_a_rollback_writes_the_switch_restarts_and_proves_legacy_in_nine_round_trips():
    """The CLI's rollback (it takes the lock in the run). It was 21 round trips
    on @fake hosts (22 on a real one, whose health is not 200 right after a
    restart), then 11 while a file went up by upload, owner and rename."""
    result, commands = run(["tasks/rollback.py"], host_state(10), "--data", "take_lock=true",
                           "--data", "lock_token=T")
    assert result.returncode == 0, result.stderr[-3000:]
    assert commands[:2] == ["probe state", "probe lock"]
    assert commands[2] == "probe write /etc/camera-api/rollout.env root:camera-api 640"
    assert commands[3].endswith("systemctl restart camera-api.service")
    assert "until curl" in commands[4]  # restarted: the health seen before says nothing
    assert commands[5:] == ["probe requests", "probe requests", "probe record", "probe unlock"]
    assert not [c for c in commands if c.startswith("put_file")]  # nothing staged by SFTP
    assert len(commands) == 9


def test_a_status_read_is_one_round_trip():
    result, commands = run(["tasks/status.py"], host_state(10))
    assert result.returncode == 0, result.stderr[-3000:]
    assert commands == ["probe state"]


def test_a_lost_restart_is_made_up_from_the_same_read():
    """The file holds the stage, the running process another: restart, no write."""
    result, commands = run(["deploy.py"], host_state(10, process_stage=0), "--data", "stage=10",
                           "--data", "checks=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert commands[0] == "probe state" and commands[-1] == "probe record"
    assert [c for c in commands[1:-1] if "systemctl restart" in c or "until curl" in c] == commands[1:-1]
    assert len(commands) == 4


def test_an_unhealthy_host_is_waited_for_and_a_stopped_unit_enabled_and_started():
    state = host_state(10, healthy=False)
    state["unit"]["enabled"] = "disabled"
    result, commands = run(["deploy.py"], state, "--data", "stage=10", "--data", "checks=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "until curl" in commands[1]
    assert commands[2:] == ["systemctl enable camera-api.service", "probe record"]


def test_a_fresh_host_gets_every_file_then_a_restart():
    result, commands = run(["deploy.py"], host_state(), "--data", "stage=10", "--data", "checks=false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert commands[1].startswith("mkdir -p /etc/camera-api && chown root:camera-api /etc/camera-api")
    assert [c for c in commands if c.startswith(("put_file", "probe write"))] == [
        "probe write /etc/systemd/system/camera-api.service root:root 644",
        "probe write /etc/camera-api/rollout.env root:camera-api 640"]
    assert "systemctl daemon-reload" in commands
    assert commands[-4].endswith("systemctl restart camera-api.service") and "until curl" in commands[-3]
    # Restarted and healthy: running, so only the enabling is left.
    assert commands[-2:] == ["systemctl enable camera-api.service", "probe record"]


def test_a_lock_held_by_another_operator_refuses_before_anything_else():
    lock = {"token": "other", "owner": "bob@ops", "time": "2026-11-23T10:00:00+00:00", "command": "rollout deploy"}
    result, commands = run(["deploy.py"], host_state(10, lock=lock), "--data", "stage=25",
                           "--data", "checks=false", "--data", "lock_token=mine")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "rollout lock held by bob@ops since 2026-11-23T10:00:00+00:00 (rollout deploy)" in output
    assert commands == ["probe state"]


def test_the_lock_of_this_run_lets_it_go_on():
    lock = {"token": "mine", "owner": "me", "time": "t", "command": "rollout deploy"}
    result, commands = run(["deploy.py"], host_state(10, lock=lock), "--data", "stage=10",
                           "--data", "checks=false", "--data", "lock_token=mine")
    assert result.returncode == 0, result.stderr[-3000:]
    assert commands == ["probe state", "probe record"]


def test_the_rollback_after_failed_checks_reads_the_state_again():
    """deploy.py decides from the state read before the run changed anything;
    its rollback after a failed check must not (the stage was written since):
    its operations read the host's state when they run."""
    failing_preflight = json.dumps({"unit_active": "failed"})
    result, commands = run(["deploy.py"], host_state(0), "--data", "stage=10", "--data", "soak_s=0",
                           **{"camera-rollout-probe preflight": failing_preflight,
                              "camera-rollout-probe write": json.dumps({"written": "baseline.json"})})
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "stage 10 failed its checks: rolled back to stage 0" in output
    preflight = commands.index("probe preflight")
    assert commands[:preflight].count("probe state") == 1
    # No other check after a failed one: the next command is the rollback's first read.
    assert commands[preflight + 1] == "probe state"
    assert commands[preflight:].count("probe state") >= 2

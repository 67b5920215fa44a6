"""Issue 5's fault drills on the real fleet, through the operator CLI. Each drill
breaks something real (a host's power, its SSH connection, its service, its
metrics, its disk, a second operator), then checks that the tool stops or rolls
back as documented, names the host and the cause, exits non-zero, leaves no
half-written file and loses no data, and that a re-run converges.

`drills/faults.py` runs this file alone and prints the rows as a table
(docs/drills.md). Each drill starts from its own state (stage 10, checks off).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from fleetlib import (
    SANDBOX_DIR,
    run_pyinfra,
    run_rollout,
    run_sandbox,
    sandbox_inventory,
    stages,
    start_rollout,
    status,
    wait_until,
)

FAST = ("--soak", "6s", "--batch-soak", "3s")
ENV_DIR = "/etc/camera-api"
HISTORY = "/var/lib/camera-rollout/history.jsonl"


def start_at(stage: int, *extra: str) -> None:
    """Every host on ``stage`` (checks off) and unlocked, whatever an earlier drill left."""
    run_rollout("unlock", "sandbox", "--force")
    result = run_pyinfra("deploy.py", "--data", f"stage={stage}", "--data", "checks=false", *extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert set(stages().values()) == {(stage, stage)}


def snapshot(fleet) -> dict[str, dict]:
    """What must survive any drill: the secrets file and the recorded history."""
    return {h.name: {
        "secrets": h.testinfra.file(f"{ENV_DIR}/secrets.env").sha256sum,
        "history": int(h.testinfra.check_output(f"cat {HISTORY} 2>/dev/null | wc -l")),
    } for h in fleet}


def data_lost(fleet, before: dict[str, dict]) -> list[str]:
    """Half-written or lost data on any host, as one line each (empty: none)."""
    problems = []
    for host in fleet:
        t = host.testinfra
        leftovers = t.check_output(f"find {ENV_DIR} -name '.*'").split()  # a write's temporary files are hidden
        if leftovers:
            problems.append(f"{host.name}: temporary file left: {' '.join(leftovers)}")
        env = t.file(f"{ENV_DIR}/rollout.env").content_string
        if not env.endswith("\n") or "USE_DOMAIN_SERVICE=" not in env or "ROLLOUT_PERCENT=" not in env:
            problems.append(f"{host.name}: rollout.env is not a whole stage file")
        if t.file(f"{ENV_DIR}/secrets.env").sha256sum != before[host.name]["secrets"]:
            problems.append(f"{host.name}: secrets.env changed")
        history = int(t.check_output(f"cat {HISTORY} 2>/dev/null | wc -l"))
        if history < before[host.name]["history"]:
            problems.append(f"{host.name}: history lost records ({before[host.name]['history']} -> {history})")
    return problems


def last_line(result: subprocess.CompletedProcess) -> str:
    return (result.stderr.strip().splitlines() or [""])[-1]


def deploy(stage: int, *extra: str, env: str = "sandbox") -> subprocess.CompletedProcess:
    return run_rollout("deploy", env, "--stage", str(stage), "--yes", *FAST, *extra)


def converge(fleet, stage: int) -> None:
    """The re-run: the deploy again (every host in one batch) reaches every host."""
    again = deploy(stage, "--batches", "100%")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert set(stages().values()) == {(stage, stage)}


def test_a_host_powered_off_in_the_middle_of_a_batch(fleet, drill):
    start_at(10)
    before = snapshot(fleet)
    victim, partner = fleet[-1], fleet[-2]  # the last batch (1, 100 %) holds both
    run = start_rollout("deploy", "sandbox", "--stage", "25", "--yes", *FAST, "--batches", "1,100%")
    try:
        # The partner's file turning to 25 means the last batch is writing: cut the power now.
        wait_until(lambda: "ROLLOUT_PERCENT=25" in partner.testinfra.file(f"{ENV_DIR}/rollout.env").content_string,
                   600, "the last batch to start writing", interval_s=0.05)
        off = run_sandbox("power-off", victim.name)
        assert off.returncode == 0, off.stderr
    finally:
        out, err = run.communicate(timeout=900)
        powered_on = run_sandbox("power-on", victim.name)
    assert powered_on.returncode == 0, powered_on.stderr
    assert run.returncode == 1, out[-3000:] + err[-3000:]
    assert f"failed in batch 2 ({', '.join(h.name for h in fleet[1:])})" in err.strip().splitlines()[-1], \
        err[-2000:]
    assert f"status: cannot read {victim.name} (unreachable?)" in out
    # The hosts that answered went back to their stage; the victim booted from its own
    # disk with its file on the old stage or the new one, whole.
    now = stages()
    assert {h: s for h, s in now.items() if h != victim.name} == {h.name: (10, 10) for h in fleet[:-1]}
    assert now[victim.name][0] in (10, 25)
    assert data_lost(fleet, before) == []
    # The dead run could not release its lock on the host that was off.
    refused = deploy(25)
    assert refused.returncode == 1 and "another rollout holds the lock" in last_line(refused)
    assert run_rollout("unlock", "sandbox", "--force").returncode == 0
    converge(fleet, 25)
    lost = data_lost(fleet, before)  # after the re-run too
    assert lost == []
    drill("host powered off mid-batch",
          "batch fails naming the host; the others go back to their stage; exit 1; after power-on, "
          "unlock --force and the same deploy converge",
          f"exit {run.returncode}: {err.strip().splitlines()[-1]}; re-run after unlock: exit 0, all (25, 25)",
          lost)


#: Runs on the host: waits for the env file to say 25, then drops every SSH
#: connection but its own (pyinfra's is among them) and reports what the
#: running process had at that moment.
_DROP_SSH = textwrap.dedent("""
    import os, signal, time, subprocess
    deadline = time.monotonic() + 600
    while "ROLLOUT_PERCENT=25" not in open("/etc/camera-api/rollout.env").read():
        if time.monotonic() > deadline:
            raise SystemExit("the file never changed")
        time.sleep(0.002)
    listener = int(subprocess.check_output(["systemctl", "show", "-p", "MainPID", "--value", "ssh"]))
    mine, pid = set(), os.getpid()
    while pid > 1:
        mine.add(pid)
        pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    sessions = [int(p) for p in open(f"/proc/{listener}/task/{listener}/children").read().split()]
    killed = [p for p in sessions if p not in mine]
    for p in killed:
        os.kill(p, signal.SIGKILL)
    main = subprocess.check_output(["systemctl", "show", "-p", "MainPID", "--value", "camera-api"]).strip()
    env = open(f"/proc/{int(main)}/environ", "rb").read().split(b"\\0")
    print("killed", len(killed), [e.decode() for e in env if e.startswith(b"ROLLOUT_PERCENT=")])
""")


def test_ssh_drops_after_the_env_file_is_written_before_the_restart(fleet, drill):
    start_at(10)
    before = snapshot(fleet)
    canary = fleet[0]
    config = json.loads((SANDBOX_DIR / "fleet.json").read_text())["ssh_config"]
    watcher = subprocess.Popen(["ssh", "-F", config, canary.name, "python3", "-"], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher.stdin.write(_DROP_SSH)
    watcher.stdin.close()
    try:
        result = deploy(25)
    finally:
        watcher.wait(timeout=660)  # the watcher ends by itself (its own bound: 600 s); its output is a line
        seen, problem = watcher.stdout.read(), watcher.stderr.read()
    # The drop happened while the process still ran stage 10: after the write, before the restart.
    assert seen.startswith("killed ") and "'ROLLOUT_PERCENT=10'" in seen, seen + problem
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"failed in batch 1 ({canary.name}); reverted to the previous stage" in last_line(result)
    assert canary.name in result.stdout
    assert set(stages().values()) == {(10, 10)}
    assert data_lost(fleet, before) == []
    converge(fleet, 25)
    at_drop = seen.split("[", 1)[1].strip(" ]\n")
    lost = data_lost(fleet, before)  # after the re-run too
    assert lost == []
    drill("SSH drops after the env file is written, before the restart",
          "the canary's batch fails naming it; the canary is reverted to its stage; exit 3; re-run converges",
          f"dropped while the process ran {at_drop}; exit {result.returncode}: {last_line(result)}; "
          "re-run: exit 0, all (25, 25)",
          lost)


#: A drop-in on the canary: the service gets a bad DOMAIN_ERROR_RATE exactly when
#: its env file says stage 25, so the new stage crash-loops and the old one runs.
_BAD_VALUE_ON_25 = (
    "orig=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/camera-api.service)"
    " && mkdir -p /etc/systemd/system/camera-api.service.d"
    " && printf '[Service]\\nExecStart=\\nExecStart=/bin/sh -c \"if grep -qx ROLLOUT_PERCENT=25 "
    f"{ENV_DIR}/rollout.env; then export DOMAIN_ERROR_RATE=not-a-number; fi; exec %s\"\\n' \"$orig\""
    " > /etc/systemd/system/camera-api.service.d/fault.conf && systemctl daemon-reload"
)


def test_a_service_that_crash_loops_after_the_restart(fleet, drill, tmp_path):
    start_at(10)
    before = snapshot(fleet)
    canary, others = fleet[0], fleet[1:]
    pids = {h.name: h.main_pid() for h in others}
    canary.testinfra.check_output(_BAD_VALUE_ON_25)
    try:
        # A health wait of 15 s, not 60: the bound is what is tested, not its length.
        result = deploy(25, env=sandbox_inventory(tmp_path, health_timeout_s=15))
        journal = canary.testinfra.check_output(
            "journalctl -u camera-api.service --since '-3min' --no-pager | grep -c 'DOMAIN_ERROR_RATE must be' || true")
    finally:
        canary.testinfra.check_output("rm -r /etc/systemd/system/camera-api.service.d && systemctl daemon-reload"
                                      " && systemctl restart camera-api")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]
    assert int(journal) > 0  # the service really refused the bad value, again and again
    assert f"[{canary.name}] camera-api.service not healthy after 15s" in output, output[-3000:]
    assert f"failed in batch 1 ({canary.name}); reverted to the previous stage" in last_line(result)
    assert stages()[canary.name] == (10, 10)
    assert {h.name: h.main_pid() for h in others} == pids  # never touched
    assert data_lost(fleet, before) == []
    converge(fleet, 25)
    lost = data_lost(fleet, before)  # after the re-run too
    assert lost == []
    drill("service crash-loops after the restart (bad env value)",
          "the bounded health wait fails, naming host and unit; the canary is reverted and healthy; the "
          "other hosts are never touched; exit 3; re-run (value fixed) converges",
          f"{journal.strip()} start-up refusals in the journal; exit {result.returncode}: {last_line(result)}; "
          "others kept their PIDs; re-run: exit 0",
          lost)


@pytest.mark.parametrize("fault, cause", [
    ("hang", "metrics endpoint did not answer"),
    ("500", "HTTP 500"),
    ("html", "not JSON (text/html)"),
])
def test_a_metrics_endpoint_that_hangs_fails_or_answers_html(fleet, drill, fault, cause):
    start_at(10, "--data", "app_env=" + json.dumps({"METRICS_FAULT": fault}))
    before = snapshot(fleet)
    result = run_rollout("check", "sandbox", "--soak", "0")
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-3000:]
    for host in fleet:
        assert f"[{host.name}] gate {host.name}: ERROR" in output, output[-3000:]
    assert cause in output
    # The rollback's env file has no fault knob: every host is back on legacy, metrics readable.
    assert set(stages().values()) == {(0, 0)}
    assert data_lost(fleet, before) == []
    fixed = ""
    if fault == "hang":  # the recovery is the same for the three: shown once
        start_at(10)
        gate = run_rollout("check", "sandbox", "--soak", "0")
        assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr
        fixed = "; after the fix the gate passes"
    lost = data_lost(fleet, before)  # after the re-run too
    assert lost == []
    drill(f"metrics endpoint {'hangs' if fault == 'hang' else 'answers ' + fault.upper()}",
          "gate ERROR on every host (never a pass on missing data); fleet rolled back; exit 3",
          f"exit {result.returncode}: {last_line(result)} ({cause}){fixed}",
          lost)


def test_two_operators_deploy_at_once(fleet, drill):
    start_at(10)
    before = snapshot(fleet)
    first = start_rollout("deploy", "sandbox", "--stage", "25", "--yes", *FAST, "--batches", "100%",
                          env={**os.environ, "USER": "alice"})
    try:
        wait_until(lambda: fleet[0].testinfra.file("/var/lib/camera-rollout/lock.json").exists, 120,
                   "the first operator's lock")
        second = deploy(25)
    finally:
        _out, err = first.communicate(timeout=900)
    assert second.returncode == 1
    assert "another rollout holds the lock: alice@" in last_line(second)
    assert "(rollout deploy sandbox --stage 25)" in second.stderr  # the holder's command too
    assert first.returncode == 0, err[-3000:]
    assert set(stages().values()) == {(25, 25)}
    assert all(s["lock"] is None for s in status()["hosts"].values())
    lost = data_lost(fleet, before)
    assert lost == []
    drill("two operators deploy at once",
          "the second is refused before touching a host, naming the holder; the first completes",
          f"second: exit {second.returncode}: {last_line(second)}; first: exit 0, all (25, 25)",
          lost)


def test_a_full_disk_when_the_env_file_is_written(fleet, drill):
    start_at(10)
    before = snapshot(fleet)
    canary = fleet[0]
    t = canary.testinfra
    # A small filesystem over the env directory, holding the same files, then filled.
    t.check_output(
        f"cp -a {ENV_DIR} /root/env-backup && mount -t tmpfs -o size=64k,mode=750 tmpfs {ENV_DIR}"
        f" && cp -a /root/env-backup/. {ENV_DIR}/"
        f" && (dd if=/dev/zero of={ENV_DIR}/filler bs=4k 2>/dev/null || true)")
    try:
        result = deploy(25)
        output = result.stdout + result.stderr
        assert result.returncode == 3, output[-3000:]
        assert f"failed in batch 1 ({canary.name}); reverted to the previous stage" in last_line(result)
        assert "No space left on device" in output and canary.name in output
        assert stages()[canary.name] == (10, 10)
        lost = data_lost(fleet, before)
    finally:
        # Free the space; copy what the drill left back to the real directory.
        t.check_output(f"rm -f {ENV_DIR}/filler && cp -a {ENV_DIR}/. /root/env-backup/"
                       f" && umount {ENV_DIR} && cp -a /root/env-backup/. {ENV_DIR}/ && rm -r /root/env-backup")
    assert lost == []
    converge(fleet, 25)
    lost = data_lost(fleet, before)  # after the re-run too
    assert lost == []
    drill("full disk when the env file is written",
          "the write fails before the rename (old file intact, no temporary file left), naming host and "
          "cause; canary reverted; exit 3; re-run after freeing space converges",
          f"exit {result.returncode}: {last_line(result)}; 'No space left on device' named; re-run: exit 0",
          lost)

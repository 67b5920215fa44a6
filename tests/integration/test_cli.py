"""Issue 4 on a real fleet: the operator CLI end to end. The tests run
in file order: a full progression, refusals, a failing canary, drift, rollback."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest

from fleetlib import (
    EVIDENCE,
    ROOT,
    implementations,
    run_pyinfra,
    run_rollout,
    sandbox_inventory,
    stages,
    status,
    wait_until,
)

FAST = ("--soak", "6s", "--batch-soak", "3s")
#: Every host in one batch, where batching is not the subject.
ONE_BATCH = ("--batches", "100%")


def test_start_from_stage_zero(fleet):
    result = run_pyinfra("tasks/rollback.py", "--data", "checks=false")
    assert result.returncode == 0, result.stderr
    assert set(stages().values()) == {(0, 0)}


def test_full_progression_with_deploy_and_promote(fleet, tmp_path):
    # Each gate passes on 150 requests of each implementation (EVIDENCE), judged at
    # the end of its window: 10 s for one or two hosts, 12 s for every host at once
    # (the hosts' synthetic traffic shares two cores).
    env = sandbox_inventory(tmp_path, gate=EVIDENCE)
    result = run_rollout("--json", "deploy", env, "--stage", "10", "--yes", "--soak", "10s", "--batch-soak", "10s")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    # canary, a quarter (rounded up: one host), the rest
    assert [len(batch) for batch in report["plan"]] == [1, 1, len(fleet) - 2]
    assert report["plan"][0] == ["camera-1"]
    assert [set(b["gate"].values()) for b in report["batches"]] == [{"pass"}] * 3
    # promote: the gate on stage 10, then the plan's next stage (the watch's test
    # goes on through 50 and 100 by the same orchestration).
    result = run_rollout("--json", "promote", env, "--yes", "--gate-soak", "12s", "--soak", "12s",
                         "--batches", "100%")
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout)["stage"] == 25
    assert set(stages().values()) == {(25, 25)}
    records = status()["hosts"]
    assert sorted(records) == sorted(h.name for h in fleet)
    for _name, host_status in records.items():
        current = host_status["current"]
        assert current["stage"] == 25 and current["verdict"] == "pass", current
        assert current["operator"] and current["baseline_p95_ms"] is not None
        assert [r["stage"] for r in host_status["history"]][-2:] == [10, 25]


def test_promote_at_100_is_refused(fleet):
    set_up = run_pyinfra("deploy.py", "--data", "stage=100", "--data", "checks=false")
    assert set_up.returncode == 0, set_up.stderr[-3000:]
    for host in fleet:
        assert implementations(host, 20) == ["domain"] * 20
    result = run_rollout("promote", "sandbox", "--yes")
    assert result.returncode == 1
    assert "already at 100%" in result.stderr


def test_going_back_is_allowed_and_skipping_is_refused(fleet):
    result = run_rollout("deploy", "sandbox", "--stage", "10", "--yes", *FAST, *ONE_BATCH)
    assert result.returncode == 0, result.stderr[-3000:]
    before = stages()
    result = run_rollout("deploy", "sandbox", "--stage", "100", "--yes")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "rollout: stage 100 skips the plan: from 10 the next stage is 25 "
        "(pass --allow-skip to skip on purpose)")
    assert stages() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("deploy", "sandbox", "--stage", "33", "--yes"), "stage must be one of 0, 10, 25, 50, 100, got 33"),
        (("deploy", "nowhere", "--stage", "25", "--yes"), "unknown environment 'nowhere'"),
        (("deploy", "sandbox", "--stage", "25", "--yes", "--canary", "camera-9"), "canary 'camera-9' is not a host"),
        (("deploy", "sandbox", "--stage", "25", "--yes", "--batches", "0"), "batch size '0'"),
        (("deploy", "sandbox", "--stage", "25"), "not a terminal: pass --yes"),
    ],
)
def test_bad_input_is_refused_before_any_host_is_touched(fleet, args, message):
    before = {h.name: h.main_pid() for h in fleet}
    result = run_rollout(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert {h.name: h.main_pid() for h in fleet} == before


def test_dry_run_shows_the_change_and_changes_nothing(fleet, secret_values):
    before = {h.name: (h.main_pid(), h.testinfra.file("/etc/camera-api/rollout.env").sha256sum) for h in fleet}
    result = run_rollout("deploy", "sandbox", "--stage", "25", "--dry")
    assert result.returncode == 0, result.stderr
    assert "+ ROLLOUT_PERCENT=25" in result.stdout and "dry run: nothing was changed" in result.stdout
    for secret in secret_values:
        assert secret not in result.stdout + result.stderr
    after = {h.name: (h.main_pid(), h.testinfra.file("/etc/camera-api/rollout.env").sha256sum) for h in fleet}
    assert after == before


def test_a_stale_lock_needs_force(fleet):
    # From 25 (and the tests after this one start from where it leaves the fleet).
    set_up = run_pyinfra("deploy.py", "--data", "stage=25", "--data", "checks=false")
    assert set_up.returncode == 0, set_up.stderr[-3000:]
    take = run_pyinfra("tasks/lock.py", "--data", "lock_action=acquire", "--data", "lock_token=crashed-run",
                       "--data", "operator=alice@elsewhere", "--data", "command=rollout deploy sandbox --stage 50")
    assert take.returncode == 0, take.stderr
    refused = run_rollout("deploy", "sandbox", "--stage", "50", "--yes")
    assert refused.returncode == 1 and "alice@elsewhere" in refused.stderr
    assert run_rollout("unlock", "sandbox").returncode == 1
    assert run_rollout("unlock", "sandbox", "--force").returncode == 0
    assert all(s["lock"] is None for s in status()["hosts"].values())


def test_a_failing_canary_stops_the_rollout_and_is_reverted(fleet):
    canary, others = fleet[0], fleet[1:]
    pids = {h.name: h.main_pid() for h in others}
    # Only the canary's service breaks: a drop-in makes its domain side fail.
    canary.testinfra.check_output(
        "mkdir -p /etc/systemd/system/camera-api.service.d && printf '[Service]\\n"
        "Environment=DOMAIN_ERROR_RATE=1.0\\n' > /etc/systemd/system/camera-api.service.d/fault.conf"
        " && systemctl daemon-reload")
    try:
        result = run_rollout("--json", "deploy", "sandbox", "--stage", "50", "--yes", *FAST)
    finally:
        # The reverted process still carries the drop-in's variable: restart it clean.
        canary.testinfra.check_output(
            "rm -r /etc/systemd/system/camera-api.service.d && systemctl daemon-reload"
            " && systemctl restart camera-api")
        wait_until(lambda: canary.testinfra.run(
            "curl -fs -o /dev/null http://127.0.0.1:8000/api/v1/monitoring/health").rc == 0,
            60, "the canary healthy again")
    assert result.returncode == 3, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert len(report["batches"]) == 1 and report["batches"][0]["hosts"] == [canary.name]
    assert "failed in batch 1 (camera-1); reverted to the previous stage" in report["error"]
    now = stages()
    assert now[canary.name] == (25, 25)
    for host in others:
        assert now[host.name] == (25, 25)
        assert host.main_pid() == pids[host.name]  # untouched


def test_an_unreachable_host_is_named_and_nothing_changes(fleet):
    host = fleet[-1]
    link = f"vb-{host.name}"[:15]  # systemd-nspawn's host side of the host's veth
    pids = {h.name: h.main_pid() for h in fleet}
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        result = run_rollout("deploy", "sandbox", "--stage", "50", "--yes", *FAST)
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"rollout: cannot read the state of host(s) {host.name} (unreachable?)")
    wait_until(lambda: host.testinfra.run("true").rc == 0, 30, f"{host.name} reachable again")
    assert {h.name: h.main_pid() for h in fleet} == pids
    assert set(stages().values()) == {(25, 25)}


def test_status_flags_drift_after_a_hand_change(fleet):
    host = fleet[2]
    host.testinfra.check_output("sed -i 's/^ROLLOUT_PERCENT=.*/ROLLOUT_PERCENT=50/' /etc/camera-api/rollout.env")
    report = status()
    assert f"{host.name}: file says stage 50, process runs 25" in report["drift"]
    assert any("hosts are on different stages" in flag for flag in report["drift"])
    # put it right again (the deploy restarts the drifted host only)
    result = run_pyinfra("deploy.py", "--limit", host.name, "--data", "stage=25", "--data", "checks=false")
    assert result.returncode == 0, result.stderr
    assert status()["drift"] == []


def test_batch_hooks_run_around_each_batch_and_a_failing_hook_stops(fleet, tmp_path):
    log = tmp_path / "hooks.log"
    inventory = tmp_path / "hooked.py"

    def write_inventory(before: str) -> None:
        inventory.write_text(
            "import runpy\n"
            f"_base = runpy.run_path({str(ROOT / 'inventories' / 'sandbox.py')!r})\n"
            "_hooks = {'before': [" + repr(before) + "], "
            f"'after': ['echo after {{batch}} {{hosts}} >> {log}']}}\n"
            # Not in group sandbox: its overrides (smoke traffic, the sandbox's
            # timetable, a week per second) come as host data.
            "camera_api = [(n, {**d, 'smoke_traffic': True, 'time_compression': 7 * 86400, 'batch_hooks': _hooks})"
            " for n, d in _base['camera_api']]\n")

    write_inventory(f"echo before {{batch}} {{hosts}} stage {{stage}} >> {log}")
    result = run_rollout("deploy", str(inventory), "--stage", "25", "--yes", *FAST)
    # stdout too: the per-host check lines say which check failed
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rest = " ".join(sorted(h.name for h in fleet)[2:])
    assert log.read_text().splitlines() == [
        "before 1 camera-1 stage 25", "after 1 camera-1",
        "before 2 camera-2 stage 25", "after 2 camera-2",
        f"before 3 {rest} stage 25", f"after 3 {rest}",
    ]
    pids = {h.name: h.main_pid() for h in fleet}
    logged = log.read_text()
    write_inventory("echo drain refused >&2; exit 4")
    result = run_rollout("deploy", str(inventory), "--stage", "50", "--yes", *FAST)
    # The canary's batch never ran: nothing changed, so failed (1), not rolled back (3).
    assert result.returncode == 1, (result.stdout + result.stderr)[-4000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "rollout: stage 50 failed in batch 1 (camera-1): its before hook failed, so the batch never ran; "
        "nothing was changed")
    assert "hook (before) failed with exit 4: drain refused" in result.stdout
    assert log.read_text() == logged  # no after hook for a batch that never ran
    assert {h.name: h.main_pid() for h in fleet} == pids  # nothing restarted
    assert set(stages().values()) == {(25, 25)}


def test_rollback_from_50_puts_every_host_on_legacy(fleet):
    set_up = run_pyinfra("deploy.py", "--data", "stage=50", "--data", "checks=false")
    assert set_up.returncode == 0, set_up.stderr[-3000:]
    result = run_rollout("--json", "rollback", "sandbox")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["legacy_proven"] == {h.name: True for h in fleet}
    for host in fleet:
        assert host.process_switch() == {"USE_DOMAIN_SERVICE": "false", "ROLLOUT_PERCENT": "0"}
        assert implementations(host, 50) == ["legacy"] * 50
    assert all(s["current"]["stage"] == 0 for s in status()["hosts"].values())


def test_verify_writes_a_junit_file(fleet, tmp_path):
    junit = tmp_path / "verify.xml"
    result = run_rollout("verify", "sandbox", "--junit-xml", str(junit))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert int(suite.get("tests")) == 8 * len(fleet)
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    # A check that did not run is no pass: none may be skipped.
    assert suite.get("skipped") == "0" and not [c for c in suite.iter("testcase") if c.find("skipped") is not None]
    names = {case.get("name") for case in suite.iter("testcase")}
    assert "test_package_check[camera-1-compare]" in names


def test_check_rolls_back_on_an_abort_unless_told_not_to(fleet):
    faulty = ("--data", 'app_env={"DOMAIN_ERROR_RATE": "1.0"}', "--data", "checks=false", "--data", "stage=10")
    assert run_pyinfra("deploy.py", *faulty).returncode == 0
    # A fresh restart: the first reads have too few requests; 25 s of smoke traffic
    # give two reads over min_requests, both breaching (abort_after=2).
    kept = run_rollout("check", "sandbox", "--soak", "25s", "--no-rollback")
    assert kept.returncode == 1 and "not rolled back" in kept.stderr
    assert set(stages().values()) == {(10, 10)}
    rolled = run_rollout("check", "sandbox", "--soak", "25s")
    assert rolled.returncode == 3, rolled.stderr[-3000:]
    assert set(stages().values()) == {(0, 0)}
    assert run_pyinfra("deploy.py", "--data", "stage=0", "--data", "checks=false").returncode == 0


def test_promote_rolls_back_when_the_current_stage_fails_its_gate(fleet):
    faulty = ("--data", 'app_env={"DOMAIN_ERROR_RATE": "1.0"}', "--data", "checks=false", "--data", "stage=10")
    assert run_pyinfra("deploy.py", *faulty).returncode == 0
    # The domain fails every request: the side-by-side test aborts on the first reads.
    result = run_rollout("promote", "sandbox", "--yes")
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-2000:]
    assert "rollout: stage 10 failed its gate on camera-" in result.stderr.strip().splitlines()[-1]
    assert set(stages().values()) == {(0, 0)}  # never promoted to 25: rolled back

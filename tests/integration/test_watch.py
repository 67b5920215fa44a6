"""Issue 12 on a real fleet: the seed's timetable and ``rollout watch``, the
controller that drives a rollout by itself. Durations come from a project of
the test's own (group_data overrides, in seconds); alerts go to a real HTTP
receiver on loopback (tests/alert_receiver.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetlib import ROOT, SANDBOX_DIR, run_pyinfra, run_rollout, stages, status, wait_until
from tests.alert_receiver import running_receiver

FAULTS_FILE = "/etc/camera-api/faults.json"
DROP_IN_DIR = "/etc/systemd/system/camera-api.service.d"
DROP_IN = f"{DROP_IN_DIR}/issue-12.conf"
HEALTH = "curl -fs -o /dev/null http://127.0.0.1:8000/api/v1/monitoring/health"
STATE_DIR = "/var/lib/camera-rollout"

#: Durations in seconds, two batches a stage (the canary, then the rest), short
#: gate windows on less evidence (150 requests of each implementation, not 500:
#: these tests prove the controller, docs/benchmarks.md the statistics): a whole
#: progression in minutes.
WATCH = {
    "time_compression": 1,
    "stage_durations": {10: [5, 900], 25: [5, 900], 50: [5, 900], 100: [5, 900]},
    "gate": {"min_requests_per_implementation": 150},
    "batches": "1,100%", "batch_soak_s": 5, "soak_s": 6, "watch_soak_s": 6, "auto_promote": True,
    "alert_sinks": [{"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_TEST_WEBHOOK_URL"}],
}


@pytest.fixture(autouse=True)
def _no_lock_left_by_a_failure(request):
    """A test that failed may leave a dead tick's lock on the hosts; break it so
    the failure is reported once, not again by every later test of the module.
    A passing test's lock is left alone (the tests that care assert it)."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        run_rollout("unlock", "sandbox", "--force")


def project(tmp_path: Path, **overrides) -> Path:
    """A project of the test's own: the sandbox inventory and group data overrides."""
    root = tmp_path / "project"
    (root / "inventories").mkdir(parents=True)
    (root / "group_data").mkdir()
    shutil.copy(ROOT / "inventories" / "sandbox.py", root / "inventories" / "sandbox.py")
    settings = {**WATCH, **overrides}
    (root / "group_data" / "sandbox.py").write_text("".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    return root


def set_stage(stage: int, checks: bool = False) -> None:
    """The stage on every host by plain pyinfra. ``checks``: with the baseline P95
    the gate's aggregate row needs (one gate read), so a watch may promote it."""
    options = ("--data", "soak_s=0") if checks else ("--data", "checks=false")
    result = run_pyinfra("deploy.py", "--data", f"stage={stage}", *options)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def watch_env(tmp_path: Path, receiver, state: str = "state") -> dict:
    return {**os.environ, "ROLLOUT_TEST_WEBHOOK_URL": receiver.url, "ROLLOUT_STATE_DIR": str(tmp_path / state)}


def start_watch(root: Path, env: dict, log: Path, *args: str) -> subprocess.Popen:
    """``rollout watch`` in the background, its output in a file (a pipe nobody
    reads would fill and stop it), in a session of its own (to kill it whole)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "rollout", "--project", str(root), "watch", "sandbox", *args],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def stop_watch(process: subprocess.Popen, log: Path) -> str:
    """SIGTERM: the loop ends after the tick under way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
    return log.read_text()


def kinds(receiver) -> list[tuple[str, int | None]]:
    return [(r["body"]["kind"], r["body"]["stage"]) for r in receiver.received()]


def host_json(host, name: str):
    text = host.testinfra.run(f"cat {STATE_DIR}/{name}").stdout
    return json.loads(text) if text.strip() else None


def test_promote_before_the_minimum_is_refused_with_the_time_left(fleet, tmp_path):
    set_stage(0)
    set_stage(10)
    root = project(tmp_path, stage_durations={10: ["1h", "2h"], 25: [5, 900], 50: [5, 900], 100: [5, 900]},
                   alert_sinks=[])
    refused = run_rollout("--project", str(root), "promote", "sandbox", "--yes")
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert re.search(r"stage 10 is not due yet: its minimum observation time ends in (59m \d+s|1h)",
                     refused.stderr), refused.stderr[-2000:]
    assert set(stages().values()) == {(10, 10)}
    early = run_rollout("--project", str(root), "deploy", "sandbox", "--stage", "25", "--yes", "--batches", "100%",
                        "--soak", "0", "--early", "drill: hotfix verified by QA")
    assert early.returncode == 0, early.stderr[-3000:]
    for _name, host_status in status()["hosts"].items():
        override = host_status["current"].get("override")
        assert override and override["reason"] == "drill: hotfix verified by QA", host_status["current"]
        assert override["operator"] and re.fullmatch(r"\d+m( \d+s)?", override["early"]), override
        assert host_status["history"][-1]["override"] == override


def test_watch_drives_an_unattended_progression_and_alerts_each_step_once(fleet, tmp_path):
    set_stage(0)
    root = project(tmp_path)
    log = tmp_path / "watch.log"
    with running_receiver(tmp_path) as receiver:
        started = time.monotonic()
        watch = start_watch(root, watch_env(tmp_path, receiver), log, "--loop", "2s", "--start")
        try:
            wait_until(lambda: ("completed", 100) in kinds(receiver) or watch.poll() is not None, 1800,
                       "the watch to complete the rollout", interval_s=2)
            elapsed = time.monotonic() - started
        finally:
            output = stop_watch(watch, log)
        received = receiver.received()
    assert watch.returncode == 0, output[-4000:]
    assert receiver.url not in output and f":{receiver.port}" not in output  # a webhook URL is a secret
    expected = []
    for stage in (10, 25, 50, 100):
        expected += [("stage-started", stage), ("batch-passed", stage), ("batch-passed", stage), ("promoted", stage)]
    # A due stage whose tick found too little traffic yet is inconclusive: the watch may
    # say so (at most once per stage) and promotes at a later tick; nothing else may differ.
    past_due = [k for k in kinds(receiver) if k[0] == "inconclusive-past-due"]
    assert len(set(past_due)) == len(past_due) and {s for _, s in past_due} <= {10, 25, 50, 100}, past_due
    assert [k for k in kinds(receiver) if k[0] != "inconclusive-past-due"] == expected + [("completed", 100)], \
        output[-4000:]
    keys = [r["body"]["key"] for r in received]
    assert len(set(keys)) == len(keys)
    for _name, host_status in status()["hosts"].items():
        history = [r for r in host_status["history"] if r.get("command") == "rollout watch sandbox"]
        assert [r["stage"] for r in history][-4:] == [10, 25, 50, 100], history
        assert all(r["verdict"] in ("pass", "inconclusive") for r in history[-4:]), history
    report = {"seconds": round(elapsed), "hosts": len(fleet),
              "events": [{k: r["body"][k] for k in ("time", "kind", "stage", "summary")} for r in received]}
    (SANDBOX_DIR / "watch-progression.json").write_text(json.dumps(report, indent=1))


def test_two_ticks_at_once_one_does_the_work_the_other_nothing(fleet, tmp_path):
    set_stage(10)
    root = project(tmp_path, stage_durations={10: ["1h", "2h"], 25: [5, 900], 50: [5, 900], 100: [5, 900]},
                   watch_soak_s=5)
    with running_receiver(tmp_path) as receiver:
        for same_machine in (True, False):
            runs = []
            for n in range(2):
                env = watch_env(tmp_path, receiver, "state" if same_machine else f"state-{n}")
                runs.append(subprocess.Popen(
                    [sys.executable, "-m", "rollout", "--project", str(root), "--json", "watch", "sandbox"],
                    cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                    stdin=subprocess.DEVNULL))
            results = [run.communicate(timeout=600) for run in runs]
            actions = sorted(json.loads(out)["ticks"][0]["action"] for out, _ in results)
            assert [run.returncode for run in runs] == [0, 0], results
            expected = "none: another tick runs" if same_machine else "none: locked"
            assert actions == [expected, "observe"], (same_machine, [err[-1500:] for _, err in results])
    assert set(stages().values()) == {(10, 10)}
    assert all(s["lock"] is None for s in status()["hosts"].values())


def test_a_tick_killed_between_batches_is_finished_by_the_next(fleet, tmp_path):
    set_stage(0)
    set_stage(10, checks=True)
    canary = sorted(h.name for h in fleet)[0]
    canary_host = next(h for h in fleet if h.name == canary)
    root = project(tmp_path, batches="1,1,100%",
                   stage_durations={10: [1, 900], 25: ["1h", "2h"], 50: [5, 900], 100: [5, 900]})
    log = tmp_path / "killed.log"
    with running_receiver(tmp_path) as receiver:
        env = watch_env(tmp_path, receiver)
        tick = start_watch(root, env, log)
        try:
            wait_until(lambda: (host_json(canary_host, "current.json") or {}).get("stage") == 25
                       or tick.poll() is not None, 600, "the canary batch to finish", interval_s=1)
            assert tick.poll() is None, log.read_text()[-3000:]
        finally:
            if tick.poll() is None:
                os.killpg(tick.pid, signal.SIGKILL)  # the control machine loses power between batches
            tick.wait(timeout=60)
        assert tick.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        before = dict(stages())
        # Half-way: the canary promoted, at least one later batch not yet (the
        # kill lands within a poll of the canary batch, the next may have begun).
        assert before[canary] == (25, 25) and (10, 10) in before.values(), before
        # The next tick takes over the dead tick's lock and judges the half-way
        # promotion as a new one: a window too thin to pass is observed (and the
        # following tick judges again), a passing one resumes it.
        actions = []
        for _ in range(5):
            nxt = run_rollout("--project", str(root), "--json", "watch", "sandbox", env=env)
            assert nxt.returncode == 0, nxt.stderr[-4000:]
            if not actions:
                assert "taking over the lock of a tick that died" in nxt.stderr
            actions.append(json.loads(nxt.stdout)["ticks"][0]["action"])
            if actions[-1] != "observe: promotion to 25 half-way":
                break
        assert actions[-1] == "resume promotion to 25", actions
        assert [k for k, _ in kinds(receiver)][-2:] == ["batch-passed", "promoted"]
        assert [k for k, _ in kinds(receiver)].count("stage-started") == 1
    assert set(stages().values()) == {(25, 25)}
    stages_recorded = [r["stage"] for r in status()["hosts"][canary]["history"]]
    since_10 = stages_recorded[len(stages_recorded) - stages_recorded[::-1].index(10):]
    assert since_10 == [25], stages_recorded  # the canary batch was not redone


def test_a_fault_at_stage_25_mid_watch_rolls_every_host_back(fleet, tmp_path):
    for host in fleet:
        host.testinfra.check_output(f"mkdir -p {DROP_IN_DIR} && printf '[Service]\\nEnvironment=FAULTS_FILE="
                                    f"{FAULTS_FILE}\\n' > {DROP_IN} && systemctl daemon-reload")
    try:
        set_stage(0)
        set_stage(25)  # restarted: the service reads the faults file from now on
        root = project(tmp_path, stage_durations={10: [5, 900], 25: ["1h", "2h"], 50: [5, 900], 100: [5, 900]})
        log = tmp_path / "fault.log"
        with running_receiver(tmp_path) as receiver:
            watch = start_watch(root, watch_env(tmp_path, receiver), log, "--loop", "2s")
            try:
                wait_until(lambda: all((host_json(h, "gate-last.json") or {}).get("stage") == 25 for h in fleet)
                           or watch.poll() is not None, 300, "a first tick to judge stage 25", interval_s=2)
                assert watch.poll() is None, log.read_text()[-3000:]
                for host in fleet:
                    host.testinfra.check_output(f"printf '{{\"domain_error_rate\": 0.2}}' > {FAULTS_FILE}.new"
                                                f" && mv {FAULTS_FILE}.new {FAULTS_FILE}")
                wait_until(lambda: ("rolled-back", 0) in kinds(receiver) or watch.poll() is not None, 600,
                           "the watch to roll back", interval_s=2)
            finally:
                output = stop_watch(watch, log)
            assert [k for k, _ in kinds(receiver)] == ["aborted", "rolled-back"], output[-4000:]
        assert set(stages().values()) == {(0, 0)}
        assert "failed its gate" in output
    finally:
        for host in fleet:
            host.testinfra.check_output(f"rm -f {DROP_IN} {FAULTS_FILE} && systemctl daemon-reload"
                                        " && systemctl restart camera-api")
        for host in fleet:
            wait_until(lambda host=host: host.testinfra.run(HEALTH).rc == 0, 60, f"{host.name} healthy again")

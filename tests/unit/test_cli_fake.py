"""The ``rollout`` CLI's wiring on pyinfra @fake hosts, without a fleet: the real
CLI (``python -m rollout``) and its real pyinfra runs of deploy.py and tasks/,
each host's probe answers scripted per test (tests/unit/fake_fleet.py), and
what each run did to each host read back from the inventory's log.

What @fake hosts cannot do, and what stands in for it here:

- the checks after a stage cannot *pass*: the fake connector answers each probe
  mode with one static answer, and the endpoint verification needs a different
  answer per call (two for the discovery, one per endpoint compared). A host
  that must pass its batch runs with ``checks`` off (host data); a failing batch
  is a host whose preparation check fails on its own scripted answer;
- ``rollout verify`` can only fail: its testinfra host checks reach the hosts
  over SSH, which knows nothing of @fake hosts. Its failure is tested, with the
  package check that failed for the reason scripted;
- the answers do not change within a test: the lock a forced release broke is
  still in the host's state, and the ``lock`` answer is what the host answers
  once it is broken (the refusal without ``--break-lock`` is a test of its own).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import metrics_body
from fake_fleet import BOB, ROOT, answers, rollout, rollout_env_sha, runs, sha256, write_inventory
from fake_inventory import SETTINGS
from rollout.fleet import Fleet, PyinfraRunner
from rollout.inputs import InputError
from rollout.orchestrate import HostsRun
from rollout.project import DEPLOY_ROOT

API1, API2, API3, API4 = (f"@fake/api-{n}" for n in range(1, 5))
#: A host whose preparation check fails: its unit is not active.
FAILING = {"answers": answers(10, preflight={"unit_active": "failed"})}
#: A host whose batch passes: nothing is judged on it.
PASSING = {"checks": False}
DB_TOKEN, REDIS_TOKEN = "dbSecretToken4417", "redisSecretToken5523"


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def named(all_runs) -> list[str]:
    """Each run as its files and what it is for: ``tasks/lock.py acquire``."""
    return [" ".join(r.files) + (f" {r.data['lock_action']}" if "lock_action" in r.data else "") for r in all_runs]


def touched(all_runs, host: str) -> list[str]:
    """The runs that changed ``host`` (a probe write or a record on it)."""
    return [" ".join(r.files) for r in all_runs
            if any(p in ("write", "record") for p in r.probes(host))]


# --- deploy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, code, outcome", [
    ("rollback", 3, "rolled back to stage 0"),
    ("stop", 1, "nothing was reverted"),
])
def test_a_failed_batch_applies_the_failure_policy_to_the_touched_hosts_only(tmp_path, policy, code, outcome):
    """Batches of one host: api-1 passes, api-2 fails its preparation check,
    api-3 is never deployed to. ``rollback``: api-1 and api-2 (and only they)
    get the rollback task, in one run; ``stop``: nothing runs after the failure."""
    inventory = write_inventory(tmp_path, {"api-1": PASSING, "api-2": FAILING, "api-3": PASSING})
    result = rollout("--json", "deploy", str(inventory), "--stage", "25", "--yes", "--batches", "1",
                     "--on-failure", policy)
    assert result.returncode == code, result.stderr[-3000:]
    assert last_line(result) == f"rollout: stage 25 failed in batch 2 ({API2}); {outcome}"
    report = json.loads(result.stdout)
    assert [(b["hosts"], b["ok"]) for b in report["batches"]] == [([API1], True), ([API2], False)]
    assert "preflight FAIL unit active: systemd says failed" in result.stderr

    done = runs(tmp_path / "fake.log")
    reverted = ["tasks/rollback.py"] if policy == "rollback" else []
    assert named(done) == ["tasks/status.py", "tasks/lock.py acquire", "deploy.py", "deploy.py", *reverted,
                           "tasks/lock.py release", "tasks/status.py"]
    first, second = done[2], done[3]
    assert (first.limit, first.data["stage"], first.recorded()) == ([API1], 25, {API1: 25})
    assert (second.limit, second.data["stage"], second.recorded()) == ([API2], 25, {API2: 25})
    assert "preflight" in second.probes(API2) and "preflight" not in first.probes(API1)
    if policy == "rollback":
        back = done[4]
        assert back.limit == [API1, API2] and back.data["take_lock"] is False
        assert back.recorded() == {API1: 0, API2: 0}
        for host in (API1, API2):
            assert {"path": "/etc/camera-api/rollout.env", "sha256": rollout_env_sha(0)} in back.written(host)
    assert touched(done, API3) == []  # never deployed, never reverted
    assert touched(done, API1) == ["deploy.py", *reverted]
    assert touched(done, API2) == ["deploy.py", *reverted]


def test_the_canary_is_the_first_batch_then_the_rest(tmp_path):
    inventory = write_inventory(tmp_path, {name: PASSING for name in ("api-1", "api-2", "api-3")})
    result = rollout("--json", "deploy", str(inventory), "--stage", "25", "--yes", "--canary", API3,
                     "--batches", "1,100%")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["plan"] == [[API3], [API1, API2]]
    deploys = [r for r in runs(tmp_path / "fake.log") if r.files == ["deploy.py"]]
    assert [r.limit for r in deploys] == [[API3], [API1, API2]]
    assert [r.recorded() for r in deploys] == [{API3: 25}, {API1: 25, API2: 25}]
    for run in deploys:
        for host in run.limit:
            assert {"path": "/etc/camera-api/rollout.env", "sha256": rollout_env_sha(25)} in run.written(host)


def test_a_failing_before_hook_on_the_canary_changes_nothing_and_exits_1(tmp_path):
    """The CLI end of a batch that never ran: no deploy, no revert, no after hook."""
    after = tmp_path / "after.log"
    hooks = {"before": ["echo drain refused >&2; exit 4"], "after": [f"echo after {{hosts}} >> {after}"]}
    inventory = write_inventory(tmp_path, {name: {**PASSING, "batch_hooks": hooks} for name in ("api-1", "api-2")})
    result = rollout("deploy", str(inventory), "--stage", "25", "--yes", "--batches", "1")
    assert result.returncode == 1, result.stderr[-3000:]
    assert last_line(result) == (f"rollout: stage 25 failed in batch 1 ({API1}): its before hook failed, so the "
                                 "batch never ran; nothing was changed")
    assert "hook (before) failed with exit 4: drain refused" in result.stdout
    assert named(runs(tmp_path / "fake.log")) == [
        "tasks/status.py", "tasks/lock.py acquire", "tasks/lock.py release", "tasks/status.py"]
    assert not after.exists()


# --- rollback and the lock ----------------------------------------------------------------------------


def test_rollback_break_lock_breaks_the_other_operators_lock_then_rolls_back(tmp_path):
    held = {"answers": answers(25, held_by=BOB, lock={"acquired": True, "holder": {}})}
    inventory = write_inventory(tmp_path, {"api-1": held, "api-2": held})
    result = rollout("--json", "rollback", str(inventory), "--break-lock")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["legacy_proven"] == {API1: True, API2: True}
    assert f"[{API1}] broke the rollout lock of bob@elsewhere since 2026-11-23T10:00:00+00:00" in result.stderr
    release, back = runs(tmp_path / "fake.log")
    assert named([release, back]) == ["tasks/lock.py release", "tasks/rollback.py"]
    assert release.limit == [] and release.data["break_lock"] is True
    for host in (API1, API2):
        (unlock,) = release.commands[host]
        assert unlock["probe"] == "unlock" and unlock["spec"]["force"] is True
        assert back.probes(host)[:3] == ["state", "lock", "write"]  # took the lock, then stage 0
        assert back.probes(host)[-1] == "unlock"
    assert back.data["take_lock"] is True and back.recorded() == {API1: 0, API2: 0}


def test_rollback_refused_by_another_operators_lock_changes_nothing(tmp_path):
    held = {"answers": answers(25, held_by=BOB)}
    inventory = write_inventory(tmp_path, {"api-1": held, "api-2": held})
    result = rollout("rollback", str(inventory))
    assert result.returncode == 1
    assert last_line(result) == (
        "rollout: another rollout holds the lock: bob@elsewhere since 2026-11-23T10:00:00+00:00 "
        "(rollout deploy fake --stage 50) (nothing rolled back there; `rollout rollback fake --break-lock` "
        "in an emergency)")
    done = runs(tmp_path / "fake.log")
    assert named(done) == ["tasks/rollback.py", "tasks/lock.py release"]
    assert done[1].data["break_lock"] is False  # only our own lock is given back
    for host in (API1, API2):
        assert done[0].probes(host) == ["state", "lock"]  # refused before any write


# --- verify, write-secrets, promote --dry ----------------------------------------------------------


def test_a_failing_verify_exits_1_and_names_the_failed_check(tmp_path):
    inventory = write_inventory(tmp_path, {"api-1": FAILING, "api-2": PASSING})
    junit = tmp_path / "verify.xml"
    result = rollout("verify", str(inventory), "--junit-xml", str(junit))
    assert result.returncode == 1
    assert re.fullmatch(r"rollout: verification failed \(pytest exited 1: \d+ failed.* in [\d.]+s\)",
                        last_line(result)), last_line(result)
    (checks,) = runs(tmp_path / "fake.log")  # the package checks: one pyinfra run
    assert checks.files == ["tasks/preflight.py", "tasks/verify.py"] and checks.limit == []
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    failure = cases[f"test_package_check[{API1}-preflight]"].find("failure")
    assert failure is not None and "systemd says failed" in failure.get("message")


def test_write_secrets_writes_the_file_on_every_host_and_shows_no_secret(tmp_path):
    values = {"database_url": f"postgresql://camera:{DB_TOKEN}@db:5432/camera",
              "redis_url": f"redis://:{REDIS_TOKEN}@cache:6379/0"}
    inventory = write_inventory(tmp_path, {"api-1": values, "api-2": values})
    result = rollout("--json", "-v", "write-secrets", str(inventory), "--yes")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert DB_TOKEN not in output and REDIS_TOKEN not in output
    assert json.loads(result.stdout) == {"exit_code": 0}
    assert last_line(result) == f"secrets file written where it differed ({API1}, {API2}); contents never shown"

    from tasks.stage import render_secrets_env

    expected = sha256(render_secrets_env({**SETTINGS, **values}))
    (written,) = runs(tmp_path / "fake.log")
    assert written.files == ["tasks/secrets.py"] and written.limit == []
    for host in (API1, API2):
        assert written.written(host) == [{"path": "/etc/camera-api/secrets.env", "sha256": expected}]
        # The file changed (the host's had another checksum): the service is restarted.
        assert any("systemctl restart camera-api.service" in c.get("command", "") for c in written.commands[host])


def test_promote_dry_shows_the_change_and_writes_nothing(tmp_path):
    inventory = write_inventory(tmp_path, {"api-1": {}, "api-2": {}})
    result = rollout("promote", str(inventory), "--dry")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "+ ROLLOUT_PERCENT=25" in result.stdout and "dry run: nothing was changed" in result.stdout
    done = runs(tmp_path / "fake.log")
    assert named(done) == ["tasks/status.py", "deploy.py"]  # no lock, no gate
    assert done[1].dry and done[1].data["stage"] == 25 and done[1].data["checks"] is False
    for run in done:
        for host in (API1, API2):
            assert set(run.probes(host)) == {"state"}  # no probe write, record, lock or unlock
            assert not [c for c in run.commands[host] if "systemctl" in c.get("command", "")]


# --- PyinfraRunner ----------------------------------------------------------------------------------


def runner_of(inventory, hosts, project=ROOT) -> tuple[PyinfraRunner, list[str]]:
    """The CLI's runner on ``hosts`` (its Fleet built here: loading the inventory
    in this process would import pyinfra's CLI, which patches it for gevent)."""
    said: list[str] = []
    fleet = Fleet(inventory, list(hosts), {h: {} for h in hosts}, project)
    return PyinfraRunner(fleet, said.append, "alice@ops", "T"), said


class Popen:
    """subprocess.Popen of rollout.fleet, recorded in ``started``: no pyinfra runs."""

    started: list[Popen]

    def __init__(self, command, **options):
        self.command, self.options = command, options
        self.stdout, self.returncode = iter(()), 0
        self.started.append(self)

    def wait(self):
        return 0


@pytest.fixture
def recorded(monkeypatch):
    monkeypatch.setattr(Popen, "started", [], raising=False)
    monkeypatch.setattr("rollout.fleet.subprocess.Popen", Popen)
    return Popen.started


def test_the_runner_builds_the_pyinfra_command_lines(tmp_path, recorded):
    project = tmp_path / "project"
    (project / "group_data").mkdir(parents=True)
    inventory = project / "inventories" / "prod.py"
    runner, _ = runner_of(inventory, [API1, API2, API3], project)
    runner.extra_data["override"] = {"early": "2d", "reason": "hotfix", "operator": "alice@ops"}
    runner.apply([API1, API3], 25, soak_s=30.5, smoke=False, command="rollout deploy prod --stage 25")
    runner.apply([API2], 10, soak_s=0, smoke=None, command="revert", checks=False)
    runner.roll_back(None, command="rollout rollback prod", take_lock=True)
    runner.lock("release", force=True, hosts=[API2])
    runner.dry_run(50)

    head = [sys.executable, "-m", "pyinfra", str(inventory)]
    group_data = ["--group-data", str(DEPLOY_ROOT / "group_data"), "--group-data", str(project / "group_data")]
    override = '{"early": "2d", "reason": "hotfix", "operator": "alice@ops"}'

    def data(**values):
        return [arg for key, value in values.items() for arg in ("--data", f"{key}={value}")]

    commands = [p.command for p in recorded]
    reports = [p.options["cwd"] for p in recorded]  # each run's own report dir, its cwd
    assert commands[0] == [*head, str(DEPLOY_ROOT / "deploy.py"), *group_data, "-y", "--limit", API1, "--limit", API3,
                           *data(operator="alice@ops", override=override, stage=25, lock_token="T",
                                 command="rollout deploy prod --stage 25", soak_s="30.5",
                                 rollback_on_abort="false", smoke_traffic="false", paired_traffic="false",
                                 report_dir=reports[0])]
    assert commands[1] == [*head, str(DEPLOY_ROOT / "deploy.py"), *group_data, "-y", "--limit", API2,
                           *data(operator="alice@ops", override=override, stage=10, lock_token="T", command="revert",
                                 checks="false", report_dir=reports[1])]
    assert commands[2] == [*head, str(DEPLOY_ROOT / "tasks" / "rollback.py"), *group_data, "-y",
                           *data(operator="alice@ops", override=override, lock_token="T",
                                 command="rollout rollback prod", take_lock="true", report_dir=reports[2])]
    assert commands[3] == [*head, str(DEPLOY_ROOT / "tasks" / "lock.py"), *group_data, "-y", "--limit", API2,
                           *data(operator="alice@ops", override=override, lock_action="release", lock_token="T",
                                 command="", break_lock="true", report_dir=reports[3])]
    assert commands[4] == [*head, str(DEPLOY_ROOT / "deploy.py"), *group_data, "--dry", "--diff",
                           *data(operator="alice@ops", stage=50, checks="false", report_dir=reports[4])]
    assert len(set(reports)) == 5 and all("rollout-reports-" in r for r in reports)
    for started in recorded:
        assert started.options["env"]["PYTHONPATH"].split(":")[0] == str(DEPLOY_ROOT)
        assert started.options["stdin"] == subprocess.DEVNULL


def test_the_runner_builds_no_group_data_dir_for_the_checkout_itself(tmp_path, recorded):
    runner, _ = runner_of(tmp_path / "fake.py", [API1])
    runner.status()
    (started,) = recorded
    assert started.command.count("--group-data") == 1
    assert started.command[started.command.index("--group-data") + 1] == str(DEPLOY_ROOT / "group_data")


@pytest.mark.parametrize("call", [
    lambda r: r.apply(["@fake/api-9"], 25, soak_s=0, smoke=None, command="c"),
    lambda r: r.apply([API1, "api-2"], 25, soak_s=0, smoke=None, command="c"),  # pyinfra would match nothing
    lambda r: r.roll_back(["API1"], command="c"),
    lambda r: r.lock("release", hosts=[f"{API1} "]),
])
def test_the_runner_refuses_an_unknown_limit_before_any_run(tmp_path, recorded, call):
    runner, _ = runner_of(tmp_path / "fake.py", [API1, API2])
    with pytest.raises(InputError, match=rf"^unknown host\(s\) .+: the inventory has {API1}, {API2}$"):
        call(runner)
    assert recorded == []


def test_the_runner_reads_each_hosts_reports_back(tmp_path):
    """Real pyinfra runs: api-1 applies without checks, api-2 fails its
    preparation check (both recorded), api-3 cannot be connected to, api-4 is
    outside the limit; then the gate alone, on every host."""
    metrics = {"cursors": [], "answer": {"status": 200, "content_type": "application/json", "body": metrics_body.body(
        metrics_body.counters(metrics_body.side(3), metrics_body.side(5)))}}
    inventory = write_inventory(tmp_path, {
        "api-1": PASSING, "api-2": {"answers": answers(10, preflight={"unit_active": "failed"}, metrics=metrics)},
        "api-3": {"fake_unreachable": True}, "api-4": {}})
    runner, said = runner_of(inventory, [API1, API2, API3, API4])

    applied = runner.apply([API1, API2, API3], 25, soak_s=0, smoke=None, command="c")
    assert applied == HostsRun(ok=False, unreachable=[API3], recorded=[API1, API2], verdicts={},
                               proven={API1: False, API2: False, API3: False}, holders=[])
    assert "  batch: pyinfra exited 1" in said
    # A fewer-than-enough window is inconclusive; metrics that are no JSON are an error.
    judged = runner.gate(0, None)
    assert (judged.ok, judged.unreachable, judged.recorded) == (False, [API3], [])
    assert judged.verdicts == {API1: "error", API2: "inconclusive", API4: "error"}

    first, gate = runs(tmp_path / "fake.log")
    assert first.limit == [API1, API2, API3] and API4 not in first.commands and API3 not in first.commands
    assert gate.files == ["tasks/gate.py"] and set(gate.commands) == {API1, API2, API4}

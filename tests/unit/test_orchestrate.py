"""The orchestration (rollout/orchestrate.py) over a fake runner: batches in
order, the failure policy, hooks, the lock, rollback in batches, and the
gate-then-rollback rule, including the failure paths."""

from __future__ import annotations

import pytest

from rollout.orchestrate import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    NOT_RUN,
    UNREACHABLE,
    HostsRun,
    Orchestrator,
    StageChange,
    Stop,
)

HOSTS = ["h1", "h2", "h3", "h4"]


class FakeRunner:
    """Answers like the pyinfra runner, scripted per host; records every call."""

    def __init__(self, hosts=HOSTS, failing=(), unrecorded=(), lock_holder=None, unreachable=(),
                 unproven=(), failing_hooks=(), failing_reverts=False, verdicts=None):
        self.hosts = list(hosts)
        self.failing, self.unrecorded, self.unreachable = set(failing), set(unrecorded), set(unreachable)
        self.lock_holder, self.unproven, self.failing_hooks = lock_holder, set(unproven), list(failing_hooks)
        self.failing_reverts = failing_reverts
        self.verdicts = verdicts or {}
        self.calls: list[tuple] = []
        self.said: list[str] = []

    def say(self, message):
        self.said.append(message)

    def status(self):
        return {h: {"file_stage": 0} for h in self.hosts}

    def lock(self, action, *, command="", force=False, quiet=False):
        self.calls.append(("lock", action))
        if action == "acquire" and self.lock_holder:
            return HostsRun(ok=False, holders=[self.lock_holder])
        return HostsRun(ok=True)

    def apply(self, hosts, stage, *, soak_s, smoke, command, checks=True):
        self.calls.append(("apply", tuple(hosts), stage, checks))
        if not checks and self.failing_reverts:
            return HostsRun(ok=False)
        bad = (self.failing & set(hosts)) if checks else set()
        return HostsRun(ok=not bad, recorded=[h for h in hosts if h not in self.unrecorded],
                        verdicts={h: "abort" if h in bad else "pass" for h in hosts})

    def roll_back(self, hosts, *, command, take_lock=False):
        hosts = hosts or self.hosts
        self.calls.append(("roll_back", tuple(hosts), take_lock))
        if take_lock and self.lock_holder:
            return HostsRun(ok=False, holders=[self.lock_holder])
        ok = not (self.failing_reverts or self.unproven & set(hosts))
        return HostsRun(ok=ok, recorded=list(hosts), proven={h: h not in self.unproven for h in hosts})

    def gate(self, soak_s, smoke):
        self.calls.append(("gate",))
        reached = [h for h in self.hosts if h not in self.unreachable]
        return HostsRun(ok=True, unreachable=sorted(self.unreachable),
                        verdicts={h: self.verdicts[h] for h in reached if h in self.verdicts})

    def hook(self, command):
        self.calls.append(("hook", command))
        if any(marker in command for marker in self.failing_hooks):
            return False, "4: drain refused"
        return True, "0: "


def change(stage=10, batches=(["h1"], ["h2"], ["h3", "h4"]), on_failure="previous"):
    return StageChange(stage, [list(b) for b in batches], 30.0, 10.0, None, on_failure, "rollout deploy x")


def applied(runner, checks=True):
    return [c[1] for c in runner.calls if c[0] == "apply" and c[3] == checks]


# --- a stage in batches ------------------------------------------------------------------------------


def test_every_batch_in_order_under_the_lock():
    runner = FakeRunner()
    orchestrator = Orchestrator(runner)
    orchestrator.deploy(change(), previous={h: 0 for h in HOSTS})
    assert applied(runner) == [("h1",), ("h2",), ("h3", "h4")]
    assert runner.calls[0] == ("lock", "acquire") and runner.calls[-1] == ("lock", "release")
    assert [b["gate"] for b in orchestrator.result["batches"]] == [
        {"h1": "pass"}, {"h2": "pass"}, {"h3": "pass", "h4": "pass"}]


def test_a_failed_batch_stops_the_rollout_and_reverts_the_touched_hosts_to_their_stages():
    runner = FakeRunner(failing={"h2"})
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).deploy(change(stage=25), previous={"h1": 10, "h2": 0, "h3": 10, "h4": 10})
    assert stop.value.code == EXIT_ROLLED_BACK
    assert str(stop.value) == "stage 25 failed in batch 2 (h2); reverted to the previous stage"
    assert applied(runner) == [("h1",), ("h2",)]  # batch 3 never started
    assert ("roll_back", ("h2",), False) in runner.calls  # h2 was on stage 0
    assert applied(runner, checks=False) == [("h1",)]  # h1 back on 10, no checks
    assert runner.calls[-1] == ("lock", "release")


@pytest.mark.parametrize("policy, code, reverted, words", [
    ("rollback", EXIT_ROLLED_BACK, [("roll_back", ("h1",), False)], "rolled back to stage 0"),
    ("stop", EXIT_FAILED, [], "nothing was reverted"),
])
def test_failure_policies(policy, code, reverted, words):
    runner = FakeRunner(failing={"h1"})
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).deploy(change(on_failure=policy), previous={h: 10 for h in HOSTS})
    assert stop.value.code == code and words in str(stop.value)
    assert [c for c in runner.calls if c[0] == "roll_back"] == reverted
    assert applied(runner, checks=False) == []


def test_a_failed_revert_is_reported_as_failed_and_its_hosts_stay_drained():
    runner = FakeRunner(failing={"h1"}, failing_reverts=True)
    orchestrator = Orchestrator(runner, hooks={"before": ["drain {hosts}"], "after": ["enable {hosts}"]})
    with pytest.raises(Stop) as stop:
        orchestrator.deploy(change(stage=25), previous={h: 10 for h in HOSTS})
    assert stop.value.code == EXIT_FAILED
    assert "the revert (previous) FAILED on some host" in str(stop.value)
    assert [c[1] for c in runner.calls if c[0] == "hook"] == ["drain h1"]  # never enabled again


def test_a_reverted_batch_goes_back_into_the_pool():
    runner = FakeRunner(failing={"h1"})
    orchestrator = Orchestrator(runner, hooks={"before": ["drain {hosts}"], "after": ["enable {hosts}"]})
    with pytest.raises(Stop):
        orchestrator.deploy(change(), previous={h: 0 for h in HOSTS})
    assert [c[1] for c in runner.calls if c[0] == "hook"] == ["drain h1", "enable h1"]


def test_a_host_that_recorded_nothing_fails_its_batch():
    runner = FakeRunner(unrecorded={"h1"})
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).deploy(change(), previous={h: 0 for h in HOSTS})
    assert "failed in batch 1 (h1)" in str(stop.value)
    assert any("no record from h1" in line for line in runner.said)


def test_a_failing_before_hook_fails_the_batch_without_touching_its_hosts():
    runner = FakeRunner(failing_hooks=["drain h2"])
    orchestrator = Orchestrator(runner, hooks={"before": ["drain {hosts}"]})
    with pytest.raises(Stop) as stop:
        orchestrator.deploy(change(), previous={h: 0 for h in HOSTS})
    assert "failed in batch 2 (h2)" in str(stop.value)
    assert applied(runner) == [("h1",)]
    assert "  hook (before) failed with 4: drain refused" in runner.said


HOOKS = {"before": ["drain {hosts}"], "after": ["enable {hosts}"]}


@pytest.mark.parametrize("policy", ["previous", "rollback", "stop"])
def test_a_first_batch_whose_before_hook_failed_changes_nothing_and_exits_1(policy):
    """Nothing ran anywhere: nothing to revert, so not "rolled back" (3) but
    failed (1), whatever the policy; the hosts get neither a run nor the after hook."""
    runner = FakeRunner(failing_hooks=["drain h1"])
    orchestrator = Orchestrator(runner, hooks=HOOKS)
    with pytest.raises(Stop) as stop:
        orchestrator.deploy(change(on_failure=policy), previous={h: 10 for h in HOSTS})
    assert stop.value.code == EXIT_FAILED
    assert str(stop.value) == ("stage 10 failed in batch 1 (h1): its before hook failed, so the batch never "
                               "ran; nothing was changed")
    assert [c[0] for c in runner.calls if c[0] not in ("hook", "lock")] == []  # no apply, no rollback
    assert [c[1] for c in runner.calls if c[0] == "hook"] == ["drain h1"]
    assert orchestrator.result["batches"] == [
        {"hosts": ["h1"], "ok": False, "ran": False, "gate": {"h1": NOT_RUN}, "seconds": 0.0}]
    assert "batch 1 FAILED before it ran: nothing changed on h1; the rollout stops; untouched: h1, h2, h3, h4" \
        in runner.said
    assert runner.calls[-1] == ("lock", "release")


@pytest.mark.parametrize("policy, code, reverts, words", [
    ("previous", EXIT_ROLLED_BACK, [("apply", ("h1",), 10, False)], "h1 reverted to the previous stage"),
    ("rollback", EXIT_ROLLED_BACK, [("roll_back", ("h1",), False)], "h1 rolled back to stage 0"),
    ("stop", EXIT_FAILED, [], "nothing was reverted"),
])
def test_a_before_hook_failing_after_applied_batches_reverts_those_only(policy, code, reverts, words):
    runner = FakeRunner(failing_hooks=["drain h2"])
    orchestrator = Orchestrator(runner, hooks=HOOKS)
    with pytest.raises(Stop) as stop:
        orchestrator.deploy(change(stage=25, on_failure=policy), previous={h: 10 for h in HOSTS})
    assert stop.value.code == code
    assert str(stop.value) == \
        f"stage 25 failed in batch 2 (h2): its before hook failed, so the batch never ran; {words}"
    assert applied(runner) == [("h1",)]
    assert [c for c in runner.calls if c[0] == "roll_back" or (c[0] == "apply" and not c[3])] == reverts
    # h1's after hook ran when its batch passed; h2 never ran, so no after hook for it.
    assert [c[1] for c in runner.calls if c[0] == "hook"] == ["drain h1", "enable h1", "drain h2"]
    assert [b["ran"] for b in orchestrator.result["batches"]] == [True, False]


def test_a_never_run_batch_whose_earlier_batches_fail_to_revert_exits_1():
    runner = FakeRunner(failing_hooks=["drain h2"], failing_reverts=True)
    with pytest.raises(Stop) as stop:
        Orchestrator(runner, hooks=HOOKS).deploy(change(stage=25), previous={h: 10 for h in HOSTS})
    assert stop.value.code == EXIT_FAILED
    assert str(stop.value).endswith("never ran; the revert (previous) of h1 FAILED on some host (see above)")


def test_the_failure_policy_on_no_host_reverts_nothing():
    runner = FakeRunner()
    assert Orchestrator(runner).handle_failure([], {}, "previous") == EXIT_FAILED
    assert runner.calls == []


def test_a_failing_after_hook_fails_the_batch():
    runner = FakeRunner(failing_hooks=["enable h1"])
    orchestrator = Orchestrator(runner, hooks={"after": ["enable {hosts}"]})
    with pytest.raises(Stop) as stop:
        orchestrator.deploy(change(), previous={h: 0 for h in HOSTS})
    assert "failed in batch 1 (h1)" in str(stop.value)


def test_a_held_lock_stops_before_any_host_changes():
    runner = FakeRunner(lock_holder="alice@elsewhere since 2026-11-23 (rollout deploy prod --stage 25)")
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).deploy(change(), previous={h: 0 for h in HOSTS})
    assert stop.value.code == EXIT_FAILED
    assert str(stop.value) == ("another rollout holds the lock: alice@elsewhere since 2026-11-23 "
                               "(rollout deploy prod --stage 25)")
    assert [c[0] for c in runner.calls] == ["lock", "lock"]  # acquire refused, our own released


# --- rollback --------------------------------------------------------------------------------------------


def test_rollback_at_once_is_one_run_that_takes_the_lock_itself():
    runner = FakeRunner()
    orchestrator = Orchestrator(runner)
    assert orchestrator.roll_back("rollout rollback x") == EXIT_OK
    assert runner.calls == [("roll_back", tuple(HOSTS), True)]
    assert all(orchestrator.result["legacy_proven"].values())


def test_rollback_that_does_not_prove_legacy_fails_and_releases_the_lock():
    runner = FakeRunner(unproven={"h3"})
    orchestrator = Orchestrator(runner)
    assert orchestrator.roll_back("rollout rollback x") == EXIT_FAILED
    assert runner.calls[-1] == ("lock", "release")
    assert "rollback FAILED on h3" in runner.said


def test_rollback_in_batches_rolls_back_every_batch_even_when_a_hook_fails():
    runner = FakeRunner(failing_hooks=["drain h1"])
    orchestrator = Orchestrator(runner, hooks={"before": ["drain {hosts}"], "after": ["enable {hosts}"]},
                                rollback_batches=[["h1", "h2"], ["h3", "h4"]])
    assert orchestrator.roll_back("rollout rollback x") == EXIT_OK
    assert [c for c in runner.calls if c[0] == "roll_back"] == [
        ("roll_back", ("h1", "h2"), False), ("roll_back", ("h3", "h4"), False)]
    assert runner.calls[0] == ("lock", "acquire") and runner.calls[-1] == ("lock", "release")
    assert "  rolling back this batch anyway: a hook never stops a rollback" in runner.said


# --- the gate, and what it rolls back ------------------------------------------------------------------


def test_gate_verdicts_name_unreachable_hosts_and_hosts_without_a_verdict():
    runner = FakeRunner(unreachable={"h4"}, verdicts={"h1": "pass", "h2": "inconclusive"})
    assert Orchestrator(runner).gate(0, None) == {"h1": "pass", "h2": "inconclusive", "h3": NOT_RUN,
                                                  "h4": UNREACHABLE}


@pytest.mark.parametrize("bad", ["abort", "error", NOT_RUN])
def test_a_failed_gate_rolls_every_host_back(bad):
    runner = FakeRunner()
    verdicts = {"h1": "pass", "h2": bad, "h3": "pass", "h4": "inconclusive"}
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).act_on_gate(verdicts, "rollout check x", "the fleet")
    assert stop.value.code == EXIT_ROLLED_BACK and str(stop.value) == "the fleet failed its gate on h2"
    assert ("roll_back", tuple(HOSTS), True) in runner.calls


def test_a_failed_gate_whose_rollback_fails_exits_1_and_says_so():
    runner = FakeRunner(unproven={"h1"})
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).act_on_gate({"h1": "abort"}, "rollout check x", "the fleet")
    assert stop.value.code == EXIT_FAILED
    assert str(stop.value) == ("the fleet failed its gate on h1; the rollback did not complete on every host "
                               "(see above)")


def test_a_rollback_refused_by_another_operators_lock_names_the_holder():
    runner = FakeRunner(lock_holder="alice@elsewhere since 2026-11-23 (rollout deploy prod --stage 25)")
    with pytest.raises(Stop) as stop:
        Orchestrator(runner, lock_hint="prod").roll_back("rollout rollback prod")
    assert stop.value.code == EXIT_FAILED
    assert str(stop.value).startswith("another rollout holds the lock: alice@elsewhere")
    assert "`rollout rollback prod --break-lock`" in str(stop.value)


def test_no_rollback_reports_the_failure_only():
    runner = FakeRunner()
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).act_on_gate({"h1": "abort", "h2": "pass"}, "c", "the fleet", roll_back=False)
    assert stop.value.code == EXIT_FAILED and "not rolled back" in str(stop.value)
    assert runner.calls == []


def test_an_unreachable_host_is_named_and_rolls_nothing_back():
    runner = FakeRunner()
    verdicts = {"h1": "pass", "h2": "inconclusive", "h3": UNREACHABLE, "h4": "pass"}
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).act_on_gate(verdicts, "rollout check x", "the fleet")
    assert stop.value.code == EXIT_FAILED
    assert str(stop.value) == ("cannot reach h3: not judged, nothing rolled back "
                               "(measured: h1 pass, h2 inconclusive, h4 pass)")
    assert runner.calls == []


def test_an_unreachable_host_does_not_shield_a_failing_one():
    runner = FakeRunner()
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).act_on_gate({"h1": UNREACHABLE, "h2": "abort"}, "c", "the fleet")
    assert stop.value.code == EXIT_ROLLED_BACK


def test_passing_and_inconclusive_gates_change_nothing():
    runner = FakeRunner()
    Orchestrator(runner).act_on_gate({"h1": "pass", "h2": "inconclusive"}, "c", "the fleet")
    assert runner.calls == []


# --- promote ------------------------------------------------------------------------------------


def statuses(*stages, process=None):
    process = process or stages
    return {f"h{n}": {"file_stage": f, "process_stage": p} for n, (f, p) in enumerate(zip(stages, process), 1)}


def test_promotion_is_the_next_stage_of_the_plan():
    assert Orchestrator(FakeRunner()).promotion(statuses(10, 10, 10, 10), [10, 25, 50, 100]) == (10, 25)
    assert Orchestrator(FakeRunner()).promotion(statuses(0, 0, 0, 0), [10, 25, 50, 100]) == (0, 10)


@pytest.mark.parametrize("fleet, words", [
    (statuses(10, 25, 10, 10), "DRIFT hosts are on different stages: h1=10, h2=25, h3=10, h4=10"),
    (statuses(25, 25, 25, 25, process=(25, 10, 25, 25)), "DRIFT h2: file says stage 25, process runs 10"),
])
def test_a_drifted_fleet_is_not_promoted(fleet, words):
    runner = FakeRunner()
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).promotion(fleet, [10, 25, 50, 100])
    assert stop.value.code == EXIT_FAILED and "drifted" in str(stop.value)
    assert words in runner.said and runner.calls == []


def test_nothing_to_promote_at_100():
    with pytest.raises(Stop, match="already at 100%"):
        Orchestrator(FakeRunner()).promotion(statuses(100, 100, 100, 100), [10, 25, 50, 100])


def test_promotion_goes_on_only_when_every_host_passes():
    passing = FakeRunner(verdicts={h: "pass" for h in HOSTS})
    Orchestrator(passing).gate_before_promote(10, 25, 0, None, "rollout promote x")
    assert passing.calls == [("gate",)]

    observing = FakeRunner(verdicts={"h1": "pass", "h2": "inconclusive", "h3": "pass", "h4": "pass"})
    with pytest.raises(Stop) as stop:
        Orchestrator(observing).gate_before_promote(10, 25, 0, None, "rollout promote x")
    assert stop.value.code == EXIT_FAILED and "gate inconclusive on stage 10" in str(stop.value)
    assert observing.calls == [("gate",)]  # nothing rolled back


def test_a_failed_gate_before_promoting_rolls_the_fleet_back():
    runner = FakeRunner(verdicts={"h1": "pass", "h2": "abort", "h3": "pass", "h4": "pass"})
    with pytest.raises(Stop) as stop:
        Orchestrator(runner).gate_before_promote(10, 25, 0, None, "rollout promote x")
    assert stop.value.code == EXIT_ROLLED_BACK and str(stop.value) == "stage 10 failed its gate on h2"
    assert ("roll_back", tuple(HOSTS), True) in runner.calls

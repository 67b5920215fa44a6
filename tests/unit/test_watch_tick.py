"""The watch: what a tick decides (rollout/watch.py) and the tick itself
(rollout/controller.py) over a fake runner whose hosts keep their state between
ticks, like real ones: stages, records, history, the lock, the sent alerts."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from rollout.controller import Alerts, LocalState, Tick, WatchSettings, tick_failed, tick_succeeded
from rollout.orchestrate import EXIT_FAILED, EXIT_OK, EXIT_ROLLED_BACK, HostsRun, Orchestrator, Stop
from rollout.timetable import Duration
from rollout.watch import after_gate, fleet_verdict, key_time, situation

PLAN = (10, 25, 50, 100)
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
HOURS = 3600


def iso(moment: datetime) -> str:
    return moment.isoformat()


class Hosts:
    """Hosts that remember: what the fake runner changes, the next tick reads."""

    def __init__(self, names=("h1", "h2", "h3", "h4"), stage=0, at=T0):
        self.names = list(names)
        self.state = {h: {"file_stage": stage, "process_stage": stage, "current": None, "history": [],
                          "lock": None, "gate_last": None, "watch": None} for h in self.names}
        for host in self.names:
            self.record(host, stage, at)

    def record(self, host, stage, at, verdict="pass", target=None, command="rollout deploy prod"):
        record = {"stage": stage, "target_stage": stage if target is None else target, "time": iso(at),
                  "verdict": verdict, "command": command}
        status = self.state[host]
        status.update(file_stage=stage, process_stage=stage, current=record)
        status["history"] = [*status["history"], record]


class FakeRunner:
    def __init__(self, hosts: Hosts, clock, verdicts=None, failing=(), die_after_batches=None,
                 operator="ops@control", token="ops@control:tick", after_first_read=None):
        self.hosts_state = hosts
        self.hosts = list(hosts.names)
        self.clock = clock
        self.verdicts = verdicts or {}
        self.failing = set(failing)
        self.die_after_batches = die_after_batches
        self.operator, self.token = operator, token
        self.calls: list[tuple] = []
        self.said: list[str] = []
        #: A killed control process does nothing more (not even its ``finally``).
        self.dead = False
        #: Another actor's change between this tick's two reads.
        self.after_first_read = after_first_read
        self.reads = 0

    def say(self, message):
        self.said.append(message)

    def status(self):
        self.reads += 1
        answer = {h: dict(s) for h, s in self.hosts_state.state.items()}
        if self.reads == 1 and self.after_first_read:
            self.after_first_read(self.hosts_state)
        return answer

    def lock(self, action, *, command="", force=False, quiet=False, hosts=None, token=None):
        self.calls.append(("lock", action, tuple(hosts or ()), token))
        if self.dead:
            return HostsRun(ok=False)
        token = token or self.token
        holders = []
        for host in hosts or self.hosts:
            status = self.hosts_state.state[host]
            lock = status["lock"]
            if action == "acquire":
                if lock and lock["token"] != token:
                    holders.append(lock["owner"])
                else:
                    status["lock"] = {"token": token, "owner": self.operator, "command": command,
                                      "time": iso(self.clock())}
            elif lock and (force or lock["token"] == token):
                status["lock"] = None
        return HostsRun(ok=not holders, holders=holders)

    def keep_alerts(self, sent):
        if not self.dead:
            for status in self.hosts_state.state.values():
                status["watch"] = {"sent": list(sent)}

    def apply(self, hosts, stage, *, soak_s, smoke, command, checks=True):
        self.calls.append(("apply", tuple(hosts), stage))
        if self.die_after_batches is not None and len([c for c in self.calls if c[0] == "apply"]) > \
                self.die_after_batches:
            self.dead = True
            raise KeyboardInterrupt("the control machine lost power")
        bad = self.failing & set(hosts)
        for host in hosts:
            self.hosts_state.record(host, stage, self.clock(), "abort" if host in bad else "pass", command=command)
        return HostsRun(ok=not bad, recorded=list(hosts), verdicts={h: "abort" if h in bad else "pass" for h in hosts})

    def roll_back(self, hosts, *, command, take_lock=False):
        hosts = hosts or self.hosts
        self.calls.append(("roll_back", tuple(hosts)))
        for host in hosts:
            self.hosts_state.record(host, 0, self.clock(), "rolled back", target=0, command=command)
        return HostsRun(ok=True, recorded=list(hosts), proven={h: True for h in hosts})

    def gate(self, soak_s, smoke):
        self.calls.append(("gate",))
        return HostsRun(ok=True, verdicts={h: self.verdicts.get(h, "pass") for h in self.hosts})

    def hook(self, command):
        return True, "0: "


def settings(**overrides):
    values = dict(env="prod", plan=PLAN, durations={10: Duration(86400, 2 * 86400), 25: Duration(3 * 86400, 5 * 86400),
                                                     50: Duration(7 * 86400, 7 * 86400),
                                                     100: Duration(7 * 86400, 14 * 86400)},
                  auto_promote=True, soak_s=0, batch_soak_s=60, last_soak_s=30, batches="1,25%,100%",
                  canary=None, confirm_hooks=(), confirm_hook_timeout_s=5, lock_stale_after_s=4 * HOURS,
                  failing_after=3)
    values.update(overrides)
    return WatchSettings(**values)


class World:
    """A fleet, a clock, and ticks run against them; alerts are collected. The
    ticks share one state directory on the control machine, as the ticks of one
    timer do."""

    def __init__(self, stage=10, at=T0, **runner_options):
        self.now = at
        self.hosts = Hosts(stage=stage, at=at)
        self.events: list[dict] = []
        self.runner_options = runner_options
        self.runner = None
        self._directory = tempfile.TemporaryDirectory(prefix="watch-state-")
        self.state = LocalState(Path(self._directory.name), "prod")

    def clock(self):
        return self.now

    def tick(self, start=False, confirm=None, stopping=False, **setting_overrides) -> tuple[int, Tick]:
        self.runner = FakeRunner(self.hosts, self.clock, **self.runner_options)
        alerts = Alerts("prod", lambda event: self.events.append(event) or True, self.runner.say)
        orchestrator = Orchestrator(self.runner, alert=alerts)
        tick = Tick(settings(**setting_overrides), self.runner, orchestrator, alerts, "ops@control", None,
                    start=start, confirm=confirm or (lambda *args: (True, "exit 0: ok")), now=self.clock,
                    stopping=lambda: stopping, state=self.state)
        try:
            code = tick.run()
        except Stop as stop:
            code = stop.code
        return code, tick

    def kinds(self):
        return [event["kind"] for event in self.events]

    def stages(self):
        return {h: s["file_stage"] for h, s in self.hosts.state.items()}


# --- decisions -------------------------------------------------------------------------------------


def test_a_stage_that_is_not_due_is_only_observed():
    world = World(stage=10)
    world.now = T0 + timedelta(hours=20)
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "observe"
    assert world.stages() == {h: 10 for h in world.hosts.names} and world.events == []
    assert any("due in 4h" in line for line in world.runner.said)


def test_due_and_passing_promotes_in_batches_and_alerts_each_step_in_order():
    world = World(stage=10)
    world.now = T0 + timedelta(days=1, minutes=1)
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "promote to 25"
    assert world.stages() == {h: 25 for h in world.hosts.names}
    applies = [c[1] for c in world.runner.calls if c[0] == "apply"]
    assert applies == [("h1",), ("h2",), ("h3", "h4")]
    assert world.kinds() == ["stage-started", "batch-passed", "batch-passed", "batch-passed", "promoted"]
    assert len({event["key"] for event in world.events}) == 5
    assert all(s["lock"] is None for s in world.hosts.state.values())  # released


def test_due_but_inconclusive_alerts_once_across_ticks_then_overdue_once():
    world = World(stage=10, verdicts={"h3": "inconclusive"})
    world.now = T0 + timedelta(days=1, hours=1)
    world.tick()
    world.now += timedelta(minutes=1)
    world.tick()
    assert world.kinds() == ["inconclusive-past-due"]
    world.now = T0 + timedelta(days=2, hours=1)
    world.tick()
    world.tick()
    assert world.kinds() == ["inconclusive-past-due", "overdue"]
    assert world.stages() == {h: 10 for h in world.hosts.names}


def test_auto_promote_off_alerts_due_once_and_promotes_nothing():
    world = World(stage=25)
    world.now = T0 + timedelta(days=3, minutes=5)
    world.tick(auto_promote=False)
    world.tick(auto_promote=False)
    assert world.kinds() == ["due"] and world.stages()["h1"] == 25


def test_an_abort_rolls_every_host_back_and_alerts_aborted_then_rolled_back():
    world = World(stage=25, verdicts={"h2": "abort"})
    world.now = T0 + timedelta(hours=2)
    code, tick = world.tick()
    assert code == EXIT_ROLLED_BACK
    assert world.stages() == {h: 0 for h in world.hosts.names}
    assert world.kinds() == ["aborted", "rolled-back"]
    # The next tick sees stage 0 and does nothing (no restart of the rollout).
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "none: stage 0" and world.kinds() == ["aborted", "rolled-back"]


def test_a_confirm_hook_that_refuses_holds_the_stage_and_alerts_once():
    world = World(stage=10)
    world.now = T0 + timedelta(days=1, hours=1)
    refuse = lambda *args: (False, "exit 1: 2 open user complaints")  # noqa: E731
    for _ in range(2):
        code, tick = world.tick(confirm=refuse, confirm_hooks=("tickets --open --env {env} --stage {stage}",))
    assert code == EXIT_OK and tick.summary["action"] == "hold: confirm hook"
    # The alert names the hook and its exit status; its words stay in the tick's log.
    assert world.kinds() == ["held"] and "tickets --open --env prod --stage 10 (exit 1)" in world.events[0]["summary"]
    assert "complaints" not in world.events[0]["summary"]
    assert any("2 open user complaints" in line for line in world.runner.said)
    asked = []
    world.tick(confirm=lambda c, *rest: asked.append(c) or (True, "exit 0: none open"),
               confirm_hooks=("tickets --open --env {env} --stage {stage}",))
    assert asked == ["tickets --open --env prod --stage 10"]
    assert world.stages()["h4"] == 25


def test_at_100_due_and_passing_completes_once():
    world = World(stage=100)
    world.now = T0 + timedelta(days=7, minutes=1)
    world.tick()
    world.tick()
    assert world.kinds() == ["completed"]


def test_start_moves_a_fleet_on_stage_0_to_the_first_stage():
    world = World(stage=0)
    code, _tick = world.tick(start=True)
    assert code == EXIT_OK and world.stages() == {h: 10 for h in world.hosts.names}
    assert world.kinds()[0] == "stage-started" and world.kinds()[-1] == "promoted"


def test_a_failed_batch_of_a_promotion_rolls_every_host_back():
    world = World(stage=10, failing={"h2"})
    world.now = T0 + timedelta(days=1, minutes=1)
    code, _tick = world.tick()
    assert code == EXIT_ROLLED_BACK and world.stages() == {h: 0 for h in world.hosts.names}
    assert world.kinds() == ["stage-started", "batch-passed", "aborted", "rolled-back"]


def test_a_tick_killed_between_batches_is_finished_by_the_next_without_redoing_a_batch():
    world = World(stage=10, die_after_batches=2)
    world.now = T0 + timedelta(days=1, minutes=1)
    with pytest.raises(KeyboardInterrupt):
        world.tick()
    assert world.stages() == {"h1": 25, "h2": 25, "h3": 10, "h4": 10}
    assert all(s["lock"] for s in world.hosts.state.values())  # the dead tick's lock stays
    kinds_before = world.kinds()
    world.runner_options["die_after_batches"] = None
    world.now += timedelta(minutes=1)
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "resume promotion to 25"
    assert [c[1] for c in world.runner.calls if c[0] == "apply"] == [("h3", "h4")]
    assert world.stages() == {h: 25 for h in world.hosts.names}
    assert any("taking over the lock of a tick that died" in line for line in world.runner.said)
    new = world.kinds()[len(kinds_before):]
    assert new == ["batch-passed", "promoted"]  # no second "stage-started"


def test_a_lock_held_by_an_operator_makes_the_tick_do_nothing_and_a_stale_one_alerts_once():
    world = World(stage=10)
    for status in world.hosts.state.values():
        status["lock"] = {"token": "alice:1", "owner": "alice@laptop", "command": "rollout deploy prod --stage 10",
                          "time": iso(T0)}
    world.now = T0 + timedelta(days=1, minutes=1)  # due, but locked
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "none: locked"
    assert [c for c in world.runner.calls if c[0] in ("gate", "apply")] == []
    assert world.kinds() == ["lock-stale"]
    world.tick()
    assert world.kinds() == ["lock-stale"]
    assert all(s["lock"]["owner"] == "alice@laptop" for s in world.hosts.state.values())  # never broken


def test_drift_holds_and_alerts():
    world = World(stage=10)
    world.hosts.record("h3", 50, T0)
    code, _tick = world.tick()
    assert code == EXIT_FAILED and world.kinds() == ["held"]
    assert "h3=50" in world.events[0]["summary"]


def test_a_half_done_rollback_is_finished():
    world = World(stage=25)
    world.hosts.record("h1", 0, T0 + timedelta(hours=1), "rolled back", target=0)
    code, _tick = world.tick()
    assert code == EXIT_ROLLED_BACK and world.stages() == {h: 0 for h in world.hosts.names}


def test_situation_of_a_failed_batch_left_as_it_is_is_drift():
    hosts = Hosts(stage=10)
    hosts.record("h1", 25, T0, verdict="abort")
    place = situation(hosts.state, PLAN)
    assert place.kind == "drift" and "h1 (abort)" in place.reason


def test_a_host_restarted_on_the_new_stage_but_never_recorded_is_redone():
    hosts = Hosts(stage=10)
    hosts.state["h2"]["file_stage"] = hosts.state["h2"]["process_stage"] = 25
    hosts.record("h1", 25, T0)
    hosts.state["h1"]["file_stage"] = hosts.state["h1"]["process_stage"] = 25
    place = situation(hosts.state, PLAN)
    assert place.kind == "promotion" and place.stage == 10 and place.target == 25
    assert place.remaining == ("h2", "h3", "h4")


def test_fleet_verdict_is_the_worst_host_and_unknown_without_a_gate_on_the_stage():
    hosts = Hosts(stage=25)
    for host, verdict in zip(hosts.names, ["pass", "inconclusive", "pass", "pass"]):
        hosts.state[host]["gate_last"] = {"stage": 25, "verdict": verdict}
    assert fleet_verdict(hosts.state, 25) == "inconclusive"
    hosts.state["h4"]["gate_last"] = {"stage": 10, "verdict": "pass"}
    assert fleet_verdict(hosts.state, 25) == "-"


def test_after_gate_without_a_record_of_the_start_is_never_due():
    decision = after_gate(25, {"h1": "pass"}, None, Duration(1, 2), T0, PLAN, True)
    assert decision.promote_to is None and decision.alerts == ()


def test_an_inconclusive_stage_past_due_says_what_it_waits_for():
    since = T0 - timedelta(hours=2)
    waiting = "needs 430 more domain at 1.5/s ≈ 5 min pooled"
    decision = after_gate(25, {"h1": "pass", "h2": "inconclusive"}, since, Duration(3600, 7 * 86400), T0, PLAN,
                          True, waiting)
    assert decision.promote_to is None
    assert [(a.kind, a.summary) for a in decision.alerts] == [
        ("inconclusive-past-due", (f"stage 25 is due (after 1h) but its gate does not pass yet: keep observing "
                                   f"({waiting})"))]


def test_watch_failing_after_three_failed_ticks_once_then_recovered(tmp_path):
    sent = []
    alerts = Alerts("prod", lambda e: sent.append(e["kind"]) or True, lambda m: None)
    state: dict = {}
    for _ in range(4):
        state = tick_failed(state, 3, alerts, "cannot read the state of host(s) h2")
    assert sent == ["watch-failing"] and state["failures"] == 4
    state = tick_succeeded(state, alerts)
    assert sent == ["watch-failing", "watch-recovered"] and "failures" not in state


def test_an_alert_a_sink_did_not_take_is_sent_again_by_the_next_tick():
    answers = iter([False, True])
    alerts = Alerts("prod", lambda e: next(answers), lambda m: None)
    alerts("promoted", 25, "every host on stage 25")
    assert len(alerts.pending) == 1
    later = Alerts("prod", lambda e: next(answers), lambda m: None)
    later.retry_pending(alerts.pending, datetime.now(timezone.utc))
    assert later.pending == []


def test_two_ticks_on_one_machine_never_overlap(tmp_path):
    first, second = LocalState(tmp_path, "prod"), LocalState(tmp_path, "prod")
    assert first.try_lock()
    assert not second.try_lock()
    first.unlock()
    assert second.try_lock()
    second.unlock()


# --- review: the hard cases -----------------------------------------------------------------------


def test_the_tick_decides_on_what_the_hosts_say_once_it_holds_the_lock():
    """Another tick promoted to 25 between this tick's first read and its lock:
    this one sees 25 just begun (not due), never applies 25 again or goes to 50."""
    def promoted_elsewhere(hosts):
        for host in hosts.names:
            hosts.record(host, 25, T0 + timedelta(days=1, minutes=2), command="rollout watch prod")
    world = World(stage=10, after_first_read=promoted_elsewhere)
    world.now = T0 + timedelta(days=1, minutes=3)
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "observe"
    assert [c for c in world.runner.calls if c[0] == "apply"] == []
    assert world.stages() == {h: 25 for h in world.hosts.names}


def test_a_stop_request_during_the_tick_rolls_nothing_back():
    """SIGTERM to a --loop also reaches its pyinfra run: a gate cut by it has no
    verdict, which must not read as a failed gate."""
    world = World(stage=25, verdicts={"h2": "not run"})
    code, _tick = world.tick(stopping=True)
    assert code == EXIT_FAILED and world.stages() == {h: 25 for h in world.hosts.names}
    assert world.kinds() == []
    world = World(stage=10, failing={"h2"})
    world.now = T0 + timedelta(days=1, minutes=1)
    code, _tick = world.tick(stopping=True)
    assert code == EXIT_FAILED and ("roll_back",) not in [c[:1] for c in world.runner.calls]


def test_a_rollback_killed_before_its_record_is_finished_not_promoted_again():
    """Stage 10 everywhere, then a rollback restarted h1 on stage 0 and died before
    its record: h1 went down, so this is a rollback to finish."""
    world = World(stage=10)
    world.hosts.state["h1"].update(file_stage=0, process_stage=0)  # its record still says 10
    code, tick = world.tick()
    assert code == EXIT_ROLLED_BACK and tick.summary["action"] == "finish rollback"
    assert world.stages() == {h: 0 for h in world.hosts.names}
    assert [c for c in world.runner.calls if c[0] == "apply"] == []


def test_a_new_drift_later_is_alerted_again():
    world = World(stage=10)
    world.hosts.record("h3", 50, T0)
    world.tick()
    world.tick()
    assert world.kinds() == ["held"]
    for host in world.hosts.names:
        world.hosts.record(host, 10, T0 + timedelta(days=3))
    world.hosts.record("h2", 100, T0 + timedelta(days=4))
    world.tick()
    assert world.kinds() == ["held", "held"]


def test_a_dead_tick_s_lock_is_released_by_its_own_token_only():
    world = World(stage=10)
    for status in world.hosts.state.values():
        status["lock"] = {"token": "ops@control:dead", "owner": "ops@control", "command": "rollout watch prod",
                          "time": iso(T0)}
    world.tick()
    releases = [c for c in world.runner.calls if c[:2] == ("lock", "release")]
    assert releases[0][3] == "ops@control:dead"


def test_a_promotion_an_operator_left_half_way_is_held_not_finished():
    world = World(stage=10)
    world.hosts.record("h1", 25, T0 + timedelta(hours=1), command="rollout promote prod")
    code, tick = world.tick()
    assert code == EXIT_FAILED and tick.summary["action"] == "hold: promotion" and tick.summary["held"]
    assert world.stages()["h2"] == 10 and world.kinds() == ["held"]
    assert "started by rollout promote prod" in world.events[0]["summary"]


def test_the_watch_s_own_half_done_promotion_waits_when_auto_promote_is_off():
    world = World(stage=10)
    world.hosts.record("h1", 25, T0 + timedelta(hours=1), command="rollout watch prod")
    _code, tick = world.tick(auto_promote=False)
    assert tick.summary["action"] == "hold: promotion" and world.stages()["h2"] == 10


def test_a_stage_left_with_a_failed_check_is_held_even_when_every_host_is_on_it():
    world = World(stage=10)
    for host in world.hosts.names:
        world.hosts.record(host, 25, T0 + timedelta(hours=1), verdict="abort")
    code, tick = world.tick()
    assert code == EXIT_FAILED and tick.summary["action"] == "hold: drift"
    assert [c for c in world.runner.calls if c[0] in ("gate", "apply")] == []


def test_start_never_restarts_a_rolled_back_rollout():
    world = World(stage=0)
    for host in world.hosts.names:
        world.hosts.record(host, 0, T0, "rolled back (abort)", target=0, command="rollout watch prod (rollback)")
    code, tick = world.tick(start=True)
    assert code == EXIT_OK and tick.summary["action"] == "none: rolled back"
    assert world.stages() == {h: 0 for h in world.hosts.names}


def test_an_old_failed_gate_on_the_stage_does_not_hold_a_later_run_on_it():
    world = World(stage=10)
    for host in world.hosts.names:
        world.hosts.state[host]["gate_last"] = {"stage": 25, "verdict": "abort", "time": iso(T0 + timedelta(hours=1))}
        world.hosts.record(host, 0, T0 + timedelta(hours=2), "rolled back", target=0)
        world.hosts.record(host, 25, T0 + timedelta(hours=3))
    _code, tick = world.tick()
    assert tick.summary["action"] == "observe"
    for host in world.hosts.names:  # a gate on this run that failed holds it
        world.hosts.state[host]["gate_last"] = {"stage": 25, "verdict": "abort", "time": iso(T0 + timedelta(hours=4))}
    _code, tick = world.tick()
    assert tick.summary["action"] == "hold: drift"


# --- review: what the watch trusts ------------------------------------------------------------------


def killed_after_canary(**tick_options) -> tuple[World, list[str]]:
    """Stage 10 due, and the tick that promotes it to 25 killed right after its
    canary batch (h1); the world and the alerts that tick sent."""
    world = World(stage=10, die_after_batches=1)
    world.now = T0 + timedelta(days=1, minutes=1)
    with pytest.raises(KeyboardInterrupt):
        world.tick(**tick_options)
    world.runner_options["die_after_batches"] = None
    return world, world.kinds()


@pytest.mark.parametrize("stage", [10, 0])
def test_a_promotion_forged_on_one_host_is_held_not_resumed(stage):
    """Root on h2 writes its env file, process and record of the next stage as
    if `rollout watch prod` had moved it: no tick of this state directory
    started that promotion, so the watch holds and moves nobody (no time
    observed, no gate, no confirm hook would have been met)."""
    world = World(stage=stage)
    following = 25 if stage else 10
    world.hosts.record("h2", following, T0 + timedelta(hours=1), command="rollout watch prod")
    world.now = T0 + timedelta(hours=2)
    for _ in range(2):
        code, tick = world.tick()
        assert code == EXIT_FAILED and tick.summary["action"] == "hold: promotion" and tick.summary["held"]
        assert [c for c in world.runner.calls if c[0] in ("apply", "roll_back", "gate")] == []
    assert world.stages() == {"h1": stage, "h2": following, "h3": stage, "h4": stage}
    assert world.kinds() == ["held"]  # once
    summary = world.events[0]["summary"]
    assert "not a promotion started from this watch's state directory" in summary and "\n" not in summary
    assert f"`rollout deploy prod --stage {following}`" in summary and "`rollout rollback prod`" in summary


@pytest.mark.parametrize("marker", [
    {"from": 25, "to": 50, "time": iso(T0 + timedelta(hours=1))},  # another promotion
    # This one, kept before the fleet's latest time on stage 10 began: a promotion of
    # an earlier time on it that someone else settled while no tick ran.
    {"from": 10, "to": 25, "time": iso(T0 - timedelta(days=2))},
    # The same for the watch's own --start (0 -> 10), before a rollback someone else finished.
    {"from": 0, "to": 10, "time": iso(T0 - timedelta(days=2))},
])
def test_a_forged_promotion_is_held_even_while_the_watch_remembers_another(marker):
    stage = 0 if marker["from"] == 0 else 10
    world = World(stage=stage)
    world.state.start_promotion({"env": "prod", "token": "t", **marker})
    world.hosts.record("h2", 10 if stage == 0 else 25, T0 + timedelta(hours=1), command="rollout watch prod")
    world.now = T0 + timedelta(days=2)
    _code, tick = world.tick()
    assert tick.summary["action"] == "hold: promotion" and world.stages()["h1"] == stage
    assert [c for c in world.runner.calls if c[0] in ("apply", "gate")] == []


def test_the_promotion_is_remembered_on_this_machine_before_its_first_batch():
    world = World(stage=10, die_after_batches=0)  # killed as the first batch starts
    world.now = T0 + timedelta(days=1, minutes=1)
    with pytest.raises(KeyboardInterrupt):
        world.tick()
    assert world.stages() == {h: 10 for h in world.hosts.names}
    marker = world.state.promotion()
    assert (marker["env"], marker["from"], marker["to"], marker["token"]) == ("prod", 10, 25, "ops@control:tick")
    # No host moved: the next tick finds the fleet settled, forgets it, and judges afresh.
    world.runner_options["die_after_batches"] = None
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "promote to 25"
    assert world.state.promotion() is None


def test_the_watch_s_own_promotion_killed_after_the_canary_is_judged_then_finished():
    world, before = killed_after_canary()
    assert world.stages() == {"h1": 25, "h2": 10, "h3": 10, "h4": 10}
    assert world.state.promotion()["to"] == 25
    world.now += timedelta(minutes=1)
    asked = []
    code, tick = world.tick(confirm=lambda c, *rest: asked.append(c) or (True, "exit 0: ok"),
                            confirm_hooks=("tickets --stage {stage} --next {next_stage}",))
    assert code == EXIT_OK and tick.summary["action"] == "resume promotion to 25"
    calls = [c[:2] if c[0] == "apply" else c[:1] for c in world.runner.calls if c[0] in ("gate", "apply")]
    assert calls == [("gate",), ("apply", ("h2",)), ("apply", ("h3", "h4"))]  # the canary is not redone
    assert asked == ["tickets --stage 10 --next 25"]
    assert world.stages() == {h: 25 for h in world.hosts.names}
    assert world.kinds()[len(before):] == ["batch-passed", "batch-passed", "promoted"]
    assert world.state.promotion() is None  # every host on 25: forgotten


def test_a_resumed_promotion_whose_gate_is_inconclusive_waits():
    world, before = killed_after_canary()
    world.runner_options["verdicts"] = {"h3": "inconclusive"}
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "observe: promotion to 25 half-way"
    assert [c for c in world.runner.calls if c[0] == "apply"] == []
    assert world.stages() == {"h1": 25, "h2": 10, "h3": 10, "h4": 10}
    assert world.kinds()[len(before):] == ["inconclusive-past-due"]
    assert world.state.promotion()["to"] == 25  # still this watch's to finish
    world.runner_options["verdicts"] = {}
    code, tick = world.tick()
    assert tick.summary["action"] == "resume promotion to 25" and world.stages()["h4"] == 25


def test_a_resumed_promotion_whose_gate_aborts_rolls_every_host_back():
    world, before = killed_after_canary()
    world.runner_options["verdicts"] = {"h1": "abort"}
    code, _tick = world.tick()
    assert code == EXIT_ROLLED_BACK and world.stages() == {h: 0 for h in world.hosts.names}
    assert world.kinds()[len(before):] == ["aborted", "rolled-back"]
    assert world.state.promotion() is None


def test_a_resumed_promotion_before_the_stage_s_minimum_waits():
    """The minimum is the stage's as the fleet's histories give it now (the
    latest host's entry: one host cannot make it earlier)."""
    world, _ = killed_after_canary()
    longer = {**settings().durations, 10: Duration(2 * 86400, 3 * 86400)}
    code, tick = world.tick(durations=longer)
    assert code == EXIT_OK and tick.summary["action"] == "observe: promotion to 25 half-way"
    assert [c for c in world.runner.calls if c[0] == "apply"] == []
    assert any("due in 23h" in line for line in world.runner.said)


def test_a_resumed_promotion_a_confirm_hook_refuses_is_held():
    world, before = killed_after_canary(confirm_hooks=("tickets --open",))
    code, tick = world.tick(confirm=lambda *args: (False, "exit 1: 2 open"), confirm_hooks=("tickets --open",))
    assert code == EXIT_OK and tick.summary["action"] == "hold: confirm hook"
    assert [c for c in world.runner.calls if c[0] == "apply"] == []
    assert world.stages() == {"h1": 25, "h2": 10, "h3": 10, "h4": 10}
    assert world.kinds()[len(before):] == ["held"]


def past_due_key() -> str:
    """The key of the "inconclusive-past-due" alert of stage 10 begun at T0."""
    world = World(stage=10, verdicts={"h3": "inconclusive"})
    world.now = T0 + timedelta(days=1, hours=1)
    world.tick()
    (event,) = world.events
    return event["key"]


def test_one_host_cannot_keep_an_alert_from_being_sent():
    key = past_due_key()
    world = World(stage=10, verdicts={"h3": "inconclusive"})
    world.hosts.state["h2"]["watch"] = {"sent": [key, "held:forged"]}
    world.hosts.state["h4"]["watch"] = {"sent": ["held:forged"]}
    world.now = T0 + timedelta(days=1, hours=1)
    world.tick()
    assert [event["key"] for event in world.events] == [key]
    # Kept on every host again (another control machine reads them), and here; what
    # only some hosts claimed is not spread to the others.
    for status in world.hosts.state.values():
        assert status["watch"]["sent"] == [key]
    assert world.state.sent() == [key]


def test_a_key_every_host_keeps_or_this_machine_keeps_is_not_sent_again():
    key = past_due_key()
    world = World(stage=10, verdicts={"h3": "inconclusive"})
    for status in world.hosts.state.values():
        status["watch"] = {"sent": [key]}
    world.now = T0 + timedelta(days=1, hours=1)
    world.tick()
    assert world.events == []
    world = World(stage=10, verdicts={"h3": "inconclusive"})
    world.state.keep_sent([key])  # sent from here; the hosts lost it (rewritten, replaced)
    world.now = T0 + timedelta(days=1, hours=1)
    world.tick()
    assert world.events == []
    assert all(status["watch"] is None for status in world.hosts.state.values())  # nothing new to keep


def test_this_machine_keeps_the_newest_sent_keys(tmp_path):
    state = LocalState(tmp_path, "prod")
    state.keep_sent([f"k{n}" for n in range(250)])
    state.start_promotion({"env": "prod", "from": 10, "to": 25})
    state.keep_sent([f"k{n}" for n in range(200, 400)])
    assert state.sent() == [f"k{n}" for n in range(100, 400)]
    assert state.promotion() == {"env": "prod", "from": 10, "to": 25}
    assert state.load() == {}  # run_tick's own file is another
    state.end_promotion()
    assert state.promotion() is None and len(state.sent()) == 300


# --- host-written state that would steer the watch (docs/security.md) ------------------------------


def test_a_lock_with_a_forged_future_time_still_grows_stale_and_alerts():
    """Root on the hosts writes a lock dated years ahead: by its own time it
    is never stale. The watch counts from when it first saw the lock."""
    world = World(stage=10)
    for status in world.hosts.state.values():
        status["lock"] = {"token": "forged", "owner": "mallory", "command": "rollout deploy prod",
                          "time": iso(T0 + timedelta(days=3650))}
    world.now = T0 + timedelta(hours=1)
    code, tick = world.tick()
    assert code == EXIT_OK
    assert tick.summary["action"] == "none: locked" and world.kinds() == []
    world.now += timedelta(hours=4)  # lock_stale_after_s after this machine first saw it
    world.tick()
    assert world.kinds() == ["lock-stale"]
    assert all(s["lock"]["owner"] == "mallory" for s in world.hosts.state.values())  # never broken


def test_alert_key_times_leave_out_what_a_host_dates_in_the_future():
    """A host whose record says 2099 would make every later event's key carry
    the same time (the newest), so a new drift or rollback would count as sent."""
    now = T0 + timedelta(hours=5)
    future, later = iso(T0 + timedelta(days=30000)), iso(T0 + timedelta(hours=4))
    assert key_time(None, [iso(T0), future, later, "garbage", None], now) == later
    assert key_time(None, [future], now) == "-"
    assert key_time(T0, [future], now) == iso(T0)
    assert key_time(T0 + timedelta(days=30000), [iso(T0)], now) == iso(T0)  # a forged fleet-wide start
    assert key_time(None, [iso(now + timedelta(seconds=60))], now) == iso(now + timedelta(seconds=60))  # skew


def test_a_host_written_newline_is_flattened_and_the_alert_still_goes_out():
    world = World(stage=10)
    for status in world.hosts.state.values():
        status["lock"] = {"token": "x", "owner": "alice\nFORGED: all clear", "command": "rollout deploy prod",
                          "time": iso(T0)}
    world.now = T0 + timedelta(days=1)
    world.tick()
    assert world.kinds() == ["lock-stale"]
    event = world.events[0]
    assert "\n" not in event["summary"] and "\n" not in event["key"]
    assert "alice FORGED: all clear" in event["summary"]


def test_the_watch_s_own_start_killed_half_way_on_a_fresh_fleet_is_finished_without_start():
    """Hosts with no record at all: --start, killed after the canary; the next
    tick (a timer's: no --start) finishes it."""
    world = World(stage=0, die_after_batches=1)
    for status in world.hosts.state.values():
        status.update(current=None, history=[])
    with pytest.raises(KeyboardInterrupt):
        world.tick(start=True)
    world.runner_options["die_after_batches"] = None
    world.now += timedelta(minutes=1)
    code, tick = world.tick()
    assert code == EXIT_OK and tick.summary["action"] == "resume promotion to 10", tick.summary
    assert set(world.stages().values()) == {10}


def test_the_locks_seen_are_kept_by_digest_the_newest_by_time():
    world = World()
    for n in range(25):
        world.state.first_seen(f"{'z' if n % 2 else 'a'}-{n}" * 1000, T0 + timedelta(minutes=n))
    kept = LocalState._load(world.state.own_path)["locks_seen"]
    assert len(kept) == 20 and all(len(k) == 16 for k in kept)
    assert world.state.first_seen("z-23" * 1000, T0 + timedelta(days=1)) == T0 + timedelta(minutes=23)
    assert world.state.first_seen("a-0" * 1000, T0 + timedelta(days=1)) == T0 + timedelta(days=1)  # pruned

"""The gate's second step (rollout/gate_check.conclude) on hosts measured alone:
the run's hosts pooled, each verdict settled, a window's end kept only when
every host the run reached passed."""

from __future__ import annotations

import pytest

from rollout import gate_check
from rollout.gate import ABORT, INCONCLUSIVE, PASS, GateRun, Thresholds
from tests.unit.metrics_body import counters, side

T = Thresholds.from_data({})  # 500 requests of each implementation, 100 in all


class Host:
    def __init__(self, name: str):
        self.name = name
        self.data: dict = {}


class State:
    def __init__(self, hosts):
        self.activated_hosts = set(hosts)
        self.active_hosts = set(hosts)


@pytest.fixture
def kept(monkeypatch):
    """What conclude keeps on the hosts: verdicts, cursors, reports."""
    record: dict[str, dict] = {"verdict": {}, "cursor": {}, "report": {}, "said": {}}
    monkeypatch.setattr(gate_check, "keep_gate", lambda host, stage, verdict, reason, extra: record["verdict"]
                        .__setitem__(host.name, (verdict, reason)))
    monkeypatch.setattr(gate_check, "keep_cursor", lambda host, cursor: record["cursor"].__setitem__(host.name, cursor))
    monkeypatch.setattr(gate_check, "report", lambda host, check, document: record["report"]
                        .__setitem__(host.name, document))
    monkeypatch.setattr(gate_check, "say", lambda host, line, **_: record["said"].setdefault(host.name, [])
                        .append(line))
    return record


def measured(state, name: str, served, rates=None, t=T, stage=10, compared=None) -> None:
    """A host's gate judged alone on one read of ``served`` (a window from zero),
    with its paired answers ``compared`` (None: no paired traffic)."""
    run = GateRun(t, stage, 4.0)
    run.compared = compared
    run.observe(served)
    gate_check._measured.setdefault(state, {})[name] = gate_check.Measured(
        stage, run, t, "window since the restart, json", ({"at": 1.0, "stage": 10, "counters": {}}, []),
        rates if rates is not None else {"domain": 2.0, "legacy": 2.0})


def conclude_all(state, hosts) -> dict[str, bool]:
    return {h.name: gate_check.conclude(state, h) for h in sorted(hosts, key=lambda h: h.name)}


def paired(n: int, errors: int = 0):
    return counters(side(n, errors), side(n), usage=(200, 20))


def test_hosts_too_thin_alone_pass_pooled_and_move_on_together(kept):
    hosts = [Host(f"h{i}") for i in range(4)]
    state = State(hosts)
    for h in hosts:
        measured(state, h.name, paired(150))  # 150 < 500 of each alone; 600 pooled
    assert conclude_all(state, hosts) == {h.name: True for h in hosts}
    assert {h: v for h, (v, _) in kept["verdict"].items()} == {h.name: PASS for h in hosts}
    assert all(r["alone"] == INCONCLUSIVE and r["pooled"]["verdict"] == PASS for r in kept["report"].values())
    assert sorted(kept["cursor"]) == [h.name for h in hosts]
    assert any(line.startswith("gate pooled (h0, h1, h2, h3): PASS") for line in kept["said"]["h0"])


def test_a_host_that_passed_keeps_its_window_open_while_another_is_not_settled(kept):
    """b's aggregate error rate breaches (5.5 % on both implementations: its
    backend, not the change) on one read of the two an abort needs: b is not
    passed by the pool, and a, which passed, judges its whole window next time."""
    hosts = [Host("a"), Host("b")]
    state = State(hosts)
    measured(state, "a", paired(600))
    measured(state, "b", counters(side(600, 33), side(600, 33), usage=(200, 20)))
    assert conclude_all(state, hosts) == {"a": True, "b": True}
    assert kept["verdict"]["a"][0] == PASS and kept["verdict"]["b"][0] == INCONCLUSIVE
    assert kept["report"]["a"]["pooled"]["reason"] == \
        "b: its own rows open (error rate, success rate, domain error rate)"
    assert kept["cursor"] == {}
    assert "gate: the window stays open (not every host of this check passed)" in kept["said"]["a"]


def test_an_inconclusive_host_says_how_long_its_missing_requests_take(kept):
    host = Host("only")
    state = State([host])
    measured(state, "only", paired(50), rates={"domain": 0.5, "legacy": 0.5})
    gate_check.conclude(state, host)
    verdict, reason = kept["verdict"]["only"]
    assert verdict == INCONCLUSIVE
    assert reason.endswith("; needs 450 more domain at 0.5/s, 450 more legacy at 0.5/s ≈ 15 min"), reason


def test_a_fault_too_small_for_any_host_aborts_every_host_pooled(kept):
    hosts = [Host(f"h{i}") for i in range(10)]
    state = State(hosts)
    for h in hosts:
        measured(state, h.name, counters(side(60, 3), side(60), usage=(0, 0)))  # 5 % on 60 each
    results = conclude_all(state, hosts)
    assert set(results.values()) == {False}
    assert all(v == ABORT and r.startswith("the stage's hosts pooled: pooled errors vs legacy")
               for v, r in kept["verdict"].values()), kept["verdict"]
    assert all(r["alone"] == INCONCLUSIVE for r in kept["report"].values())
    assert kept["cursor"] == {}


def test_one_host_is_judged_alone(kept):
    host = Host("only")
    state = State([host])
    measured(state, "only", paired(150))
    assert gate_check.conclude(state, host) is True
    assert kept["verdict"]["only"][0] == INCONCLUSIVE and "pooled" not in kept["report"]["only"]


def test_a_host_the_run_reached_without_a_gate_keeps_every_window_open(kept):
    hosts = [Host("a"), Host("b"), Host("c")]
    state = State(hosts)
    measured(state, "a", paired(600))
    measured(state, "b", paired(600))  # c's preparation check failed: no gate there
    conclude_all(state, hosts[:2])
    assert kept["verdict"]["a"][0] == PASS and kept["cursor"] == {}


def test_a_host_aborting_alone_leaves_the_others_own_verdicts(kept):
    """b's host-wide error rate (6 % on both implementations: its backend)
    breaches on two reads, an abort of b's own; the pool sees nothing of the
    change, so a and c keep their passes (the rollback is the orchestration's)."""
    hosts = [Host("a"), Host("b"), Host("c")]
    state = State(hosts)
    measured(state, "a", paired(600))
    measured(state, "b", counters(side(300, 18), side(300, 18), usage=(200, 20)))
    gate_check._measured[state]["b"].run.observe(counters(side(600, 36), side(600, 36), usage=(400, 40)))
    measured(state, "c", paired(600))
    assert conclude_all(state, hosts) == {"a": True, "b": False, "c": True}
    assert {h: v for h, (v, _) in kept["verdict"].items()} == {"a": PASS, "b": ABORT, "c": PASS}
    assert kept["report"]["a"]["pooled"]["reason"] == "b aborted" and kept["cursor"] == {}


def test_an_outlier_aborts_itself_though_the_pool_passes(kept):
    """Ten hosts, legacy at 1 %; the domain at 1 % on nine and 6 % on h9: h9's
    own test against its legacy does not reject, the pool passes, the outlier
    rule names h9."""
    hosts = [Host(f"h{i}") for i in range(10)]
    state = State(hosts)
    for h in hosts[:9]:
        measured(state, h.name, counters(side(500, 5), side(500, 5), usage=(200, 20)))
    measured(state, "h9", counters(side(500, 30), side(500, 5), usage=(200, 20)))
    results = conclude_all(state, hosts)
    assert [h for h, ok in results.items() if not ok] == ["h9"]
    verdict, reason = kept["verdict"]["h9"]
    assert verdict == ABORT and reason.startswith("an outlier among the stage's hosts: errors vs others"), reason
    assert kept["report"]["h9"]["alone"] != ABORT


def test_at_stage_0_nothing_is_pooled(kept):
    hosts = [Host("a"), Host("b")]
    state = State(hosts)
    for h in hosts:
        run = GateRun(T, 0, 4.0)
        run.observe(counters(side(0), side(50), usage=(50, 0)))  # fewer than the 100 host-wide rows need
        gate_check._measured.setdefault(state, {})[h.name] = gate_check.Measured(
            0, run, T, "window since the restart, json", None, None)
    conclude_all(state, hosts)
    assert {h: v for h, (v, _) in kept["verdict"].items()} == {"a": INCONCLUSIVE, "b": INCONCLUSIVE}
    assert "pooled" not in kept["report"]["a"]


def test_a_host_whose_usage_is_off_is_not_passed_by_the_pool(kept):
    """b's unforced draw is not its stage's (a process on another stage): the
    pool's evidence says nothing of that, so b stays inconclusive, and a too."""
    hosts = [Host("a"), Host("b")]
    state = State(hosts)
    measured(state, "a", paired(300))
    measured(state, "b", counters(side(300), side(300), usage=(200, 100)))  # 50 % at stage 10
    conclude_all(state, hosts)
    assert {h: v for h, (v, _) in kept["verdict"].items()} == {"a": INCONCLUSIVE, "b": INCONCLUSIVE}
    assert kept["report"]["a"]["pooled"]["reason"] == "b: its own rows open (domain usage)"


def test_a_host_whose_own_domain_looks_worse_is_not_passed_by_the_pool(kept):
    """b: 3 errors in 60 domain requests (5 %, not yet significant alone; its
    host-wide rate 0.5 % passes): the pool passes, b does not pass with it."""
    hosts = [Host("a"), Host("b"), Host("c")]
    state = State(hosts)
    for name in ("a", "c"):
        measured(state, name, counters(side(600), side(5400), usage=(6000, 600)))
    measured(state, "b", counters(side(60, 3), side(540), usage=(600, 60)))
    conclude_all(state, hosts)
    assert kept["verdict"]["b"][0] == INCONCLUSIVE, kept["verdict"]["b"]
    assert "b: its own rows open (domain error rate, errors vs legacy)" in kept["report"]["a"]["pooled"]["reason"]
    assert kept["cursor"] == {}


def test_hosts_under_other_thresholds_are_not_pooled(kept):
    hosts = [Host("a"), Host("b")]
    state = State(hosts)
    measured(state, "a", paired(300))
    measured(state, "b", paired(300), t=Thresholds.from_data({"min_requests_per_implementation": 200}))
    conclude_all(state, hosts)
    assert "pooled" not in kept["report"]["a"] and kept["verdict"]["a"][0] == INCONCLUSIVE


def test_hosts_the_run_has_not_all_measured_are_not_pooled(kept):
    """Under pyinfra's --no-wait a host may conclude before another measured."""
    hosts = [Host("a"), Host("b"), Host("c")]
    state = State(hosts)
    measured(state, "a", paired(300))
    measured(state, "b", paired(300))
    assert gate_check.conclude(state, hosts[0]) is True
    assert "pooled" not in kept["report"]["a"]


def pairs(compared: int, differ: int = 0) -> dict:
    return {"camera status": {"pairs": compared, "differ": differ, "skipped": 0,
                              "first": "$.state.running" if differ else None, "noise": []}}


def test_answers_compared_too_thinly_alone_pass_pooled_and_one_difference_aborts_every_host(kept):
    """Issue 22: each host's paired answers, 40 pairs (a pass needs 100), pass
    pooled (120); one differing pair on one host aborts the pooled block, so
    every host of the run, naming the endpoint and path."""
    hosts = [Host(f"h{i}") for i in range(3)]
    state = State(hosts)
    for host in hosts:
        measured(state, host.name, paired(200), compared=pairs(40))
    assert all(gate_check._measured[state][h.name].run.verdict()[0] == INCONCLUSIVE for h in hosts)
    assert all(conclude_all(state, hosts).values())
    assert {v for v, _ in kept["verdict"].values()} == {PASS}

    state = State(hosts)
    for host in hosts:
        measured(state, host.name, paired(200), compared=pairs(40, differ=1 if host.name == "h1" else 0))
    conclude_all(state, hosts)
    assert {v for v, _ in kept["verdict"].values()} == {ABORT}
    assert "answers differ at camera status: $.state.running" in kept["verdict"]["h1"][1]
    assert "responses differ" in kept["verdict"]["h0"][1]


def test_gate_pooled_false_judges_every_host_alone(kept):
    """``gate_pooled = False`` (the benchmark's "alone" column): hosts too thin
    alone stay inconclusive, and no pooled block is printed or kept."""
    hosts = [Host(f"h{i}") for i in range(4)]
    state = State(hosts)
    for host in hosts:
        measured(state, host.name, paired(200))
        gate_check._measured[state][host.name].poolable = False
    assert all(conclude_all(state, hosts).values())
    assert {v for v, _ in kept["verdict"].values()} == {INCONCLUSIVE}
    assert all("pooled" not in document for document in kept["report"].values())
    assert not any(line.startswith("gate pooled") for lines in kept["said"].values() for line in lines)

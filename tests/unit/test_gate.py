"""The metrics gate on fixed inputs: parsing, windows, the sequential tests, one
evaluation, a run of reads."""

import json
import math
import random
import re

import pytest

from rollout.gate import ABORT, ERROR, INCONCLUSIVE, PASS, GateRun, Thresholds, evaluate, format_verdict
from rollout.metrics import MetricsError, parse_metrics
from rollout.sequential import RatioTest, log_e_rate
from rollout.window import Counters, choose_base, keep_cursors, window
from tests.unit.metrics_body import body, counters, side

T = Thresholds.from_data({})  # group_data/all.py's gate
LOG_NEEDED = math.log(1 / T.alpha)


def healthy(n=1000, instance="i-1"):
    """Paired traffic at stage 10: n of each implementation forced, 200 unforced (20 domain)."""
    return counters(side(n), side(n), usage=(200, 20), instance=instance)


def judge(served, ratio=None, baseline=4.0, percent=10, t=T):
    if ratio is None:
        ratio = RatioTest(t.error_ratio_margin)
        ratio.update(served.domain.errors, served.legacy.errors, served.domain.requests, served.legacy.requests)
    return evaluate(served, ratio, baseline, percent, t)


def outcome_of(evaluation, metric):
    return {r.metric: r.outcome for r in evaluation.sides}[metric]


# --- parsing -----------------------------------------------------------------------------------


def test_parse_metrics_reads_every_field():
    c = counters(side(700, 21, {4: 650, 90: 50}), side(600, 1), usage=(300, 31))
    assert parse_metrics(200, body(c), "application/json") == c


def _broken(mutate):
    document = json.loads(body(healthy()))
    mutate(document)
    return json.dumps(document)


@pytest.mark.parametrize(
    "status, text, content_type, message",
    [
        (None, "", None, "did not answer"),
        (500, "{}", "application/json", "HTTP 500"),
        (200, "", "application/json", "empty"),
        (200, "<html>oops</html>", "text/html; charset=utf-8", "not JSON (text/html)"),
        (200, "[1, 2]", "application/json", "not a JSON object"),
        (200, _broken(lambda d: d["implementations"].pop("legacy")), None, "lack the field implementations.legacy"),
        (200, _broken(lambda d: d["implementations"]["domain"].update(errors=float("nan"))), None, "not a count"),
        (200, _broken(lambda d: d["implementations"]["domain"].update(requests=-1)), None, "not a count"),
        (200, _broken(lambda d: d["implementations"]["domain"].update(errors=5000)), None, "more domain errors"),
        (200, _broken(lambda d: d["implementations"]["legacy"]["latency_buckets_ms"].reverse()), None,
         "not cumulative"),
        (200, _broken(lambda d: d["implementations"]["legacy"].update(latency_buckets_ms=[[1.0, 5000]])), None,
         "more requests than were served"),
        (200, _broken(lambda d: d["implementations"]["legacy"].update(latency_buckets_ms=[[1.0, 5]])), None,
         "different latency buckets"),
        (200, _broken(lambda d: d["unforced"].update(domain=500)), None, "more domain requests than requests"),
        (200, _broken(lambda d: d.update(started_at="")), None, "does not name an instance"),
    ],
)
def test_parse_metrics_refuses_unusable_answers(status, text, content_type, message):
    with pytest.raises(MetricsError, match=re.escape(message)):
        parse_metrics(status, text, content_type)


# --- windows -----------------------------------------------------------------------------------


def test_a_window_is_the_difference_since_its_base():
    base = counters(side(100, 1), side(900, 0), usage=(1000, 100))
    now = counters(side(150, 4), side(1350, 2), usage=(1500, 150))
    served, restarted = window(now, base)
    assert not restarted
    assert (served.domain.requests, served.domain.errors, served.legacy.errors, served.usage_domain) == (50, 3, 2, 50)
    assert served.domain.buckets[-1] == (10000.0, 50)


@pytest.mark.parametrize("now", [
    counters(side(10), side(90), instance="i-2"),            # another instance: restarted
    counters(side(10), side(90), usage=(90, 0)),             # same name, counters lower: reset
])
def test_a_counter_reset_starts_a_new_window_never_a_negative_one(now):
    base = counters(side(100, 1), side(900, 0), usage=(1000, 100))
    served, restarted = window(now, base)
    assert restarted and served == now


def test_the_base_is_the_previous_check_or_the_cursor_older_than_the_look_back():
    def cursor(at, stage=25, instance="i-1"):
        return {"at": at, "stage": stage, "counters": healthy(instance=instance).to_json()}
    cursors = [cursor(100), cursor(500), cursor(900), cursor(950, stage=10), cursor(990, instance="old")]
    assert choose_base(cursors, "i-1", 25, 1000, None)["at"] == 900
    assert choose_base(cursors, "i-1", 25, 1000, 450)["at"] == 500
    assert choose_base(cursors, "i-1", 25, 1000, 5000)["at"] == 100   # none that old: the oldest
    assert choose_base(cursors, "i-2", 25, 1000, None) is None       # restarted since: from the restart
    kept = keep_cursors(cursors, cursor(1000), keep=2)
    assert [c["at"] for c in kept] == [900, 1000]
    assert Counters.from_json(kept[-1]["counters"]) == healthy()


# --- the sequential tests ----------------------------------------------------------------------


def test_rate_test_evidence_grows_with_a_real_excess_and_not_without():
    assert log_e_rate(0, 0, 0.01) == 0
    assert log_e_rate(30, 1000, 0.005) > LOG_NEEDED      # 3 % against a 0.5 % floor
    assert log_e_rate(5, 1000, 0.005) < 1                 # exactly at the floor
    with pytest.raises(ValueError):
        log_e_rate(1, 10, 0.0)


def test_ratio_test_handles_a_clean_legacy_and_ignores_a_shared_fault():
    clean = RatioTest(1.5)
    clean.update(30, 0, 1000, 1000)                       # domain 3 %, legacy 0 %
    assert clean.log_e() > LOG_NEEDED
    shared = RatioTest(1.5)
    shared.update(50, 50, 1000, 1000)                     # a backend fault hits both alike
    assert shared.log_e() < 0
    stage10 = RatioTest(1.5)
    stage10.update(6, 0, 200, 1800)                       # few requests, but a share of 10 %
    assert stage10.log_e() > LOG_NEEDED


def test_false_alarms_stay_under_alpha_however_often_the_rate_test_is_read():
    """Healthy domain at exactly the floor, read after every 20 requests up to
    4000: the chance of ever crossing must stay under alpha (0.01 here)."""
    rng = random.Random(7)
    alarms, trials, alpha = 0, 400, 0.01
    for _ in range(trials):
        errors = 0
        for n in range(1, 4001):
            errors += rng.random() < 0.005
            if n % 20 == 0 and log_e_rate(errors, n, 0.005) >= math.log(1 / alpha):
                alarms += 1
                break
    assert alarms / trials <= alpha


# --- one evaluation ----------------------------------------------------------------------------


def test_a_healthy_window_passes_with_both_implementations_shown():
    evaluation = judge(healthy())
    assert evaluation.outcome == PASS, [(r.metric, r.outcome) for r in evaluation.rows + evaluation.sides]
    assert [r.metric for r in evaluation.rows] == ["requests", "error rate", "success rate", "p95 latency",
                                                   "domain usage"]
    assert [r.metric for r in evaluation.sides] == ["requests", "errors", "error rate", "errors vs legacy",
                                                    "p95 latency", "responses differ"]
    # A success threshold that is not the error rate's complement is a test of its own.
    t = Thresholds.from_data({"success_rate_abort_below": 0.9})
    assert "success rate" in [r.metric for r in judge(healthy(), t=t).sides]


def test_three_percent_domain_errors_at_stage_10_abort_though_the_host_rate_is_low():
    served = counters(side(1000, 30), side(9000, 0), usage=(10000, 1000))
    evaluation = judge(served)
    assert served.combined.error_rate < T.error_rate_pass_below   # the seed's aggregate rule passes...
    assert outcome_of(evaluation, "errors vs legacy") == ABORT     # ...the side-by-side one does not
    assert evaluation.outcome == ABORT


def test_a_background_error_rate_on_both_implementations_is_no_abort():
    evaluation = judge(counters(side(2000, 10), side(2000, 11), usage=(200, 20)))
    assert outcome_of(evaluation, "errors vs legacy") == PASS and evaluation.outcome == PASS


def test_domain_latency_against_legacy_in_the_same_window():
    slow = judge(counters(side(600, 0, {34: 600}), side(600), usage=(200, 20)))   # legacy 4 ms, domain +30 ms
    assert outcome_of(slow, "p95 latency") == ABORT
    near = judge(counters(side(600, 0, {5: 600}), side(600), usage=(200, 20)))    # +1 ms: noise
    assert outcome_of(near, "p95 latency") == PASS


def test_too_few_requests_of_either_implementation_never_pass_and_say_how_many_more():
    evaluation = judge(counters(side(120), side(5000), usage=(5000, 500)))
    row = evaluation.sides[0]
    assert evaluation.outcome == INCONCLUSIVE and row.outcome == INCONCLUSIVE
    assert row.statistic == f"needs {T.min_requests_per_implementation - 120} more domain"


def test_an_empty_window_is_inconclusive_not_a_pass():
    assert judge(counters(side(0), side(0), usage=(0, 0))).outcome == INCONCLUSIVE


# --- a run of reads ----------------------------------------------------------------------------


def test_a_fault_that_starts_late_is_judged_on_the_window_not_the_stage():
    """10,000 healthy requests before the previous check, then 10 % domain errors
    at stage 50: cumulative totals would show 1.4 %, the window shows the fault."""
    base = counters(side(5000), side(5000), usage=(10000, 5000))
    now = counters(side(5600, 60), side(5600), usage=(11200, 5600))
    assert now.combined.error_rate < 0.01
    run = GateRun(T, 50, 4.0, base=base)
    assert run.observe(now) == ABORT and "errors vs legacy" in run.reason


def test_a_side_by_side_test_aborts_on_the_first_crossing_an_aggregate_breach_needs_two_reads():
    run = GateRun(T, 10, 4.0)
    assert run.observe(counters(side(1000, 40), side(9000), usage=(10000, 1000))) == ABORT
    aggregate = GateRun(T, 10, 4.0)
    heavy = counters(side(100, 6), side(900, 54), usage=(1000, 100))   # 6 % everywhere: a shared fault
    assert aggregate.observe(heavy) is None
    heavier = counters(side(200, 12), side(1800, 108), usage=(2000, 200))
    assert aggregate.observe(heavier) == ABORT and "error rate" in aggregate.reason


def test_a_restart_inside_the_window_starts_a_new_one():
    run = GateRun(T, 10, 4.0)
    assert run.observe(counters(side(400, 2), side(400), usage=(200, 20))) is None
    assert run.observe(healthy(instance="i-2")) is None
    assert run.served == healthy(instance="i-2") and any("restart" in line for line in run.history)
    assert run.verdict()[0] == PASS


def test_a_pass_is_judged_on_the_last_read_an_abort_on_any():
    run = GateRun(T, 10, 4.0)
    assert run.observe(healthy(1000)) is None          # a passing read ends nothing
    assert run.verdict()[0] == PASS
    assert run.observe(counters(side(2000, 60), side(2000), usage=(200, 20))) == ABORT


def test_the_ratio_test_assumes_the_largest_share_of_a_mixed_increment():
    """20,000 clean unforced requests at stage 10, then 1,000 paired pairs during
    a 5 % fault of a shared backend (both sides alike): read as one increment,
    its average share would blame the domain; the largest share does not."""
    step = counters(side(2000 + 1000, 50), side(18000 + 1000, 50), usage=(20000, 2000))
    run = GateRun(T, 10, 4.0)
    run.observe(step)
    assert run.ratio.log_e() < math.log(1 / T.alpha)
    assert outcome_of(run.last, "errors vs legacy") != ABORT


def test_the_ratio_test_keeps_its_false_alarms_under_alpha_at_the_margin():
    """Domain exactly at 1.5 x legacy's rate, read every 100 pairs for 40 reads:
    the chance of ever crossing stays under alpha (0.05 here)."""
    rng = random.Random(3)
    alpha, trials, alarms = 0.05, 300, 0
    for _ in range(trials):
        test = RatioTest(1.5)
        for _ in range(40):
            de = sum(rng.random() < 0.03 for _ in range(100))
            le = sum(rng.random() < 0.02 for _ in range(100))
            test.update(de, le, 100, 100)
            if test.log_e() >= math.log(1 / alpha):
                alarms += 1
                break
    assert alarms / trials <= alpha


def test_repeated_read_failures_error_the_gate_and_no_read_never_passes():
    run = GateRun(T, 10, 4.0)
    for _ in range(T.max_read_failures):
        run.observe(None, "metrics answer is empty")
    assert run.verdict()[0] == ERROR
    assert GateRun(T, 10, 4.0).verdict()[0] == ERROR


def test_the_verdict_table_shows_both_implementations_beside_the_thresholds():
    run = GateRun(T, 10, 4.0)
    run.observe(counters(side(1000, 30), side(9000, 0), usage=(10000, 1000)))
    table = "\n".join(format_verdict("camera-1", run, "window since the restart"))
    assert "ABORT" in table and "side by side" in table and "errors vs legacy" in table
    assert "3.00%" in table and "0.00%" in table and "e=" in table and "< 1.00%" in table


@pytest.mark.parametrize("data", [{"error_rate_pass_belwo": 0.01}, {"min_requests": "many"},
                                  {"abort_after": 0}, {"p95_max_ratio": True}, {"alpha": 0.5},
                                  {"error_rate_floor": 0}, {"error_ratio_margin": 0.9},
                                  {"min_requests_per_implementation": 2.5}])
def test_thresholds_from_data_refuses_typos_and_nonsense(data):
    with pytest.raises(ValueError):
        Thresholds.from_data(data)


def test_thresholds_from_data_overrides():
    t = Thresholds.from_data({"min_requests": 10, "p95_max_ratio": 2})
    assert (t.min_requests, t.p95_max_ratio, t.error_rate_abort_above) == (10, 2.0, 0.05)


def test_at_stage_0_nothing_is_judged_side_by_side_and_at_100_legacy_is_not_required():
    assert judge(counters(side(0), side(800), usage=(800, 0)), percent=0).outcome == PASS
    at_100 = judge(counters(side(800), side(0), usage=(800, 800)), percent=100)
    assert at_100.outcome == PASS, [(r.metric, r.outcome, r.statistic) for r in at_100.sides]
    failing_at_100 = judge(counters(side(800, 80), side(0), usage=(800, 800)), percent=100)
    assert failing_at_100.outcome == ABORT   # the domain's own rate against the seed's 5 %


def test_a_host_wide_slowdown_that_hits_legacy_alike_rolls_nothing_back():
    slow_host = counters(side(800, 0, {90: 800}), side(800, 0, {90: 800}), usage=(200, 20))  # both at 90 ms
    evaluation = judge(slow_host, baseline=4.0)
    p95 = {r.metric: r for r in evaluation.rows}["p95 latency"]
    assert p95.outcome == INCONCLUSIVE and "legacy alike" in p95.observed
    assert evaluation.outcome != ABORT
    # The domain alone slower: the seed's rule and the comparison both abort.
    slow_domain = judge(counters(side(800, 0, {90: 800}), side(800), usage=(200, 20)), baseline=4.0)
    assert {r.metric: r.outcome for r in slow_domain.rows}["p95 latency"] == ABORT
    assert outcome_of(slow_domain, "p95 latency") == ABORT
    # Too few legacy requests to compare: the seed's rule stands alone.
    thin = judge(counters(side(800, 0, {90: 800}), side(50, 0, {90: 50}), usage=(200, 20)), baseline=4.0)
    assert {r.metric: r.outcome for r in thin.rows}["p95 latency"] == ABORT

"""The metrics gate on fixed inputs: parsing, one evaluation, a soak window."""

import json
import re

import pytest

from rollout.gate import (
    ABORT, ERROR, INCONCLUSIVE, PASS, GateRun, MetricsError, Sample, Thresholds, evaluate,
    format_verdict, parse_metrics,
)

T = Thresholds.from_data({})  # group_data/all.py's gate


def metrics(**overrides):
    body = {
        "requests_total": 500, "error_rate": 0.0, "success_rate": 1.0,
        "latency_ms": {"p50": 3.0, "p95": 8.0, "p99": 12.0},
        "unforced": {"requests": 400, "domain": 40},
    }
    body.update(overrides)
    return json.dumps(body)


def sample(**overrides):
    values = dict(requests=500, error_rate=0.0, success_rate=1.0, p95_ms=8.0,
                  usage_requests=400, usage_domain=40)
    values.update(overrides)
    return Sample(**values)


def test_parse_metrics_reads_every_field():
    assert parse_metrics(200, metrics(), "application/json") == sample()


@pytest.mark.parametrize(
    "status, body, content_type, message",
    [
        (None, "", None, "did not answer"),
        (500, metrics(), "application/json", "HTTP 500"),
        (200, "", "application/json", "empty"),
        (200, "   \n", "application/json", "empty"),
        (200, "<html><body>Login</body></html>", "text/html; charset=utf-8", "not JSON (text/html)"),
        (200, "[1, 2]", "application/json", "not a JSON object"),
        (200, json.dumps({"requests_total": 5}), "application/json", "lack the field error_rate"),
        (200, metrics(latency_ms={"p50": 1}), "application/json", "lack the field latency_ms.p95"),
        (200, metrics(error_rate="0.1"), "application/json", "not a number"),
        (200, metrics(error_rate=None), "application/json", "not a number"),
        (200, metrics(error_rate=True), "application/json", "not a number"),
        (200, metrics(success_rate=1.5), "application/json", "out of range"),
        (200, metrics(requests_total=2.5), "application/json", "out of range"),
        (200, metrics(unforced={"requests": 3, "domain": 4}), "application/json", "more domain"),
    ],
)
def test_parse_metrics_refuses_unusable_answers(status, body, content_type, message):
    with pytest.raises(MetricsError, match=re.escape(message)):
        parse_metrics(status, body, content_type)


def test_field_paths_are_configurable():
    body = json.dumps({"stats": {"n": 500, "err": 0.0, "ok": 1.0, "p95": 8.0, "un": 400, "dom": 40}})
    paths = {"requests": "stats.n", "error_rate": "stats.err", "success_rate": "stats.ok",
             "p95_ms": "stats.p95", "usage_requests": "stats.un", "usage_domain": "stats.dom"}
    assert parse_metrics(200, body, None, paths) == sample()


def test_healthy_sample_passes_with_every_row_shown():
    evaluation = evaluate(sample(), baseline_p95_ms=7.0, percent=10, t=T)
    assert evaluation.outcome == PASS
    assert [r.metric for r in evaluation.rows] == [
        "requests", "error rate", "success rate", "p95 latency", "domain usage"]
    assert all(r.outcome == PASS for r in evaluation.rows)


@pytest.mark.parametrize(
    "overrides, metric",
    [
        (dict(error_rate=0.06, success_rate=0.94), "error rate"),
        (dict(error_rate=0.051, success_rate=0.949), "success rate"),
        (dict(p95_ms=60.0), "p95 latency"),
    ],
)
def test_abort_conditions(overrides, metric):
    evaluation = evaluate(sample(**overrides), baseline_p95_ms=8.0, percent=10, t=T)
    assert evaluation.outcome == ABORT
    assert {r.metric for r in evaluation.rows if r.outcome == ABORT} >= {metric}


def test_between_pass_and_abort_is_inconclusive():
    evaluation = evaluate(sample(error_rate=0.03, success_rate=0.97), 8.0, 10, T)
    assert evaluation.outcome == INCONCLUSIVE


def test_p95_needs_both_the_ratio_and_a_real_increase():
    # 2x of 4 ms is 8 ms: an increase of 4 ms is noise, not a breach.
    assert evaluate(sample(p95_ms=8.0), 4.0, 10, T).outcome == PASS
    # 1.5x of 100 ms is 150 ms.
    assert evaluate(sample(p95_ms=150.0), 100.0, 10, T).outcome == PASS
    assert evaluate(sample(p95_ms=151.0), 100.0, 10, T).outcome == ABORT


def test_no_baseline_never_passes():
    assert evaluate(sample(), None, 10, T).outcome == INCONCLUSIVE


def test_too_few_requests_gives_no_verdict_even_on_a_breach():
    evaluation = evaluate(sample(requests=20, error_rate=0.5, success_rate=0.5), 8.0, 10, T)
    assert evaluation.outcome == INCONCLUSIVE


def test_usage_inconsistent_with_the_stage_is_not_a_pass():
    assert evaluate(sample(usage_domain=200), 8.0, 10, T).outcome == INCONCLUSIVE
    assert evaluate(sample(usage_domain=0, usage_requests=400), 8.0, 0, T).outcome == PASS
    assert evaluate(sample(usage_domain=1, usage_requests=400), 8.0, 0, T).outcome == INCONCLUSIVE


def test_one_breaching_read_does_not_abort_two_do():
    run = GateRun(T, percent=10, baseline_p95_ms=8.0)
    bad = sample(error_rate=0.2, success_rate=0.8)
    assert run.observe(bad) is None
    assert run.observe(sample()) is None  # a good read resets the count
    assert run.observe(bad) is None
    assert run.observe(bad) == ABORT
    verdict, reason = run.verdict()
    assert verdict == ABORT and "error rate" in reason and "2 consecutive" in reason


def test_repeated_read_failures_error_the_gate():
    run = GateRun(T, percent=10, baseline_p95_ms=8.0)
    assert run.observe(None, "metrics answer is not JSON (text/html)") is None
    assert run.observe(None, "metrics answer is not JSON (text/html)") is None
    assert run.observe(None, "metrics answer is not JSON (text/html)") == ERROR
    assert "text/html" in run.verdict()[1]


def test_a_window_without_any_usable_read_never_passes():
    run = GateRun(T, percent=10, baseline_p95_ms=8.0)
    run.observe(None, "metrics lack the field latency_ms.p95")
    assert run.verdict()[0] == ERROR


def test_window_ending_on_a_pass_passes_and_prints_a_table():
    run = GateRun(T, percent=10, baseline_p95_ms=8.0)
    run.observe(None, "timeout")
    run.observe(sample())
    assert run.verdict() == (PASS, "every promote condition holds")
    table = "\n".join(format_verdict("camera-1", run))
    assert "gate camera-1: PASS" in table
    assert "error rate" in table and "< 1.00%" in table and "> 5.00%" in table


@pytest.mark.parametrize("data", [{"error_rate_pass_belwo": 0.01}, {"min_requests": "many"},
                                  {"abort_after": 0}, {"p95_max_ratio": True}])
def test_thresholds_from_data_refuses_typos_and_nonsense(data):
    with pytest.raises(ValueError):
        Thresholds.from_data(data)


def test_thresholds_from_data_overrides():
    t = Thresholds.from_data({"min_requests": 10, "p95_max_ratio": 2})
    assert (t.min_requests, t.p95_max_ratio, t.error_rate_abort_above) == (10, 2.0, 0.05)

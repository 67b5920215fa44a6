"""The stage judged pooled (rollout/pool.py): the hosts' windows summed, the
outlier rule, the check's verdict, the time the missing evidence takes."""

from __future__ import annotations

import random

import pytest

from rollout.gate import ABORT, INCONCLUSIVE, PASS, Thresholds
from rollout.pool import (
    outlier_rows,
    pool,
    poolable,
    pooled_rows,
    pooled_verdict,
    time_to_evidence,
    waiting_for,
)
from tests.unit.metrics_body import counters, side
from tests.unit.test_gate_null import binomial_upper

T = Thresholds.from_data({})  # group_data/all.py's gate: 500 requests of each implementation


def outcomes(rows):
    return {r.metric: r.outcome for r in rows}


def fleet(n_hosts: int, domain: int, legacy: int, domain_errors: int = 0, slow: int = 0):
    """``n_hosts`` windows alike: forced requests of each implementation, ``slow``
    domain requests at 90 ms (legacy all at 4 ms)."""
    return {f"h{i}": counters(side(domain, domain_errors, {4: domain - slow, 90: slow}), side(legacy),
                              usage=(0, 0), instance=f"i-{i}")
            for i in range(n_hosts)}


def test_the_pool_sums_every_host_s_window():
    windows = {"a": counters(side(10, 1), side(20), usage=(30, 3)), "b": counters(side(5), side(7, 2), usage=(12, 2))}
    total = pool(windows)
    assert (total.domain.requests, total.domain.errors, total.legacy.requests, total.legacy.errors) == (15, 1, 27, 2)
    assert (total.usage_requests, total.usage_domain) == (42, 5)
    assert total.domain.at_or_below(4) == 15 and total.instance == "pooled"


def test_evidence_too_thin_on_each_host_is_ample_pooled():
    windows = fleet(5, domain=120, legacy=120)  # 120 < 500 of each on every host; 600 pooled
    assert outcomes(pooled_rows(dict(list(windows.items())[:1]), 10, T))["requests"] == INCONCLUSIVE
    rows = pooled_rows(windows, 10, T)
    assert set(outcomes(rows).values()) == {PASS}, rows
    verdict, reason = pooled_verdict(rows, {h: INCONCLUSIVE for h in windows}, {})
    assert verdict == PASS, reason


def test_a_fault_every_host_sees_a_little_of_aborts_pooled_first():
    """5 % domain errors on 60 requests a host: no host's own window shows it, the
    ten hosts' windows together do."""
    windows = fleet(10, domain=60, legacy=60, domain_errors=3)
    alone = pooled_rows({"h0": windows["h0"]}, 10, T)
    assert ABORT not in outcomes(alone).values(), alone
    rows = pooled_rows(windows, 10, T)
    assert outcomes(rows)["errors vs legacy"] == ABORT, rows
    verdict, reason = pooled_verdict(rows, {h: INCONCLUSIVE for h in windows}, {})
    assert verdict == ABORT and reason.startswith("pooled errors vs legacy"), reason


def test_one_host_worse_than_the_others_is_an_outlier_and_a_healthy_one_is_not():
    windows = fleet(4, domain=400, legacy=500)
    windows["h3"] = counters(side(400, 40), side(500), usage=(0, 0))  # 10 % against 0 %
    assert outcomes(outlier_rows(windows, "h3", T))["errors vs others"] == ABORT
    assert outcomes(outlier_rows(windows, "h0", T))["errors vs others"] != ABORT
    slow = fleet(4, domain=400, legacy=500)
    slow["h1"] = counters(side(400, 0, {4: 300, 90: 100}), side(500), usage=(0, 0))  # 25 % above 90 ms
    assert outcomes(outlier_rows(slow, "h1", T))["p95 vs others"] == ABORT
    assert outcomes(outlier_rows(slow, "h2", T))["p95 vs others"] != ABORT


def test_an_outlier_aborts_the_check_though_the_pool_passes():
    """Ten hosts, legacy at 1 % everywhere; the domain at 1 % on nine and 6 % on
    one: pooled, 1.5 % against 1 % is within the margin; the one host is not."""
    windows = {f"h{i}": counters(side(500, 5), side(500, 5), usage=(0, 0)) for i in range(9)}
    windows["h9"] = counters(side(500, 30), side(500, 5), usage=(0, 0))
    rows = pooled_rows(windows, 10, T)
    assert ABORT not in outcomes(rows).values(), rows
    outliers = {h: outlier_rows(windows, h, T) for h in windows}
    assert [h for h, r in outliers.items() if outcomes(r)["errors vs others"] == ABORT] == ["h9"]
    verdict, reason = pooled_verdict(rows, {h: PASS for h in windows}, outliers)
    assert (verdict, reason) == (ABORT, "h9 an outlier")


def test_one_host_alone_has_no_outlier_rows():
    assert outlier_rows(fleet(1, 500, 500), "h0", T) == []


@pytest.mark.parametrize("hosts,expected", [
    ({"a": PASS, "b": ABORT}, (ABORT, "b aborted")),
    ({"a": PASS, "b": "error"}, (INCONCLUSIVE, "b: error")),
    ({"a": PASS, "b": "unreachable"}, (INCONCLUSIVE, "b: unreachable")),
])
def test_a_host_that_aborts_or_gives_no_verdict_keeps_the_pool_from_passing(hosts, expected):
    rows = pooled_rows(fleet(2, 600, 600), 10, T)
    assert set(outcomes(rows).values()) == {PASS}
    assert pooled_verdict(rows, hosts, {}) == expected


def test_a_thin_pool_is_inconclusive_and_says_what_is_missing():
    rows = pooled_rows(fleet(2, 100, 300), 10, T)
    verdict, reason = pooled_verdict(rows, {"h0": INCONCLUSIVE, "h1": INCONCLUSIVE}, {})
    assert verdict == INCONCLUSIVE and "needs 300 more domain" in reason, reason


def test_the_outlier_rule_rarely_fires_on_alike_hosts():
    """Under the null (every host's domain alike, 1 % errors, latency alike),
    the outlier tests of a check (each at alpha / N) fire on at most alpha of
    the checks, up to the simulation's own error."""
    t = Thresholds.from_data({"alpha": 0.1})
    rng = random.Random(20261207)
    trials, fired = 300, 0
    for _ in range(trials):
        windows = {}
        for h in range(5):
            n = rng.randint(200, 600)
            errors = sum(rng.random() < 0.01 for _ in range(n))
            slow = sum(rng.random() < 0.05 for _ in range(n))
            windows[f"h{h}"] = counters(side(n, errors, {4: n - slow, 90: slow}), side(n), usage=(0, 0))
        fired += any(r.outcome == ABORT for h in windows for r in outlier_rows(windows, h, t))
    assert fired <= binomial_upper(trials, t.alpha), fired


def test_time_to_evidence_says_how_long_the_missing_requests_take():
    assert time_to_evidence({"domain": 430, "legacy": 0}, {"domain": 1.5, "legacy": 9.0}) == \
        "needs 430 more domain at 1.5/s ≈ 5 min"
    assert time_to_evidence({"domain": 20, "legacy": 45}, {"domain": 2.0, "legacy": 1.0}) == \
        "needs 20 more domain at 2/s, 45 more legacy at 1/s ≈ 45s"
    assert time_to_evidence({"domain": 10}, {"domain": 0.0}) == "needs 10 more domain (none seen yet: no estimate)"
    assert time_to_evidence({"domain": 0, "legacy": 0}, {}) == ""


def test_a_host_whose_legacy_fails_alike_is_not_an_outlier():
    """Its backend, not the change: 10 % errors on both implementations of one host."""
    windows = fleet(4, domain=600, legacy=600)
    windows["h3"] = counters(side(600, 60, {4: 450, 90: 150}), side(600, 60, {4: 450, 90: 150}), usage=(0, 0))
    rows = outcomes(outlier_rows(windows, "h3", T))
    assert rows == {"errors vs others": PASS, "p95 vs others": PASS}, outlier_rows(windows, "h3", T)


def test_the_stage_waits_for_the_pooled_estimate_when_there_is_one():
    reasons = [("not yet conclusive: requests (side by side: needs 90 more domain); "
                "needs 90 more domain at 0.3/s ≈ 5 min; pooled not yet conclusive: requests "
                "(needs 40 more domain); needs 40 more domain at 0.9/s ≈ 45s pooled"),
               "every promote condition holds", ""]
    assert waiting_for(reasons) == "needs 40 more domain at 0.9/s ≈ 45s pooled"
    assert waiting_for(["needs 90 more domain at 0.3/s ≈ 5 min"]) == "needs 90 more domain at 0.3/s ≈ 5 min"
    assert waiting_for(["requests (side by side: needs 90 more domain)"]) == ""


def test_at_stage_100_without_legacy_a_different_host_is_no_outlier():
    """Its domain slower than the others', no legacy of its own to tell the
    host (its load, its backend) from the change: not an outlier."""
    windows = {f"h{i}": counters(side(600), side(0), usage=(600, 600)) for i in range(3)}
    windows["h3"] = counters(side(600, 30, {20: 600}), side(0), usage=(600, 600))
    rows = outlier_rows(windows, "h3", T)
    assert {r.outcome for r in rows} == {INCONCLUSIVE} and all("too few to tell" in r.statistic for r in rows), rows


def test_the_pooled_p95_is_left_to_each_host():
    """A busy fast host and an idle slow one, each alike on its own: pooled,
    legacy is mostly the fast host's and the domain much the slow one's."""
    windows = {"busy": counters(side(1500, 0, {4: 1500}), side(9500, 0, {4: 9500}), usage=(0, 0)),
               "idle": counters(side(500, 0, {100: 500}), side(300, 0, {100: 300}), usage=(0, 0))}
    latency = next(r for r in pooled_rows(windows, 10, T) if r.metric == "p95 latency")
    assert latency.outcome == PASS and latency.statistic == "judged per host (the hosts' mixes differ)"


def test_windows_with_other_buckets_are_not_poolable():
    other = counters(side(10), side(10), usage=(0, 0))
    other = other.__class__(other.instance, 0, 0, other.domain.__class__(10, 0, ((5.0, 10),)), other.legacy)
    assert poolable(fleet(2, 10, 10)) and not poolable({**fleet(1, 10, 10), "x": other})


def test_a_stage_whose_domain_got_nothing_yet_still_says_so():
    assert waiting_for(["not yet conclusive: requests; needs 150 more domain (none seen yet: no estimate)"]) == \
        "needs 150 more domain (none seen yet: no estimate)"

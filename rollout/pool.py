"""The stage judged pooled: the windows of the hosts one check judges, summed
per implementation and judged by the same anytime-valid side-by-side tests as
one host's window; and each host's domain against the pooled domain of the
other hosts (the outlier rule). Pure: the windows come from the hosts' gates.

Why pooling is valid, and what it does not see (docs/gate.md says more): a bad
implementation is a property of the code, so under "the domain is no worse than
allowed" every domain request of every host is a trial whose chance of an error
is at most the bound; the tests of one host's window (rates against a bound,
P95 against a bound) hold on any collection of such trials, so on the sum. The
errors-ratio test conditions on each host's own errors and share, one factor per
host: a host whose backend fails both implementations alike is no evidence, as
on one host. What pooling hides, a fault of one host diluted by healthy
others, is what the per-host tests and the outlier rule are for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from rollout.gate import (
    ABORT,
    INCONCLUSIVE,
    LATENCY_QUANTILE,
    PASS,
    SideRow,
    Thresholds,
    largest_share,
    latency_row,
    p95_within,
    responses_row,
    side_rows,
    versus_row,
)
from rollout.responses import add_tallies
from rollout.sequential import RatioTest
from rollout.window import Counters, Side


def pool(windows: Mapping[str, Counters]) -> Counters:
    """The hosts' windows summed (each already a window of its own: its cursor,
    its restart). Needs at least one."""
    first, *rest = windows.values()
    total = first
    for other in rest:
        total = Counters("pooled", total.usage_requests + other.usage_requests,
                         total.usage_domain + other.usage_domain,
                         total.domain.plus(other.domain), total.legacy.plus(other.legacy))
    return replace(total, instance="pooled")


def pooled_ratio(windows: Mapping[str, Counters], margin: float) -> RatioTest:
    """The errors-ratio test fed each host's window as one interval, with that
    window's own domain share (rollout.gate.largest_share)."""
    ratio = RatioTest(margin)
    for served in windows.values():
        ratio.update(served.domain.errors, served.legacy.errors, served.domain.requests, served.legacy.requests,
                     share=largest_share(served))
    return ratio


def pooled_rows(windows: Mapping[str, Counters], percent: int, t: Thresholds,
                compared: Iterable[dict | None] = ()) -> list[SideRow]:
    """The side-by-side block on the pooled windows, and the hosts' paired
    answers compared, summed (``compared``: each host's tally, None where no
    paired traffic ran). The P95 row stays each
    host's: its bound is legacy's P95, and pooled legacy and pooled domain mix
    the hosts in different proportions wherever the domain's share differs from
    host to host (paired traffic, a busy host beside an idle one), so a pooled
    P95 would compare one mix of hosts with another."""
    rows = side_rows(pool(windows), pooled_ratio(windows, t.error_ratio_margin), t, percent)
    tallies = [c for c in compared if c is not None]
    if percent != 0:
        rows.append(responses_row(add_tallies(tallies) if tallies else None, t))
    return [SideRow(r.metric, r.domain, r.legacy, r.pass_when, "-", "judged per host (the hosts' mixes differ)",
                    PASS) if r.metric == "p95 latency" else r for r in rows]


def poolable(windows: Mapping[str, Counters]) -> bool:
    """Windows that may be summed: every implementation's latency buckets with
    the same bounds on every host (an app version with other bounds is not)."""
    layouts = {tuple(b for b, _ in side.buckets) for served in windows.values()
               for side in (served.domain, served.legacy)}
    return len(layouts) == 1


def _others(windows: Mapping[str, Counters], host: str) -> Side | None:
    sides = [served.domain for name, served in windows.items() if name != host]
    if not sides:
        return None
    total = sides[0]
    for side in sides[1:]:
        total = total.plus(side)
    return total


def outlier_rows(windows: Mapping[str, Counters], host: str, t: Thresholds) -> list[SideRow]:
    """``host``'s domain against the pooled domain of the other hosts: its errors
    (ratio beyond the margin and rate beyond the floor) and its P95 (beyond
    ``p95_max_ratio`` x a confident bound of the others'). Two tests per host,
    each at alpha / 2N for N hosts (Bonferroni: the family of a check stays at
    alpha). A host differs from the others for reasons of its own too (its
    backend, its load): an outlier needs its own legacy, on at least
    ``min_requests_per_implementation`` requests, to be better than its domain
    (by the margins); a host whose legacy is as bad, or too thin to tell, is
    not one (the row says which). No rows with a single host."""
    others = _others(windows, host)
    if others is None:
        return []
    mine, own_legacy = windows[host].domain, windows[host].legacy
    strict = replace(t, alpha=t.alpha / (2 * len(windows)))
    ratio = RatioTest(t.error_ratio_margin)
    ratio.update(mine.errors, others.errors, mine.requests, others.requests)
    names = ("host", "others")
    errors = versus_row("errors vs others", names, mine, others, ratio, strict)
    latency = replace(latency_row(mine, others, strict, names), metric="p95 vs others")
    if own_legacy.requests < t.min_requests_per_implementation:
        why = f"n/a: {own_legacy.requests} legacy requests of its own, too few to tell the host from the change"
        return [replace(row, statistic=why, outcome=INCONCLUSIVE) if row.outcome == ABORT else row
                for row in (errors, latency)]
    if mine.error_rate <= t.error_ratio_margin * own_legacy.error_rate:
        errors = replace(errors, statistic=f"{errors.statistic}; its legacy alike", outcome=PASS)
    if p95_within(mine.quantile(LATENCY_QUANTILE), own_legacy.quantile(LATENCY_QUANTILE), t):
        latency = replace(latency, statistic=f"{latency.statistic}; its legacy alike", outcome=PASS)
    return [errors, latency]


def pooled_verdict(rows: list[SideRow], host_verdicts: Mapping[str, str],
                   outliers: Mapping[str, list[SideRow]]) -> tuple[str, str]:
    """The check's verdict: an abort of the pooled block, of any host's own gate
    or of an outlier rule aborts; a pass needs the pooled block to pass and no
    host aborting, failing to read (``error``, ``unreachable``, an aggregate
    breach under way: any other verdict) or outlying (a host whose own window is
    too thin no longer holds the stage back); otherwise inconclusive."""
    pooled_aborts = [r.metric for r in rows if r.outcome == ABORT]
    outlying = sorted(h for h, host_rows in outliers.items() if any(r.outcome == ABORT for r in host_rows))
    aborted = sorted(h for h, v in host_verdicts.items() if v == ABORT)
    failed = sorted(h for h, v in host_verdicts.items() if v not in (PASS, INCONCLUSIVE, ABORT))
    if pooled_aborts:
        return ABORT, f"pooled {', '.join(pooled_aborts)}: domain worse than allowed (sequential test)"
    if aborted or outlying:
        named = [f"{h} aborted" for h in aborted] + [f"{h} an outlier" for h in outlying if h not in aborted]
        return ABORT, "; ".join(named)
    if failed:
        return INCONCLUSIVE, "; ".join(f"{h}: {host_verdicts[h]}" for h in failed)
    if all(r.outcome == PASS for r in rows):
        return PASS, "the pooled windows pass and no host aborts or stands out"
    open_rows = [r.metric + (f" ({r.statistic})" if r.statistic.startswith("needs") else "")
                 for r in rows if r.outcome != PASS]
    return INCONCLUSIVE, f"pooled not yet conclusive: {', '.join(open_rows)}"


def time_to_evidence(needed: Mapping[str, int], rates: Mapping[str, float]) -> str:
    """How long the missing requests take at the observed rates (requests/s per
    implementation): "needs ~430 more domain ≈ 5m at 1.5/s". A rate of zero:
    "no domain request seen yet"."""
    parts, longest = [], 0.0
    for name, count in needed.items():
        if count <= 0:
            continue
        rate = rates.get(name, 0.0)
        if rate <= 0 or not math.isfinite(rate):
            parts.append(f"{count} more {name} (none seen yet: no estimate)")
            longest = math.inf
            continue
        parts.append(f"{count} more {name} at {rate:.2g}/s")
        longest = max(longest, count / rate)
    if not parts:
        return ""
    when = "" if math.isinf(longest) else f" ≈ {_duration(longest)}"
    return f"needs {', '.join(parts)}{when}"


def _duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


#: An estimate of time_to_evidence: "needs N more X at R/s ... ≈ T" or "... (none seen yet: no estimate)".
_WAIT = re.compile(r"needs \d+ more \w+ (?:at |\()[^;]*")


def waiting_for(reasons: Iterable[str]) -> str:
    """What an inconclusive stage waits for, from its hosts' gate reasons: the
    pooled estimate when one says it, else the first host's ("" if none)."""
    found = [m.group(0).strip().removesuffix(")") if m.group(0).count(")") > m.group(0).count("(")
             else m.group(0).strip() for reason in reasons for m in _WAIT.finditer(reason or "")]
    pooled = [f for f in found if f.endswith("pooled")]
    return (pooled or found or [""])[0]

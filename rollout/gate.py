"""The metrics gate: the seed's decision rules as data, judged on what a window
served, in the spirit of an Argo Rollouts AnalysisTemplate (success and failure
conditions, a failure limit, an error limit), with the measurements printed
beside the thresholds.

Pure: the window's counters come from rollout/window.py, the tests from
rollout/sequential.py; fetching the metrics is the caller's. Two kinds of rows
(docs/gate.md says which test each rule uses, and why):

- the seed's **aggregate** rows, host-wide (both implementations together):
  requests, error rate, success rate, P95 against the baseline recorded before
  the change, domain usage against the stage. A breach must hold on
  ``abort_after`` consecutive reads;
- the **side-by-side** rows, the domain implementation against the legacy one
  in the same window on the same host: evidence (requests of each), the
  domain's own error and success rates against the seed's thresholds (what the
  fleet would see at 100 %), its errors against legacy's, its P95 against
  legacy's. Each abort is an anytime-valid sequential test at ``alpha``: it may
  fire on the first read that crosses.

Verdicts:
- ``pass``: every row passes, on at least ``min_requests`` requests and
  ``min_requests_per_implementation`` of each implementation;
- ``abort``: a side-by-side test rejected, or an aggregate breach held;
- ``error``: the metrics could not be read ``max_read_failures`` times in a row,
  or never once: no data never passes;
- ``inconclusive``: neither; keep observing (not promoted, not rolled back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from rollout.project import defaults
from rollout.sequential import RatioTest, format_e, log_e_rate
from rollout.usage import usage_consistent
from rollout.window import Counters, Side, continues, window

PASS, ABORT, ERROR, INCONCLUSIVE = "pass", "abort", "error", "inconclusive"

#: The percentile the latency rules compare (the seed's P95), as a quantile.
LATENCY_PERCENTILE = 95
LATENCY_QUANTILE = LATENCY_PERCENTILE / 100


@dataclass(frozen=True)
class Thresholds:
    """The seed's numbers, and how much evidence a verdict needs. The values are
    the ``gate`` of group_data/all.py (the one place they are set, each explained
    there); a group's ``gate`` overrides them key by key."""

    error_rate_pass_below: float
    error_rate_abort_above: float
    success_rate_pass_above: float
    success_rate_abort_below: float
    p95_max_ratio: float
    p95_min_increase_ms: float
    usage_confidence: float
    min_requests: int
    abort_after: int
    max_read_failures: int
    min_requests_per_implementation: int
    alpha: float
    error_ratio_margin: float
    error_rate_floor: float
    domain_p95_min_increase_ms: float
    responses_differ_tolerated: float
    responses_min_pairs: int

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Thresholds:
        """Build from group data, refusing unknown keys (a typo must not silently
        leave a default in force)."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown gate setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in {**defaults()["gate"], **data}.items():
            whole = known[name].type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"gate setting {name} must be a finite number, got {value!r}")
            if whole and value != int(value):
                raise ValueError(f"gate setting {name} must be a whole number, got {value!r}")
            values[name] = int(value) if whole else float(value)
        missing = sorted(set(known) - set(values))
        if missing:
            raise ValueError(f"gate setting(s) missing: {', '.join(missing)}")
        thresholds = cls(**values)
        thresholds._check_ranges()
        return thresholds

    def _check_ranges(self) -> None:
        """Values that cannot mean what they say (a percent typed for a rate, a
        pass band beyond the abort band) are refused, not silently in force."""
        for name in ("error_rate_pass_below", "error_rate_abort_above", "success_rate_pass_above",
                     "success_rate_abort_below"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"gate setting {name} is a rate in 0..1, got {getattr(self, name)!r}")
        if not 0 < self.usage_confidence < 1:
            raise ValueError(f"gate setting usage_confidence must be between 0 and 1 (e.g. 0.999999), "
                             f"got {self.usage_confidence!r}")
        if self.error_rate_pass_below > self.error_rate_abort_above:
            raise ValueError("gate error_rate_pass_below must not exceed error_rate_abort_above")
        if self.success_rate_pass_above < self.success_rate_abort_below:
            raise ValueError("gate success_rate_pass_above must not be below success_rate_abort_below")
        if not 0 < self.error_rate_abort_above < 1 or not 0 < self.success_rate_abort_below < 1:
            raise ValueError("gate error_rate_abort_above and success_rate_abort_below must be inside (0, 1): "
                             "the domain's own rates are tested against them")
        if self.p95_max_ratio < 1 or self.p95_min_increase_ms < 0 or self.domain_p95_min_increase_ms < 0:
            raise ValueError("gate p95_max_ratio must be >= 1, p95_min_increase_ms and "
                             "domain_p95_min_increase_ms >= 0")
        if (self.min_requests < 1 or self.abort_after < 1 or self.max_read_failures < 1
                or self.min_requests_per_implementation < 1):
            raise ValueError("gate min_requests, min_requests_per_implementation, abort_after and "
                             "max_read_failures must be >= 1")
        if not 0 < self.alpha <= 0.1:
            raise ValueError(f"gate setting alpha is a false-alarm rate in (0, 0.1], got {self.alpha!r}")
        if self.error_ratio_margin < 1:
            raise ValueError(f"gate setting error_ratio_margin must be >= 1, got {self.error_ratio_margin!r}")
        if not 0 <= self.responses_differ_tolerated < 1 or self.responses_min_pairs < 1:
            raise ValueError("gate responses_differ_tolerated is a rate in [0, 1) and responses_min_pairs >= 1")
        if not 0 < self.error_rate_floor < 1:
            raise ValueError(f"gate setting error_rate_floor is a rate in (0, 1), got {self.error_rate_floor!r}")


@dataclass(frozen=True)
class Row:
    """One aggregate line of a verdict table: the observed value next to its conditions."""

    metric: str
    observed: str
    pass_when: str
    abort_when: str
    outcome: str


@dataclass(frozen=True)
class SideRow:
    """One side-by-side line: each implementation's value, the rule, the test's statistic."""

    metric: str
    domain: str
    legacy: str
    pass_when: str
    abort_when: str
    statistic: str
    outcome: str


@dataclass(frozen=True)
class Evaluation:
    outcome: str
    rows: tuple[Row, ...]
    sides: tuple[SideRow, ...] = ()

    def breached(self, kind: str = "any") -> list[str]:
        """Names of the rows that abort: the aggregate ones, the side-by-side ones, or both."""
        names = []
        if kind in ("any", "aggregate"):
            names += [r.metric for r in self.rows if r.outcome == ABORT]
        if kind in ("any", "side"):
            names += [r.metric for r in self.sides if r.outcome == ABORT]
        return names


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


# --- the seed's aggregate rows -----------------------------------------------------------------


def aggregate_rows(served: Counters, baseline_p95_ms: float | None, percent: int, t: Thresholds) -> list[Row]:
    """Host-wide, both implementations together: the seed's criteria on the window."""
    both = served.combined
    rows = [Row("requests", str(both.requests), f">= {t.min_requests}", "-",
                PASS if both.requests >= t.min_requests else INCONCLUSIVE)]

    def banded(metric, observed, passes, aborts, pass_when, abort_when):
        rows.append(Row(metric, observed, pass_when, abort_when,
                        ABORT if aborts else PASS if passes else INCONCLUSIVE))

    error_rate = both.error_rate
    banded("error rate", _pct(error_rate), error_rate < t.error_rate_pass_below,
           error_rate > t.error_rate_abort_above,
           f"< {_pct(t.error_rate_pass_below)}", f"> {_pct(t.error_rate_abort_above)}")
    banded("success rate", _pct(1 - error_rate), 1 - error_rate > t.success_rate_pass_above,
           1 - error_rate < t.success_rate_abort_below,
           f"> {_pct(t.success_rate_pass_above)}", f"< {_pct(t.success_rate_abort_below)}")

    p95 = both.quantile(LATENCY_QUANTILE)
    if baseline_p95_ms is None or p95 is None:
        rows.append(Row("p95 latency", f"{_ms(p95)} (no baseline)" if baseline_p95_ms is None else "-",
                        f"<= {t.p95_max_ratio}x baseline", f"> {t.p95_max_ratio}x baseline", INCONCLUSIVE))
    else:
        limit = max(baseline_p95_ms * t.p95_max_ratio, baseline_p95_ms + t.p95_min_increase_ms)
        ratio = p95 / baseline_p95_ms if baseline_p95_ms > 0 else float("inf")
        banded("p95 latency", f"{p95:.1f} ms ({ratio:.2f}x of {baseline_p95_ms:.1f})",
               p95 <= limit, p95 > limit, f"<= {limit:.1f} ms", f"> {limit:.1f} ms")

    usage = usage_consistent(served.usage_domain, served.usage_requests, percent, t.usage_confidence)
    rows.append(Row("domain usage",
                    f"{usage.domain}/{usage.total} ({_pct(usage.observed_rate)}, p={usage.p_value:.3g})",
                    f"consistent with {percent}%", "-", PASS if usage.consistent else INCONCLUSIVE))
    return rows


# --- side by side: domain against legacy, same host, same window ---------------------------------


def _test(log_e: float, log_needed: float) -> str:
    return f"e={format_e(log_e)} of {format_e(log_needed)}"


def legacy_p95_bound(legacy: Side, log_needed: float) -> float | None:
    """A bucket bound the legacy P95 lies below with confidence: the smallest
    bound at which the share of legacy requests at or below it is shown to
    exceed 95 % (``log_e_rate`` at ``log_needed``). None: not yet shown."""
    for bound, count in legacy.buckets:
        if log_e_rate(count, legacy.requests, LATENCY_QUANTILE) >= log_needed:
            return bound
    return None


def missing(served: Counters, t: Thresholds, percent: int | None = None) -> dict[str, int]:
    """The requests of each implementation the side-by-side block still lacks
    (``min_requests_per_implementation`` each; at stage 100 legacy's are not
    needed, at stage 0 nothing is judged side by side)."""
    if percent == 0:
        return {}
    return {name: t.min_requests_per_implementation - side.requests
            for name, side in (("domain", served.domain), ("legacy", served.legacy))
            if side.requests < t.min_requests_per_implementation and (name == "domain" or percent != 100)}


def p95_within(d95: float | None, l95: float | None, t: Thresholds) -> bool | None:
    """Is the domain's P95 within the limit of legacy's (``p95_max_ratio`` x, at
    least ``domain_p95_min_increase_ms`` above)? A point estimate, not a test;
    None when either side has no requests."""
    if d95 is None or l95 is None:
        return None
    return d95 <= max(l95 * t.p95_max_ratio, l95 + t.domain_p95_min_increase_ms)


def side_rows(served: Counters, ratio: RatioTest, t: Thresholds, percent: int | None = None) -> list[SideRow]:
    """The domain against legacy in the window: evidence, the domain's own rates
    against the seed's thresholds, its errors against legacy's, its P95 against
    legacy's. ``ratio``: the errors-ratio test, already fed the window's reads.
    ``percent``: the stage; at 0 the domain serves nobody and nothing is judged
    side by side, at 100 legacy serves nobody and the comparisons need legacy
    evidence only if some was forced (a test that rejects still aborts)."""
    d, lg = served.domain, served.legacy
    if percent == 0:
        return [SideRow("requests", str(d.requests), str(lg.requests), "-", "-",
                        "stage 0: the domain serves nobody", PASS)]
    legacy_needed = percent != 100
    rows = []

    short = [f"{count} more {name}" for name, count in missing(served, t, percent).items()]
    rows.append(SideRow("requests", str(d.requests), str(lg.requests),
                        f">= {t.min_requests_per_implementation} each", "-",
                        f"needs {', '.join(short)}" if short else "-", INCONCLUSIVE if short else PASS))
    rows.append(SideRow("errors", str(d.errors), str(lg.errors), "-", "-", "-", PASS))
    rows += error_rows(d, lg, ratio, t)
    rows.append(latency_row(d, lg, t))
    if not legacy_needed and lg.requests < t.min_requests_per_implementation:
        # Stage 100 without forced legacy traffic: nothing to compare with; only a rejection counts.
        rows = [r if r.outcome != INCONCLUSIVE or r.metric not in ("errors vs legacy", "p95 latency")
                else SideRow(r.metric, r.domain, r.legacy, r.pass_when, r.abort_when,
                             "n/a: legacy serves nobody at stage 100", PASS) for r in rows]
    return rows


def error_rows(d: Side, lg: Side, ratio: RatioTest, t: Thresholds) -> list[SideRow]:
    """The server-error rows of the side-by-side block: the domain's own rate
    against the seed's thresholds, and its errors against legacy's. Also the
    spot checks' judge of their answers (rollout/verify.py)."""
    log_needed = math.log(1 / t.alpha)
    rows = []
    # The domain alone against the seed's thresholds: what every user would see at 100 %.
    # Success is the complement of server errors: its row is another test only
    # when its thresholds are not the error rate's complements.
    same = (math.isclose(1 - t.success_rate_abort_below, t.error_rate_abort_above)
            and math.isclose(1 - t.success_rate_pass_above, t.error_rate_pass_below))
    for metric, rate, passes, pass_when, p0, abort_when in (
        ("error rate", d.error_rate, d.error_rate < t.error_rate_pass_below,
         f"domain < {_pct(t.error_rate_pass_below)}", t.error_rate_abort_above,
         f"domain > {_pct(t.error_rate_abort_above)}"),
        ("success rate", 1 - d.error_rate, 1 - d.error_rate > t.success_rate_pass_above,
         f"domain > {_pct(t.success_rate_pass_above)}", 1 - t.success_rate_abort_below,
         f"domain < {_pct(t.success_rate_abort_below)}"),
    )[:1 if same else 2]:
        log_e = log_e_rate(d.errors, d.requests, p0)
        outcome = ABORT if log_e >= log_needed else PASS if passes and d.requests else INCONCLUSIVE
        legacy_rate = lg.error_rate if metric == "error rate" else 1 - lg.error_rate
        rows.append(SideRow(f"{metric}", _pct(rate) if d.requests else "-", _pct(legacy_rate) if lg.requests else "-",
                            pass_when, abort_when, _test(log_e, log_needed), outcome))

    rows.append(versus_row("errors vs legacy", ("domain", "legacy"), d, lg, ratio, t))
    return rows


def versus_row(metric: str, names: tuple[str, str], d: Side, lg: Side, ratio: RatioTest, t: Thresholds) -> SideRow:
    """``d``'s errors against ``lg``'s (``ratio``: the test already fed them):
    both a ratio beyond the margin and a rate beyond the floor must be shown (an
    intersection-union test: each at alpha). The domain against legacy, or one
    host's domain against the other hosts' (rollout/pool.py)."""
    log_needed = math.log(1 / t.alpha)
    floor_log_e = log_e_rate(d.errors, d.requests, t.error_rate_floor)
    joint = min(ratio.log_e(), floor_log_e)
    worse = d.error_rate > t.error_ratio_margin * lg.error_rate and d.error_rate > t.error_rate_floor
    outcome = ABORT if joint >= log_needed else INCONCLUSIVE if not (d.requests and lg.requests) or worse else PASS
    mine, theirs = names
    return SideRow(metric, _pct(d.error_rate) if d.requests else "-", _pct(lg.error_rate) if lg.requests else "-",
                   f"{mine} <= {t.error_ratio_margin:g}x {theirs} or <= {_pct(t.error_rate_floor)}",
                   f"{mine} > {t.error_ratio_margin:g}x {theirs} and > {_pct(t.error_rate_floor)}",
                   f"ratio {_test(ratio.log_e(), log_needed)}, floor e={format_e(floor_log_e)}", outcome)


def latency_row(d: Side, lg: Side, t: Thresholds, names: tuple[str, str] = ("domain", "legacy")) -> SideRow:
    """Domain P95 against legacy P95 in the same window (the seed's "P95 increase
    above 50 %"): the limit is ``p95_max_ratio`` x a confident upper bound of the
    legacy P95 (at least ``domain_p95_min_increase_ms`` above it), rounded up to a
    bucket bound; the test asks whether more than 5 % of the domain's requests
    are slower than that. The legacy bound and the domain test run at alpha / 2
    each, valid whichever bound the data pick: counts at or below a bound grow
    with it, so a false rejection at any bound implies one at the worst bound
    whose null holds (docs/gate.md)."""
    d95, l95 = d.quantile(LATENCY_QUANTILE), lg.quantile(LATENCY_QUANTILE)
    bounds = [b for b, _ in d.buckets]
    log_needed = math.log(2 / t.alpha)
    mine, theirs = names
    pass_when = f"{mine} <= {t.p95_max_ratio:g}x {theirs} (+{t.domain_p95_min_increase_ms:g} ms)"
    upper = legacy_p95_bound(lg, log_needed) if lg.requests else None
    if upper is None or not d.requests:
        return SideRow("p95 latency", _ms(d95), _ms(l95), pass_when, "-",
                       f"{theirs} p95 not yet bounded" if d.requests else "-", INCONCLUSIVE)
    limit = max(upper * t.p95_max_ratio, upper + t.domain_p95_min_increase_ms)
    above = [b for b in bounds if b >= limit]
    if not above:
        return SideRow("p95 latency", _ms(d95), _ms(l95), pass_when, "-",
                       f"limit {limit:.0f} ms beyond the last bucket", INCONCLUSIVE)
    limit_bucket = above[0]
    slower = d.requests - d.at_or_below(limit_bucket)
    log_e = log_e_rate(slower, d.requests, 1 - LATENCY_QUANTILE)
    assert d95 is not None and l95 is not None  # both sides served requests (upper is a bound of legacy's)
    passes = bool(p95_within(d95, l95, t))
    outcome = ABORT if log_e >= log_needed else PASS if passes else INCONCLUSIVE
    return SideRow("p95 latency", _ms(d95), _ms(l95), pass_when,
                   f"> 5% of {mine} above {limit_bucket:g} ms",
                   f"{slower}/{d.requests} above, {_test(log_e, log_needed)}", outcome)


def compared_totals(compared: dict[str, Any] | None) -> tuple[int, int]:
    """(pairs compared, pairs that differ) of a tally, over its endpoints."""
    endpoints = [c for c in (compared or {}).values() if isinstance(c, dict)]
    return (sum(int(c.get("pairs") or 0) for c in endpoints), sum(int(c.get("differ") or 0) for c in endpoints))


def responses_row(compared: dict[str, Any] | None, t: Thresholds) -> SideRow:
    """The paired answers compared (a tally of rollout/responses.py, summed over
    the window's streams or the pooled hosts): the share of pairs whose answers
    differ beyond the noise legacy shows against itself, against
    ``responses_differ_tolerated``. At 0 tolerated a single such pair is proof
    (under "no difference" it cannot happen); above, the anytime-valid rate test
    at alpha. A pass needs ``responses_min_pairs`` compared. Without paired
    traffic there is nothing to compare: the row says so and holds nothing."""
    metric, tolerated = "responses differ", t.responses_differ_tolerated
    if compared is None:
        return SideRow(metric, "-", "-", "-", "-", "n/a: no paired traffic", PASS)
    endpoints = {name: c for name, c in compared.items() if isinstance(c, dict)}
    pairs, differ = compared_totals(compared)
    noise = sum(len(c.get("noise") or ()) for c in endpoints.values())
    pass_when = f"<= {_pct(tolerated)} of >= {t.responses_min_pairs} pairs"
    abort_when = f"> {_pct(tolerated)}" + (" (one is proof)" if tolerated == 0 else "")
    observed, learned = f"{differ}/{pairs}", f"{noise} noisy path(s)" if noise else "-"
    worst = max(endpoints.items(), key=lambda item: int(item[1].get("differ") or 0), default=None)
    where = f"{worst[0]}: {worst[1].get('first')}" if worst and differ else ""
    log_needed = math.log(1 / t.alpha)
    if tolerated == 0:
        log_e, statistic = (math.inf if differ else 0.0), where or "-"
    else:
        log_e = log_e_rate(differ, pairs, tolerated)
        statistic = f"{where}, {_test(log_e, log_needed)}" if where else _test(log_e, log_needed)
    if log_e >= log_needed:
        return SideRow(metric, observed, learned, pass_when, abort_when, statistic, ABORT)
    if pairs < t.responses_min_pairs:
        return SideRow(metric, observed, learned, pass_when, abort_when,
                       f"needs {t.responses_min_pairs - pairs} more pairs", INCONCLUSIVE)
    return SideRow(metric, observed, learned, pass_when, abort_when, statistic,
                   PASS if differ <= tolerated * pairs else INCONCLUSIVE)


def _attribute_latency(rows: list[Row], sides: list[SideRow], served: Counters, t: Thresholds) -> list[Row]:
    """A host-wide P95 above the baseline's limit while the domain's P95 is within
    its limit of legacy's, in the same window, on ``min_requests`` of each: the
    host got slower (load, time of day, a shared backend), not the change. That
    breach rolls nothing back (the side-by-side test still judges the domain);
    without a comparison (stage 0, or too few legacy requests, e.g. at stage 100
    without forced legacy traffic) the seed's rule stands alone."""
    d, lg = served.domain, served.legacy
    if not sides or min(d.requests, lg.requests) < t.min_requests:
        return rows
    if not p95_within(d.quantile(LATENCY_QUANTILE), lg.quantile(LATENCY_QUANTILE), t):
        return rows
    return [Row(r.metric, f"{r.observed}; legacy alike", r.pass_when, r.abort_when, INCONCLUSIVE)
            if r.metric == "p95 latency" and r.outcome == ABORT else r for r in rows]


def evaluate(served: Counters, ratio: RatioTest, baseline_p95_ms: float | None, percent: int,
             t: Thresholds, compared: dict[str, Any] | None = None) -> Evaluation:
    """Judge one window: the aggregate rows and the side-by-side rows (with the
    paired answers ``compared``, when paired traffic ran)."""
    sides = side_rows(served, ratio, t, percent)
    if percent != 0:
        sides.append(responses_row(compared, t))
    rows = _attribute_latency(aggregate_rows(served, baseline_p95_ms, percent, t), sides, served, t)
    outcomes = {r.outcome for r in rows} | {r.outcome for r in sides}
    enough = served.combined.requests >= t.min_requests
    if any(r.outcome == ABORT for r in sides):
        outcome = ABORT  # an anytime-valid test: valid on any number of requests
    elif not enough:
        outcome = INCONCLUSIVE  # point estimates on too few requests decide nothing
    elif ABORT in outcomes:
        outcome = ABORT
    elif outcomes == {PASS}:
        outcome = PASS
    else:
        outcome = INCONCLUSIVE
    return Evaluation(outcome, tuple(rows), tuple(sides))


# --- a window of reads ---------------------------------------------------------------------------


def largest_share(step: Counters) -> float | None:
    """The largest domain share among the kinds of requests an increment holds:
    unforced ones (the stage's draw) and forced ones (paired traffic, the
    verification). Under "domain <= margin x legacy", an error is the domain's
    with a probability that grows with the share, so the largest share bounds
    it whenever each kind came: valid for the ratio test even when a fault of a
    shared backend hit one kind of traffic more than the other."""
    unforced_domain, unforced_legacy = step.usage_domain, step.usage_requests - step.usage_domain
    forced_domain = step.domain.requests - unforced_domain
    forced_legacy = step.legacy.requests - unforced_legacy
    shares = [d / (d + lg) for d, lg in ((unforced_domain, unforced_legacy), (forced_domain, forced_legacy))
              if d >= 0 and lg >= 0 and d + lg > 0]
    return max(shares) if shares else None


@dataclass
class GateRun:
    """Reads over a window, folded into one verdict.

    ``base``: the counters the window starts at (None: the instance's start).
    An abort may end the window at any read (its tests are anytime-valid); a
    pass is judged once, on the window's last read: its rows are point
    estimates on a minimum of evidence, and stopping at the first read that
    looks good would let a near-threshold fault through far more often."""

    thresholds: Thresholds
    percent: int
    baseline_p95_ms: float | None
    base: Counters | None = None
    reads: int = 0
    read_failures: int = 0
    breaches: int = 0
    last: Evaluation | None = None
    last_error: str | None = None
    served: Counters | None = None
    latest: Counters | None = None
    decided: str | None = None
    reason: str = ""
    history: list[str] = field(default_factory=list)
    #: The paired answers compared so far in the window (None: no paired traffic).
    compared: dict[str, Any] | None = None
    ratio: RatioTest = field(init=False)

    def __post_init__(self):
        self.ratio = RatioTest(self.thresholds.error_ratio_margin)

    def observe(self, now: Counters | None, error: str | None = None) -> str | None:
        """Fold in one read (cumulative Counters, or the error that made it
        unusable). Returns the verdict once it is final, else None."""
        if self.decided:
            return self.decided
        self.reads += 1
        if now is None:
            self.read_failures += 1
            self.last_error = error or "metrics unreadable"
            self.history.append(f"read {self.reads}: {self.last_error}")
            if self.read_failures >= self.thresholds.max_read_failures:
                self.decided, self.reason = ERROR, (
                    f"metrics unreadable {self.read_failures} times in a row: {self.last_error}"
                )
            return self.decided
        self.read_failures = 0
        self._advance(now)
        assert self.served is not None  # _advance sets it
        self.last = evaluate(self.served, self.ratio, self.baseline_p95_ms, self.percent, self.thresholds,
                             self.compared)
        self.history.append(f"read {self.reads}: {self.last.outcome} ({self.served.domain.requests} domain, "
                            f"{self.served.legacy.requests} legacy)")
        self._decide()
        return self.decided

    def _advance(self, now: Counters) -> None:
        """The window's counters, and the errors-ratio test fed this read's increment."""
        if self.latest is not None and not continues(now, self.latest):
            self.history.append(f"read {self.reads}: counters reset (restart): a new window from the restart")
            self.base, self.latest, self.breaches = None, None, 0
            self.ratio = RatioTest(self.thresholds.error_ratio_margin)
        if self.latest is None:  # the window's first read: its first increment is all it served so far
            self.served, restarted = window(now, self.base)
            if restarted:
                self.history.append(f"read {self.reads}: the window's base is another instance: from the restart")
                self.base = None
            step = self.served
        else:
            self.served, _ = window(now, self.base)
            step = now.minus(self.latest)
        self.ratio.update(step.domain.errors, step.legacy.errors, step.domain.requests, step.legacy.requests,
                          share=largest_share(step))
        self.latest = now

    def _decide(self) -> None:
        assert self.last is not None  # called after a read was evaluated
        side_breaches = self.last.breached("side")
        if side_breaches:
            self.decided = ABORT
            differ = [r for r in self.last.sides if r.metric == "responses differ" and r.outcome == ABORT]
            self.reason = f"{', '.join(side_breaches)}: domain worse than allowed (sequential test)" + (
                f"; answers differ at {differ[0].statistic}" if differ else "")
            return
        if self.last.outcome == ABORT:
            self.breaches += 1
            if self.breaches >= self.thresholds.abort_after:
                self.decided, self.reason = ABORT, (f"{', '.join(self.last.breached('aggregate'))} breached on "
                                                    f"{self.breaches} consecutive reads")
            return
        self.breaches = 0

    def verdict(self) -> tuple[str, str]:
        """The verdict at the end of the window, with its reason."""
        if self.decided:
            return self.decided, self.reason
        if self.last is None:
            return ERROR, f"no usable metrics in {self.reads} read(s): {self.last_error}"
        if self.last.outcome == PASS:
            return PASS, "every promote condition holds"
        open_rows = [r.metric for r in self.last.rows if r.outcome != PASS]
        open_rows += [f"{r.metric} (side by side{': ' + r.statistic if r.statistic.startswith('needs') else ''})"
                      for r in self.last.sides if r.outcome != PASS]
        return INCONCLUSIVE, f"not yet conclusive: {', '.join(open_rows)}"


def format_verdict(host: str, run: GateRun, window_note: str = "") -> list[str]:
    """The verdict table of one host: the aggregate rows, then both
    implementations side by side, observed values beside each threshold."""
    verdict, reason = run.verdict()
    baseline = f"{run.baseline_p95_ms:.1f} ms" if run.baseline_p95_ms is not None else "none"
    lines = [
        (f"gate {host}: {verdict.upper()} - {reason} "
         f"(stage {run.percent}%, baseline p95 {baseline}, {run.reads} read(s)"
         f"{', ' + window_note if window_note else ''})")
    ]

    def result(outcome: str) -> str:
        return outcome if outcome == PASS else outcome.upper()

    if run.last is not None:
        lines.append(f"  {'aggregate':<14} {'observed':<34} {'pass when':<22} {'abort when':<14} result")
        for row in run.last.rows:
            lines.append(f"  {row.metric:<14} {row.observed:<34} {row.pass_when:<22} {row.abort_when:<14} "
                         f"{result(row.outcome)}")
        lines.append(f"  {'side by side':<16} {'domain':<10} {'legacy':<10} {'pass when':<40} "
                     f"{'abort when':<40} {'statistic':<34} result")
        for side in run.last.sides:
            lines.append(f"  {side.metric:<16} {side.domain:<10} {side.legacy:<10} {side.pass_when:<40} "
                         f"{side.abort_when:<40} {side.statistic:<34} {result(side.outcome)}")
    return lines

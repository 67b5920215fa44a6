"""The metrics gate: the seed's decision rules as data, judged on the app's own
metrics, in the spirit of an Argo Rollouts AnalysisTemplate (success and failure
conditions, a failure limit, an error limit).

Pure: reading a metrics answer, judging one sample, and the run of samples over a
soak window are plain functions and objects; fetching metrics is the caller's.

Verdicts:
- ``pass``: every promote condition holds (enough requests, error rate, success
  rate, P95 against the baseline, domain usage consistent with the stage);
- ``abort``: an abort condition held on ``abort_after`` consecutive reads;
- ``error``: the metrics could not be read ``max_read_failures`` times in a row,
  or never once: no data never passes;
- ``inconclusive``: neither; keep observing (not promoted, not rolled back).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from rollout.project import defaults
from rollout.usage import usage_consistent

PASS, ABORT, ERROR, INCONCLUSIVE = "pass", "abort", "error", "inconclusive"

#: The values the gate reads from the metrics; where each sits in the app's JSON
#: is the app's contract: ``metrics_field_defaults`` in group_data/all.py.
METRICS = ("requests", "error_rate", "success_rate", "p95_ms", "usage_requests", "usage_domain")


def field_paths(overrides: dict | None = None, base: dict | None = None) -> dict[str, str]:
    """Every metric's dotted path: ``base`` (the ``metrics_field_defaults``
    setting, group data's when not given) with ``overrides`` (``metrics_fields``)."""
    return {**(base or defaults()["metrics_field_defaults"]), **(overrides or {})}


@dataclass(frozen=True)
class Thresholds:
    """The seed's numbers, and how much evidence a verdict needs. The values are
    the ``gate`` of group_data/all.py (the one place they are set); a group's
    ``gate`` overrides them key by key."""

    error_rate_pass_below: float
    error_rate_abort_above: float
    success_rate_pass_above: float
    success_rate_abort_below: float
    #: P95 may grow to this multiple of the baseline; above it, abort.
    p95_max_ratio: float
    #: A P95 increase smaller than this is noise, never a breach.
    p95_min_increase_ms: float
    #: Confidence of the binomial test of domain usage against the stage.
    usage_confidence: float
    #: No verdict (neither pass nor abort) on fewer requests than this.
    min_requests: int
    #: Consecutive breaching reads before an abort: one noisy read rolls nothing back.
    abort_after: int
    #: Consecutive unreadable metrics answers before the gate errors.
    max_read_failures: int

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> Thresholds:
        """Build from group data, refusing unknown keys (a typo must not silently
        leave a default in force)."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown gate setting(s): {', '.join(unknown)}")
        values = {}
        for name, value in {**defaults()["gate"], **data}.items():
            whole = known[name].type in ("int", int)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"gate setting {name} must be a finite number, got {value!r}")
            if whole and value != int(value):
                raise ValueError(f"gate setting {name} must be a whole number, got {value!r}")
            values[name] = int(value) if whole else float(value)
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
        if self.p95_max_ratio < 1 or self.p95_min_increase_ms < 0:
            raise ValueError("gate p95_max_ratio must be >= 1 and p95_min_increase_ms >= 0")
        if self.min_requests < 1 or self.abort_after < 1 or self.max_read_failures < 1:
            raise ValueError("gate min_requests, abort_after and max_read_failures must be >= 1")


class MetricsError(ValueError):
    """A metrics answer that cannot be used; the message is one line."""


@dataclass(frozen=True)
class Sample:
    requests: int
    error_rate: float
    success_rate: float
    p95_ms: float
    usage_requests: int
    usage_domain: int


def _lookup(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise MetricsError(f"metrics lack the field {path}")
        value = value[part]
    return value


def parse_metrics(
    status: int | None, body: str, content_type: str | None = None, paths: dict | None = None
) -> Sample:
    """Turn one metrics answer into a Sample, or raise MetricsError saying why not:
    no answer, an HTTP error, an empty body, HTML or other non-JSON, a missing
    field, a value of the wrong type or outside its range. ``paths``: every
    metric's path (see ``field_paths``); group data's defaults when not given."""
    paths = field_paths(paths)
    if status is None:
        raise MetricsError("metrics endpoint did not answer")
    if status != 200:
        raise MetricsError(f"metrics endpoint answered HTTP {status}")
    if not body or not body.strip():
        raise MetricsError("metrics answer is empty")
    try:
        document = json.loads(body)
    except ValueError:
        kind = (content_type or "").split(";")[0].strip() or "unknown content type"
        raise MetricsError(f"metrics answer is not JSON ({kind})") from None
    if not isinstance(document, dict):
        raise MetricsError("metrics answer is not a JSON object")

    def number(name: str, integral: bool = False, unit_range: bool = False) -> float:
        value = _lookup(document, paths[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MetricsError(f"metrics field {paths[name]} is not a number: {value!r}")
        if value < 0 or (unit_range and value > 1) or (integral and value != int(value)):
            raise MetricsError(f"metrics field {paths[name]} is out of range: {value!r}")
        return int(value) if integral else float(value)

    sample = Sample(
        requests=number("requests", integral=True),
        error_rate=number("error_rate", unit_range=True),
        success_rate=number("success_rate", unit_range=True),
        p95_ms=number("p95_ms"),
        usage_requests=number("usage_requests", integral=True),
        usage_domain=number("usage_domain", integral=True),
    )
    if sample.usage_domain > sample.usage_requests:
        raise MetricsError("metrics count more domain requests than requests")
    return sample


@dataclass(frozen=True)
class Row:
    """One line of a verdict table: the observed value next to its conditions."""

    metric: str
    observed: str
    pass_when: str
    abort_when: str
    outcome: str


@dataclass(frozen=True)
class Evaluation:
    outcome: str
    rows: tuple[Row, ...]


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def evaluate(sample: Sample, baseline_p95_ms: float | None, percent: int, t: Thresholds) -> Evaluation:
    """Judge one sample against the thresholds, the baseline P95 and the stage."""
    rows = []
    enough = sample.requests >= t.min_requests
    rows.append(Row("requests", str(sample.requests), f">= {t.min_requests}", "-",
                    PASS if enough else INCONCLUSIVE))

    def banded(metric, observed, passes, aborts, pass_when, abort_when):
        outcome = ABORT if aborts else PASS if passes else INCONCLUSIVE
        rows.append(Row(metric, observed, pass_when, abort_when, outcome))

    banded("error rate", _pct(sample.error_rate),
           sample.error_rate < t.error_rate_pass_below, sample.error_rate > t.error_rate_abort_above,
           f"< {_pct(t.error_rate_pass_below)}", f"> {_pct(t.error_rate_abort_above)}")
    banded("success rate", _pct(sample.success_rate),
           sample.success_rate > t.success_rate_pass_above,
           sample.success_rate < t.success_rate_abort_below,
           f"> {_pct(t.success_rate_pass_above)}", f"< {_pct(t.success_rate_abort_below)}")

    if baseline_p95_ms is None:
        rows.append(Row("p95 latency", f"{sample.p95_ms:.1f} ms (no baseline)",
                        f"<= {t.p95_max_ratio}x baseline", f"> {t.p95_max_ratio}x baseline", INCONCLUSIVE))
    else:
        limit = max(baseline_p95_ms * t.p95_max_ratio, baseline_p95_ms + t.p95_min_increase_ms)
        ratio = sample.p95_ms / baseline_p95_ms if baseline_p95_ms > 0 else float("inf")
        banded("p95 latency", f"{sample.p95_ms:.1f} ms ({ratio:.2f}x of {baseline_p95_ms:.1f})",
               sample.p95_ms <= limit, sample.p95_ms > limit,
               f"<= {limit:.1f} ms", f"> {limit:.1f} ms")

    usage = usage_consistent(sample.usage_domain, sample.usage_requests, percent, t.usage_confidence)
    rows.append(Row("domain usage", f"{usage.domain}/{usage.total} ({_pct(usage.observed_rate)}, p={usage.p_value:.3g})",
                    f"consistent with {percent}%", "-", PASS if usage.consistent else INCONCLUSIVE))

    outcomes = {row.outcome for row in rows}
    if not enough:
        outcome = INCONCLUSIVE  # no verdict either way on too few requests
    elif ABORT in outcomes:
        outcome = ABORT
    elif outcomes == {PASS}:
        outcome = PASS
    else:
        outcome = INCONCLUSIVE
    return Evaluation(outcome, tuple(rows))


@dataclass
class GateRun:
    """Reads over a soak window, folded into one verdict."""

    thresholds: Thresholds
    percent: int
    baseline_p95_ms: float | None
    reads: int = 0
    read_failures: int = 0
    breaches: int = 0
    last: Evaluation | None = None
    last_error: str | None = None
    decided: str | None = None
    reason: str = ""
    history: list[str] = field(default_factory=list)

    def observe(self, sample: Sample | None, error: str | None = None) -> str | None:
        """Fold in one read (a Sample, or the error that made it unusable).
        Returns the verdict once it is final (``abort`` or ``error``), else None."""
        if self.decided:
            return self.decided
        self.reads += 1
        if sample is None:
            self.read_failures += 1
            self.last_error = error or "metrics unreadable"
            self.history.append(f"read {self.reads}: {self.last_error}")
            if self.read_failures >= self.thresholds.max_read_failures:
                self.decided, self.reason = ERROR, (
                    f"metrics unreadable {self.read_failures} times in a row: {self.last_error}"
                )
            return self.decided
        self.read_failures = 0
        self.last = evaluate(sample, self.baseline_p95_ms, self.percent, self.thresholds)
        self.history.append(f"read {self.reads}: {self.last.outcome}")
        if self.last.outcome == ABORT:
            self.breaches += 1
            if self.breaches >= self.thresholds.abort_after:
                breached = ", ".join(r.metric for r in self.last.rows if r.outcome == ABORT)
                self.decided, self.reason = ABORT, f"{breached} breached on {self.breaches} consecutive reads"
        else:
            self.breaches = 0
        return self.decided

    def verdict(self) -> tuple[str, str]:
        """The verdict at the end of the window, with its reason."""
        if self.decided:
            return self.decided, self.reason
        if self.last is None:
            return ERROR, f"no usable metrics in {self.reads} read(s): {self.last_error}"
        if self.last.outcome == PASS:
            return PASS, "every promote condition holds"
        open_rows = ", ".join(r.metric for r in self.last.rows if r.outcome != PASS)
        return INCONCLUSIVE, f"not yet conclusive: {open_rows}"


def format_verdict(host: str, run: GateRun) -> list[str]:
    """The verdict table of one host: observed values beside each threshold."""
    verdict, reason = run.verdict()
    baseline = f"{run.baseline_p95_ms:.1f} ms" if run.baseline_p95_ms is not None else "none"
    lines = [
        f"gate {host}: {verdict.upper()} - {reason} "
        f"(stage {run.percent}%, baseline p95 {baseline}, {run.reads} read(s))"
    ]
    if run.last is not None:
        lines.append(f"  {'metric':<14} {'observed':<34} {'pass when':<22} {'abort when':<14} result")
        for row in run.last.rows:
            lines.append(
                f"  {row.metric:<14} {row.observed:<34} {row.pass_when:<22} {row.abort_when:<14} "
                f"{row.outcome.upper() if row.outcome != PASS else row.outcome}"
            )
    return lines

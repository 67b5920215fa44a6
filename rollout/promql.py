"""The gate's Prometheus provider, pure part: the queries as data (PromQL
templates, like Argo Rollouts' AnalysisTemplate and Flagger's MetricTemplate)
filled in for one host, implementation and window, and the server's answers
turned into the same Counters the JSON provider gives (rollout.window).

A read asks, at one instant, for what the window served: ``{{window}}`` is the
window's length so far (``increase()`` over it), ``{{host}}`` the inventory
host's name, ``{{implementation}}`` ``domain`` or ``legacy``. The counters of a
window are estimates from the scrapes (``increase()`` extrapolates to the
window's edges), rounded to whole requests and made consistent (errors and
latency buckets never above the requests).

Never a zero for a missing value: an answer that is not a success, an empty
result (no such series: a wrong label, a target not scraped), more than one
series where one is expected, NaN, an infinity or a negative value is a
MetricsError, which the gate counts as an unreadable read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from rollout.metrics import MetricsError
from rollout.window import IMPLEMENTATIONS, Counters, Side

#: Every query the provider needs; ``prometheus["queries"]`` in group_data/all.py
#: gives each one. Per implementation: requests, errors, latency_buckets (a
#: ``sum by (le)`` of histogram buckets, bounds in seconds); per host: the
#: unforced requests and how many of them the domain served (the stage's draw),
#: the instance (any value that changes when the service restarts, e.g. its
#: start time) and when the host was last scraped (``timestamp()`` of a series:
#: a value scraped before a restart says nothing of the new instance).
#: The gate's providers (``metrics_provider``): the app's JSON endpoint, or Prometheus.
JSON, PROMETHEUS = "json", "prometheus"
PROVIDERS = (JSON, PROMETHEUS)

QUERIES = ("instance", "scraped_at", "usage_requests", "usage_domain", "requests", "errors", "latency_buckets")
PER_IMPLEMENTATION = ("requests", "errors", "latency_buckets")
VARIABLES = ("host", "implementation", "window")

_VARIABLE = re.compile(r"{{\s*([A-Za-z_]+)\s*}}")
#: What a filled-in label value may hold (inventory names): nothing to escape.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]+$")


def check_queries(queries: Any) -> None:
    """Refuse a query set the provider cannot use (ValueError, one line)."""
    if not isinstance(queries, Mapping):
        raise ValueError(f"must be a mapping of query name to PromQL template, got {queries!r}")
    missing = [name for name in QUERIES if name not in queries]
    if missing:
        raise ValueError(f"lacks the quer{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}")
    unknown = sorted(set(queries) - set(QUERIES))
    if unknown:
        raise ValueError(f"unknown query {unknown[0]!r} (known: {', '.join(QUERIES)})")
    for name in QUERIES:
        template = queries[name]
        if not isinstance(template, str) or not template.strip():
            raise ValueError(f"query {name} is not a PromQL template: {template!r}")
        used = set(_VARIABLE.findall(template))
        strange = sorted(used - set(VARIABLES))
        if strange:
            raise ValueError(f"query {name} uses {{{{{strange[0]}}}}}; templates know {', '.join(VARIABLES)}")
        if "host" not in used:
            raise ValueError(f"query {name} does not name {{{{host}}}}: it would read every host at once")
        if name in PER_IMPLEMENTATION and "implementation" not in used:
            raise ValueError(f"query {name} does not name {{{{implementation}}}}")


def window_text(seconds: float) -> str:
    """A PromQL range for ``seconds`` (whole seconds, at least 1)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a window of {seconds!r} s")
    return f"{max(1, math.ceil(seconds))}s"


def fill(template: str, host: str, window_s: float, implementation: str | None = None) -> str:
    """The template with its variables filled in."""
    values = {"host": host, "window": window_text(window_s), "implementation": implementation}
    for name in ("host", "implementation"):
        value = values[name]
        if value is not None and not _LABEL_VALUE.match(value):
            raise ValueError(f"{name} {value!r} cannot be put in a query")

    def one(match: re.Match) -> str:
        value = values[match.group(1)]
        if value is None:
            raise ValueError(f"{{{{{match.group(1)}}}}} has no value here")
        return value
    return _VARIABLE.sub(one, template)


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetricsError(f"prometheus gave {what} a value that is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise MetricsError(f"prometheus gave {what} {value}: no evidence")
    if number < 0:
        raise MetricsError(f"prometheus gave {what} a negative value: {value}")
    return number


def _series(answer: Any, what: str) -> list[dict]:
    """The series of an instant query's answer (the /api/v1/query JSON)."""
    if not isinstance(answer, Mapping):
        raise MetricsError(f"prometheus answered {what} with something that is not JSON")
    if answer.get("status") != "success":
        detail = answer.get("error") or answer.get("errorType") or answer.get("status")
        raise MetricsError(f"prometheus refused {what}: {' '.join(str(detail).split())[:160]}")
    data = answer.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") not in ("vector", "scalar"):
        raise MetricsError(f"prometheus answered {what} with no vector")
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data.get("result")}]
    result = data.get("result")
    if not isinstance(result, list):
        raise MetricsError(f"prometheus answered {what} with no vector")
    if not result:
        raise MetricsError(f"prometheus has no series for {what} (wrong labels, or the target is not scraped)")
    for one in result:
        if (not isinstance(one, Mapping) or not isinstance(one.get("metric"), Mapping)
                or not isinstance(one.get("value"), list) or len(one["value"]) != 2):
            raise MetricsError(f"prometheus answered {what} with a malformed sample")
    return list(result)


def scalar(answer: Any, what: str) -> float:
    """The one value of an instant query answer."""
    series = _series(answer, what)
    if len(series) != 1:
        raise MetricsError(f"prometheus gave {len(series)} series for {what}, not one: the query must aggregate")
    return _finite(series[0]["value"][1], what)


def buckets(answer: Any, what: str) -> tuple[tuple[float, float], ...]:
    """(upper bound ms, requests at or below it), rising, from a ``sum by (le)``
    answer over histogram buckets with bounds in seconds; +Inf left out (it is
    the requests' count)."""
    rows: dict[float, float] = {}
    for one in _series(answer, what):
        le = one["metric"].get("le")
        if le is None:
            raise MetricsError(f"prometheus answered {what} without an le label: the query must sum by (le)")
        try:
            bound = float(le)
        except ValueError:
            raise MetricsError(f"prometheus answered {what} with le={le!r}") from None
        if math.isinf(bound):
            continue
        if not math.isfinite(bound) or bound <= 0:
            raise MetricsError(f"prometheus answered {what} with le={le!r}")
        rows[round(bound * 1000.0, 6)] = _finite(one["value"][1], what)
    if not rows:
        raise MetricsError(f"prometheus has no finite latency buckets for {what}")
    return tuple(sorted(rows.items()))


def _whole(value: float) -> int:
    return math.floor(value + 0.5)


def side(requests: float, errors: float, raw_buckets: tuple[tuple[float, float], ...]) -> Side:
    """One implementation's window: whole requests; errors and each cumulative
    bucket at most the requests, buckets never falling (each series is
    extrapolated on its own, so rounding may disagree by one)."""
    total = _whole(requests)
    kept, running = [], 0
    for bound, count in raw_buckets:
        running = min(total, max(running, _whole(count)))
        kept.append((bound, running))
    return Side(total, min(total, _whole(errors)), tuple(kept))


def counters(instance: float, usage_requests: float, usage_domain: float, sides: Mapping[str, Side]) -> Counters:
    """A window's Counters from the read values."""
    if [b for b, _ in sides["domain"].buckets] != [b for b, _ in sides["legacy"].buckets]:
        raise MetricsError("prometheus gives the two implementations different latency buckets")
    usage = _whole(usage_requests)
    return Counters(instance_id(instance), usage, min(usage, _whole(usage_domain)),
                    sides["domain"], sides["legacy"])


def instance_id(started: float) -> str:
    """The instance query's value as the Counters' instance (a restart changes it)."""
    return f"{started:.3f}"


def window_start(instance_started: float, cursor_at: float | None) -> float:
    """Where a read's window begins: the previous passing check's cursor, never
    before the service instance started (its series carry no instance label, so
    a range across a restart would count the previous instance too)."""
    return instance_started if cursor_at is None else max(instance_started, cursor_at)


def at_least(now: Counters, before: Counters | None) -> Counters:
    """``now`` never below ``before`` of the same instance, value by value: the
    window grows from a fixed start, so a smaller estimate is the extrapolation's
    wobble, not a reset (a reset is another instance)."""
    if before is None or before.instance != now.instance:
        return now

    def one(a: Side, b: Side) -> Side:
        if [u for u, _ in a.buckets] != [u for u, _ in b.buckets]:
            return a
        requests = max(a.requests, b.requests)
        return Side(requests, max(a.errors, b.errors),
                    tuple((u, max(ca, cb)) for (u, ca), (_, cb) in zip(a.buckets, b.buckets)))
    usage = max(now.usage_requests, before.usage_requests)
    return Counters(now.instance, usage, max(now.usage_domain, before.usage_domain),
                    one(now.domain, before.domain), one(now.legacy, before.legacy))


__all__ = ["QUERIES", "IMPLEMENTATIONS", "check_queries", "fill", "scalar", "buckets", "side", "counters",
           "window_start", "at_least", "window_text", "instance_id"]

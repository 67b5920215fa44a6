"""Reading the app's metrics answer into counters (rollout.window.Counters).

Pure. Where each value sits in the app's JSON is the app's contract:
``metrics_field_defaults`` in group_data/all.py, overridden key by key by
``metrics_fields`` (like Argo's jsonPath). Every value must be there and sane:
an empty, non-JSON, NaN or partial answer is an error, never a zero.
"""

from __future__ import annotations

import json
from typing import Any

from rollout.project import defaults
from rollout.window import Counters, Side, is_finite_number

#: The values the gate reads: the instance (a restart changes it), the unforced
#: requests and how many the domain served (the stage's draw), and per
#: implementation the cumulative requests, server errors and latency buckets
#: (a list of [upper bound ms, requests at or below it]).
METRICS = ("instance", "usage_requests", "usage_domain",
           "domain_requests", "domain_errors", "domain_latency_buckets",
           "legacy_requests", "legacy_errors", "legacy_latency_buckets")


class MetricsError(ValueError):
    """A metrics answer that cannot be used; the message is one line."""


def field_paths(overrides: dict | None = None, base: dict | None = None) -> dict[str, str]:
    """Every metric's dotted path: ``base`` (the ``metrics_field_defaults``
    setting, group data's when not given) with ``overrides`` (``metrics_fields``)."""
    return {**(base or defaults()["metrics_field_defaults"]), **(overrides or {})}


def _lookup(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise MetricsError(f"metrics lack the field {path}")
        value = value[part]
    return value


def _count(document: Any, path: str) -> int:
    value = _lookup(document, path)
    if not is_finite_number(value) or value < 0 or value != int(value):
        raise MetricsError(f"metrics field {path} is not a count: {value!r}")
    return int(value)


def _buckets(document: Any, path: str, requests: int) -> tuple[tuple[float, int], ...]:
    value = _lookup(document, path)
    if not isinstance(value, list) or not value:
        raise MetricsError(f"metrics field {path} is not a list of [bound ms, count] buckets")
    buckets, last_bound, last_count = [], 0.0, 0
    for item in value:
        if (not isinstance(item, list) or len(item) != 2 or not is_finite_number(item[0])
                or not is_finite_number(item[1]) or item[1] != int(item[1])):
            raise MetricsError(f"metrics field {path} holds a bucket that is not [bound ms, count]: {item!r}")
        bound, count = float(item[0]), int(item[1])
        if bound <= last_bound or count < last_count:
            raise MetricsError(f"metrics field {path} is not cumulative with rising bounds at {item!r}")
        buckets.append((bound, count))
        last_bound, last_count = bound, count
    if last_count > requests:
        raise MetricsError(f"metrics field {path} counts more requests than were served")
    return tuple(buckets)


def parse_metrics(
    status: int | None, body: str, content_type: str | None = None, paths: dict | None = None
) -> Counters:
    """Turn one metrics answer into Counters, or raise MetricsError saying why not:
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

    instance = _lookup(document, paths["instance"])
    if isinstance(instance, bool) or not isinstance(instance, (str, int)) or instance == "":
        raise MetricsError(f"metrics field {paths['instance']} does not name an instance: {instance!r}")

    def side(name: str) -> Side:
        requests = _count(document, paths[f"{name}_requests"])
        errors = _count(document, paths[f"{name}_errors"])
        if errors > requests:
            raise MetricsError(f"metrics count more {name} errors than {name} requests")
        return Side(requests, errors, _buckets(document, paths[f"{name}_latency_buckets"], requests))

    domain, legacy = side("domain"), side("legacy")
    if [b for b, _ in domain.buckets] != [b for b, _ in legacy.buckets]:
        raise MetricsError("metrics give the two implementations different latency buckets")
    counters = Counters(str(instance), _count(document, paths["usage_requests"]),
                        _count(document, paths["usage_domain"]), domain, legacy)
    if counters.usage_domain > counters.usage_requests:
        raise MetricsError("metrics count more domain requests than requests")
    return counters

"""The gate's Prometheus provider, I/O part: instant queries to the server at
``prometheus["url"]``, from the machine the run executes on, with the
templates of ``prometheus["queries"]`` (rollout/promql.py fills them in and
reads the answers).

The URL may carry credentials (``https://user:token@host``): no message here
names it; an error says what failed (timed out, HTTP 503, the server's error).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from rollout import promql
from rollout.metrics import MetricsError
from rollout.window import Counters


@dataclass(frozen=True)
class Read:
    """One read of a host's window: its counters, when the instance started
    and where the window began (epoch s)."""

    counters: Counters
    instance_started: float
    window_start: float
    at: float


class TooEarly(Exception):
    """The window holds too few scrapes to read yet (``increase()`` needs two)."""

    def __init__(self, wait_s: float):
        super().__init__(f"too early: the window needs about {wait_s:.0f}s more of scrapes")
        self.wait_s = wait_s


def query(settings: Mapping[str, Any], promql_text: str, at: float, what: str) -> Any:
    """One instant query at ``at``; the decoded answer (Prometheus answers its
    errors as JSON too, with a 4xx/5xx status)."""
    url = str(settings["url"]).rstrip("/") + "/api/v1/query"
    try:
        reply = requests.get(url, params={"query": promql_text, "time": f"{at:.3f}"},
                             timeout=float(settings["timeout_s"]))
    except requests.Timeout:
        raise MetricsError(f"prometheus did not answer {what} within {settings['timeout_s']}s") from None
    except requests.RequestException as error:
        raise MetricsError(f"prometheus unreachable for {what} ({type(error).__name__})") from None
    try:
        answer = reply.json()
    except ValueError:
        raise MetricsError(f"prometheus answered {what} with HTTP {reply.status_code} and no JSON") from None
    if reply.status_code != 200 and isinstance(answer, dict) and answer.get("status") == "success":
        raise MetricsError(f"prometheus answered {what} with HTTP {reply.status_code}")
    return answer


def instance_started(settings: Mapping[str, Any], host: str, at: float) -> float:
    """The instance query's value for ``host`` (when its service started)."""
    queries = settings["queries"]
    return promql.scalar(query(settings, promql.fill(queries["instance"], host, 1), at, "instance"),
                         f"{host}'s instance")


def read(settings: Mapping[str, Any], host: str, cursor_at: Callable[[str], float | None] | None,
         at: float, not_before: float | None = None) -> Read:
    """What ``host`` served from its window's start to ``at``: since the time
    ``cursor_at(instance)`` gives (the previous passing check of that service
    instance), never before the instance started. TooEarly when the host was
    not scraped since ``not_before`` (its instance may be from before a
    restart) or the window is shorter than ``min_window_s``."""
    queries = settings["queries"]
    if not_before is not None:
        scraped = promql.scalar(query(settings, promql.fill(queries["scraped_at"], host, 1), at, "scraped_at"),
                                f"{host}'s last scrape")
        if scraped < not_before:
            raise TooEarly(max(1.0, not_before - scraped))
    started = instance_started(settings, host, at)
    start = promql.window_start(started, cursor_at(promql.instance_id(started)) if cursor_at else None)
    window_s = at - start
    if window_s < float(settings["min_window_s"]):
        raise TooEarly(float(settings["min_window_s"]) - window_s)

    def value(name: str, implementation: str | None = None) -> Any:
        what = f"{name} of {host}" + (f" ({implementation})" if implementation else "")
        return query(settings, promql.fill(queries[name], host, window_s, implementation), at, what), what

    sides = {}
    for implementation in promql.IMPLEMENTATIONS:
        requests_answer, requests_what = value("requests", implementation)
        errors_answer, errors_what = value("errors", implementation)
        buckets_answer, buckets_what = value("latency_buckets", implementation)
        sides[implementation] = promql.side(promql.scalar(requests_answer, requests_what),
                                            promql.scalar(errors_answer, errors_what),
                                            promql.buckets(buckets_answer, buckets_what))
    usage_answer, usage_what = value("usage_requests")
    domain_answer, domain_what = value("usage_domain")
    counters = promql.counters(started, promql.scalar(usage_answer, usage_what),
                               promql.scalar(domain_answer, domain_what), sides)
    return Read(counters, started, start, at)

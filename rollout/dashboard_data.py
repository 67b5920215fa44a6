"""What the dashboard draws (rollout/dashboard.py serves it), shaped from
Prometheus' answers or from the hosts' own records. Pure.

The seed's three charts, per host and implementation: the error-rate trend,
the response-time distribution (P50 and P95) and the domain service's usage
(its share of the unforced requests); each host's stage changes as markers and
the gate's current verdict per host.

A value Prometheus cannot give (0/0: no traffic in the window) is a gap in the
line, never a zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: chart -> (title, unit, [(series query, legend template)]); ``{window}`` is the rate
#: window, ``{requests}`` and ``{latency}`` the app's metric names (``prometheus_metric_names``),
#: ``{only}`` the matcher of the environment's hosts (``host_matcher``): a team's Prometheus
#: may scrape other environments' hosts too.
CHARTS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "errors": ("Error rate (5xx share)", "ratio", [
        (('sum by (host, implementation) (rate({requests}{{status_class="5xx",{only}}}[{window}]))'
          " / sum by (host, implementation) (rate({requests}{{{only}}}[{window}]))"),
         "{host} {implementation}"),
    ]),
    "latency": ("Response time (P95 solid, P50 dotted)", "seconds", [
        (("histogram_quantile(0.95, sum by (host, implementation, le) "
          "(rate({latency}_bucket{{{only}}}[{window}])))"), "{host} {implementation} p95"),
        (("histogram_quantile(0.5, sum by (host, implementation, le) "
          "(rate({latency}_bucket{{{only}}}[{window}])))"), "{host} {implementation} p50"),
    ]),
    "usage": ("Domain service usage (share of unforced requests)", "ratio", [
        (('sum by (host) (rate({requests}{{forced="false",implementation="domain",{only}}}[{window}]))'
          ' / sum by (host) (rate({requests}{{forced="false",{only}}}[{window}]))'), "{host} domain"),
    ]),
}
STAGE_QUERY = "max by (host) (rollout_stage_percent{{{only}}})"
VERDICT_QUERIES = {"verdict": "rollout_gate_verdict{{{only}}} == 1",
                   "stage": "max by (host) (rollout_gate_stage_percent{{{only}}})",
                   "at": "max by (host) (rollout_gate_timestamp_seconds{{{only}}})",
                   "current": "max by (host) (rollout_stage_percent{{{only}}})"}


def host_matcher(hosts: list[str] | None) -> str:
    """A PromQL label matcher for exactly these hosts (None: any host)."""
    if not hosts:
        return 'host=~".+"'
    # RE2 takes Python's escapes of punctuation; a PromQL string doubles each backslash.
    return 'host=~"' + "|".join(re.escape(h).replace("\\", "\\\\") for h in sorted(hosts)) + '"'


class SourceError(RuntimeError):
    """A source that gave no usable answer; the message is shown on the page."""


def step_for(range_s: float, points: int = 120) -> float:
    """A query_range step giving about ``points`` points (at least 1 s)."""
    return max(1.0, math.ceil(range_s / points))


def _matrix(answer: Any, what: str) -> list[dict]:
    if not isinstance(answer, Mapping) or answer.get("status") != "success":
        detail = answer.get("error") if isinstance(answer, Mapping) else "not JSON"
        raise SourceError(f"prometheus refused {what}: {detail}")
    data = answer.get("data") or {}
    if data.get("resultType") not in ("matrix", "vector"):
        raise SourceError(f"prometheus answered {what} with {data.get('resultType')!r}")
    return list(data.get("result") or [])


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def series(answer: Any, legend: str, what: str) -> list[dict]:
    """[{"name", "host", "implementation", "points": [[t, v or None], ...]}] from a range answer."""
    shaped = []
    for one in _matrix(answer, what):
        labels = one.get("metric") or {}
        points = [[float(t), _finite(v)] for t, v in one.get("values") or []]
        shaped.append({"name": legend.format_map({"host": labels.get("host", "?"),
                                                  "implementation": labels.get("implementation", "")}).strip(),
                       "host": labels.get("host"), "implementation": labels.get("implementation"),
                       "points": points})
    return sorted(shaped, key=lambda s: s["name"])


def markers(answer: Any) -> list[dict]:
    """Every stage change in a range answer of the hosts' stage: [{"t", "host", "from", "to"}]."""
    found = []
    for one in _matrix(answer, "the stages"):
        host, previous = (one.get("metric") or {}).get("host"), None
        for t, value in one.get("values") or []:
            stage = _finite(value)
            if stage is None:
                continue
            if previous is not None and stage != previous:
                found.append({"t": float(t), "host": host, "from": int(previous), "to": int(stage)})
            previous = stage
    return sorted(found, key=lambda m: (m["t"], m["host"] or ""))


def verdicts(answers: Mapping[str, Any], hosts: list[str] | None = None) -> list[dict]:
    """Per host: the last gate's verdict, the stage it judged, when, and the stage now;
    a row for each of ``hosts`` even when Prometheus has nothing of it (all None)."""
    rows: dict[str, dict] = {host: {} for host in hosts or ()}
    for one in _matrix(answers["verdict"], "the verdicts"):
        labels = one.get("metric") or {}
        if labels.get("host"):
            rows.setdefault(labels["host"], {})["verdict"] = labels.get("verdict")
    for key in ("stage", "at", "current"):
        for one in _matrix(answers[key], f"the verdicts' {key}"):
            host = (one.get("metric") or {}).get("host")
            value = _finite((one.get("value") or [None, None])[1])
            if host and value is not None:
                rows.setdefault(host, {})[key] = value
    return [{"host": host, "verdict": row.get("verdict"), "stage": _int(row.get("stage")),
             "at": row.get("at"), "current_stage": _int(row.get("current"))}
            for host, row in sorted(rows.items())]


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def from_records(statuses: Mapping[str, Mapping], now: float) -> dict:
    """What the hosts recorded (``rollout status``'s read): stage changes from each
    history, the last gate's verdict; no metric series (those need Prometheus)."""
    found, rows = [], []
    for host, status in sorted(statuses.items()):
        previous = None
        for entry in status.get("history") or []:
            stage, at = entry.get("stage"), _epoch(entry.get("time"))
            if isinstance(stage, int) and at is not None:
                if previous is not None and stage != previous:
                    found.append({"t": at, "host": host, "from": previous, "to": stage})
                previous = stage
        gate = status.get("gate_last") or {}
        rows.append({"host": host, "verdict": gate.get("verdict"), "stage": gate.get("stage"),
                     "at": _epoch(gate.get("time")), "current_stage": status.get("file_stage")})
    return {"source": "records", "now": now, "charts": {name: {"title": title, "unit": unit, "series": []}
                                                        for name, (title, unit, _) in CHARTS.items()},
            "markers": sorted(found, key=lambda m: (m["t"], m["host"])), "verdicts": rows,
            "notice": "the hosts record stage changes and verdicts, not metric series: "
                      "the charts need Prometheus (prometheus[\"url\"])"}


def _epoch(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None

"""Metrics answers of the reference service's shape, built from plain numbers."""

import json

from rollout.window import Counters, Side

#: The reference service's bucket bounds (examples/camera_api/src/api/metrics.py).
BOUNDS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300,
          400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)


def buckets(latencies_ms: dict[float, int]) -> list[list[float]]:
    """Cumulative buckets from {latency ms: how many requests took it}."""
    return [[float(b), sum(n for ms, n in latencies_ms.items() if ms <= b)] for b in BOUNDS]


def side(requests: int, errors: int = 0, latencies_ms: dict[float, int] | None = None) -> Side:
    """An implementation's counters; every request at 4 ms unless ``latencies_ms`` says."""
    latencies_ms = latencies_ms if latencies_ms is not None else {4: requests}
    return Side(requests, errors, tuple((b, c) for b, c in buckets(latencies_ms)))


def counters(domain: Side, legacy: Side, usage: tuple[int, int] | None = None, instance: str = "i-1") -> Counters:
    """``usage``: (unforced requests, of which domain); by default all legacy requests unforced."""
    usage = usage if usage is not None else (legacy.requests, 0)
    return Counters(instance, usage[0], usage[1], domain, legacy)


def body(c: Counters, **extra) -> str:
    """The JSON the reference service answers for these counters."""
    def impl(s: Side):
        return {"requests": s.requests, "errors": s.errors, "latency_buckets_ms": [list(b) for b in s.buckets]}
    return json.dumps({"started_at": c.instance, "unforced": {"requests": c.usage_requests, "domain": c.usage_domain},
                       "implementations": {"domain": impl(c.domain), "legacy": impl(c.legacy)}, **extra})

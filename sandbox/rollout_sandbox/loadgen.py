"""A bounded load generator for the zero-downtime drill: mixed GETs and POSTs at
a fixed rate, stopped by a count, a time limit, or its caller.

    python -m rollout_sandbox.loadgen http://127.0.0.1:8080 --rate 40 --count 3000 --max-seconds 300

A request *fails* when it gets no HTTP answer (refused, reset, timed out) or a
5xx; every status is counted. Each request opens its own connection, so a
connection the load balancer closes while idle between two requests is not
counted (a real client retries that case itself).

``summarize`` and ``percentile`` are pure and unit-tested.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

import requests

from rollout.project import defaults

#: Mixed reads and writes on the reference service's seeded cameras: half POSTs.
#: Each can be repeated any number of times and answers 200.
REQUEST_MIX = [
    ("GET", "/api/v1/alerts/rules", None),
    ("POST", "/api/v1/cameras/batch-status", {"camera_ids": ["cam-001", "cam-002", "cam-003"]}),
    ("GET", "/api/v1/cameras/cam-001/status", None),
    ("POST", "/api/v1/cameras/cam-002/activate", None),
    ("GET", "/api/v1/cameras/cam-003/logs?limit=5", None),
    ("POST", "/api/v1/cameras/refresh", None),
]


@dataclass
class Sample:
    at: float               # seconds since the start
    method: str
    path: str
    status: int | None      # None: no HTTP answer
    seconds: float
    error: str = ""
    implementation: str = ""

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(samples: list[Sample]) -> dict:
    """Count, failures (with the first few), statuses, client latency, and which
    implementation answered."""
    latencies = [s.seconds * 1000 for s in samples if s.status is not None]
    failed = [s for s in samples if s.failed]
    return {
        "requests": len(samples),
        "failed": len(failed),
        "posts": sum(1 for s in samples if s.method == "POST"),
        "statuses": dict(sorted(Counter(str(s.status) for s in samples).items())),
        "implementations": dict(sorted(Counter(s.implementation or "-" for s in samples).items())),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "max_ms": max(latencies) if latencies else None,
        "first_failures": [f"{s.at:.1f}s {s.method} {s.path}: {s.status or s.error}" for s in failed[:5]],
    }


class LoadGenerator:
    """``workers`` threads sharing one fixed-rate schedule; ``stop()`` ends it."""

    def __init__(self, base_url: str, rate: float = 40, count: int = 100_000, max_seconds: float = 600,
                 workers: int = 8, timeout_s: float = 10):
        self.base_url, self.rate, self.count = base_url.rstrip("/"), rate, count
        self.max_seconds, self.workers, self.timeout_s = max_seconds, workers, timeout_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ticket = itertools.count()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def _work(self) -> None:
        while not self._stop.is_set():
            number = next(self._ticket)
            if number >= self.count:
                return
            due = self._started + number / self.rate
            if due - self._started > self.max_seconds:
                return
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            method, path, body = REQUEST_MIX[number % len(REQUEST_MIX)]
            self._record(self._send(method, path, body))

    def _send(self, method: str, path: str, body: dict | None) -> Sample:
        at = time.monotonic()
        try:
            answer = requests.request(method, self.base_url + path, json=body, timeout=self.timeout_s,
                                      headers={"Connection": "close"})
            return Sample(at - self._started, method, path, answer.status_code, time.monotonic() - at,
                          implementation=answer.headers.get(defaults()["implementation_header"], ""))
        except requests.RequestException as error:
            return Sample(at - self._started, method, path, None, time.monotonic() - at,
                          error=type(error).__name__)

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def wait(self) -> list[Sample]:
        """Until the count or the time limit is reached."""
        for thread in self._threads:
            thread.join()
        return self.samples

    def stop(self) -> list[Sample]:
        """Stop now; requests in flight finish and are counted."""
        self._stop.set()
        return self.wait()

    def since(self, start_s: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.at >= start_s]

    def elapsed(self) -> float:
        return time.monotonic() - self._started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=40, help="requests per second")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--workers", type=int, default=8)
    options = parser.parse_args()
    generator = LoadGenerator(options.url, options.rate, options.count, options.max_seconds, options.workers)
    summary = summarize(generator.start().wait())
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

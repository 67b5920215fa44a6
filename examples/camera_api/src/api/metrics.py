"""Host-wide request metrics shared by all worker processes of one service instance.

With `uvicorn --workers N` each worker is its own process, so in-memory counters would
report only the worker that happens to answer. The workers share a small SQLite file
instead (WAL, synchronous=OFF: losing the metrics of a crashed host is acceptable):
counters plus a ring of the last WINDOW latencies (slot = n % WINDOW), which makes the
percentiles exact over a sliding window, and per implementation a latency histogram
(Prometheus-style: cumulative since the start, so a reader can diff two snapshots to get
the latencies of any interval, which the ring cannot give once it has wrapped).

The file lives in RUNTIME_DIRECTORY (systemd empties it on every start) or a temp dir,
and its name carries the master pid and that process' start time, so a restarted
service always begins with fresh metrics even when a pid is reused.
"""
import multiprocessing
import os
import sqlite3
import tempfile
import threading
from bisect import bisect_left
from contextlib import contextmanager
from datetime import datetime, timezone
from itertools import accumulate
from pathlib import Path

WINDOW = 20_000
IMPLEMENTATIONS = ("domain", "legacy")
#: Upper bounds (ms, inclusive) of the latency histogram buckets; slower requests fall
#: in the implied +Inf bucket, i.e. they count only in the implementation's requests.
BUCKET_BOUNDS_MS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0,
                    60.0, 80.0, 100.0, 125.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 750.0,
                    1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0)


def bucket_counter(implementation: str, bound_ms: float) -> str:
    """Counter of the requests with bound_ms of the previous bucket < latency <= bound_ms
    (stored per bucket so a request updates one row; the snapshot cumulates)."""
    return f"{implementation}_latency_le_{bound_ms:g}ms"


def bucket_of(implementation: str, latency_ms: float) -> str | None:
    """The counter of the smallest bound >= latency_ms; None above the last bound."""
    index = bisect_left(BUCKET_BOUNDS_MS, latency_ms)
    return bucket_counter(implementation, BUCKET_BOUNDS_MS[index]) if index < len(BUCKET_BOUNDS_MS) else None


COUNTERS = ("requests_total", "errors_total", "domain_requests", "domain_errors",
            "legacy_requests", "legacy_errors", "unforced_requests", "unforced_domain",
            *(bucket_counter(i, b) for i in IMPLEMENTATIONS for b in BUCKET_BOUNDS_MS))


def master_pid() -> int:
    """The uvicorn supervisor's pid for a worker it spawned, else our own pid."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getpid()


def _process_start_ticks(pid: int) -> str:
    """Start time of a process in clock ticks since boot (Linux); '0' where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; 0.0 for an empty window."""
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    low = int(k)
    high = min(low + 1, len(sorted_values) - 1)
    return float(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (k - low))


def implementation_block(counters: dict[str, int], implementation: str) -> dict:
    """requests, errors (status >= 500) and cumulative [bound_ms, count of latency <= bound_ms]."""
    per_bucket = [counters[bucket_counter(implementation, b)] for b in BUCKET_BOUNDS_MS]
    return {"requests": counters[f"{implementation}_requests"],
            "errors": counters[f"{implementation}_errors"],
            "latency_buckets_ms": [[bound, count]
                                   for bound, count in zip(BUCKET_BOUNDS_MS, accumulate(per_bucket))]}


class Metrics:
    def __init__(self, runtime_directory: str | None):
        self.pid = master_pid()
        directory = Path(runtime_directory or Path(tempfile.gettempdir()) / "camera_api-metrics")
        directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale(directory)
        self.path = directory / f"metrics-{self.pid}-{_process_start_ticks(self.pid)}.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = OFF")
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS latency (slot INTEGER PRIMARY KEY, ms REAL NOT NULL)")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('started_at', ?)",
                       (datetime.now(timezone.utc).isoformat(),))
            db.executemany("INSERT OR IGNORE INTO counters VALUES (?, 0)", [(c,) for c in COUNTERS])

    def _remove_stale(self, directory: Path) -> None:
        """Drop files left by service instances whose master process is gone."""
        for old in directory.glob("metrics-*.sqlite3*"):
            pid = old.name.split("-")[1]
            if pid.isdigit() and not _alive(int(pid)):
                old.unlink(missing_ok=True)

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE"):
        """IMMEDIATE takes the write lock up front so concurrent workers queue on busy_timeout."""
        with self._lock:
            self._db.execute(f"BEGIN {mode}")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record(self, implementation: str, status: int, latency_ms: float, forced: bool = False) -> None:
        """Count one rollout request; status >= 500 counts as an error. Requests that
        chose their implementation with ?force_domain are kept out of the usage
        share: only unforced requests show what the rollout draw does."""
        names = ["requests_total", f"{implementation}_requests"]
        if not forced:
            names.append("unforced_requests")
            if implementation == "domain":
                names.append("unforced_domain")
        if status >= 500:
            names += ["errors_total", f"{implementation}_errors"]
        bucket = bucket_of(implementation, latency_ms)
        if bucket is not None:
            names.append(bucket)
        with self._transaction() as db:
            db.execute(f"UPDATE counters SET value = value + 1 WHERE name IN ({','.join('?' * len(names))})",
                       names)
            (total,) = db.execute("SELECT value FROM counters WHERE name = 'requests_total'").fetchone()
            db.execute("INSERT OR REPLACE INTO latency VALUES (?, ?)", ((total - 1) % WINDOW, latency_ms))

    def snapshot(self, use_domain_service: bool, rollout_percent: int) -> dict:
        with self._transaction("DEFERRED") as db:  # one consistent read snapshot
            counters = dict(db.execute("SELECT name, value FROM counters"))
            latencies = sorted(ms for (ms,) in db.execute("SELECT ms FROM latency"))
            (started_at,) = db.execute("SELECT value FROM meta WHERE key = 'started_at'").fetchone()
        total, errors = counters["requests_total"], counters["errors_total"]
        unforced, unforced_domain = counters["unforced_requests"], counters["unforced_domain"]
        error_rate = errors / total if total else 0.0
        return {
            "requests_total": total,
            "errors_total": errors,
            "error_rate": error_rate,
            "success_rate": 1.0 - error_rate,
            "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
                           "p99": percentile(latencies, 0.99), "window": len(latencies)},
            "domain": {"requests": counters["domain_requests"], "errors": counters["domain_errors"],
                       "usage_rate": unforced_domain / unforced if unforced else 0.0},
            "unforced": {"requests": unforced, "domain": unforced_domain},
            "legacy": {"requests": counters["legacy_requests"], "errors": counters["legacy_errors"]},
            "rollout": {"use_domain_service": use_domain_service, "rollout_percent": rollout_percent},
            "started_at": started_at,
            "pid": self.pid,
            "implementations": {i: implementation_block(counters, i) for i in IMPLEMENTATIONS},
        }

    def close(self) -> None:
        self._db.close()

"""The service's Prometheus metrics (GET /metrics), beside the JSON ones of metrics.py.

With `uvicorn --workers N` every worker is a process of its own, so the metrics use
prometheus_client's multiprocess mode: each worker writes its values to files in one
directory, and a scrape sums them. The directory is per service instance (the uvicorn
master's pid and start time, under the runtime directory systemd empties at each start),
so a restarted service starts from zero, as a Prometheus counter reset should.

prometheus_client keeps one set of value files per process (opened on first use) and
picks its value class when it is first imported: the directory is therefore chosen once
per process, and the multiprocess value class is put in place even when something else
in the process imported prometheus_client first (a test run, a plugin).

- camera_api_requests_total{implementation, status_class, forced}: every rollout request
- camera_api_request_duration_seconds{implementation}: its latency (the JSON buckets)
- camera_api_rollout_percent, camera_api_domain_service_enabled: the switch read at start-up
- camera_api_start_time_seconds: when this service instance (the master) started
Every label combination exists from the start, at 0: an absent series is an error for a
reader, never a zero.
"""
import os
import shutil
import tempfile
import time
from pathlib import Path

from .metrics import BUCKET_BOUNDS_MS, IMPLEMENTATIONS, _process_start_ticks, master_pid

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
BUCKETS_S = tuple(bound / 1000.0 for bound in BUCKET_BOUNDS_MS)


def status_class(status: int) -> str:
    """2xx ... 5xx; anything outside 200-599 (or no response) counts as 5xx."""
    return f"{status // 100}xx" if 200 <= status < 600 else "5xx"


def instance_started(pid: int) -> float:
    """When process ``pid`` started (epoch s, from /proc), else now."""
    try:
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
        return btime + int(_process_start_ticks(pid)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return time.time()


_directory: Path | None = None  # this process's multiprocess directory, once chosen


def multiprocess_directory(runtime_directory: str | None) -> Path:
    """The directory this process's workers share (chosen once per process).

    Per service instance: the master's pid and start time, under the runtime directory
    (systemd empties it at each start); in the temporary-directory fallback, the
    directories of instances no longer running are removed."""
    global _directory
    if _directory is not None:
        return _directory
    pid = master_pid()
    base = Path(runtime_directory or Path(tempfile.gettempdir()) / "camera_api-metrics")
    directory = base / f"prometheus-{pid}-{_process_start_ticks(pid)}"
    directory.mkdir(parents=True, exist_ok=True)
    for other in base.glob("prometheus-*-*"):
        _, other_pid, ticks = other.name.split("-", 2)
        if other != directory and other_pid.isdigit() and _process_start_ticks(int(other_pid)) != ticks:
            shutil.rmtree(other, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):  # imported before the variable was set
        values.ValueClass = values.MultiProcessValue()
    _directory = directory
    return directory


class PrometheusMetrics:
    def __init__(self, runtime_directory: str | None, use_domain_service: bool, rollout_percent: int):
        pid = master_pid()
        directory = multiprocess_directory(runtime_directory)
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

        self._registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self._registry, path=str(directory))
        # registry=None: in multiprocess mode the collector reads the files, not the objects.
        self.requests = Counter("camera_api_requests", "Rollout requests by implementation, status class "
                                "and whether force_domain chose the implementation.",
                                ("implementation", "status_class", "forced"), registry=None)
        self.duration = Histogram("camera_api_request_duration_seconds", "Latency of rollout requests.",
                                  ("implementation",), buckets=BUCKETS_S, registry=None)
        for implementation in IMPLEMENTATIONS:
            self.duration.labels(implementation)
            for cls in STATUS_CLASSES:
                for forced in ("true", "false"):
                    self.requests.labels(implementation, cls, forced)
        gauges = {
            "camera_api_rollout_percent": ("ROLLOUT_PERCENT read at start-up.", rollout_percent),
            "camera_api_domain_service_enabled": ("USE_DOMAIN_SERVICE read at start-up (1: on).",
                                                  1 if use_domain_service else 0),
            "camera_api_start_time_seconds": ("When this service instance started (epoch s).",
                                              instance_started(pid)),
        }
        for name, (text, value) in gauges.items():
            Gauge(name, text, registry=None, multiprocess_mode="max").set(value)

    def record(self, implementation: str, status: int, latency_s: float, forced: bool) -> None:
        self.requests.labels(implementation, status_class(status), "true" if forced else "false").inc()
        self.duration.labels(implementation).observe(latency_s)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self._registry), CONTENT_TYPE_LATEST

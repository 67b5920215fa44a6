"""GET /metrics: Prometheus metrics of a real uvicorn with two workers (multiprocess mode)."""
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from src.api.prom import status_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse(text: str) -> dict[str, float]:
    """Sample line -> value (labels sorted as prometheus_client prints them)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


class Uvicorn:
    """`uvicorn --workers 2` on a loopback port, stopped by its own pid."""

    def __init__(self, env: dict, runtime: str):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "src.api.app:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "2"],
            # An inherited PROMETHEUS_MULTIPROC_DIR (this process's) must not be used.
            cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(ROOT), **env, "RUNTIME_DIRECTORY": runtime,
                           "USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "25"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:  # both workers serve once /metrics shows two workers' files... or simply answers
            try:
                if httpx.get(f"{self.url}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, "uvicorn exited at start"
            assert time.monotonic() < deadline, "uvicorn did not answer within 60 s"
            time.sleep(0.1)

    def metrics(self) -> dict[str, float]:
        return parse(httpx.get(f"{self.url}/metrics", timeout=5).text)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def test_status_classes():
    assert [status_class(s) for s in (200, 204, 301, 404, 422, 500, 503, 0, 99)] == \
        ["2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "5xx", "5xx"]


def test_two_workers_count_every_request_once(env, tmp_path):
    server = Uvicorn(env, str(tmp_path / "run"))
    try:
        before = server.metrics()
        for implementation in ("domain", "legacy"):
            for forced in ("true", "false"):
                assert before[f'camera_api_requests_total{{forced="{forced}",implementation="{implementation}",'
                              f'status_class="5xx"}}'] == 0  # every series exists from the start
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda i: httpx.get(f"{server.url}/api/v1/alerts/rules", timeout=10)
                                     .status_code, range(200)))
            forced = list(pool.map(lambda i: httpx.get(f"{server.url}/api/v1/alerts/rules?force_domain=true",
                                                       timeout=10).status_code, range(50)))
        assert set(statuses) == {200} and set(forced) == {200}
        after = server.metrics()
        pids = {httpx.get(f"{server.url}/api/v1/monitoring/metrics", timeout=5).json()["pid"] for _ in range(4)}
        assert len(pids) == 1  # one instance: the master's pid
        unforced = sum(after[f'camera_api_requests_total{{forced="false",implementation="{i}",status_class="2xx"}}']
                       for i in ("domain", "legacy"))
        assert unforced == 200
        assert after['camera_api_requests_total{forced="true",implementation="domain",status_class="2xx"}'] == 50
        count = sum(after[f'camera_api_request_duration_seconds_count{{implementation="{i}"}}']
                    for i in ("domain", "legacy"))
        assert count == 250
        assert after['camera_api_request_duration_seconds_bucket{implementation="domain",le="+Inf"}'] == \
            after['camera_api_request_duration_seconds_count{implementation="domain"}']
        # gauges are the instance's, never summed over the workers
        assert after["camera_api_rollout_percent"] == 25
        assert after["camera_api_domain_service_enabled"] == 1
        started = after["camera_api_start_time_seconds"]
        assert time.time() - 120 < started <= time.time()
        # the JSON endpoint counts the same requests
        document = httpx.get(f"{server.url}/api/v1/monitoring/metrics", timeout=5).json()
        assert document["requests_total"] == 250
    finally:
        server.stop()
    restarted = Uvicorn(env, str(tmp_path / "run"))
    try:
        again = restarted.metrics()
        assert sum(v for k, v in again.items() if k.startswith("camera_api_requests_total")) == 0
        assert again["camera_api_start_time_seconds"] > started
    finally:
        restarted.stop()

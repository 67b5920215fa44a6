"""``rollout dashboard ENV``: a local web page with the seed's three charts,
the stage changes and the gate's verdict per host, refreshing itself.

Served on 127.0.0.1 only, with no login: it shows the fleet's hosts, stages and
verdicts, so it is reached through an SSH tunnel, never exposed (README). The
page (rollout/static/dashboard.html, no external script) polls ``/data``; the
data come from Prometheus when ``prometheus["url"]`` is set, else from what the
hosts recorded (read at most once per refresh period, whatever the number of
browsers). A source that fails is shown on the page as an error, never as an
empty chart. A request whose Host header is not a loopback name is refused: a
web page elsewhere could otherwise read the dashboard through DNS rebinding.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from rollout import dashboard_data as shape
from rollout.inputs import InputError

PAGE = Path(__file__).with_name("static") / "dashboard.html"
#: The names a browser on this machine (or at an SSH tunnel's end) uses for it.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def loopback_host(header: str | None) -> bool:
    """Whether a Host header names this machine's loopback (any port: a tunnel may
    map another local port to ours)."""
    if not header:
        return False
    name = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    return name.lower() in LOOPBACK_NAMES


class PrometheusSource:
    """The charts from Prometheus' query_range, over the last ``range_s``."""

    def __init__(self, url: str, names: dict[str, str], range_s: float, rate_window: str, timeout_s: float = 10,
                 hosts: list[str] | None = None):
        self.url, self.range_s, self.rate_window, self.timeout_s = url.rstrip("/"), range_s, rate_window, timeout_s
        self.names, self.hosts = names, hosts
        self.only = shape.host_matcher(hosts)  # the environment's hosts, not all the server scrapes

    def _get(self, path: str, params: dict, what: str) -> Any:
        try:
            reply = requests.get(f"{self.url}{path}", params=params, timeout=self.timeout_s)
        except requests.RequestException as error:
            raise shape.SourceError(f"prometheus unreachable ({type(error).__name__})") from None
        try:
            return reply.json()
        except ValueError:
            raise shape.SourceError(f"prometheus answered {what} with HTTP {reply.status_code} and no JSON") from None

    def read(self) -> dict:
        now = time.time()
        start, step = now - self.range_s, shape.step_for(self.range_s)
        span = {"start": f"{start:.3f}", "end": f"{now:.3f}", "step": f"{step:g}"}
        charts = {}
        for name, (title, unit, queries) in shape.CHARTS.items():
            lines = []
            for query, legend in queries:
                promql = query.format(window=self.rate_window, only=self.only, **self.names)
                answer = self._get("/api/v1/query_range", {"query": promql, **span}, f"the {name} chart")
                lines += shape.series(answer, legend, f"the {name} chart")
            charts[name] = {"title": title, "unit": unit, "series": lines}
        stages = self._get("/api/v1/query_range", {"query": shape.STAGE_QUERY.format(only=self.only), **span},
                           "the stages")
        instant = {key: self._get("/api/v1/query", {"query": query.format(only=self.only), "time": f"{now:.3f}"},
                                  "the verdicts")
                   for key, query in shape.VERDICT_QUERIES.items()}
        return {"source": "prometheus", "now": now, "start": start, "charts": charts,
                "markers": shape.markers(stages), "verdicts": shape.verdicts(instant, self.hosts)}


class RecordsSource:
    """What the hosts recorded (stage history, last gate), read over SSH."""

    def __init__(self, read_statuses: Callable[[], dict]):
        self.read_statuses = read_statuses

    def read(self) -> dict:
        try:
            statuses = self.read_statuses()
        except Exception as error:  # noqa: BLE001 - shown on the page, the server goes on
            raise shape.SourceError(f"the hosts could not be read: {error}") from None
        return shape.from_records(statuses, time.time())


class Cache:
    """The source read at most once per ``refresh_s``, whoever asks."""

    def __init__(self, source, refresh_s: float):
        self.source, self.refresh_s = source, refresh_s
        self.lock = threading.Lock()
        self.value: dict | None = None
        self.at = 0.0

    def get(self) -> dict:
        with self.lock:
            if self.value is None or time.monotonic() - self.at >= self.refresh_s:
                try:
                    self.value = self.source.read()
                except shape.SourceError as error:
                    self.value = {"error": str(error), "now": time.time()}
                self.at = time.monotonic()
            return self.value


def serve(cache: Cache, env: str, port: int, refresh_s: float, ready: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve the page and ``/data`` on 127.0.0.1:``port`` until ``stop`` is set
    (or Ctrl-C)."""
    # The name goes into a script: "<" escaped, so a name holding "</script>" stays a string.
    page = (PAGE.read_text().replace("__ENV__", json.dumps(env).replace("<", "\\u003c"))
            .replace("__REFRESH_MS__", str(int(refresh_s * 1000))))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if not loopback_host(self.headers.get("Host")):
                self.send_error(403, "reach the dashboard as http://127.0.0.1:PORT/ (an SSH tunnel keeps that name)")
                return
            if self.path == "/" or self.path.startswith("/?"):
                body, kind = page.encode(), "text/html; charset=utf-8"
            elif self.path == "/data":
                body, kind = json.dumps(cache.get()).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as error:
        raise InputError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({error.strerror or error})") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stop = stop or threading.Event()
    # Ctrl-C and SIGTERM set the event rather than raise: pyinfra's gevent makes the
    # server's threads greenlets of the main thread, and a KeyboardInterrupt raised
    # while one of them ran (a request just answered) ended that greenlet, not the
    # loop below, which then served on (seen under load).
    handled = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in handled}
    if ready:
        ready(f"http://127.0.0.1:{server.server_port}/")
    try:
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.shutdown()
        server.server_close()

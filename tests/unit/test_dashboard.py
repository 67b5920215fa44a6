"""The dashboard: its data shaped from Prometheus answers and host records
(rollout/dashboard_data.py), and its page in a real headless Chromium
(tests/browser.py) against a loopback server answering like Prometheus."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from rollout import dashboard, dashboard_data
from rollout.project import defaults

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser import Browser

HOSTS = ("camera-1", "camera-2")


def matrix(*series) -> dict:
    return {"status": "success", "data": {"resultType": "matrix",
                                          "result": [{"metric": m, "values": v} for m, v in series]}}


def vector(*series) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [0, v]} for m, v in series]}}


def test_series_keep_gaps_where_prometheus_has_no_value():
    answer = matrix(({"host": "camera-1", "implementation": "domain"}, [[10, "0.01"], [20, "NaN"], [30, "0.2"]]))
    (line,) = dashboard_data.series(answer, "{host} {implementation}", "errors")
    assert line["name"] == "camera-1 domain" and line["points"] == [[10.0, 0.01], [20.0, None], [30.0, 0.2]]


def test_markers_are_the_stage_changes():
    answer = matrix(({"host": "camera-1"}, [[10, "0"], [20, "10"], [30, "10"], [40, "0"]]),
                    ({"host": "camera-2"}, [[10, "10"], [20, "10"]]))
    assert dashboard_data.markers(answer) == [{"t": 20.0, "host": "camera-1", "from": 0, "to": 10},
                                              {"t": 40.0, "host": "camera-1", "from": 10, "to": 0}]


def test_a_refused_query_is_an_error_not_an_empty_chart():
    with pytest.raises(dashboard_data.SourceError, match="refused the errors chart: bad_data"):
        dashboard_data.series({"status": "error", "error": "bad_data"}, "{host}", "the errors chart")


def test_records_give_markers_and_verdicts_without_series():
    statuses = {"camera-1": {"file_stage": 25, "gate_last": {"verdict": "pass", "stage": 25,
                                                             "time": "2026-11-24T01:00:00+00:00"},
                             "history": [{"stage": 10, "time": "2026-11-23T01:00:00+00:00"},
                                         {"stage": 25, "time": "2026-11-24T00:00:00+00:00"}]}}
    data = dashboard_data.from_records(statuses, 0.0)
    assert data["markers"] == [{"t": datetime(2026, 11, 24, tzinfo=timezone.utc).timestamp(), "host": "camera-1",
                                "from": 10, "to": 25}]
    assert data["verdicts"][0]["verdict"] == "pass" and data["verdicts"][0]["current_stage"] == 25
    assert all(chart["series"] == [] for chart in data["charts"].values()) and "need Prometheus" in data["notice"]


# --- in a real browser ---------------------------------------------------------------------------


class FakePrometheus:
    """Answers query_range and query like Prometheus, for two hosts: a healthy
    stage 25, then camera-2's domain fails and camera-2 is rolled back."""

    def __init__(self, broken: bool = False):
        outer = self
        self.queries: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if broken:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"<html>down</html>")
                    return
                params = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                body = json.dumps(outer.answer(urlsplit(self.path).path, params)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def answer(self, path: str, params: dict) -> dict:
        query = params["query"]
        self.queries.append(query)
        if path.endswith("/query"):
            if "rollout_gate_verdict" in query:
                return vector(({"host": "camera-1", "verdict": "pass"}, "1"),
                              ({"host": "camera-2", "verdict": "abort"}, "1"))
            if "timestamp" in query:
                return vector(*[({"host": h}, str(time.time() - 30)) for h in HOSTS])
            return vector(({"host": "camera-1"}, "25"), ({"host": "camera-2"}, "0"))
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        times = [start + i * step for i in range(int((end - start) / step) + 1)]
        fault = start + (end - start) * 0.6

        def values(f):
            return [[t, str(f(t))] for t in times]
        if query.startswith("max by (host) (rollout_stage_percent"):
            return matrix(({"host": "camera-1"}, values(lambda t: 25 if t > start + 60 else 10)),
                          ({"host": "camera-2"},
                           values(lambda t: 0 if t > fault + 30 else 25 if t > start + 60 else 10)))
        if "histogram_quantile" in query:
            return matrix(*[({"host": h, "implementation": i}, values(lambda t, i=i: 0.012 if i == "domain" else 0.009))
                            for h in HOSTS for i in ("domain", "legacy")])
        if 'forced="false",implementation="domain"' in query:
            return matrix(*[({"host": h}, values(lambda t: 0.25)) for h in HOSTS])
        return matrix(*[({"host": h, "implementation": i},
                         values(lambda t, h=h, i=i: 0.2 if (h, i) == ("camera-2", "domain") and t > fault else 0.001))
                        for h in HOSTS for i in ("domain", "legacy")])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served():
    started = []

    def start(broken: bool = False) -> str:
        prometheus = FakePrometheus(broken)
        cache = dashboard.Cache(
            dashboard.PrometheusSource(prometheus.url, defaults()["prometheus_metric_names"], 3600, "1m"), 1.0)
        stop, where = threading.Event(), []
        thread = threading.Thread(target=dashboard.serve, args=(cache, "sandbox", 0, 1.0),
                                  kwargs={"ready": where.append, "stop": stop}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not where:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)
        started.append((prometheus, stop, thread))
        return where[0]
    yield start
    for prometheus, stop, thread in started:
        stop.set()
        thread.join(10)
        prometheus.close()


def test_the_page_draws_three_charts_markers_and_verdicts_without_a_console_error(served, tmp_path):
    url = served()
    with Browser() as browser:
        browser.open(url)
        browser.wait_for("document.body.dataset.ready === 'yes'", 60, "the page's first drawing")
        counts = browser.evaluate("['errors','latency','usage'].map(n => "
                                  "document.querySelectorAll('#chart-' + n + ' path.series').length)")
        markers = browser.evaluate("document.querySelectorAll('#chart-errors line.marker').length")
        rows = browser.evaluate("[...document.querySelectorAll('#verdicts tbody tr')].map(r => r.innerText)")
        banner = browser.evaluate("document.getElementById('banner').className")
        # it refreshes itself: a later drawing replaces the first
        first = browser.evaluate("document.getElementById('meta').textContent")
        browser.wait_for(f"document.getElementById('meta').textContent !== {json.dumps(first)}", 30, "a refresh")
        browser.drain(0.5)
        browser.screenshot(tmp_path / "dashboard.png")
    assert browser.errors == []
    assert counts == [4, 8, 2], counts  # 2 hosts x 2 implementations; P95 and P50; one usage line per host
    assert markers >= 2  # the promotion to 25 and camera-2's rollback
    assert any("camera-1" in r and "pass" in r for r in rows) and any("camera-2" in r and "abort" in r for r in rows)
    assert banner == ""
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_an_unreachable_source_shows_an_error_not_empty_charts(served):
    url = served(broken=True)
    with Browser() as browser:
        browser.open(url)
        message = browser.wait_for("document.body.dataset.error", 60, "the page's error")
        banner = browser.evaluate("document.getElementById('banner').innerText")
        ready = browser.evaluate("document.body.dataset.ready || ''")
        assert browser.errors == []
        browser.evaluate("setTimeout(() => console.error('a probe of the collector'), 0)")
        browser.drain(0.5)
    assert any("a probe of the collector" in e for e in browser.errors)  # the error check can fail
    assert "HTTP 503" in message and "No data" in banner
    assert ready == ""


def test_a_foreign_host_header_is_refused(served):
    """DNS rebinding: a page at evil.example whose name now points at 127.0.0.1
    must not read the dashboard; the loopback names (any port: a tunnel) may."""
    import requests

    url = served()
    assert requests.get(url + "data", headers={"Host": "evil.example:8765"}, timeout=10).status_code == 403
    assert requests.get(url, headers={"Host": "rebind.evil.example"}, timeout=10).status_code == 403
    for name in ("localhost:9000", "127.0.0.1:8765", "[::1]:8765"):
        assert requests.get(url + "data", headers={"Host": name}, timeout=10).status_code == 200, name


def test_a_port_in_use_is_one_clear_line():
    import socket

    from rollout.inputs import InputError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"--port {port}: cannot listen on 127.0.0.1:{port}"):
            dashboard.serve(dashboard.Cache(dashboard.RecordsSource(dict), 1.0), "sandbox", port, 1.0)


def test_prometheus_is_asked_for_the_environment_s_hosts_only():
    """A team's Prometheus scrapes other environments too: every query is limited
    to the inventory's hosts, and a host Prometheus knows nothing of still has its row."""
    prometheus = FakePrometheus()
    try:
        source = dashboard.PrometheusSource(prometheus.url, defaults()["prometheus_metric_names"], 3600, "1m",
                                            hosts=["camera-1", "camera-2", "camera-9"])
        data = source.read()
    finally:
        prometheus.close()
    only = 'host=~"camera\\\\-1|camera\\\\-2|camera\\\\-9"'
    assert prometheus.queries and all(q.count("host=~") == q.count("{") for q in prometheus.queries), prometheus.queries
    assert all(only in q for q in prometheus.queries), prometheus.queries
    rows = {row["host"]: row for row in data["verdicts"]}
    assert set(rows) == {"camera-1", "camera-2", "camera-9"}
    assert rows["camera-9"]["verdict"] is None and rows["camera-9"]["current_stage"] is None
    assert rows["camera-2"]["verdict"] == "abort"


def test_an_environment_name_cannot_end_the_page_s_script():
    import requests

    stop, where = threading.Event(), []
    env = "prod</script><script>document.title='owned'</script>"
    cache = dashboard.Cache(dashboard.RecordsSource(dict), 1.0)
    thread = threading.Thread(target=dashboard.serve, args=(cache, env, 0, 1.0),
                              kwargs={"ready": where.append, "stop": stop}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not where:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)
        page = requests.get(where[0], timeout=10).text
    finally:
        stop.set()
        thread.join(10)
    assert "<script>document.title" not in page and "prod\\u003c/script>" in page

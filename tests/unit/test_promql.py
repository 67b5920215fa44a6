"""The gate's Prometheus provider: templates filled in, answers read, never a
zero for missing evidence (rollout/promql.py), and a read against a loopback
server answering like Prometheus' /api/v1/query (rollout/prometheus.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from rollout import prometheus, promql
from rollout.metrics import MetricsError
from rollout.project import defaults
from rollout.window import Counters, Side

QUERIES = defaults()["prometheus"]["queries"]


def vector(*samples: tuple[dict, str]) -> dict:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [1.0, v]} for m, v in samples]}}


def test_the_default_queries_are_a_valid_set():
    promql.check_queries(QUERIES)


@pytest.mark.parametrize("change, message", [
    ({"instance": "max(camera_api_start_time_seconds)"}, "does not name {{host}}"),
    ({"errors": 'sum(x{host="{{host}}"})'}, "does not name {{implementation}}"),
    ({"errors": 'sum(x{host="{{host}}",i="{{impl}}"})'}, "uses {{impl}}"),
    ({"requests": ""}, "is not a PromQL template"),
    ({"p99": 'x{host="{{host}}"}'}, "unknown query 'p99'"),
])
def test_a_query_set_the_provider_cannot_use_is_refused(change, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        promql.check_queries({**QUERIES, **change})


def test_fill_puts_host_implementation_and_window_in():
    text = promql.fill(QUERIES["errors"], "camera-1", 92.2, "domain")
    assert 'host="camera-1"' in text and 'implementation="domain"' in text and "[93s]" in text
    assert "{{" not in text
    with pytest.raises(ValueError, match="cannot be put in a query"):
        promql.fill(QUERIES["errors"], 'camera-1"} or vector(1) #', 60, "domain")
    with pytest.raises(ValueError, match="has no value"):
        promql.fill(QUERIES["errors"], "camera-1", 60)


@pytest.mark.parametrize("answer, message", [
    ({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}, "refused .*parse error"),
    (vector(), "no series"),
    (vector(({}, "NaN")), "no evidence"),
    (vector(({}, "+Inf")), "no evidence"),
    (vector(({}, "-3")), "negative"),
    (vector(({"a": "1"}, "3"), ({"a": "2"}, "4")), "2 series"),
    ("<html>", "not JSON"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "no vector"),
])
def test_an_answer_without_evidence_is_an_error_never_a_zero(answer, message):
    with pytest.raises(MetricsError, match=message):
        promql.scalar(answer, "errors of camera-1")


def test_buckets_are_read_in_ms_rising_without_inf():
    answer = vector(({"le": "+Inf"}, "100"), ({"le": "0.01"}, "90"), ({"le": "0.001"}, "10"), ({"le": "0.005"}, "70"))
    assert promql.buckets(answer, "b") == ((1.0, 10.0), (5.0, 70.0), (10.0, 90.0))
    with pytest.raises(MetricsError, match="without an le label"):
        promql.buckets(vector(({}, "3")), "b")


def test_a_side_is_whole_and_consistent():
    side = promql.side(100.4, 3.6, ((1.0, 40.2), (5.0, 39.9), (10.0, 101.0)))
    assert side == Side(100, 4, ((1.0, 40), (5.0, 40), (10.0, 100)))


def test_the_window_never_starts_before_the_instance():
    assert promql.window_start(1000.0, None) == 1000.0
    assert promql.window_start(1000.0, 900.0) == 1000.0
    assert promql.window_start(1000.0, 1100.0) == 1100.0


def test_at_least_absorbs_the_extrapolations_wobble_but_not_a_restart():
    a = Counters("1.000", 10, 1, Side(50, 2, ((1.0, 30),)), Side(40, 0, ((1.0, 20),)))
    b = Counters("1.000", 9, 2, Side(49, 3, ((1.0, 31),)), Side(41, 0, ((1.0, 19),)))
    merged = promql.at_least(b, a)
    assert merged == Counters("1.000", 10, 2, Side(50, 3, ((1.0, 31),)), Side(41, 0, ((1.0, 20),)))
    other = Counters("2.000", 1, 0, Side(1, 0, ((1.0, 1),)), Side(0, 0, ((1.0, 0),)))
    assert promql.at_least(other, a) is other


# --- a read against a server answering like Prometheus --------------------------------------------


class FakePrometheus:
    """A loopback HTTP server answering /api/v1/query from a table (query -> answer)."""

    def __init__(self, answers):
        self.answers, self.queries = answers, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                params = parse_qs(urlsplit(self.path).query)
                query = params["query"][0]
                outer.queries.append((query, float(params["time"][0])))
                answer = outer.answers(query)
                body = json.dumps(answer).encode()
                self.send_response(400 if answer.get("status") == "error" else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def healthy(query: str) -> dict:
    if query.startswith("max(timestamp("):
        return vector(({}, "1990.0"))
    if query.startswith("max(camera_api_start_time_seconds"):
        return vector(({}, "1000.0"))
    if "_bucket" in query:
        return vector(({"le": "0.005"}, "80"), ({"le": "0.01"}, "99.6"), ({"le": "+Inf"}, "100"))
    if 'status_class="5xx"' in query:
        return vector(({}, "2.2") if 'implementation="domain"' in query else ({}, "0"))
    if 'forced="false"' in query:
        return vector(({}, "30") if 'implementation="domain"' in query else ({}, "300"))
    return vector(({}, "100.3"))


@pytest.fixture
def server():
    servers = []

    def start(answers):
        servers.append(FakePrometheus(answers))
        return servers[-1]
    yield start
    for one in servers:
        one.close()


def settings(url: str) -> dict:
    return {**defaults()["prometheus"], "url": url, "min_window_s": 10, "timeout_s": 5}


def test_a_read_gives_the_windows_counters(server):
    fake = server(healthy)
    read = prometheus.read(settings(fake.url), "camera-1", lambda instance: 1500.0, 2000.0, not_before=1980.0)
    assert read.window_start == 1500.0 and read.instance_started == 1000.0
    assert read.counters == Counters("1000.000", 300, 30, Side(100, 2, ((5.0, 80), (10.0, 100))),
                                     Side(100, 0, ((5.0, 80), (10.0, 100))))
    windows = {q.split("[")[1].split("]")[0] for q, _ in fake.queries if "[" in q}
    assert windows == {"500s"} and {t for _, t in fake.queries} == {2000.0}


def test_a_read_waits_for_a_scrape_after_the_restart_and_for_a_long_enough_window(server):
    fake = server(healthy)
    with pytest.raises(prometheus.TooEarly):
        prometheus.read(settings(fake.url), "camera-1", None, 2000.0, not_before=1995.0)  # scraped at 1990
    with pytest.raises(prometheus.TooEarly):
        prometheus.read(settings(fake.url), "camera-1", lambda instance: 1995.0, 2000.0)  # a 5 s window


@pytest.mark.parametrize("broken, message", [
    (lambda q: {"status": "error", "errorType": "bad_data", "error": "parse error"}, "refused"),
    (lambda q: vector() if "_bucket" in q else healthy(q), "no series"),
    (lambda q: vector(({}, "NaN")) if "5xx" in q else healthy(q), "no evidence"),
])
def test_a_broken_answer_is_an_error(server, broken, message):
    fake = server(broken)
    with pytest.raises(MetricsError, match=message):
        prometheus.read(settings(fake.url), "camera-1", None, 2000.0)


def test_an_unreachable_server_is_an_error_that_does_not_show_the_url():
    with pytest.raises(MetricsError) as caught:
        prometheus.read(settings("http://ops:s3cret@127.0.0.1:9"), "camera-1", None, 2000.0)
    assert "unreachable" in str(caught.value) and "s3cret" not in str(caught.value)

"""The load generator's pure part: what counts as failed, and the client P95."""

from rollout_sandbox.loadgen import Sample, percentile, summarize


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 95) == 95.0
    assert percentile(values, 50) == 50.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) is None


def test_no_answer_and_5xx_fail_a_4xx_does_not():
    samples = [
        Sample(0.1, "GET", "/a", 200, 0.010, implementation="legacy"),
        Sample(0.2, "POST", "/b", 502, 0.003),
        Sample(0.3, "POST", "/b", None, 2.0, error="ConnectionError"),
        Sample(0.4, "GET", "/a", 404, 0.020, implementation="domain"),
    ]
    summary = summarize(samples)
    assert summary["requests"] == 4
    assert summary["failed"] == 2
    assert summary["posts"] == 2
    assert summary["statuses"] == {"200": 1, "404": 1, "502": 1, "None": 1}
    assert summary["implementations"] == {"-": 2, "domain": 1, "legacy": 1}
    # Latency only of answered requests (the unanswered one has none to report).
    assert summary["max_ms"] == 20.0
    assert summary["first_failures"] == ["0.2s POST /b: 502", "0.3s POST /b: ConnectionError"]

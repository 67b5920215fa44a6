"""Health, host-wide metrics, and secrets staying out of responses and logs."""
import logging
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from backing_services import free_port
from src.api import metrics as metrics_module
from src.api.factory import create_app
from src.api.metrics import Metrics, percentile
from src.api.settings import Settings

HEALTH = "/api/v1/monitoring/health"
METRICS = "/api/v1/monitoring/metrics"
STATUS = "/api/v1/cameras/cam-001/status"


def closed_port_redis() -> str:
    return f"redis://:s3cret-unused@127.0.0.1:{free_port()}/0"


def test_health_ok(client):
    response = client.get(HEALTH)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["redis"]) == ("ok", True, True)
    assert body["rollout"] == {"use_domain_service": False, "rollout_percent": 0}
    assert isinstance(body["pid"], int) and body["hostname"]
    assert "X-Rollout-Implementation" not in response.headers


def test_health_degraded_when_redis_is_down(make_client):
    response = make_client(REDIS_URL=closed_port_redis()).get(HEALTH)
    assert response.status_code == 503
    assert {k: response.json()[k] for k in ("status", "database", "redis")} == \
        {"status": "degraded", "database": True, "redis": False}


def test_health_degraded_when_postgres_is_down(make_client):
    response = make_client(DATABASE_URL=f"postgresql://camera:x@127.0.0.1:{free_port()}/camera").get(HEALTH)
    assert response.status_code == 503 and response.json()["database"] is False


def test_metrics_start_empty(client):
    body = client.get(METRICS).json()
    assert (body["requests_total"], body["errors_total"], body["error_rate"], body["success_rate"]) == (0, 0, 0.0, 1.0)
    assert body["latency_ms"]["p50"] == body["latency_ms"]["p99"] == 0.0
    assert body["domain"] == {"requests": 0, "errors": 0, "usage_rate": 0.0}
    assert body["unforced"] == {"requests": 0, "domain": 0}


def test_metrics_count_requests_errors_and_domain_usage(make_client):
    client = make_client(DOMAIN_ERROR_RATE="1.0", USE_DOMAIN_SERVICE="true", ROLLOUT_PERCENT="25")
    for _ in range(4):
        assert client.get(STATUS, params={"force_domain": "true"}).status_code == 500
    for _ in range(5):
        assert client.get(STATUS, params={"force_domain": "false"}).status_code == 200
    assert client.get("/api/v1/cameras/ghost/status", params={"force_domain": "false"}).status_code == 404
    client.get(HEALTH)  # monitoring calls are not counted
    client.get(METRICS)
    body = client.get(METRICS).json()
    assert (body["requests_total"], body["errors_total"]) == (10, 4)
    assert body["error_rate"] == pytest.approx(0.4) and body["success_rate"] == pytest.approx(0.6)
    # usage_rate counts unforced requests only; every request here was forced
    assert body["domain"] == {"requests": 4, "errors": 4, "usage_rate": 0.0}
    assert body["unforced"] == {"requests": 0, "domain": 0}
    assert body["legacy"] == {"requests": 6, "errors": 0}
    assert body["rollout"] == {"use_domain_service": True, "rollout_percent": 25}
    latency = body["latency_ms"]
    assert 0.0 < latency["p50"] <= latency["p95"] <= latency["p99"] and latency["window"] == 10
    datetime.fromisoformat(body["started_at"])
    assert isinstance(body["pid"], int)


def test_usage_rate_follows_unforced_requests_only(make_client):
    client = make_client(USE_DOMAIN_SERVICE="true", ROLLOUT_PERCENT="100")
    for _ in range(3):
        assert client.get(STATUS).status_code == 200
    for _ in range(5):
        assert client.get(STATUS, params={"force_domain": "false"}).status_code == 200
    body = client.get(METRICS).json()
    assert body["unforced"] == {"requests": 3, "domain": 3}
    assert body["domain"]["usage_rate"] == 1.0
    assert body["domain"]["requests"] == 3 and body["legacy"]["requests"] == 5


def test_metrics_are_shared_by_apps_on_one_runtime_directory(env, tmp_path):
    """Two apps (as two workers would) on the same RUNTIME_DIRECTORY report the same totals."""
    settings = Settings.from_env({**env, "RUNTIME_DIRECTORY": str(tmp_path / "shared")})
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        for _ in range(3):
            first.get(STATUS)
        second.get(STATUS, params={"force_domain": "true"})
        assert first.get(METRICS).json()["requests_total"] == second.get(METRICS).json()["requests_total"] == 4


def test_metrics_start_fresh_for_a_new_service_instance(tmp_path):
    stale = tmp_path / "metrics-999999999-1.sqlite3"  # above any pid_max: its master is gone
    stale.write_text("old")
    Metrics(str(tmp_path)).close()
    assert not stale.exists()


def test_latency_ring_keeps_only_the_last_window(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_module, "WINDOW", 5)
    metrics = Metrics(str(tmp_path))
    for ms in range(1, 13):
        metrics.record("legacy", 200, float(ms))
    body = metrics.snapshot(False, 0)
    assert body["requests_total"] == 12 and body["latency_ms"]["window"] == 5
    assert body["latency_ms"]["p50"] == 10.0 and body["latency_ms"]["p99"] == pytest.approx(11.96)
    metrics.close()


def test_percentile_interpolates():
    assert percentile([], 0.5) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0


def test_secrets_never_leak(make_client, secret, caplog):
    caplog.set_level(logging.DEBUG)
    healthy = make_client(DOMAIN_ERROR_RATE="1.0")
    no_redis = make_client(REDIS_URL=f"redis://:{secret}@127.0.0.1:{free_port()}/0")
    no_db = make_client(DATABASE_URL=f"postgresql://camera:{secret}@127.0.0.1:{free_port()}/camera")
    rule = {"name": "dup", "metric": "fps", "operator": ">", "threshold": 1}
    responses = [
        healthy.get(HEALTH), healthy.get(METRICS),
        healthy.get(STATUS, params={"force_domain": "true"}),  # injected 500
        healthy.get("/api/v1/cameras/ghost/status"),  # 404
        healthy.post("/api/v1/alerts/rules", json={"name": "x"}),  # 422
        healthy.post("/api/v1/alerts/rules", json=rule), healthy.post("/api/v1/alerts/rules", json=rule),  # 409
        no_redis.get(HEALTH), no_redis.get(STATUS), no_redis.get(METRICS),
        no_db.get(HEALTH), no_db.get("/api/v1/alerts/rules"), no_db.get("/api/v1/alerts/rules?force_domain=true"),
    ]
    assert sorted({r.status_code for r in responses}) == [200, 201, 404, 409, 422, 500, 503]
    for response in responses:
        assert secret not in response.text
        assert secret not in str(response.headers)
    assert no_db.get("/api/v1/alerts/rules").json() == {"detail": "internal server error"}
    assert "unhandled error" in caplog.text  # the outages were logged ...
    assert secret not in caplog.text  # ... without the secret


def test_metrics_fault_knob_for_the_drills(make_client):
    assert make_client(METRICS_FAULT="500").get(METRICS).status_code == 500
    html = make_client(METRICS_FAULT="html").get(METRICS)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError, match="METRICS_FAULT must be one of"):
        make_client(METRICS_FAULT="slow")

"""What the endpoints do, checked against both implementations on the same data."""
import threading
from pathlib import Path

import pytest
import yaml

from src.api.settings import Settings
from src.api.store import PostgresPool

RULES = "/api/v1/alerts/rules"
CAMERAS = "/api/v1/cameras"
BOTH = pytest.mark.parametrize("flag", ["true", "false"])


def rule_body(name: str, **extra) -> dict:
    return {"name": name, "camera_id": None, "metric": "temperature", "operator": ">=",
            "threshold": 70, **extra}


@BOTH
def test_rule_lifecycle_and_name_conflicts(client, flag):
    q = {"force_domain": flag}
    created = client.post(RULES, params=q, json=rule_body("hot")).json()
    assert created["threshold"] == 70.0 and created["enabled"] is True and created["camera_id"] is None
    client.post(RULES, params={"force_domain": "false"}, json=rule_body("cold"))
    assert client.post(RULES, params=q, json=rule_body("hot")).status_code == 409
    updated = client.put(f"{RULES}/{created['id']}", params=q,
                         json={"threshold": 75.5, "camera_id": "cam-002", "enabled": False})
    assert updated.status_code == 200
    body = updated.json()
    assert (body["threshold"], body["camera_id"], body["enabled"], body["name"]) == (75.5, "cam-002", False, "hot")
    assert body["updated_at"] > body["created_at"]
    renamed = client.put(f"{RULES}/{created['id']}", params=q, json={"name": "cold"})
    assert renamed.status_code == 409 and renamed.json() == {"detail": "alert rule already exists: cold"}
    listing = client.get(RULES, params=q).json()
    assert listing["total"] == 2 and [r["name"] for r in listing["rules"]] == ["hot", "cold"]


@BOTH
def test_camera_state_machine(client, flag):
    q = {"force_domain": flag}
    assert client.post(f"{CAMERAS}/cam-001/start", params=q).json()["state"] == \
        {"running": True, "active": True, "auto_start": False}
    deactivated = client.post(f"{CAMERAS}/cam-001/deactivate", params=q).json()
    assert deactivated["state"] == {"running": False, "active": False, "auto_start": False}
    for action in ("start", "restart"):
        refused = client.post(f"{CAMERAS}/cam-001/{action}", params=q)
        assert refused.status_code == 409 and "deactivated" in refused.json()["detail"]
    client.post(f"{CAMERAS}/cam-001/activate", params=q)
    auto = client.put(f"{CAMERAS}/cam-001/auto-start", params=q, json={"enabled": True}).json()
    assert auto["action"] == "enable_auto_start" and auto["state"]["auto_start"] is True
    status = client.get(f"{CAMERAS}/cam-001/status", params=q).json()
    assert status["state"] == {"running": False, "active": True, "auto_start": True}
    assert status["name"] == "Main Entrance" and status["updated_at"]


def test_state_is_shared_between_implementations(client):
    client.post(f"{CAMERAS}/cam-002/start", params={"force_domain": "true"})
    status = client.get(f"{CAMERAS}/cam-002/status", params={"force_domain": "false"}).json()
    assert status["state"]["running"] is True
    untouched = client.get(f"{CAMERAS}/cam-003/status", params={"force_domain": "true"}).json()
    assert untouched["updated_at"] is None and untouched["state"] == \
        {"running": False, "active": True, "auto_start": False}


def test_logs_record_host_and_implementation_newest_first_and_trimmed(client):
    client.post(f"{CAMERAS}/cam-001/start", params={"force_domain": "false"})
    client.post(f"{CAMERAS}/cam-001/stop", params={"force_domain": "true"})
    logs = client.get(f"{CAMERAS}/cam-001/logs").json()
    assert logs["count"] == 2
    assert [(e["action"], e["implementation"]) for e in logs["logs"]] == [("stop", "domain"), ("start", "legacy")]
    assert all(e["host"] and e["timestamp"] for e in logs["logs"])
    for i in range(110):
        client.post(f"{CAMERAS}/cam-001/stop", params={"force_domain": "true" if i % 2 else "false"})
    assert client.get(f"{CAMERAS}/cam-001/logs", params={"limit": 100}).json()["count"] == 100
    assert client.get(f"{CAMERAS}/cam-001/logs", params={"limit": 101}).status_code == 422
    assert client.app.state.store.redis.llen("camera:cam-001:logs") == 100


@BOTH
def test_batch_status_reports_missing(client, flag):
    body = client.post(f"{CAMERAS}/batch-status", params={"force_domain": flag},
                       json={"camera_ids": ["cam-002", "ghost", "cam-verify"]}).json()
    assert [r["camera_id"] for r in body["results"]] == ["cam-002", "cam-verify"]
    assert body["missing"] == ["ghost"] and body["total"] == 2


@BOTH
def test_refresh_rereads_catalog_and_creates_state(make_client, tmp_path, flag):
    catalog = tmp_path / "cameras.yaml"
    original = Path(__file__).resolve().parents[1] / "config" / "cameras.yaml"
    catalog.write_text(original.read_text())
    client = make_client(CAMERAS_CONFIG=str(catalog))
    data = yaml.safe_load(catalog.read_text())
    data["cameras"].append({"id": "cam-006", "name": "Roof", "location": "Roof",
                            "stream_url": "rtsp://cameras.internal/cam-006/stream"})
    catalog.write_text(yaml.safe_dump(data))
    body = client.post(f"{CAMERAS}/refresh", params={"force_domain": flag}).json()
    assert body["refreshed"] == 7 and "cam-006" in body["cameras"] and "cam-verify" in body["cameras"]
    assert client.app.state.store.redis.hgetall("camera:cam-006:state") == \
        {"running": "false", "active": "true", "auto_start": "false"}
    assert client.get(f"{CAMERAS}/cam-006/status").status_code == 200


def test_schema_creation_survives_many_workers_starting_at_once(env):
    """Several workers and hosts create the table at the same moment: none may fail."""
    settings = Settings.from_env(env)
    pools = [PostgresPool(settings) for _ in range(8)]
    barrier, errors = threading.Barrier(len(pools)), []

    def start(pool):
        barrier.wait()
        try:
            pool.ensure_schema()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pools[0].connection() as conn:
        assert conn.run("SELECT count(*) FROM alert_rules") == [[0]]
    for pool in pools:
        pool.close()

"""Legacy and domain must be interchangeable: same status, same response shape, right header.

This is the check a rollout relies on, so it is also proven to catch a regression
(DOMAIN_BROKEN_SHAPE) and a failing implementation (DOMAIN_ERROR_RATE, LEGACY_ERROR_RATE);
DOMAIN_WRITE_FAULT shows a bug only a cross-implementation read catches.
"""
import json
import time

import pytest

RULES = "/api/v1/alerts/rules"
CAMERAS = "/api/v1/cameras"
HEADER = "X-Rollout-Implementation"
DOMAIN, LEGACY = {"force_domain": "true"}, {"force_domain": "false"}


def rule_body(name: str) -> dict:
    return {"name": name, "camera_id": "cam-001", "metric": "fps", "operator": "<", "threshold": 10}


def shape(value):
    """Recursive keys and value types; a list becomes the sorted set of its element shapes."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(shape(item), sort_keys=True) for item in value})
    return type(value).__name__


# The 13 rollout endpoints: name -> (call(client, params, ctx, tag), expected status).
ENDPOINTS = {
    "list_rules": (lambda c, q, ctx, tag: c.get(RULES, params=q), 200),
    "create_rule": (lambda c, q, ctx, tag: c.post(RULES, params=q, json=rule_body(f"new-{tag}")), 201),
    "update_rule": (lambda c, q, ctx, tag: c.put(f"{RULES}/{ctx['rule_id']}", params=q,
                                                 json={"threshold": 42.5, "enabled": False}), 200),
    "start": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/cam-002/start", params=q), 200),
    "stop": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/cam-002/stop", params=q), 200),
    "restart": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/cam-002/restart", params=q), 200),
    "activate": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/cam-003/activate", params=q), 200),
    "deactivate": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/cam-003/deactivate", params=q), 200),
    "auto_start": (lambda c, q, ctx, tag: c.put(f"{CAMERAS}/cam-004/auto-start", params=q,
                                                json={"enabled": True}), 200),
    "status": (lambda c, q, ctx, tag: c.get(f"{CAMERAS}/cam-001/status", params=q), 200),
    "batch_status": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/batch-status", params=q,
                                                   json={"camera_ids": ["cam-001", "cam-005", "cam-x"]}), 200),
    "logs": (lambda c, q, ctx, tag: c.get(f"{CAMERAS}/cam-001/logs", params={**q, "limit": 5}), 200),
    "refresh": (lambda c, q, ctx, tag: c.post(f"{CAMERAS}/refresh", params=q), 200),
}


@pytest.fixture
def seeded(client) -> dict:
    """One rule and one state change, so lists and logs are non-empty for both sides."""
    rule = client.post(RULES, params={"force_domain": "false"}, json=rule_body("seed"))
    client.post(f"{CAMERAS}/cam-001/start", params={"force_domain": "false"})
    return {"rule_id": rule.json()["id"]}


def call_both(client, name, ctx):
    call, _ = ENDPOINTS[name]
    return (call(client, {"force_domain": "true"}, ctx, "domain"),
            call(client, {"force_domain": "false"}, ctx, "legacy"))


def test_all_thirteen_endpoints_are_covered():
    assert len(ENDPOINTS) == 13


@pytest.mark.parametrize("name", ENDPOINTS)
def test_same_status_and_shape_under_both_implementations(client, seeded, name):
    domain, legacy = call_both(client, name, seeded)
    expected = ENDPOINTS[name][1]
    assert (domain.status_code, legacy.status_code) == (expected, expected), (domain.text, legacy.text)
    assert shape(domain.json()) == shape(legacy.json())
    assert (domain.headers[HEADER], legacy.headers[HEADER]) == ("domain", "legacy")


@pytest.mark.parametrize("method,path,body", [
    ("post", "start", None), ("post", "stop", None), ("post", "restart", None), ("post", "activate", None),
    ("post", "deactivate", None), ("put", "auto-start", {"enabled": True}), ("get", "status", None),
    ("get", "logs", None)])
def test_unknown_camera_is_404_under_both(client, method, path, body):
    for flag in ("true", "false"):
        response = client.request(method.upper(), f"{CAMERAS}/cam-nope/{path}",
                                  params={"force_domain": flag}, json=body)
        assert response.status_code == 404
        assert response.json() == {"detail": "camera not found: cam-nope"}
        assert response.headers[HEADER] == ("domain" if flag == "true" else "legacy")


def test_unknown_rule_is_404_and_bad_body_is_422_under_both(client):
    for flag, impl in (("true", "domain"), ("false", "legacy")):
        missing = client.put(f"{RULES}/999999", params={"force_domain": flag}, json={"threshold": 1})
        assert (missing.status_code, missing.json()) == (404, {"detail": "alert rule not found: 999999"})
        for bad in ({"operator": "!="}, {"name": "   "}, {"threshold": "NaN"}):
            invalid = client.post(RULES, params={"force_domain": flag}, json={**rule_body("x"), **bad})
            assert invalid.status_code == 422, bad
        assert missing.headers[HEADER] == invalid.headers[HEADER] == impl


def test_broken_shape_is_caught(make_client):
    client = make_client(DOMAIN_BROKEN_SHAPE="true")
    ctx = {"rule_id": client.post(RULES, json=rule_body("seed")).json()["id"]}
    for name, missing_field in (("status", "auto_start"), ("start", "auto_start"),
                                ("list_rules", "enabled"), ("update_rule", "enabled")):
        domain, legacy = call_both(client, name, ctx)
        assert domain.status_code == legacy.status_code == 200
        assert shape(domain.json()) != shape(legacy.json()), name
        assert missing_field not in json.dumps(domain.json()) and missing_field in json.dumps(legacy.json())


def test_error_rate_one_fails_every_domain_call_only(make_client):
    client = make_client(DOMAIN_ERROR_RATE="1.0")
    ctx = {"rule_id": client.post(RULES, params={"force_domain": "false"}, json=rule_body("seed")).json()["id"]}
    for name, (_, expected) in ENDPOINTS.items():
        domain, legacy = call_both(client, name, ctx)
        assert domain.status_code == 500 and domain.headers[HEADER] == "domain", name
        assert domain.json() == {"detail": "domain service failure (injected by DOMAIN_ERROR_RATE)"}
        assert legacy.status_code == expected and legacy.headers[HEADER] == "legacy", name


def test_legacy_error_rate_one_fails_every_legacy_call_only(make_client):
    client = make_client(LEGACY_ERROR_RATE="1.0")
    ctx = {"rule_id": client.post(RULES, params=DOMAIN, json=rule_body("seed")).json()["id"]}
    for name, (_, expected) in ENDPOINTS.items():
        domain, legacy = call_both(client, name, ctx)
        assert legacy.status_code == 500 and legacy.headers[HEADER] == "legacy", name
        assert legacy.json() == {"detail": "legacy service failure (injected by LEGACY_ERROR_RATE)"}
        assert domain.status_code == expected and domain.headers[HEADER] == "domain", name
    # the fault strikes before the work: the failed legacy create wrote nothing
    assert "new-legacy" not in {r["name"] for r in client.get(RULES, params=DOMAIN).json()["rules"]}
    counts = client.get("/api/v1/monitoring/metrics").json()["implementations"]
    assert (counts["legacy"]["requests"], counts["legacy"]["errors"]) == (13, 13)
    assert counts["domain"]["errors"] == 0


def test_wrong_data_is_a_value_only_a_comparison_of_both_answers_shows(make_client):
    """DOMAIN_WRONG_DATA_RATE=1: every domain read of a camera's state or a rule
    answers 200 in the legacy shape, with a wrong value (running flipped, the
    threshold x60); legacy and the stored data are untouched."""
    client = make_client(DOMAIN_WRONG_DATA_RATE="1.0")
    ctx = {"rule_id": client.post(RULES, params=LEGACY, json=rule_body("seed")).json()["id"]}
    for name in ("status", "list_rules"):
        domain, legacy = call_both(client, name, ctx)
        assert domain.status_code == legacy.status_code == 200
        assert shape(domain.json()) == shape(legacy.json()), name
        assert domain.json() != legacy.json(), name
    domain, legacy = call_both(client, "status", ctx)
    assert domain.json()["state"]["running"] != legacy.json()["state"]["running"]
    assert thresholds(client, DOMAIN)[ctx["rule_id"]] == 60 * thresholds(client, LEGACY)[ctx["rule_id"]]
    assert thresholds(make_client(), DOMAIN) == thresholds(client, LEGACY)


def thresholds(client, params) -> dict[int, float]:
    return {r["id"]: r["threshold"] for r in client.get(RULES, params=params).json()["rules"]}


def test_domain_write_fault_shows_only_across_implementations(make_client):
    client = make_client(DOMAIN_WRITE_FAULT="true")
    created = client.post(RULES, params=DOMAIN, json=rule_body("by-domain"))  # threshold 10
    rule_id = created.json()["id"]
    assert created.status_code == 201 and created.json()["threshold"] == 10.0
    assert thresholds(client, DOMAIN)[rule_id] == 10.0  # the domain's own read looks right ...
    assert thresholds(client, LEGACY)[rule_id] == 600.0  # ... legacy sees what was stored

    updated = client.put(f"{RULES}/{rule_id}", params=DOMAIN, json={"threshold": 2.5})
    assert updated.status_code == 200 and updated.json()["threshold"] == 2.5
    assert (thresholds(client, DOMAIN)[rule_id], thresholds(client, LEGACY)[rule_id]) == (2.5, 150.0)

    by_legacy = client.post(RULES, params=LEGACY, json=rule_body("by-legacy")).json()
    assert by_legacy["threshold"] == 10.0
    assert thresholds(client, LEGACY)[by_legacy["id"]] == 10.0
    assert thresholds(client, DOMAIN)[by_legacy["id"]] == pytest.approx(10 / 60)
    # the damage is in the table: a domain without the fault reads the stored value
    assert thresholds(make_client(), DOMAIN)[rule_id] == 150.0


def test_extra_latency_applies_to_domain_calls(make_client):
    client = make_client(DOMAIN_EXTRA_LATENCY_MS="150")
    started = time.perf_counter()
    assert client.get(f"{CAMERAS}/cam-001/status", params={"force_domain": "true"}).status_code == 200
    assert time.perf_counter() - started >= 0.15


@pytest.mark.parametrize("use_domain,percent,expected", [
    ("true", "100", {"domain"}), ("true", "0", {"legacy"}), ("false", "100", {"legacy"}),
    ("true", "50", {"domain", "legacy"})])
def test_rollout_settings_pick_the_implementation(make_client, use_domain, percent, expected):
    client = make_client(USE_DOMAIN_SERVICE=use_domain, ROLLOUT_PERCENT=percent)
    seen = {client.get(f"{CAMERAS}/cam-001/status").headers[HEADER] for _ in range(60)}
    assert seen == expected


def test_invalid_force_domain_is_422_and_still_labelled(client):
    response = client.get(RULES, params={"force_domain": "maybe"})
    assert response.status_code == 422 and response.headers[HEADER] == "legacy"

"""Endpoint verification and preparation check judged on fixed answers."""

import json

import pytest

from rollout import verify as v
from rollout.catalog import CatalogError, fill, load_catalog, with_force
from rollout.gate import Thresholds
from rollout.preflight import judge_preflight
from tests.unit.metrics_body import body, counters, side

CATALOG = load_catalog([
    {"name": "status", "method": "GET", "path": "/api/v1/cameras/{camera_id}/status", "expect": 200},
    {"name": "start", "method": "POST", "path": "/api/v1/cameras/{camera_id}/start", "expect": 200},
    {"name": "update", "method": "PUT", "path": "/api/v1/alerts/rules/{rule_id}", "expect": 200,
     "body": {"threshold": 10, "camera_id": "{camera_id}"}},
])
CONTEXT = {"camera_id": "cam-verify", "rule_id": 7, "rule_name": "r"}


def answer(status, implementation, body):
    return {"status": status, "implementation": implementation, "body": json.dumps(body), "error": None}


def test_catalog_refuses_bad_entries():
    with pytest.raises(CatalogError, match="unique name"):
        load_catalog([{"name": "a", "method": "GET", "path": "/x", "expect": 200}] * 2)
    with pytest.raises(CatalogError, match="method"):
        load_catalog([{"name": "a", "method": "FETCH", "path": "/x", "expect": 200}])
    with pytest.raises(CatalogError, match="unknown key"):
        load_catalog([{"name": "a", "method": "GET", "path": "/x", "expect": 200, "expected": 1}])
    with pytest.raises(CatalogError, match="placeholder"):
        fill("/x/{nope}", CONTEXT)


def test_fill_keeps_types_of_whole_placeholders():
    assert fill({"ids": ["{camera_id}"], "rule": "{rule_id}", "p": "/r/{rule_id}"}, CONTEXT) == {
        "ids": ["cam-verify"], "rule": 7, "p": "/r/7"}
    assert with_force("/a?limit=2", "domain") == "/a?limit=2&force_domain=true"
    assert with_force("/a", "legacy") == "/a?force_domain=false"


def test_comparison_plan_runs_legacy_then_domain_in_catalog_order():
    plan = v.comparison_plan(CATALOG, CONTEXT, read_only=False)
    assert [(e.name, mode) for e, mode, _ in plan] == [
        ("status", "legacy"), ("start", "legacy"), ("update", "legacy"),
        ("status", "domain"), ("start", "domain"), ("update", "domain")]
    assert plan[2][2] == {"method": "PUT", "path": "/api/v1/alerts/rules/7?force_domain=false",
                          "body": {"threshold": 10, "camera_id": "cam-verify"}}
    assert [e.name for e, _, _ in v.comparison_plan(CATALOG, CONTEXT, read_only=True)] == ["status", "status"]


def test_judge_comparison_agreeing_answers_have_no_finding():
    plan = v.comparison_plan(CATALOG, CONTEXT, read_only=False)
    results = [answer(200, mode, {"camera_id": "c", "state": {"running": mode == "domain"}})
               for _, mode, _ in plan]
    assert v.judge_comparison(plan, results) == []


def test_judge_comparison_names_endpoint_mode_and_path():
    plan = v.comparison_plan(CATALOG, CONTEXT, read_only=False)
    good = {"camera_id": "c", "state": {"running": True, "auto_start": False}}
    broken = {"camera_id": "c", "state": {"running": True}}
    results = [answer(200, "legacy", good)] * 3 + [
        answer(200, "domain", broken),      # shape differs
        answer(200, "legacy", good),        # wrong implementation answered
        answer(500, "domain", {"detail": "x"}),  # status differs
    ]
    findings = [str(f) for f in v.judge_comparison(plan, results)]
    assert findings == [
        "start [domain]: answered by legacy",
        "update [domain]: status 500, expected 200",
        "status [both]: $.state.auto_start: missing in domain",
        "update [both]: status legacy 200 != domain 500",
    ]


def test_restore_plan_puts_the_camera_back():
    plan = v.restore_plan("cam", {"running": True, "active": True, "auto_start": False})
    assert [(r["method"], r["path"], r["body"]) for r in plan] == [
        ("POST", "/api/v1/cameras/cam/activate?force_domain=false", None),
        ("POST", "/api/v1/cameras/cam/start?force_domain=false", None),
        ("PUT", "/api/v1/cameras/cam/auto-start?force_domain=false", {"enabled": False}),
    ]
    inactive = v.restore_plan("cam", {"running": False, "active": False, "auto_start": True})
    assert [r["path"].split("/")[-1] for r in inactive] == [
        "deactivate?force_domain=false", "auto-start?force_domain=false"]


def test_unforced_mix_judged_against_the_stage():
    t = Thresholds.from_data({"usage_confidence": 0.999})
    results = [answer(200, "domain" if i < 20 else "legacy", {}) for i in range(200)]
    usage, findings = v.judge_unforced(results, 10, t)
    assert usage.consistent and findings == []
    usage, findings = v.judge_unforced(results, 0, t)
    assert not usage.consistent and "domain 20/200" in findings[0].problem
    unanswered = [{"status": None, "error": "ConnectionRefusedError"}] + results[1:]
    assert any("1 of 200 requests got no answer" in f.problem for f in v.judge_unforced(unanswered, 10, t)[1])


def test_unforced_server_errors_are_judged_by_the_statistics_not_one_by_one():
    t = Thresholds.from_data({})
    # A background rate on both sides: one legacy and one domain 5xx in 2000.
    background = ([answer(500, "legacy", {})] + [answer(200, "legacy", {})] * 1799
                  + [answer(500, "domain", {})] + [answer(200, "domain", {})] * 199)
    assert v.judge_unforced(background, 10, t)[1] == []
    # The domain failing a quarter of its requests, legacy clean.
    failing = [answer(500, "domain", {})] * 50 + [answer(200, "domain", {})] * 150 + [answer(200, "legacy", {})] * 1800
    problems = [f.problem for f in v.judge_unforced(failing, 10, t)[1]]
    assert any("errors vs legacy" in p for p in problems), problems


def test_legacy_proof_writes_nothing_and_wants_legacy_everywhere():
    plan = v.legacy_proof_plan(CATALOG)
    assert [r["path"] for _, _, r in plan] == [
        "/api/v1/cameras/rollout-proof-no-such-camera/status",
        "/api/v1/cameras/rollout-proof-no-such-camera/start",
        "/api/v1/alerts/rules/0"]
    assert [r["body"] for _, _, r in plan] == [None, {}, {}]
    results = [answer(404, "legacy", {}), answer(404, "domain", {}), answer(503, "legacy", {})]
    assert [str(f) for f in v.judge_legacy_proof(plan, results)] == [
        "start [unforced]: answered by domain", "update [unforced]: answered 503"]


HEALTHY = {
    "unit_active": "active",
    "file_switch": {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "10"},
    "process_switch": {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "10"},
    "health": {"status": 200},
    "metrics": {"status": 200, "content_type": "application/json", "body": body(counters(side(1), side(1)))},
    "cameras": {"exists": True, "count": 6},
    "database": {"configured": True, "reachable": True},
    "redis": {"configured": True, "reachable": True},
}


def test_preflight_healthy_host_passes_every_check():
    checks = judge_preflight(HEALTHY, expected_stage=10)
    assert [c.name for c in checks] == [
        "unit active", "env file stage", "process runs the file's stage", "health answers 200",
        "metrics complete", "cameras config", "database reachable", "redis reachable"]
    assert all(c.ok for c in checks)


@pytest.mark.parametrize(
    "change, check, detail",
    [
        ({"unit_active": "failed"}, "unit active", "systemd says failed"),
        ({"process_switch": {"USE_DOMAIN_SERVICE": "false", "ROLLOUT_PERCENT": "0"}},
         "process runs the file's stage", "file says stage 10, process runs 0"),
        ({"process_switch": None}, "process runs the file's stage", "no running main process"),
        ({"metrics": {"status": 200, "content_type": "text/html", "body": "<html>"}},
         "metrics complete", "not JSON (text/html)"),
        ({"cameras": {"exists": True, "count": 0}}, "cameras config", "0 camera(s)"),
        ({"cameras": {"exists": False, "count": 0}}, "cameras config", "missing"),
        ({"database": {"configured": True, "reachable": False}}, "database reachable", "no"),
        ({"health": {"status": 503}}, "health answers 200", "HTTP 503"),
    ],
)
def test_preflight_failures(change, check, detail):
    checks = {c.name: c for c in judge_preflight({**HEALTHY, **change}, expected_stage=10)}
    assert not checks[check].ok and detail in checks[check].detail
    assert sum(not c.ok for c in checks.values()) == 1


def test_preflight_missing_env_file_fails_both_stage_checks():
    checks = {c.name: c for c in judge_preflight({**HEALTHY, "file_switch": None})}
    assert "missing" in checks["env file stage"].detail and not checks["env file stage"].ok
    assert not checks["process runs the file's stage"].ok


def test_preflight_expected_stage_and_unset_secrets():
    checks = {c.name: c for c in judge_preflight(
        {**HEALTHY, "database": {"configured": False}}, expected_stage=25)}
    assert not checks["env file stage"].ok and "expected 25" in checks["env file stage"].detail
    assert checks["database reachable"].ok and checks["database reachable"].detail == "not set"

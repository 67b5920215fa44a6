"""Data consistency across implementations: the plan, the judge, the field selector."""

import json

import pytest

from rollout.consistency import ConsistencyError, check_spec, judge, plan, select
from rollout.project import defaults

CHECKS = defaults()["consistency_checks"]
CONTEXT = {"camera_id": "cam-verify", "rule_id": 3, "rule_name": "rollout-verification"}


def ok(document):
    return {"status": 200, "body": json.dumps(document)}


def rules(threshold):
    return ok({"rules": [{"id": 1, "threshold": 99.0}, {"id": 3, "threshold": threshold}]})


def camera(auto_start):
    return ok({"state": {"auto_start": auto_start}})


def test_each_check_writes_with_one_implementation_and_reads_with_the_other():
    calls = plan(CHECKS, CONTEXT)
    assert [(c["method"], c["path"], c["body"]) for c in calls[:4]] == [
        ("PUT", "/api/v1/alerts/rules/3?force_domain=true", {"threshold": 7.5}),
        ("GET", "/api/v1/alerts/rules?force_domain=false", None),
        ("PUT", "/api/v1/alerts/rules/3?force_domain=false", {"threshold": 12.0}),
        ("GET", "/api/v1/alerts/rules?force_domain=true", None),
    ]
    assert calls[4]["body"] == {"enabled": False} and calls[6]["body"] == {"enabled": True}


def test_matching_reads_pass_and_a_mismatch_names_the_endpoint_and_the_field():
    written = {"status": 200, "body": "{}"}
    consistent = [written, rules(7.5), written, rules(12.0), written, camera(False), written, camera(True)]
    assert judge(CHECKS, CONTEXT, consistent) == []
    unit_bug = [written, rules(450.0), written, rules(0.2), written, camera(False), written, camera(True)]
    assert [str(m) for m in judge(CHECKS, CONTEXT, unit_bug)] == [
        ("alert rule threshold [domain wrote, legacy read]: GET /api/v1/alerts/rules field "
         "rules[id={rule_id}].threshold: wrote 7.5, read back 450.0"),
        ("alert rule threshold [legacy wrote, domain read]: GET /api/v1/alerts/rules field "
         "rules[id={rule_id}].threshold: wrote 12.0, read back 0.2"),
    ]
    failed_write = [{"status": 500}, rules(7.5)] + consistent[2:]
    assert "answered 500" in str(judge(CHECKS, CONTEXT, failed_write)[0])


def test_select_picks_list_elements_and_says_what_is_missing():
    assert select({"rules": [{"id": 2, "x": 1}, {"id": 3, "x": 2}]}, "rules[id=3].x") == 2
    with pytest.raises(KeyError, match="no element of rules with id=4"):
        select({"rules": [{"id": 3}]}, "rules[id=4].x")
    with pytest.raises(KeyError, match="no field 'state'"):
        select({}, "state.auto_start")


@pytest.mark.parametrize("check, message", [
    ({"name": "x"}, "lacks write, read, field, values"),
    ({**CHECKS[0], "values": [1, 1]}, "two different values"),
    ({**CHECKS[0], "write": {**CHECKS[0]["write"], "body": {"threshold": 5}}}, "no {value}"),
    ({**CHECKS[0], "read": "/api/{nope}"}, "unknown placeholder"),
    ({**CHECKS[0], "write": {**CHECKS[0]["write"], "method": "GET"}}, "write needs a method"),
])
def test_a_check_that_cannot_run_is_refused(check, message):
    with pytest.raises(ConsistencyError, match=message):
        check_spec(check)

"""The service's contract (switch variables, implementation header, force_domain
parameter, metric fields, port) is written once, in group_data/all.py: the code
reads it from the settings, and another app's contract is one settings change."""

import json

import pytest

from rollout.catalog import with_force
from rollout.gate import field_paths, parse_metrics
from rollout.inputs import SETTINGS, InputError, check_settings
from rollout.preflight import judge_preflight
from rollout.project import defaults
from rollout.stages import rollout_env, stage_from_env

OTHER = {"enabled": "NEW_IMPL_ON", "percent": "NEW_IMPL_SHARE"}


def settings(**changes):
    return {**{key: defaults().get(key) for key in SETTINGS}, **changes}


def test_group_data_gives_every_contract_setting_and_they_pass_their_checks():
    check_settings(settings())
    assert defaults()["switch_variables"] == {"enabled": "USE_DOMAIN_SERVICE", "percent": "ROLLOUT_PERCENT"}
    assert defaults()["implementation_header"] == "X-Rollout-Implementation"
    assert defaults()["force_domain_parameter"] == "force_domain"
    assert defaults()["bind_port"] == 8000
    assert field_paths()["p95_ms"] == "latency_ms.p95"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"switch_variables": {"enabled": "A"}}, "setting switch_variables: must map 'enabled' and 'percent'"),
        ({"switch_variables": {"enabled": "A", "percent": "A"}}, "must be two variables"),
        ({"switch_variables": {"enabled": "A B", "percent": "C"}}, "not an environment variable name"),
        ({"implementation_header": "X Impl"}, "setting implementation_header: must be an HTTP header name"),
        ({"force_domain_parameter": "force&domain"}, "setting force_domain_parameter: must be a URL query"),
        ({"metrics_field_defaults": {"requests": "n"}}, "setting metrics_field_defaults: lacks the path of "
                                                       "error_rate, success_rate"),
        ({"metrics_field_defaults": {**defaults()["metrics_field_defaults"], "p99": "x"}},
         "unknown metric(s) 'p99'"),
        ({"switch_variables": OTHER, "app_env": {"NEW_IMPL_SHARE": "5"}},
         "setting app_env: app_env may not set NEW_IMPL_SHARE"),
    ],
)
def test_a_bad_contract_setting_is_refused_by_name(changes, message):
    with pytest.raises(InputError, match=None) as error:
        check_settings(settings(**changes))
    assert message in str(error.value)


def test_app_env_may_set_the_old_names_once_the_switch_is_renamed():
    check_settings(settings(switch_variables=OTHER, app_env={"ROLLOUT_PERCENT": "5"}))


def test_another_apps_switch_is_written_and_read_back():
    from rollout.render import render

    text = render("rollout.env.j2", stage=25, switch=rollout_env(25, OTHER), app_env={}, service_name="x")
    assert "NEW_IMPL_ON=true\nNEW_IMPL_SHARE=25\n" in text and "ROLLOUT_PERCENT" not in text
    assert rollout_env(0, OTHER) == {"NEW_IMPL_ON": "false", "NEW_IMPL_SHARE": "0"}
    assert stage_from_env({"NEW_IMPL_ON": "true", "NEW_IMPL_SHARE": "50"}, OTHER) == 50
    assert stage_from_env({"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "50"}, OTHER) is None
    observation = {"unit_active": "active", "file_switch": rollout_env(10, OTHER),
                   "process_switch": rollout_env(0, OTHER)}
    checks = {c.name: c for c in judge_preflight(observation, 10, switch_variables=OTHER)}
    assert checks["env file stage"].ok and "process runs 0" in checks["process runs the file's stage"].detail


def test_force_parameter_and_metric_paths_come_from_the_settings():
    assert with_force("/a?x=1", "domain", "impl_override") == "/a?x=1&impl_override=true"
    body = json.dumps({"n": 500, "error_rate": 0.0, "success_rate": 1.0, "latency_ms": {"p95": 8.0},
                       "unforced": {"requests": 400, "domain": 40}})
    assert parse_metrics(200, body, None, field_paths({"requests": "n"})).requests == 500

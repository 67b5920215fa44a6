"""The service's contract (switch variables, implementation header, force_domain
parameter, metric fields, port) is written once, in group_data/all.py: the code
reads it from the settings, and another app's contract is one settings change."""

import ast
import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from rollout import hostprobe
from rollout.catalog import with_force
from rollout.hoststate import state_spec
from rollout.inputs import SETTINGS, InputError, check_settings
from rollout.metrics import field_paths, parse_metrics
from rollout.preflight import judge_preflight
from rollout.project import defaults
from rollout.stages import rollout_env, stage_from_env
from tests.unit.metrics_body import body, counters, side

ROOT = Path(__file__).resolve().parents[2]
OTHER = {"enabled": "NEW_IMPL_ON", "percent": "NEW_IMPL_SHARE"}


def settings(**changes):
    return {**{key: defaults().get(key) for key in SETTINGS}, **changes}


def test_group_data_gives_every_contract_setting_and_they_pass_their_checks():
    check_settings(settings())
    assert defaults()["switch_variables"] == {"enabled": "USE_DOMAIN_SERVICE", "percent": "ROLLOUT_PERCENT"}
    assert defaults()["implementation_header"] == "X-Rollout-Implementation"
    assert defaults()["force_domain_parameter"] == "force_domain"
    assert defaults()["bind_port"] == 8000
    assert field_paths()["domain_latency_buckets"] == "implementations.domain.latency_buckets_ms"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"switch_variables": {"enabled": "A"}}, "setting switch_variables: must map 'enabled' and 'percent'"),
        ({"switch_variables": {"enabled": "A", "percent": "A"}}, "must be two variables"),
        ({"switch_variables": {"enabled": "A B", "percent": "C"}}, "not an environment variable name"),
        ({"implementation_header": "X Impl"}, "setting implementation_header: must be an HTTP header name"),
        ({"force_domain_parameter": "force&domain"}, "setting force_domain_parameter: must be a URL query"),
        ({"metrics_field_defaults": {"instance": "n"}}, ("setting metrics_field_defaults: lacks the path of "
                                                        "usage_requests, usage_domain")),
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
    from tasks.stage import render_rollout_env

    text = render_rollout_env(settings(switch_variables=OTHER, app_env={}), 25)
    assert "NEW_IMPL_ON=true\nNEW_IMPL_SHARE=25\n" in text and "ROLLOUT_PERCENT" not in text
    assert rollout_env(0, OTHER) == {"NEW_IMPL_ON": "false", "NEW_IMPL_SHARE": "0"}
    assert stage_from_env({"NEW_IMPL_ON": "true", "NEW_IMPL_SHARE": "50"}, OTHER) == 50
    assert stage_from_env({"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "50"}, OTHER) is None
    observation = {"unit_active": "active", "file_switch": rollout_env(10, OTHER),
                   "process_switch": rollout_env(0, OTHER)}
    checks = {c.name: c for c in judge_preflight(observation, 10, switch_variables=OTHER)}
    assert checks["env file stage"].ok and "process runs 0" in checks["process runs the file's stage"].detail


def test_the_probe_reads_the_switch_and_header_the_settings_name():
    spec = state_spec(settings(switch_variables=OTHER))
    assert spec["switch_variables"] == ["NEW_IMPL_ON", "NEW_IMPL_SHARE"] and spec["port"] == 8000


def test_force_parameter_and_metric_paths_come_from_the_settings():
    assert with_force("/a?x=1", "domain", "impl_override") == "/a?x=1&impl_override=true"
    document = json.loads(body(counters(side(500, 3), side(400))))
    document["stats"] = {"dom": document["implementations"].pop("domain")}
    paths = field_paths({"domain_requests": "stats.dom.requests", "domain_errors": "stats.dom.errors",
                         "domain_latency_buckets": "stats.dom.latency_buckets_ms"})
    assert parse_metrics(200, json.dumps(document), None, paths).domain.errors == 3


def test_the_implementation_header_is_the_one_in_the_spec():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("X-Other-Impl", "domain")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert hostprobe.call(port, "GET", "/x", header="X-Other-Impl")["implementation"] == "domain"
        assert hostprobe.call(port, "GET", "/x", header="X-Rollout-Implementation")["implementation"] is None
    finally:
        server.shutdown()


CONTRACT = re.compile(r"USE_DOMAIN_SERVICE|ROLLOUT_PERCENT|X-Rollout-Implementation|force_domain(?!_parameter)"
                      r"|requests_total|latency_ms\.p95|unforced\.requests|unforced\.domain")


def _code_strings(path: Path):
    """String and number constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_code_repeats_the_contract():
    """The product's code (the sandbox, a test fleet, is not the product)."""
    files = [*sorted((ROOT / "rollout").glob("*.py")), *sorted((ROOT / "tasks").glob("*.py")), ROOT / "deploy.py"]
    repeats = []
    for path in files:
        name = str(path.relative_to(ROOT))
        for line, value in _code_strings(path):
            if (isinstance(value, str) and CONTRACT.search(value)) or (value == 8000 and not isinstance(value, bool)):
                repeats.append(f"{name}:{line}: {value!r}")
    assert repeats == []

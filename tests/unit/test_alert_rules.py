"""The seed's alert rules (rollout/alert_rules.py, monitoring/rules.yml), checked
and unit-tested by the real promtool (Debian package prometheus)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rollout.alert_rules import check, render
from rollout.project import defaults

ROOT = Path(__file__).resolve().parents[2]
RULES, TESTS = ROOT / "monitoring" / "rules.yml", ROOT / "monitoring" / "rules.test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_committed_rules_are_the_render_of_the_gate_thresholds():
    settings = defaults()
    rendered = render(settings["gate"], settings["alert_rules"], settings["prometheus_metric_names"])
    assert RULES.read_text() == rendered, "monitoring/rules.yml is stale: run `rollout rules > monitoring/rules.yml`"


def test_promtool_checks_the_rules():
    result = promtool("check", "rules", str(RULES), cwd=ROOT)
    assert result.returncode == 0 and "SUCCESS: 3 rules found" in result.stdout, result.stdout + result.stderr


def test_every_rule_fires_and_stays_quiet_where_it_should():
    result = promtool("test", "rules", TESTS.name, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("change, failing", [
    ({"error_rate_abort_above": 0.5}, "CameraApiErrorRateHigh"),    # the 10 % fault no longer pages
    ({"success_rate_abort_below": 0.7}, "CameraApiSuccessRateLow"),  # nor the 90 % success
    ({"p95_max_ratio": 20.0}, "CameraApiDomainLatencyUp"),           # nor a 10x slower domain
    ({"domain_p95_min_increase_ms": 10.0}, "CameraApiDomainLatencyUp"),  # nor camera-4's +5.25 ms
])
def test_the_tests_fail_when_a_threshold_moves(tmp_path, change, failing):
    """The same tests against rules rendered from other thresholds: they fail,
    so they do test the thresholds the gate uses."""
    settings = defaults()
    (tmp_path / "rules.yml").write_text(render({**settings["gate"], **change}, settings["alert_rules"],
                                                  settings["prometheus_metric_names"]))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and failing in result.stdout + result.stderr, result.stdout


def test_the_minimum_traffic_keeps_a_lone_failure_quiet(tmp_path):
    """With no minimum worth the name, the 'too little traffic' case pages."""
    settings = defaults()
    (tmp_path / "rules.yml").write_text(render(settings["gate"],
                                               {**settings["alert_rules"], "min_requests_per_s": 0.001},
                                               settings["prometheus_metric_names"]))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and "camera-3" in result.stdout + result.stderr, result.stdout


@pytest.mark.parametrize("settings, message", [
    ({"window": "1 m"}, "window must be a Prometheus duration"),
    ({"latency_for": 120}, "latency_for must be a Prometheus duration"),
    ({"min_requests_per_s": 0}, "min_requests_per_s must be a number > 0"),
    ({"severity": "Page!"}, "severity must be a lower-case word"),
    ({"windw": "1m"}, "unknown key 'windw'"),
])
def test_bad_alert_rule_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        check({**defaults()["alert_rules"], **settings})

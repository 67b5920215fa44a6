"""FAULTS_FILE: fault knobs switched at run time, without a restart (so without a metrics reset)."""
import json
import logging
import os
import time
from dataclasses import fields

import pytest

from src.api import faults as faults_module
from src.api.faults import FILE_KEYS, Faults, FaultSwitch, parse_overrides
from src.api.settings import Settings

STATUS = "/api/v1/cameras/cam-001/status"
METRICS = "/api/v1/monitoring/metrics"
DOMAIN, LEGACY = {"force_domain": "true"}, {"force_domain": "false"}


def write_atomically(path, text: str) -> None:
    """How a drill should write the file: readers never see it half written."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def wait_for(condition, timeout_s: float = 5.0) -> None:
    """Poll until condition() holds; the file is checked at most once a second per process."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        time.sleep(0.05)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ignored_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == faults_module.__name__ and "ignored" in r.getMessage()]


def test_file_keys_are_the_fault_knobs():
    assert set(FILE_KEYS) == {f.name for f in fields(Faults)}


def test_faults_from_settings():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://u:pw-x@h/db", "REDIS_URL": "redis://h:1/0",
                                  "DOMAIN_ERROR_RATE": "0.5", "DOMAIN_EXTRA_LATENCY_MS": "7",
                                  "DOMAIN_BROKEN_SHAPE": "true", "DOMAIN_WRITE_FAULT": "yes",
                                  "DOMAIN_WRONG_DATA_RATE": "0.02", "LEGACY_ERROR_RATE": "0.01"})
    assert Faults.from_settings(settings) == Faults(
        domain_error_rate=0.5, domain_extra_latency_ms=7, domain_broken_shape=True, domain_write_fault=True,
        domain_wrong_data_rate=0.02, legacy_error_rate=0.01)


def test_parse_overrides_accepts_every_key():
    text = ('{"domain_error_rate": 0.03, "domain_extra_latency_ms": 80, "legacy_error_rate": 0, '
            '"domain_write_fault": true, "domain_broken_shape": false}')
    assert parse_overrides(text) == {"domain_error_rate": 0.03, "domain_extra_latency_ms": 80,
                                     "legacy_error_rate": 0.0, "domain_write_fault": True,
                                     "domain_broken_shape": False}
    assert parse_overrides("{}") == {}


@pytest.mark.parametrize("text,reason", [
    ("{not json", "not JSON"), ("", "not JSON"), ("[1]", "JSON object"),
    ('{"domain_error_rate": 0.1, "bogus": 1}', "unknown key(s) bogus"),
    ('{"domain_error_rate": 2}', "domain_error_rate"), ('{"legacy_error_rate": NaN}', "legacy_error_rate"),
    ('{"legacy_error_rate": -0.5}', "legacy_error_rate"), ('{"legacy_error_rate": true}', "legacy_error_rate"),
    ('{"domain_error_rate": "0.5"}', "domain_error_rate"),
    ('{"domain_extra_latency_ms": 1.5}', "domain_extra_latency_ms"),
    ('{"domain_extra_latency_ms": 60001}', "domain_extra_latency_ms"),
    ('{"domain_write_fault": "yes"}', "domain_write_fault"), ('{"domain_broken_shape": 1}', "domain_broken_shape"),
])
def test_parse_overrides_rejects(text, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_overrides(text)


def test_switch_follows_the_file_checking_at_most_once_a_second(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path, clock = tmp_path / "faults.json", FakeClock()
    env = Faults(domain_error_rate=0.25)
    switch = FaultSwitch(env, str(path), clock=clock)
    assert switch.current() == env  # no file: the environment's values

    write_atomically(path, '{"legacy_error_rate": 1.0}')
    assert switch.current() == env  # not re-checked within the second
    clock.now += 1.0
    assert switch.current() == Faults(domain_error_rate=0.25, legacy_error_rate=1.0)  # keys absent: env

    write_atomically(path, '{"domain_error_rate": 7}')
    for _ in range(5):  # several checks of one invalid version: one log line
        clock.now += 1.0
        assert switch.current() == env
    warnings = ignored_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].exc_info is None and "\n" not in warnings[0].getMessage()
    assert "domain_error_rate must be a number between 0.0 and 1.0, got 7" in warnings[0].getMessage()

    write_atomically(path, '{"domain_broken_shape": true}')
    clock.now += 1.0
    assert switch.current() == Faults(domain_error_rate=0.25, domain_broken_shape=True)
    path.unlink()
    clock.now += 1.0
    assert switch.current() == env


def test_faults_file_switches_domain_failures_without_a_restart(make_client, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "faults.json"
    client = make_client(FAULTS_FILE=str(path))

    def domain_status() -> int:
        return client.get(STATUS, params=DOMAIN).status_code

    assert domain_status() == 200 and client.get(STATUS, params=LEGACY).status_code == 200
    before = client.get(METRICS).json()

    write_atomically(path, json.dumps({"domain_error_rate": 1.0}))
    wait_for(lambda: domain_status() == 500)
    assert client.get(STATUS, params=DOMAIN).json() == {
        "detail": "domain service failure (injected by DOMAIN_ERROR_RATE)"}
    assert client.get(STATUS, params=LEGACY).status_code == 200
    during = client.get(METRICS).json()
    assert during["started_at"] == before["started_at"]  # same instance: the metrics kept counting
    assert during["implementations"]["domain"]["requests"] > before["implementations"]["domain"]["requests"]
    assert during["implementations"]["domain"]["errors"] >= 2

    path.unlink()
    wait_for(lambda: domain_status() == 200)

    write_atomically(path, "{not json")  # ignored: the environment's values (healthy) apply
    wait_for(lambda: domain_status() == 200 and len(ignored_warnings(caplog)) == 1)  # a call makes the check
    assert all(domain_status() == 200 for _ in range(5))
    assert len(ignored_warnings(caplog)) == 1


def test_invalid_faults_file_keeps_the_environment_faults(make_client, tmp_path):
    path = tmp_path / "faults.json"
    write_atomically(path, '{"domain_error_rate": 0, "unknown_knob": 1}')
    client = make_client(FAULTS_FILE=str(path), DOMAIN_ERROR_RATE="1.0")  # starts despite the bad file
    assert client.get(STATUS, params=DOMAIN).status_code == 500
    write_atomically(path, '{"domain_error_rate": 0}')  # now valid: the file wins over the environment
    wait_for(lambda: client.get(STATUS, params=DOMAIN).status_code == 200)

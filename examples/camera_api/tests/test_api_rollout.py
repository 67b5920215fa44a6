"""The rollout switch and start-up settings."""
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from src.api.settings import Settings, SettingsError
from src.api.utils.rollout import should_use_domain

ROOT = Path(__file__).resolve().parents[1]
BASE_ENV = {"DATABASE_URL": "postgresql://camera:pw-x@127.0.0.1:5432/camera",
            "REDIS_URL": "redis://:pw-x@127.0.0.1:6379/0"}


@pytest.mark.parametrize("use_domain,percent", [(False, 0), (True, 0), (True, 100), (False, 100)])
def test_force_domain_overrides_everything(use_domain, percent):
    assert should_use_domain(True, use_domain, percent) is True
    assert should_use_domain(False, use_domain, percent) is False


def test_percent_bounds_and_switch():
    rng = random.Random(7)
    assert not any(should_use_domain(None, True, 0, rng) for _ in range(1000))
    assert all(should_use_domain(None, True, 100, rng) for _ in range(1000))
    assert not any(should_use_domain(None, False, 100, rng) for _ in range(1000))


def test_ten_percent_is_about_ten_percent():
    n, p = 2000, 0.10
    rng = random.Random(20240601)
    hits = sum(should_use_domain(None, True, 10, rng) for _ in range(n))
    bound = 4 * math.sqrt(n * p * (1 - p))  # 4 standard deviations of Binomial(2000, 0.1)
    assert abs(hits - n * p) <= bound, hits


@pytest.mark.parametrize("raw,expected", [("true", True), ("TRUE", True), ("1", True), ("Yes", True),
                                          ("false", False), ("0", False), ("on", False), ("", False)])
def test_use_domain_service_parsing(raw, expected):
    assert Settings.from_env({**BASE_ENV, "USE_DOMAIN_SERVICE": raw}).use_domain_service is expected


def test_defaults():
    s = Settings.from_env(BASE_ENV)
    assert (s.use_domain_service, s.rollout_percent, s.domain_error_rate, s.domain_extra_latency_ms,
            s.domain_broken_shape, s.cameras_config) == (False, 0, 0.0, 0, False, "config/cameras.yaml")
    assert (s.legacy_error_rate, s.domain_write_fault, s.faults_file) == (0.0, False, None)


def test_fault_settings_are_read():
    s = Settings.from_env({**BASE_ENV, "LEGACY_ERROR_RATE": "0.25", "DOMAIN_WRITE_FAULT": "TRUE",
                           "FAULTS_FILE": " /run/camera-api/faults.json "})
    assert (s.legacy_error_rate, s.domain_write_fault, s.faults_file) == (0.25, True, "/run/camera-api/faults.json")


@pytest.mark.parametrize("name,raw", [("ROLLOUT_PERCENT", "abc"), ("ROLLOUT_PERCENT", "150"),
                                      ("ROLLOUT_PERCENT", "-1"), ("ROLLOUT_PERCENT", "12.5"),
                                      ("DOMAIN_ERROR_RATE", "2"), ("DOMAIN_ERROR_RATE", "nan"),
                                      ("DOMAIN_EXTRA_LATENCY_MS", "-5"), ("LEGACY_ERROR_RATE", "2"),
                                      ("LEGACY_ERROR_RATE", "nan"), ("LEGACY_ERROR_RATE", "-0.1")])
def test_invalid_numbers_are_rejected(name, raw):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**BASE_ENV, name: raw})


@pytest.mark.parametrize("name,raw", [("DATABASE_URL", ""), ("DATABASE_URL", "mysql://u:pw-x@h/db"),
                                      ("REDIS_URL", ""), ("REDIS_URL", "http://:pw-x@h:1/0")])
def test_bad_urls_are_rejected_without_echoing_them(name, raw):
    with pytest.raises(SettingsError, match=name) as info:
        Settings.from_env({**BASE_ENV, name: raw})
    assert "pw-x" not in str(info.value)


def test_settings_repr_hides_urls():
    s = Settings.from_env(BASE_ENV)
    assert "pw-x" not in repr(s) and "pw-x" not in repr(s.postgres_params())


@pytest.mark.parametrize("raw", ["abc", "150"])
def test_uvicorn_refuses_to_start_on_invalid_rollout_percent(raw):
    env = {**os.environ, **BASE_ENV, "ROLLOUT_PERCENT": raw,
           "CAMERAS_CONFIG": str(ROOT / "config" / "cameras.yaml")}
    proc = subprocess.run([sys.executable, "-m", "uvicorn", "src.api.app:app", "--host", "127.0.0.1",
                           "--port", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ROLLOUT_PERCENT must be" in proc.stderr and repr(raw) in proc.stderr
    assert "pw-x" not in proc.stderr + proc.stdout

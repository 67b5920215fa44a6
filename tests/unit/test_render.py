"""The host files, rendered from templates/, compared with exact expected text."""

import pytest

from rollout.render import check_app_env, env_quote, render
from rollout.stages import rollout_env

UNIT_CONTEXT = dict(
    app_module="src.api.app:app", service_user="camera-api", service_group="camera-api",
    app_dir="/opt/camera-api", venv_dir="/opt/camera-api/venv",
    secrets_env_file="/etc/camera-api/secrets.env", rollout_env_file="/etc/camera-api/rollout.env",
    bind_host="0.0.0.0", bind_port=8000, workers=2, service_name="camera-api",
)


def test_rollout_env_file_for_stage_10():
    text = render("rollout.env.j2", stage=10, switch=rollout_env(10), app_env={}, service_name="camera-api")
    assert text == (
        "# Managed by camera-rollout (deploy.py, tasks/rollback.py): the next stage overwrites it.\n"
        "# Read by camera-api.service at start-up, so a change takes a restart.\n"
        "# stage 10\n"
        "USE_DOMAIN_SERVICE=true\n"
        "ROLLOUT_PERCENT=10\n"
    )


def test_rollout_env_file_for_rollback_with_extra_app_env():
    text = render(
        "rollout.env.j2", stage=0, switch=rollout_env(0), service_name="camera-api",
        app_env={"DOMAIN_EXTRA_LATENCY_MS": 200, "DOMAIN_ERROR_RATE": "0.2"},
    )
    assert text.splitlines()[2:] == [
        "# stage 0",
        "USE_DOMAIN_SERVICE=false",
        "ROLLOUT_PERCENT=0",
        "DOMAIN_ERROR_RATE=0.2",
        "DOMAIN_EXTRA_LATENCY_MS=200",
    ]


def test_secrets_env_file_quotes_values():
    text = render(
        "secrets.env.j2", service_name="camera-api",
        secrets={"DATABASE_URL": "postgresql://camera:p a$s\"w@10.0.0.1:5432/camera",
                 "REDIS_URL": "redis://:pw@10.0.0.1:6379/0"},
    )
    assert text == (
        "# Managed by camera-rollout. Connection secrets of camera-api: root-owned,\n"
        "# readable by its group only; the deploy never prints this file. Written only on\n"
        "# purpose (write_secrets / tasks/secrets.py), never by a stage change.\n"
        'DATABASE_URL="postgresql://camera:p a$s\\"w@10.0.0.1:5432/camera"\n'
        "REDIS_URL=redis://:pw@10.0.0.1:6379/0\n"
    )


def test_unit_file():
    text = render("service.j2", **UNIT_CONTEXT)
    lines = text.splitlines()
    assert "User=camera-api" in lines
    assert "Group=camera-api" in lines
    assert "WorkingDirectory=/opt/camera-api" in lines
    # secrets first, the rollout switch second, both required files
    env_files = [line for line in lines if line.startswith("EnvironmentFile=")]
    assert env_files == [
        "EnvironmentFile=/etc/camera-api/secrets.env",
        "EnvironmentFile=/etc/camera-api/rollout.env",
    ]
    assert (
        "ExecStart=/opt/camera-api/venv/bin/python -m uvicorn src.api.app:app "
        "--host 0.0.0.0 --port 8000 --workers 2"
    ) in lines
    assert "Restart=on-failure" in lines
    assert "RuntimeDirectory=camera-api" in lines
    assert "WantedBy=multi-user.target" in lines


def test_unit_template_refuses_missing_values():
    context = dict(UNIT_CONTEXT)
    del context["venv_dir"]
    with pytest.raises(Exception, match="venv_dir"):
        render("service.j2", **context)


@pytest.mark.parametrize(
    "value, quoted",
    [("plain", "plain"), ("a b", '"a b"'), ('q"x', '"q\\"x"'), ("back\\slash", '"back\\\\slash"'),
     ("", '""'), ("redis://:p@h:1/0", "redis://:p@h:1/0"), ("#hash", '"#hash"')],
)
def test_env_quote(value, quoted):
    assert env_quote(value) == quoted


def test_env_quote_refuses_newlines():
    with pytest.raises(ValueError):
        env_quote("a\nB=1")


@pytest.mark.parametrize(
    "app_env", [{"ROLLOUT_PERCENT": "100"}, {"DATABASE_URL": "x"}, {"1BAD": "x"}, {"A-B": "1"},
                {"OK": "line\nBREAK=1"}, ["DOMAIN_ERROR_RATE=1"]],
)
def test_check_app_env_refuses_overrides_and_bad_names(app_env):
    with pytest.raises(ValueError):
        check_app_env(app_env)


def test_check_app_env_accepts_knobs():
    assert check_app_env({"DOMAIN_ERROR_RATE": 0.2, "DOMAIN_EXTRA_LATENCY_MS": 300}) == {
        "DOMAIN_ERROR_RATE": "0.2", "DOMAIN_EXTRA_LATENCY_MS": "300",
    }

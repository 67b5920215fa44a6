"""deploy.py and tasks/rollback.py through the pyinfra CLI on @fake hosts: what
gets planned, what is refused, and that secrets never reach the output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_inventory import host_state

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = "tests/unit/fake_inventory.py"
DB_TOKEN = "dbSecretToken7781"
REDIS_TOKEN = "redisSecretToken9902"
SECRET_DATA = [
    "--data", f"database_url=postgresql://camera:{DB_TOKEN}@db:5432/camera",
    "--data", f"redis_url=redis://:{REDIS_TOKEN}@cache:6379/0",
    "--data", "write_secrets=true",
    # The checks talk to a real service; the @fake hosts have none.
    "--data", "checks=false",
]


def pyinfra(*args: str) -> subprocess.CompletedProcess:
    """Run the pyinfra CLI; ``-y`` unless it is a dry run (pyinfra skips change
    detection, and so the diff, for ``--dry -y``)."""
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    yes = [] if "--dry" in args else ["-y"]
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *yes, *args],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=120,
    )


@pytest.mark.parametrize("flags", [["--diff", "-vvv"], ["--dry", "--diff", "-vvv"], ["-v"]])
def test_secrets_never_printed(flags):
    result = pyinfra(*flags, INVENTORY, "deploy.py", "--data", "stage=10", *SECRET_DATA)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert DB_TOKEN not in output and REDIS_TOKEN not in output
    if "--diff" in flags:
        # The non-secret switch file is shown; the secrets file only by name.
        assert "+ ROLLOUT_PERCENT=10" in output
        assert "secrets.env (secret: contents not shown)" in output


def test_every_operation_has_a_name_and_plan_is_in_order():
    result = pyinfra("--json", INVENTORY, "deploy.py", "--data", "stage=25", *SECRET_DATA)
    assert result.returncode == 0, result.stderr
    names = [op["name"] for op in json.loads(result.stdout)["plan"]]
    assert names == [
        "Lock | Rollout lock is free or ours",
        "Apply rollout stage | Env directory /etc/camera-api",
        "Apply rollout stage | Unit file /etc/systemd/system/camera-api.service",
        "Apply rollout stage | systemd daemon-reload (unit file changed)",
        "Apply rollout stage | Rollout env file: stage 25",
        "Apply rollout stage | Secrets env file (contents never shown)",
        "Apply rollout stage | Restart camera-api.service (its files changed or it runs another stage)",
        "Apply rollout stage | Health of camera-api.service",
        "Apply rollout stage | Keep camera-api.service enabled and running",
        "Record | Record the change on the host (stage, operator, baseline, verdict)",
    ]


def test_plan_with_checks_judges_then_rolls_back_only_on_failure():
    result = pyinfra("--dry", "--json", INVENTORY, "deploy.py", "--data", "stage=10")
    assert result.returncode == 0, result.stderr
    names = [op["name"] for op in json.loads(result.stdout)["plan"]]
    order = [
        "Checks | Record baseline P95 (before the stage changes)",
        "Apply rollout stage | Rollout env file: stage 10",
        "Checks | Preparation check",
        "Checks | Endpoint verification: both implementations (host by host: shared verification camera)",
        "Checks | Endpoint verification: unforced mix",
        "Checks | Metrics gate (30s soak)",
        "Apply rollout stage | Rollout env file: stage 0",
        "Checks | Legacy proof: every endpoint unforced answered by legacy",
        "Record | Record the change on the host (stage, operator, baseline, verdict)",
        "Stage 10 failed its checks",
    ]
    positions = [names.index(name) for name in order]
    assert positions == sorted(positions)


def test_env_files_go_to_a_root_side_writer_on_stdin_never_by_upload():
    """Every file of a run is written by one probe call whose stdin holds its
    content (tests/unit/fake_pyinfra.py logs that spec, content as a checksum):
    nothing is uploaded (pyinfra stages an upload under sudo in a world-readable
    /tmp/pyinfra-<sha1>), and a missing env directory is made root:camera-api 750."""
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    result = subprocess.run(
        [sys.executable, "tests/unit/fake_pyinfra.py", "-y", "--debug", INVENTORY, "deploy.py", "--data", "stage=50",
         *SECRET_DATA], cwd=ROOT, env=env, text=True, capture_output=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "simulating put_file" not in output
    written = {}
    for line in output.splitlines():
        if "[fake] stdin on @fake/api-1: " in line:
            for one in json.loads(line.split(": ", 1)[1]):
                written[one["path"]] = one
    env_dir = {"user": "root", "group": "camera-api", "mode": "750"}
    assert written["/etc/camera-api/rollout.env"] == {
        "path": "/etc/camera-api/rollout.env", "user": "root", "group": "camera-api", "mode": "640",
        "directory": env_dir, "content_sha256": written["/etc/camera-api/rollout.env"]["content_sha256"],
        "content_length": written["/etc/camera-api/rollout.env"]["content_length"]}
    secrets = written["/etc/camera-api/secrets.env"]
    assert (secrets["user"], secrets["group"], secrets["mode"], secrets["directory"]) == \
        ("root", "camera-api", "640", env_dir)
    assert written["/etc/systemd/system/camera-api.service"]["mode"] == "644"
    assert DB_TOKEN not in output and REDIS_TOKEN not in output


def test_rollback_task_plans_stage_zero():
    result = pyinfra("--json", INVENTORY, "tasks/rollback.py", *SECRET_DATA)
    assert result.returncode == 0, result.stderr
    names = [op["name"] for op in json.loads(result.stdout)["plan"]]
    assert "Apply rollout stage | Rollout env file: stage 0" in names


@pytest.mark.parametrize("stage_args", [["--data", "stage=33"], ["--data", "stage=abc"], []])
def test_bad_stage_is_refused_before_any_operation(stage_args):
    result = pyinfra("-v", INVENTORY, "deploy.py", *stage_args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "pyinfra error" in line]
    assert len(errors) == 1 and "stage" in errors[0], result.stderr
    assert "Starting operation" not in result.stdout + result.stderr


def test_app_env_may_not_override_the_stage():
    result = pyinfra(INVENTORY, "deploy.py", "--data", "stage=10",
                     "--data", 'app_env={"ROLLOUT_PERCENT": "100"}')
    assert result.returncode != 0
    assert "app_env may not set ROLLOUT_PERCENT" in result.stderr
    assert "Starting operation" not in result.stdout + result.stderr


# --- the secrets file: left as it is unless written on purpose ---------------------------------------


def plan_names(*args: str) -> list[str]:
    result = pyinfra("--json", INVENTORY, *args, "--data", "checks=false")
    assert result.returncode == 0, result.stderr
    return [op["name"] for op in json.loads(result.stdout)["plan"]]


@pytest.mark.parametrize("task", [["deploy.py", "--data", "stage=10"], ["tasks/rollback.py"]])
def test_a_stage_without_secret_values_never_writes_the_secrets_file(task):
    """The operator's environment holds no secret (prod.py then sets none): the
    secrets file on the host is checked for its variables and left as it is."""
    names = plan_names(*task)
    assert not [n for n in names if "Secrets env file (contents never shown)" in n], names
    check = "Apply rollout stage | Secrets env file sets DATABASE_URL, REDIS_URL (left as it is)"
    assert names.index(check) < names.index("Apply rollout stage | Env directory /etc/camera-api")


@pytest.mark.parametrize("task", [["deploy.py", "--data", "stage=10", "--data", "write_secrets=true"],
                                  ["tasks/secrets.py"]])
@pytest.mark.parametrize("given", [[], ["--data", f"database_url=postgresql://c:{DB_TOKEN}@db/c"],
                                   ["--data", f"database_url=postgresql://c:{DB_TOKEN}@db/c",
                                    "--data", "redis_url=  "]])
def test_writing_secrets_without_every_value_is_refused(task, given):
    result = pyinfra("-v", INVENTORY, *task, *given)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if "pyinfra error" in line]
    assert len(errors) == 1 and "redis_url has no value" in errors[0], output
    assert "refusing to write the secrets file" in errors[0]
    assert DB_TOKEN not in output
    assert "Starting operation" not in output


def test_the_secrets_task_writes_only_the_secrets_file_then_restarts_on_change():
    responses = {"camera-rollout-probe state": json.dumps(host_state(10))}
    names = plan_names("tasks/secrets.py", *SECRET_DATA[:4], "--data", f"fake_responses={json.dumps(responses)}")
    assert names == [
        "Lock | Rollout lock is free or ours",
        "Secrets env file (contents never shown)",
        "Restart camera-api.service (its secrets file changed)",
        "Health of camera-api.service",
        "Keep camera-api.service enabled and running",
    ]


def test_the_secrets_task_on_a_fresh_host_writes_the_file_and_starts_nothing():
    """No rollout env file yet: no stage for the service to run (deploy starts it)."""
    result = pyinfra(INVENTORY, "tasks/secrets.py", *SECRET_DATA[:4], "--data", "checks=false")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "no stage on this host yet (/etc/camera-api/rollout.env is missing): not restarted" in output
    assert "Restart camera-api.service" not in output


def test_a_host_whose_secrets_file_lacks_a_variable_is_refused_before_any_write():
    responses = {"camera-rollout-probe state": json.dumps(host_state(secrets_keys=["DATABASE_URL"])),
                 "camera-rollout-probe lock": json.dumps({"acquired": True, "holder": {}})}
    result = pyinfra(INVENTORY, "deploy.py", "--data", "stage=10", "--data", "checks=false",
                     "--data", f"fake_responses={json.dumps(responses)}")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "/etc/camera-api/secrets.env lacks REDIS_URL" in output
    assert "Starting operation: Apply rollout stage | Env directory" not in output

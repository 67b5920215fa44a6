"""Issue 2 end to end on a real fleet: stage 10, the same stage again, stage 25,
rollback, refused stages, and secrets kept out of every output. The tests run in
file order and each builds on the host state the previous one left."""

from __future__ import annotations

import json

import pytest

from fleetlib import implementations, run_pyinfra

ENV_FILE = "/etc/camera-api/rollout.env"
# These tests are about the stage mechanics; the checks have tests of their own.
NO_CHECKS = ("--data", "checks=false")
SECRETS_FILE = "/etc/camera-api/secrets.env"


def assert_host_on_stage(host, stage: int) -> None:
    """Testinfra's view of one host after a stage change."""
    t = host.testinfra
    use = "true" if stage else "false"
    env_file = t.file(ENV_FILE)
    assert env_file.is_file
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "camera-api", 0o640)
    assert f"USE_DOMAIN_SERVICE={use}\n" in env_file.content_string
    assert f"ROLLOUT_PERCENT={stage}\n" in env_file.content_string
    secrets = t.file(SECRETS_FILE)
    assert (secrets.user, secrets.group, secrets.mode) == ("root", "camera-api", 0o640)
    assert t.check_output("find /etc/camera-api -name '.*'") == ""  # no temporary file of a write left
    service = t.service("camera-api")
    assert service.is_running and service.is_enabled
    assert t.socket("tcp://0.0.0.0:8000").is_listening
    assert host.process_switch() == {"USE_DOMAIN_SERVICE": use, "ROLLOUT_PERCENT": str(stage)}
    health = t.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/api/v1/monitoring/health")
    assert health.stdout == "200"


def changed_hosts(result, op_suffix: str) -> list[str]:
    """Hosts on which the operation whose name ends with ``op_suffix`` changed something."""
    ops = json.loads(result.stdout)["results"]["operations"]
    (op,) = [op for op in ops if op["name"].endswith(op_suffix)]
    return sorted(op["success"])


def test_stage_10_reaches_every_host(fleet, secret_values):
    # write_secrets: the secrets file is written too (unchanged here), and never shown.
    result = run_pyinfra("--diff", "-v", "deploy.py", "--data", "stage=10", "--data", "write_secrets=true", *NO_CHECKS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for secret in secret_values:
        assert secret not in output
    for host in fleet:
        assert_host_on_stage(host, 10)


def test_same_stage_again_changes_nothing(fleet):
    pids = {host.name: host.main_pid() for host in fleet}
    result = run_pyinfra("--json", "deploy.py", "--data", "stage=10", *NO_CHECKS)
    assert result.returncode == 0, result.stderr
    assert changed_hosts(result, "Rollout env file: stage 10") == []
    assert changed_hosts(result, "runs another stage)") == []
    assert {host.name: host.main_pid() for host in fleet} == pids


def test_stage_25_restarts_every_host(fleet):
    pids = {host.name: host.main_pid() for host in fleet}
    result = run_pyinfra("--json", "deploy.py", "--data", "stage=25", *NO_CHECKS)
    assert result.returncode == 0, result.stderr
    assert changed_hosts(result, "runs another stage)") == sorted(h.name for h in fleet)
    for host in fleet:
        assert host.main_pid() != pids[host.name]
        assert_host_on_stage(host, 25)


@pytest.mark.parametrize("stage_args", [["--data", "stage=33"], ["--data", "stage=abc"], []])
def test_bad_stage_is_refused_and_nothing_changes(fleet, stage_args):
    before = {h.name: (h.main_pid(), h.testinfra.file(ENV_FILE).sha256sum) for h in fleet}
    result = run_pyinfra("deploy.py", *stage_args)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "pyinfra error" in line]
    assert len(errors) == 1 and "stage" in errors[0], result.stderr
    after = {h.name: (h.main_pid(), h.testinfra.file(ENV_FILE).sha256sum) for h in fleet}
    assert after == before


def test_dry_run_with_diff_shows_the_change_and_changes_nothing(fleet, secret_values):
    before = {h.name: h.testinfra.file(ENV_FILE).sha256sum for h in fleet}
    result = run_pyinfra("--dry", "--diff", "-vvv", "deploy.py", "--data", "stage=50", *NO_CHECKS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ROLLOUT_PERCENT=50" in output
    for secret in secret_values:
        assert secret not in output
    assert {h.name: h.testinfra.file(ENV_FILE).sha256sum for h in fleet} == before


def test_rollback_puts_every_request_on_legacy(fleet, secret_values):
    # Before: stage 25, so some unforced requests are served by the domain side.
    result = run_pyinfra("-v", "tasks/rollback.py")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for secret in secret_values:
        assert secret not in output
    for host in fleet:
        assert_host_on_stage(host, 0)
        assert implementations(host, 50) == ["legacy"] * 50


def test_a_host_that_does_not_come_up_fails_by_name_and_a_rerun_converges(fleet):
    canary = fleet[0]
    # The reference service's workers refuse to start on a malformed fault knob.
    bad_run = ("deploy.py", "--limit", canary.name, "--data", "stage=10", *NO_CHECKS,
               "--data", "health_timeout_s=15",
               "--data", 'app_env={"DOMAIN_ERROR_RATE": "not-a-number"}')
    for attempt in ("first run", "same run again"):
        # The second run changes no file: it must still fail, not report success.
        bad = run_pyinfra(*bad_run)
        output = bad.stdout + bad.stderr
        assert bad.returncode != 0, attempt
        assert f"[{canary.name}] camera-api.service not healthy after 15s" in output, output[-2000:]

    good = run_pyinfra("deploy.py", "--limit", canary.name, "--data", "stage=10", *NO_CHECKS)
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr
    assert_host_on_stage(canary, 10)
    assert "DOMAIN_ERROR_RATE" not in canary.testinfra.file(ENV_FILE).content_string


def test_a_restart_lost_after_the_file_was_written_is_made_up(fleet):
    host = fleet[1]
    # As if a run wrote the file and lost the host before its restart.
    host.testinfra.check_output(
        "sed -i -e 's/^# stage .*/# stage 25/' -e 's/^USE_DOMAIN_SERVICE=.*/USE_DOMAIN_SERVICE=true/'"
        " -e 's/^ROLLOUT_PERCENT=.*/ROLLOUT_PERCENT=25/' /etc/camera-api/rollout.env"
    )
    pid = host.main_pid()
    result = run_pyinfra("--json", "deploy.py", "--limit", host.name, "--data", "stage=25", *NO_CHECKS)
    assert result.returncode == 0, result.stderr
    assert changed_hosts(result, "Rollout env file: stage 25") == []
    assert changed_hosts(result, "runs another stage)") == [host.name]
    assert host.main_pid() != pid
    assert_host_on_stage(host, 25)

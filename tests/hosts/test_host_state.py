"""The state every host of a fleet must be in, whatever its stage."""

import pytest

from rollout.stages import stage_from_env


def test_unit_is_installed_enabled_and_running(host, settings):
    service = host.service(settings["service_name"])
    assert host.file(settings["unit_file"]).is_file
    assert service.is_enabled
    assert service.is_running


def test_env_files_are_root_owned_and_group_readable_only(host, settings):
    for path in (settings["rollout_env_file"], settings["secrets_env_file"]):
        env_file = host.file(path)
        assert env_file.is_file, path
        assert env_file.user == "root", path
        assert env_file.group == settings["service_group"], path
        # 0640 or stricter: nothing for others, no write or exec for the group
        assert env_file.mode & 0o137 == 0, f"{path} has mode {oct(env_file.mode)}"
    # A write's temporary file is hidden beside its file: none may be left.
    assert host.check_output(f"find {settings['env_dir']} -maxdepth 1 -name '.*'") == ""


def test_env_file_holds_a_valid_switch(state, settings):
    switch = state["file_switch"]
    variables = settings["switch_variables"]
    assert switch is not None, "rollout env file missing or unreadable"
    assert switch.get(variables["enabled"]) in ("true", "false")
    assert switch.get(variables["percent"], "").isdigit()
    if switch[variables["enabled"]] == "false":
        assert switch[variables["percent"]] == "0"
    assert stage_from_env(switch, variables) is not None


def test_running_process_has_the_files_switch(state):
    """Catches an env file written without a restart. Read and filtered on the
    host (the probe): no other variable (no secret) comes back."""
    assert state["process_switch"] is not None, "no running main process"
    assert state["process_switch"] == state["file_switch"]


def test_port_is_listening_and_health_answers_200(host, settings):
    port = settings["bind_port"]
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening or host.socket(f"tcp://{port}").is_listening
    code = host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 http://127.0.0.1:{port}{settings['health_path']}")
    assert code == "200"


@pytest.mark.parametrize("check", ["preflight", "compare", "mix"])
def test_package_check(check_reports, host_name, check):
    """The package's own checks (run once for all hosts with --checks)."""
    if check_reports is None:
        pytest.skip("package checks not requested (--checks preflight,verify)")
    report = check_reports.report(host_name, check)
    assert report is not None, f"no {check} report from {host_name}:\n{check_reports.output[-2000:]}"
    problems = [c for c in report.get("checks", []) if not c["ok"]] + report.get("findings", [])
    assert report["ok"], f"{check} failed on {host_name}: {problems}"

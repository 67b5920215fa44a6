"""The state every host of a fleet must be in, whatever its stage."""

import re

import pytest

SWITCH = re.compile(r"^(USE_DOMAIN_SERVICE|ROLLOUT_PERCENT)=(.*)$", re.MULTILINE)


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
    assert not host.file(settings["rollout_env_file"].rsplit("/", 1)[0] + "/.rollout.env.rollout-tmp").exists


def test_env_file_holds_a_valid_switch(host, settings):
    switch = dict(SWITCH.findall(host.file(settings["rollout_env_file"]).content_string))
    assert switch.get("USE_DOMAIN_SERVICE") in ("true", "false")
    assert switch.get("ROLLOUT_PERCENT", "").isdigit()
    if switch["USE_DOMAIN_SERVICE"] == "false":
        assert switch["ROLLOUT_PERCENT"] == "0"


def test_running_process_has_the_files_switch(host, settings):
    """Catches an env file written without a restart. Read and filtered on the
    host: no other variable (no secret) comes back."""
    unit = settings["service_name"]
    process = host.check_output(
        f"tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value {unit})/environ"
        " | grep -E '^(USE_DOMAIN_SERVICE|ROLLOUT_PERCENT)=' | sort")
    in_file = "\n".join(sorted(f"{k}={v}" for k, v in SWITCH.findall(
        host.file(settings["rollout_env_file"]).content_string)))
    assert process == in_file


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

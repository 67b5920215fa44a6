"""The autopilot's settings check (rollout/autopilot.py: one line per refusal) and
its deploy file (tasks/autopilot.py) planned on a pyinfra @fake control host:
the operations in order, each named, and neither the SSH key nor an alert URL
in anything pyinfra prints (--diff, -vvv, --debug, --json, --dry)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rollout.autopilot import SETTINGS, alerts_env, check_autopilot, time_span, wheel_fingerprint
from rollout.inputs import InputError
from rollout.project import defaults

ROOT = Path(__file__).resolve().parents[2]
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQFakeKeyBody4417"
HOOK = "https://hooks.example.invalid/services/T0/B0/unitHookSecret8830"


@pytest.fixture
def local(tmp_path) -> dict:
    """What an operator has on the machine running the install."""
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "camera_rollout-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "project" / "inventories").mkdir(parents=True)
    (tmp_path / "project" / "inventories" / "prod.py").write_text("hosts = ['api-1']\n")
    (tmp_path / "project" / "group_data").mkdir()
    (tmp_path / "project" / "group_data" / "prod.py").write_text("soak_s = 60\n")
    key = tmp_path / "id_rollout"
    key.write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "known_hosts").write_text("10.0.0.1 ssh-ed25519 AAAAC3Nza\n")
    return {"autopilot_env": "prod", "autopilot_wheelhouse": str(tmp_path / "wheels"),
            "autopilot_project": str(tmp_path / "project"), "autopilot_ssh_key": str(key),
            "autopilot_known_hosts": str(tmp_path / "known_hosts"),
            "autopilot_alert_env": ["ROLLOUT_SLACK_WEBHOOK_URL"]}


def settings(local: dict, **changes) -> dict:
    return {**{key: defaults()[key] for key in SETTINGS}, **local, **changes}


ENVIRON = {"ROLLOUT_SLACK_WEBHOOK_URL": HOOK}


# --- the check ------------------------------------------------------------------------------------


def test_the_defaults_name_every_setting_and_a_good_install_passes(local):
    assert set(SETTINGS) <= set(defaults())
    checked = check_autopilot(settings(local), ENVIRON)
    assert checked["autopilot_command"] == "watch" and checked["alert_values"] == ENVIRON
    assert check_autopilot(settings(local, autopilot_alert_env=[]), {})["alert_values"] == {}
    # Removing needs none of the install's inputs.
    assert check_autopilot(settings({}, autopilot_state="absent"), {})["autopilot_user"] == "rollout-watch"


@pytest.mark.parametrize("changes, message", [
    ({"autopilot_state": "gone"}, "setting autopilot_state: must be present or absent, got 'gone'"),
    ({"autopilot_env": None}, "setting autopilot_env: None must be an inventory name"),
    ({"autopilot_env": "../prod"}, "setting autopilot_env: '../prod' must be an inventory name"),
    ({"autopilot_env": "staging"}, "has no inventories/staging.py"),
    ({"autopilot_command": "deploy"}, "setting autopilot_command: 'deploy' must be one of watch, check, status"),
    ({"autopilot_command": "check; rm -rf /"}, "setting autopilot_command"),
    ({"autopilot_user": "root"}, "setting autopilot_user: 'root' must be a plain user name (not root)"),
    ({"autopilot_user": "Rollout Watch"}, "setting autopilot_user"),
    ({"autopilot_unit": "a/b"}, "setting autopilot_unit"),
    ({"autopilot_home": "var/lib/x"}, "setting autopilot_home: 'var/lib/x' must be an absolute path"),
    ({"autopilot_home": "/"}, "setting autopilot_home: '/' must be an absolute path"),
    ({"autopilot_state_dir": "/var/lib/a b"}, "setting autopilot_state_dir"),
    ({"autopilot_state_dir": "/var/lib/rollout-watch"},
     "setting autopilot_state_dir: '/var/lib/rollout-watch' must be a directory of its own"),
    ({"autopilot_state_dir": "/var/lib"}, "must be a directory of its own"),
    ({"autopilot_state_dir": "/var/lib/rollout-watch/.ssh/state"}, "must be a directory of its own"),
    ({"autopilot_home": "/var/lib/%h"}, "setting autopilot_home: '/var/lib/%h' must be an absolute path of letters"),
    ({"autopilot_state_dir": "/var/lib/$(id)"}, "setting autopilot_state_dir: '/var/lib/$(id)' must be"),
    ({"autopilot_interval": "soon"}, "setting autopilot_interval: 'soon' is not a duration (e.g. 30s, 1min, 1h)"),
    ({"autopilot_interval": "0s"}, "setting autopilot_interval: '0s' must be at least one second"),
    ({"autopilot_interval": "500ms"}, "setting autopilot_interval: '500ms' is not a duration"),
    ({"autopilot_timeout": "-5m"}, "setting autopilot_timeout: '-5m' is not a duration"),
    ({"autopilot_package": "camera-rollout"}, "give exactly one of autopilot_wheelhouse"),
    ({"autopilot_wheelhouse": None}, "give exactly one of autopilot_wheelhouse"),
    ({"autopilot_wheelhouse": None, "autopilot_package": "--index-url=http://evil x"},
     "setting autopilot_package"),
    ({"autopilot_wheelhouse": "/nonexistent/wheels"}, "setting autopilot_wheelhouse: no directory /nonexistent/wheels"),
    ({"autopilot_wheelhouse": "relative/wheels"}, "must be an absolute path"),
    ({"autopilot_project": "/nonexistent"}, "setting autopilot_project: no directory /nonexistent"),
    ({"autopilot_ssh_key": None}, "setting autopilot_ssh_key is not set"),
    ({"autopilot_ssh_key": "/nonexistent/key"}, "setting autopilot_ssh_key: no file /nonexistent/key"),
    ({"autopilot_known_hosts": "/nonexistent/kh"}, "setting autopilot_known_hosts: no file /nonexistent/kh"),
    ({"autopilot_alert_env": "ROLLOUT_SLACK_WEBHOOK_URL"}, "setting autopilot_alert_env: must be a list"),
    ({"autopilot_alert_env": ["not-a-name"]}, "'not-a-name' is not an environment variable name"),
    ({"autopilot_alert_env": ["ROLLOUT_PAGER_URL"]},
     "ROLLOUT_PAGER_URL has no value in this environment: refusing to install the autopilot"),
])
def test_a_bad_setting_is_refused_with_one_line(local, changes, message):
    with pytest.raises(InputError) as refused:
        check_autopilot(settings(local, **changes), ENVIRON)
    text = str(refused.value)
    assert message in text and "\n" not in text
    assert HOOK not in text


def test_a_blank_or_multiline_alert_value_is_refused_without_showing_it(local):
    for value in ("", "  ", "https://a\nX=1"):
        with pytest.raises(InputError) as refused:
            check_autopilot(settings(local), {"ROLLOUT_SLACK_WEBHOOK_URL": value})
        assert "ROLLOUT_SLACK_WEBHOOK_URL" in str(refused.value)
        assert "https://a" not in str(refused.value)


def test_a_wheelhouse_without_the_tool_s_wheel_is_refused(local):
    Path(local["autopilot_wheelhouse"], "camera_rollout-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(InputError, match="holds no camera_rollout-"):
        check_autopilot(settings(local), ENVIRON)


def test_time_spans_and_the_wheel_fingerprint(local):
    assert time_span("x", "1min") == 60 and time_span("x", "1h 30min") == 5400 and time_span("x", 90) == 90
    before = wheel_fingerprint(local["autopilot_wheelhouse"])
    Path(local["autopilot_wheelhouse"], "camera_rollout-0.1.0-py3-none-any.whl").write_bytes(b"rebuilt")
    assert wheel_fingerprint(local["autopilot_wheelhouse"]) != before  # same name, new content
    assert alerts_env({"B_URL": "https://b", "A_URL": "https://a?x=1&y=2"}) == \
        'A_URL="https://a?x=1&y=2"\nB_URL=https://b\n'


# --- the deploy file on a @fake control host ------------------------------------------------------

FAKE_INVENTORY = """\
control = [("@fake/control", {"fake_responses": {"uname -s": "Linux", "useradd": "/usr/sbin/useradd"},
                              "fake_delay": 0, "fake_delay_jitter": 0})]
"""


def pyinfra(tmp_path: Path, *args: str, environ: dict | None = None, stdin_logged: bool = False
            ) -> subprocess.CompletedProcess:
    """The pyinfra CLI from a directory of its own (a pyinfra-debug.log lands there);
    ``stdin_logged``: with the fake connector logging the files written through
    stdin (tests/unit/fake_pyinfra.py)."""
    (tmp_path / "control.py").write_text(FAKE_INVENTORY)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0",
           **(ENVIRON if environ is None else environ)}
    yes = [] if "--dry" in args else ["-y"]
    cli = [str(ROOT / "tests" / "unit" / "fake_pyinfra.py")] if stdin_logged else ["-m", "pyinfra"]
    return subprocess.run([sys.executable, *cli, *yes, "control.py", str(ROOT / "tasks" / "autopilot.py"),
                           *args], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120)


def data(local: dict) -> list[str]:
    args = []
    for key, value in local.items():
        args += ["--data", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


INSTALL_PLAN = [
    "System user rollout-watch (no login shell, home /var/lib/rollout-watch)",
    "Home /var/lib/rollout-watch (root's; the user reads it)",
    "State directory /var/lib/rollout-watch/state",
    "venv /var/lib/rollout-watch/venv",
    "Wheelhouse directory /var/lib/rollout-watch/wheelhouse",
    "Wheelhouse /var/lib/rollout-watch/wheelhouse (from {wheels})",
    "Install camera-rollout from the wheelhouse (only when the wheels changed)",
    "Project /var/lib/rollout-watch/project",
    "Project directory /var/lib/rollout-watch/project/inventories",
    "Project inventories/ -> /var/lib/rollout-watch/project/inventories",
    "Project directory /var/lib/rollout-watch/project/group_data",
    "Project group_data/ -> /var/lib/rollout-watch/project/group_data",
    "SSH directory /var/lib/rollout-watch/.ssh",
    "SSH key /var/lib/rollout-watch/.ssh/id_rollout (contents never shown)",
    "Known hosts /var/lib/rollout-watch/.ssh/known_hosts",
    "Config directory /etc/rollout-watch",
    "Alerts env file /etc/rollout-watch/alerts.env: ROLLOUT_SLACK_WEBHOOK_URL (contents never shown)",
    "Unit file /etc/systemd/system/rollout-watch.service",
    "Unit file /etc/systemd/system/rollout-watch.timer",
    "systemd daemon-reload (a unit file changed)",
    "Restart rollout-watch.timer (a unit file changed)",
    "rollout-watch.timer enabled and started",
]


def test_the_install_plans_every_operation_by_name_in_order(tmp_path, local):
    result = pyinfra(tmp_path, "--json", *data(local))
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads(result.stdout)["plan"]
    assert [op["name"] for op in plan] == [n.format(wheels=local["autopilot_wheelhouse"]) for n in INSTALL_PLAN]
    assert all(op["args"] == [] for op in plan)  # named operations: pyinfra shows no argument


def test_the_removal_plans_every_operation_by_name(tmp_path):
    result = pyinfra(tmp_path, "--json", "--data", "autopilot_state=absent", environ={})
    assert result.returncode == 0, result.stderr[-3000:]
    assert [op["name"] for op in json.loads(result.stdout)["plan"]] == [
        "Stop and disable rollout-watch.timer (no new tick)",
        "Let a tick of rollout-watch.service in progress end",
        "Remove /etc/systemd/system/rollout-watch.timer",
        "Remove /etc/systemd/system/rollout-watch.service",
        "systemd daemon-reload (unit files removed)",
        "Forget rollout-watch.service's failed state",
        "Remove /etc/rollout-watch (alerts env file)",
        "Remove /var/lib/rollout-watch (venv, project, SSH key)",
        "Remove user rollout-watch",
    ]


@pytest.mark.parametrize("flags", [["--diff", "-vvv", "--debug"], ["--dry", "--diff", "-vvv"], ["--json", "-v"]])
def test_neither_the_key_nor_an_alert_url_is_ever_printed(tmp_path, local, flags):
    result = pyinfra(tmp_path, *flags, *data(local))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert KEY_BODY not in output and HOOK not in output and "unitHookSecret8830" not in output
    if "--diff" in flags:
        assert "id_rollout (secret: contents not shown)" in output
        assert "alerts.env (secret: contents not shown)" in output
        assert ("+ ExecStart=/var/lib/rollout-watch/venv/bin/rollout --project /var/lib/rollout-watch/project "
                "watch prod") in output  # the units are shown: they hold no secret


def test_files_are_replaced_by_rename_and_the_install_marked_after_pip(tmp_path, local):
    result = pyinfra(tmp_path, "--debug", *data(local), stdin_logged=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # Each file by one root-side write, its content on stdin (logged here as a checksum), never uploaded.
    written = {one["path"]: one for line in output.splitlines() if "[fake] stdin on " in line
               for one in json.loads(line.split(": ", 1)[1])}
    assert {k: written["/etc/rollout-watch/alerts.env"][k] for k in ("user", "group", "mode")} == \
        {"user": "root", "group": "rollout-watch", "mode": "640"}
    assert {k: written["/var/lib/rollout-watch/.ssh/id_rollout"][k] for k in ("user", "group", "mode")} == \
        {"user": "root", "group": "rollout-watch", "mode": "640"}
    # The project's files and the wheels too (a fresh control host: every file is new),
    # root's: the user reads them and can plant no symlink where root writes.
    project = written["/var/lib/rollout-watch/project/inventories/prod.py"]
    assert {k: project[k] for k in ("user", "group", "mode", "directory")} == \
        {"user": "root", "group": "rollout-watch", "mode": "640",
         "directory": {"user": "root", "group": "rollout-watch", "mode": "750"}}
    assert written["/var/lib/rollout-watch/wheelhouse/camera_rollout-0.1.0-py3-none-any.whl"]["mode"] == "644"
    assert "simulating put_file" not in output
    assert KEY_BODY not in output
    assert ("--no-index --find-links /var/lib/rollout-watch/wheelhouse --force-reinstall camera-rollout "
            "&& echo") in output


@pytest.mark.parametrize("changes, environ, message", [
    ({}, {}, "ROLLOUT_SLACK_WEBHOOK_URL has no value in this environment"),
    ({"autopilot_package": "camera-rollout==0.1.0"}, ENVIRON, "give exactly one of autopilot_wheelhouse"),
    ({"autopilot_interval": "often"}, ENVIRON, "setting autopilot_interval"),
    ({"autopilot_env": None}, ENVIRON, "setting autopilot_env"),
])
def test_a_plain_pyinfra_run_is_refused_before_any_operation(tmp_path, local, changes, environ, message):
    given = {**local, **changes}
    given = {k: v for k, v in given.items() if v is not None}
    result = pyinfra(tmp_path, "-v", *data(given), environ=environ)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if "pyinfra error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], output[-2000:]
    assert "Starting operation" not in output

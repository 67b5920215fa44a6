"""The one runner of the operator's hooks (rollout/hooks.py), on this machine:
what a hook gets of the environment, how it ends, and its bound."""

import os
import time

from rollout import hooks


def test_a_hook_gets_the_minimal_environment_and_the_names_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMERA_API_DATABASE_URL", "postgresql://c:s3cret@db/c")
    monkeypatch.setenv("ROLLOUT_SLACK_WEBHOOK_URL", "https://hooks.example/T000/s3cret")
    monkeypatch.setenv("LB_TOKEN_FILE", "/etc/lb/token")
    monkeypatch.setenv("LC_TIME", "C")
    ok, detail = hooks.run("env | cut -d= -f1 | sort | tr '\\n' ' '", tmp_path, 10, ["LB_TOKEN_FILE"])
    assert ok, detail
    names = set(detail.removeprefix("exit 0: ").split())
    assert {"PATH", "LB_TOKEN_FILE", "LC_TIME"} <= names
    assert not names & {"CAMERA_API_DATABASE_URL", "ROLLOUT_SLACK_WEBHOOK_URL"}
    assert names <= set(hooks.MINIMAL_ENV) | {"LB_TOKEN_FILE", "LC_TIME", "PWD", "SHLVL", "_", "OLDPWD"} \
        | {n for n in names if n.startswith("LC_")}


def test_a_failing_hook_says_its_exit_and_last_line(tmp_path):
    assert hooks.run("echo first; echo 'no route to lb' >&2; exit 3", tmp_path, 10) == \
        (False, "exit 3: no route to lb")
    assert hooks.run("echo drained", tmp_path, 10) == (True, "exit 0: drained")


def test_a_hook_past_its_timeout_is_killed_with_its_children(tmp_path):
    """The child holds the hook's pipes for an hour: without the process group's
    kill, the runner would wait for it."""
    marker = tmp_path / "child.pid"
    ok, detail = hooks.run(f"sleep 3600 & echo $! > {marker}; wait", tmp_path, 1)
    assert (ok, detail) == (False, "no answer within 1s (killed)")
    child = int(marker.read_text())
    for _ in range(50):  # the kill is delivered; the child is reaped by init
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{child}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the hook's child {child} outlived the hook")

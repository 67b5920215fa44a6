"""Decisions from one read of a host's state (rollout/hoststate.py), pure."""

import pytest

from fake_inventory import SETTINGS, host_state
from rollout import hoststate
from rollout.stages import rollout_env


@pytest.mark.parametrize(
    "verdicts, rolled_back, expected",
    [
        ({}, False, "not checked"),
        ({"preflight": True, "compare": True, "mix": True, "gate": "pass"}, False, "pass"),
        ({"preflight": True, "gate": "inconclusive"}, False, "inconclusive"),
        ({"preflight": False}, True, "rolled back (preflight failed)"),
        ({"preflight": True, "compare": False, "mix": False}, True, "rolled back (compare, mix failed)"),
        ({"preflight": True, "compare": True, "mix": True, "gate": "abort"}, True, "rolled back (abort)"),
        ({"preflight": True, "compare": True, "mix": True, "gate": "error"}, False, "error"),
    ],
)
def test_record_verdict(verdicts, rolled_back, expected):
    assert hoststate.record_verdict(verdicts, rolled_back) == expected


def test_the_lock_is_free_ours_or_refused_naming_the_holder():
    holder = {"token": "a", "owner": "bob", "time": "t0", "command": "rollout deploy x"}
    assert hoststate.lock_refusal(host_state(10), "mine") is None
    assert hoststate.lock_refusal(host_state(10, lock=holder), "a") is None
    assert hoststate.lock_refusal(host_state(10, lock=holder), "mine") == \
        "rollout lock held by bob since t0 (rollout deploy x)"
    assert "could not be read" in hoststate.lock_refusal(None, "mine")


def test_what_the_operations_read_of_a_state():
    fresh, placed = host_state(), host_state(25)
    assert hoststate.file_stage(fresh) is None and hoststate.file_stage(placed) == 25
    assert not hoststate.healthy(fresh) and hoststate.healthy(placed)
    assert not hoststate.unit_running(fresh) and hoststate.unit_running(placed)
    assert not hoststate.unit_enabled(fresh) and hoststate.unit_enabled(placed)
    assert hoststate.path_state(None, "/etc/x") == {"type": None}
    with pytest.raises(KeyError):  # a path the read did not ask for is a bug, not a missing file
        hoststate.path_state(placed, "/etc/not-read")


def test_the_status_report_has_what_the_cli_prints():
    report = hoststate.status_report(host_state(25, process_stage=10))
    assert (report["file_stage"], report["process_stage"], report["health"]) == (25, 10, 200)
    assert report["unit_active"] == "active" and report["lock"] is None
    assert report["file_switch"] == rollout_env(25) and report["process_switch"] == rollout_env(10)


def test_the_state_spec_asks_the_secrets_file_for_names_and_a_checksum_only_when_written():
    spec = hoststate.state_spec({**SETTINGS, "state_dir": "/var/lib/x", "health_path": "/h", "write_secrets": False})
    secrets = spec["files"][SETTINGS["secrets_env_file"]]
    assert secrets == {"checksum": False, "keys": True}
    assert spec["files"][SETTINGS["rollout_env_file"]] == {"checksum": True}
    assert spec["switch_variables"] == ["USE_DOMAIN_SERVICE", "ROLLOUT_PERCENT"]
    written = hoststate.state_spec({**SETTINGS, "state_dir": "/x", "health_path": "/h", "write_secrets": True})
    assert written["files"][SETTINGS["secrets_env_file"]]["checksum"] is True
    assert hoststate.state_spec({**SETTINGS, "state_dir": "/x", "health_path": "/h", "write_secrets": False},
                                secrets_checksum=True)["files"][SETTINGS["secrets_env_file"]]["checksum"]

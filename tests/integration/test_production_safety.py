"""Production safety on a real fleet: runs without secret values leave the
secrets file alone, a host whose secrets file lacks a variable is refused by
name, --dry writes nothing, and one unreachable host never rolls back the
healthy ones. The tests run in file order."""

from __future__ import annotations

import json
import os
import socket

from fleetlib import SANDBOX_DIR, run_pyinfra, run_rollout, stages, wait_until

SECRETS_FILE = "/etc/camera-api/secrets.env"
ENV_FILE = "/etc/camera-api/rollout.env"
FAST = ("--soak", "6s", "--batch-soak", "3s")

#: The sandbox's hosts as a production inventory without the secret values (what
#: inventories/prod.py gives when CAMERA_API_* are not in the environment). Named
#: sandbox.py so that group_data/sandbox.py applies as for the real one.
NO_SECRETS_INVENTORY = '''
from rollout_sandbox.fleet import load_fleet as _load_fleet

_fleet = _load_fleet()
camera_api = [
    (h["name"], {"ssh_hostname": h["address"], "ssh_user": "root", "ssh_key": _fleet["ssh_key"],
                 "ssh_known_hosts_file": _fleet["known_hosts"], "ssh_strict_host_key_checking": "yes"})
    for h in _fleet["hosts"]
]
'''


def no_secret_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("CAMERA_API_")}


def secrets_sums(fleet) -> dict[str, str]:
    return {h.name: h.testinfra.file(SECRETS_FILE).sha256sum for h in fleet}


def healthy(host) -> bool:
    return host.testinfra.run(
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/api/v1/monitoring/health").stdout == "200"


def test_rollback_and_check_without_secret_values_leave_the_secrets_file(fleet, tmp_path):
    result = run_pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false")
    assert result.returncode == 0, result.stderr[-3000:]
    before = secrets_sums(fleet)
    inventory = tmp_path / "sandbox.py"
    inventory.write_text(NO_SECRETS_INVENTORY)

    # --yes and --json after the command: accepted where the README says.
    result = run_rollout("rollback", str(inventory), "--yes", "--json", env=no_secret_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["exit_code"] == 0
    assert set(stages().values()) == {(0, 0)}  # restarted onto stage 0, with its secrets
    assert secrets_sums(fleet) == before
    assert all(healthy(h) for h in fleet)

    result = run_rollout("check", str(inventory), env=no_secret_env())
    assert result.returncode == 0, result.stderr[-3000:]
    assert secrets_sums(fleet) == before
    assert all(healthy(h) for h in fleet)


def test_a_secrets_file_lacking_a_variable_is_named_and_nothing_is_written(fleet):
    host = fleet[-1]
    t = host.testinfra
    t.run_expect([0], f"cp -p {SECRETS_FILE} /root/secrets.env.keep && sed -i '/^REDIS_URL=/d' {SECRETS_FILE}")
    try:
        result = run_pyinfra("tasks/preflight.py")
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert f"[{host.name}] preflight FAIL secrets file: secrets env file lacks REDIS_URL" in output, output
        assert "redis://" not in output

        env_before = t.file(ENV_FILE).sha256sum
        pid = host.main_pid()
        result = run_rollout("deploy", "sandbox", "--stage", "10", "--yes", "--batches", "100%", *FAST)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert f"[{host.name}] {SECRETS_FILE} lacks REDIS_URL" in output, output[-3000:]
        assert t.file(ENV_FILE).sha256sum == env_before and host.main_pid() == pid
    finally:
        t.run_expect([0], f"mv -f /root/secrets.env.keep {SECRETS_FILE}")
    # The other hosts were reverted by the failure policy; settle the fleet on stage 0.
    result = run_rollout("rollback", "sandbox")
    assert result.returncode == 0, result.stderr[-3000:]


def test_dry_run_writes_nothing_on_any_host(fleet):
    for host in fleet:
        # An older release put a probe script here: a dry run must not put it back.
        host.testinfra.run_expect([0], "rm -f /usr/local/lib/camera-rollout/probe.py; touch /root/.dry-marker")
    result = run_rollout("deploy", "sandbox", "--stage", "10", "--dry")
    assert result.returncode == 0, result.stderr[-3000:]
    for host in fleet:
        changed = host.testinfra.check_output(
            "find /etc /usr/local /var/lib/camera-rollout /opt/camera-api -newer /root/.dry-marker "
            "-not -path '*/__pycache__*' -print")
        assert changed == "", f"{host.name}: {changed}"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the with block ends


def test_an_unreachable_host_is_named_and_rolls_back_nothing(fleet, tmp_path):
    result = run_pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false")
    assert result.returncode == 0, result.stderr[-3000:]
    pids = {h.name: h.main_pid() for h in fleet}
    fleet_file = json.loads((SANDBOX_DIR / "fleet.json").read_text())
    inventory = tmp_path / "sandbox.py"
    inventory.write_text(
        "import json\n"
        f"_fleet = json.load(open({str(SANDBOX_DIR / 'fleet.json')!r}))\n"
        "_ssh = {'ssh_user': 'root', 'ssh_key': _fleet['ssh_key'], 'ssh_known_hosts_file': _fleet['known_hosts'],"
        " 'ssh_strict_host_key_checking': 'yes'}\n"
        "camera_api = [(h['name'], {'ssh_hostname': h['address'], **_ssh}) for h in _fleet['hosts']]\n"
        f"camera_api.append(('camera-ghost', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {_closed_port()}, **_ssh}}))\n"
    )
    assert fleet_file["hosts"]
    result = run_rollout("--json", "check", str(inventory))
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rollout: cannot reach camera-ghost: not judged, nothing rolled back"), last
    verdicts = json.loads(result.stdout)["gate"]
    assert verdicts.pop("camera-ghost") == "unreachable"
    assert set(verdicts.values()) <= {"pass", "inconclusive"}, verdicts
    assert {h.name: h.main_pid() for h in fleet} == pids
    assert set(stages().values()) == {(10, 10)}

    # Reachable but unusable metrics keep the fail-safe rule: the fleet is rolled back.
    host = fleet[0]
    host.testinfra.run_expect([0], "mkdir -p /etc/systemd/system/camera-api.service.d && printf "
                              "'[Service]\\nEnvironment=METRICS_FAULT=500\\n' > "
                              "/etc/systemd/system/camera-api.service.d/metrics-fault.conf && "
                              "systemctl daemon-reload && systemctl restart camera-api")
    try:
        wait_until(lambda: healthy(host), 60, f"{host.name} healthy with the metrics fault")
        result = run_rollout("check", str(inventory), "--soak", "12s")
        # exit 1, not 3: the ghost cannot be rolled back, and the message says so
        assert result.returncode == 1, result.stderr[-3000:]
        assert "the rollback did not complete on every host" in result.stderr.strip().splitlines()[-1]
        assert set(stages().values()) == {(0, 0)}
    finally:
        host.testinfra.run_expect([0], "rm -f /etc/systemd/system/camera-api.service.d/metrics-fault.conf && "
                                  "systemctl daemon-reload && systemctl restart camera-api")
        wait_until(lambda: healthy(host), 60, f"{host.name} healthy again")

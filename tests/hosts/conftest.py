"""Host checks of a real fleet with testinfra, hosts taken from a pyinfra inventory.

    pytest tests/hosts --inventory inventories/prod.py [--junit-xml out.xml]
    pytest tests/hosts --inventory inventories/prod.py --checks preflight,verify

``rollout verify ENV`` runs exactly this. With ``--checks`` the package's own
preparation check and endpoint verification run first (a pyinfra run) and each
host's result becomes a test case too, so one JUnit file holds everything.
"""

from __future__ import annotations

import json
import os

import pytest
import testinfra

from rollout.fleet import load_fleet, pyinfra
from rollout.hoststate import state_spec
from rollout.probe import probe_shell


def pytest_addoption(parser):
    group = parser.getgroup("rollout hosts")
    group.addoption("--inventory", help="pyinfra inventory file (or ENV name) whose hosts to check")
    group.addoption("--checks", default="", help="also run these package checks: preflight,verify")
    group.addoption("--read-only", action="store_true", help="verification: GET endpoints only")


def _fleet(config):
    inventory = config.getoption("--inventory")
    if not inventory:
        raise pytest.UsageError("tests/hosts needs --inventory inventories/ENV.py")
    return load_fleet(inventory)


def pytest_generate_tests(metafunc):
    if "host_name" in metafunc.fixturenames:
        metafunc.parametrize("host_name", _fleet(metafunc.config).hosts)


@pytest.fixture(scope="session")
def fleet(pytestconfig):
    return _fleet(pytestconfig)


@pytest.fixture(scope="session")
def ssh_config(fleet, tmp_path_factory):
    """An OpenSSH config for testinfra, from the hosts' pyinfra SSH data."""
    lines = []
    for name in fleet.hosts:
        data = fleet.data[name]
        lines.append(f"Host {name}")
        lines.append(f"  HostName {data.get('ssh_hostname') or name}")
        for key, option in (("ssh_user", "User"), ("ssh_port", "Port"), ("ssh_key", "IdentityFile"),
                            ("ssh_known_hosts_file", "UserKnownHostsFile"),
                            ("ssh_strict_host_key_checking", "StrictHostKeyChecking")):
            if data.get(key):
                lines.append(f"  {option} {os.path.expanduser(str(data[key]))}")
        lines.append("  BatchMode yes")
    path = tmp_path_factory.mktemp("ssh") / "config"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def host(host_name, fleet, ssh_config):
    return testinfra.get_host(f"ssh://{host_name}", ssh_config=ssh_config,
                              sudo=bool(fleet.data[host_name].get("_sudo")))


@pytest.fixture
def settings(host_name, fleet):
    return fleet.data[host_name]


@pytest.fixture
def state(host, settings):
    """The host's state as the package reads it: the probe's ``state`` mode, the
    same reader the rollout decides from (names only from the secrets file)."""
    return json.loads(host.check_output(probe_shell("state", state_spec(settings))))


@pytest.fixture(scope="session")
def check_reports(pytestconfig, fleet):
    """Run the requested package checks once; their reports by host and check."""
    wanted = [c for c in pytestconfig.getoption("--checks").split(",") if c]
    if not wanted:
        return None
    files = [f"tasks/{check}.py" for check in wanted]
    data = {"verify_read_only": True} if pytestconfig.getoption("--read-only") else {}
    run = pyinfra(fleet, files, data=data)
    return run

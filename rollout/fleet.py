"""The CLI's view of a fleet: its inventory, its hosts, pyinfra runs against it,
and the per-host reports those runs write.

``ENV`` is ``inventories/ENV.py`` or a path to an inventory file. The inventory
is loaded with pyinfra's own loader, so group_data applies as in a pyinfra run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UsageError(ValueError):
    """Refused before any host is touched (exit 2); one line."""


def resolve_inventory(env: str) -> Path:
    path = Path(env)
    if path.suffix == ".py" and path.is_file():
        return path.resolve()
    candidate = PROJECT_ROOT / "inventories" / f"{env}.py"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (PROJECT_ROOT / "inventories").glob("*.py"))
    raise UsageError(f"unknown environment {env!r}: no inventories/{env}.py (known: {', '.join(known)})")


@dataclass
class Fleet:
    inventory: Path
    hosts: list[str]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)

    def setting(self, key: str, default: Any = None) -> Any:
        """A setting all hosts share (from group_data); refused when they differ."""
        values = {json.dumps(self.data[h].get(key, default), sort_keys=True, default=str) for h in self.hosts}
        if len(values) > 1:
            raise UsageError(f"hosts disagree on {key}: set it for the whole inventory")
        value = self.data[self.hosts[0]].get(key)
        return default if value is None else value

    def check_names(self, names: list[str], what: str = "host") -> None:
        unknown = [n for n in names if n not in self.hosts]
        if unknown:
            raise UsageError(f"unknown {what}(s) {', '.join(unknown)}: the inventory has {', '.join(self.hosts)}")


def load_fleet(env: str) -> Fleet:
    """Hosts and data of an inventory, through pyinfra's loader (group_data too)."""
    from pyinfra.api import State
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    inventory = resolve_inventory(env)
    ctx_state.set(State())
    cwd = os.getcwd()
    os.chdir(PROJECT_ROOT)
    try:
        loaded = make_inventory(str(inventory), cwd=str(PROJECT_ROOT))
    except PyinfraError as error:
        raise UsageError(f"inventory {inventory.name}: {error}") from None
    except Exception as error:  # an inventory file is user code
        raise UsageError(f"inventory {inventory.name} failed to load: {error}") from None
    finally:
        os.chdir(cwd)
    hosts = [host.name for host in loaded]
    if not hosts:
        raise UsageError(f"inventory {inventory.name} has no hosts")
    # Only what the CLI needs: never the secrets.
    keys = ("stage_plan", "canary", "soak_s", "smoke_traffic", "batch_hooks", "rollback_batches",
            "service_name", "service_group",
            "rollout_env_file", "secrets_env_file", "unit_file", "bind_port", "health_path",
            "ssh_hostname", "ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file",
            "ssh_strict_host_key_checking", "_sudo")
    data = {host.name: {key: host.data.get(key) for key in keys} for host in loaded}
    return Fleet(inventory, hosts, data)


@dataclass
class Run:
    """One pyinfra run: its exit code, its output and the reports it wrote."""

    returncode: int
    output: str
    reports: dict[str, dict[str, dict]]

    def report(self, host: str, check: str) -> dict | None:
        return self.reports.get(host, {}).get(check)


def pyinfra(
    fleet: Fleet,
    files: list[str],
    data: dict[str, Any] | None = None,
    limit: list[str] | None = None,
    dry: bool = False,
    stream: bool = False,
) -> Run:
    """Run the pyinfra CLI on the fleet from the project root (so group_data
    loads), limited to ``limit`` hosts (checked against the inventory first:
    pyinfra's own --limit deploys nothing, silently, on a typo)."""
    if limit is not None:
        fleet.check_names(limit)
    with tempfile.TemporaryDirectory(prefix="rollout-reports-") as reports_dir:
        command = [sys.executable, "-m", "pyinfra", str(fleet.inventory), *files]
        command += ["--dry", "--diff"] if dry else ["-y"]
        for name in limit or []:
            command += ["--limit", name]  # one pattern per --limit
        for key, value in {**(data or {}), "report_dir": reports_dir}.items():
            command += ["--data", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if stream:
                sys.stderr.write(line)
        process.wait()
        reports: dict[str, dict[str, dict]] = {}
        for path in Path(reports_dir).glob("*.json"):
            host, check = path.name[: -len(".json")].rsplit(".", 1)
            reports.setdefault(host, {})[check] = json.loads(path.read_text())
    return Run(process.returncode, "".join(lines), reports)

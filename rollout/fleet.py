"""The CLI's view of a fleet: its inventory, its hosts, pyinfra runs against it,
the per-host reports those runs write, and the pyinfra runner of the
orchestration (rollout/orchestrate.py).

``ENV`` is ``inventories/ENV.py`` or a path to an inventory file. The inventory
is loaded with pyinfra's own loader, so group_data applies as in a pyinfra run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout import hooks
from rollout.inputs import InputError, check_connection, check_secrets_for_writing, check_settings, settings_of
from rollout.orchestrate import HostsRun
from rollout.pool import waiting_for
from rollout.project import DEPLOY_ROOT, find_project


def resolve_inventory(env: str, project: Path) -> Path:
    """``prod`` -> ``PROJECT/inventories/prod.py``; a path must be an inventory ``.py`` file."""
    path = Path(env)
    if "/" in env or path.suffix:
        if path.suffix != ".py":
            raise InputError(f"environment {env!r} is not an inventory: give a name from inventories/ "
                             "or the path of an inventory .py file")
        if not path.is_file():
            raise InputError(f"inventory file {env!r} does not exist")
        if path.resolve().parent in (DEPLOY_ROOT, DEPLOY_ROOT / "tasks"):
            raise InputError(f"{env!r} is a deploy file of this project, not an inventory "
                             "(inventories/ holds those)")
        return path.resolve()
    candidate = project / "inventories" / f"{env}.py"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (project / "inventories").glob("*.py"))
    raise InputError(f"unknown environment {env!r}: no inventories/{env}.py in {project} "
                     f"(known: {', '.join(known) or 'none'}; --project DIR to use another project)")


@dataclass
class Fleet:
    inventory: Path
    hosts: list[str]
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The operator's project: inventories/ and group_data/ overrides.
    project: Path = DEPLOY_ROOT
    #: Per host, why its secrets file could not be written (a secret without a
    #: value, or one that does not fit an env file; names only), or None.
    unwritable_secrets: dict[str, str | None] = field(default_factory=dict)

    def refuse_unwritable_secrets(self) -> None:
        """Every host must have every secret, each fit to write: else exit 2."""
        for host in self.hosts:
            if self.unwritable_secrets.get(host):
                raise InputError(self.unwritable_secrets[host])

    def group_data_dirs(self) -> list[str]:
        """The project's group_data/, loaded after the defaults (it overrides them
        key by key); none when the project is the deploy root itself."""
        own = self.project / "group_data"
        return [str(own)] if own.is_dir() and self.project != DEPLOY_ROOT else []

    def setting(self, key: str, default: Any = None) -> Any:
        """A setting all hosts share (from group_data); refused when they differ."""
        values = {json.dumps(self.data[h].get(key, default), sort_keys=True, default=str) for h in self.hosts}
        if len(values) > 1:
            raise InputError(f"hosts disagree on {key}: set it for the whole inventory")
        value = self.data[self.hosts[0]].get(key)
        return default if value is None else value

    def weak_host_keys(self) -> dict[str, list[str]]:
        """The hosts whose host-key checking is weakened on purpose, by policy
        (``ssh_strict_host_key_checking`` other than "yes")."""
        weak: dict[str, list[str]] = {}
        for host in self.hosts:
            policy = self.data[host].get("ssh_strict_host_key_checking")
            if policy != "yes":
                weak.setdefault(str(policy), []).append(host)
        return weak

    def check_names(self, names: list[str], what: str = "host") -> None:
        unknown = [n for n in names if n not in self.hosts]
        if unknown:
            raise InputError(f"unknown {what}(s) {', '.join(unknown)}: the inventory has {', '.join(self.hosts)}")


def _load_error(error: BaseException) -> str:
    """One line for an inventory that raised while loading (it is user code)."""
    from pyinfra_cli.exceptions import UnexpectedExternalError

    if isinstance(error, UnexpectedExternalError):  # pyinfra's wrapper has no message of its own
        error = error.exception
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"


def _check_ssh_files(name: str, data) -> None:
    """The SSH key and known-hosts file a host names must exist here: pyinfra
    would otherwise fail deep inside a connection with an unrelated message.
    Relative paths are refused: pyinfra runs in a directory of its own."""
    for key in ("ssh_key", "ssh_known_hosts_file"):
        value = data.get(key)
        if value and not os.path.isabs(os.path.expanduser(str(value))):
            raise InputError(f"{key} {value} of host {name} must be an absolute path (or start with ~)")
        if value and not os.path.isfile(os.path.expanduser(str(value))):
            raise InputError(f"{key} {value} of host {name} does not exist")


def load_fleet(env: str, project: Path | None = None, connecting: bool = True) -> Fleet:
    """Hosts and data of an inventory, through pyinfra's loader (the defaults,
    then the project's group_data), every setting checked: no host is contacted
    here. ``connecting=False``: for a command that only reads settings (``rollout
    rules``), the SSH key and known-hosts files need not be on this machine."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    project = project or find_project()
    inventory = resolve_inventory(env, project)
    shell = Fleet(inventory, [], project=project)
    ctx_state.set(State())
    cwd = os.getcwd()
    os.chdir(DEPLOY_ROOT)
    try:
        loaded = make_inventory(str(inventory), cwd=str(DEPLOY_ROOT),
                                group_data_directories=shell.group_data_dirs())
    except Exception as error:  # noqa: BLE001 - an inventory file is user code: any error is possible
        raise InputError(f"inventory {inventory.name} failed to load: {_load_error(error)}") from None
    finally:
        os.chdir(cwd)
    hosts = [host.name for host in loaded]
    if not hosts:
        raise InputError(f"inventory {inventory.name} has no hosts")
    data: dict[str, dict[str, Any]] = {}
    unwritable: dict[str, str | None] = {}
    for host in loaded:
        check_connection(host.name, host.data.get)
        settings = settings_of(host.data.get)
        check_settings(settings, host.name)
        try:
            check_secrets_for_writing(settings["secret_variables"], host.data.get, host.name)
            unwritable[host.name] = None
        except InputError as error:
            unwritable[host.name] = str(error)
        if settings["write_secrets"] and unwritable[host.name]:
            raise InputError(unwritable[host.name])
        if connecting:
            _check_ssh_files(host.name, host.data)
        # Only settings and connection details: never the secrets.
        data[host.name] = {**settings, **{key: host.data.get(key) for key in _CONNECTION_KEYS}}
    fleet = Fleet(inventory, hosts, data, project, unwritable)
    for key in FLEET_WIDE:
        fleet.setting(key)  # hosts that disagree are refused now, before any host is contacted
    return fleet


#: Settings the CLI uses for the whole fleet at once: every host must agree on them.
FLEET_WIDE = ("stage_plan", "canary", "soak_s", "batch_hooks", "rollback_batches", "batches", "batch_soak_s",
              "stage_durations", "time_compression", "auto_promote", "watch_soak_s", "confirm_hooks",
              "confirm_hook_timeout_s", "lock_stale_after_s", "watch_failing_after", "alert_sinks",
              "alert_timeout_s", "alert_retries", "batch_hook_timeout_s", "hook_env")


_CONNECTION_KEYS = ("ssh_hostname", "ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file",
                    "ssh_strict_host_key_checking", "_sudo")


@dataclass
class Run:
    """One pyinfra run: its exit code, its output and the reports it wrote."""

    returncode: int
    output: str
    reports: dict[str, dict[str, dict]]

    def report(self, host: str, check: str) -> dict | None:
        return self.reports.get(host, {}).get(check)

    def unreachable(self, hosts: list[str]) -> list[str]:
        """Hosts the run never reached (no connection): every entry file marks
        the hosts it is loaded for (tasks/entry.begin), which pyinfra does only
        for the hosts it connected to."""
        return [h for h in hosts if self.report(h, "reached") is None]


def _synthetic(smoke: bool | None) -> dict[str, bool]:
    """``--smoke-traffic/--no-smoke-traffic``: both kinds of synthetic traffic (smoke
    and paired) on or off; not given, group data decides."""
    return {} if smoke is None else {"smoke_traffic": smoke, "paired_traffic": smoke}


def pyinfra(
    fleet: Fleet,
    files: list[str],
    data: dict[str, Any] | None = None,
    limit: list[str] | None = None,
    dry: bool = False,
    stream: bool = False,
    own_session: bool = False,
) -> Run:
    """Run the pyinfra CLI on the fleet: the deploy root's files (importable
    through PYTHONPATH), the defaults then the project's group_data, limited to
    ``limit`` hosts (checked against the inventory first: pyinfra's own --limit
    deploys nothing, silently, on a typo). It runs in a temporary directory,
    which also holds the hosts' reports: a ``pyinfra-debug.log`` of a failed run
    lands there, never in the checkout or an installed package."""
    if limit is not None:
        fleet.check_names(limit)
    with tempfile.TemporaryDirectory(prefix="rollout-reports-") as reports_dir:
        command = [sys.executable, "-m", "pyinfra", str(fleet.inventory), *(str(DEPLOY_ROOT / f) for f in files)]
        for directory in [str(DEPLOY_ROOT / "group_data"), *fleet.group_data_dirs()]:
            command += ["--group-data", directory]
        command += ["--dry", "--diff"] if dry else ["-y"]
        for name in limit or []:
            command += ["--limit", name]  # one pattern per --limit
        for key, value in {**(data or {}), "report_dir": reports_dir}.items():
            command += ["--data", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        path = os.pathsep.join(filter(None, [str(DEPLOY_ROOT), os.environ.get("PYTHONPATH")]))
        process = subprocess.Popen(command, cwd=reports_dir, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONPATH": path}, start_new_session=own_session)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if stream:
                sys.stderr.write(line)
        process.wait()
        reports: dict[str, dict[str, dict]] = {}
        # A host name with a "/" (@fake/web-1, @docker/web-1) puts its reports in a subdirectory.
        for report in Path(reports_dir).rglob("*.json"):
            host, check = report.relative_to(reports_dir).as_posix()[: -len(".json")].rsplit(".", 1)
            reports.setdefault(host, {})[check] = json.loads(report.read_text())
    return Run(process.returncode, "".join(lines), reports)


#: pyinfra lines that say nothing an operator needs in the CLI's summary.
_QUIET = re.compile(r"\] (Success|No changes|Skipped|Connected|Ready: .*|Error( \(ignored\))?: executed 0 commands)$")


def summary_lines(output: str, dry: bool = False) -> list[str]:
    """The lines of a pyinfra run's output that matter to an operator: each
    host's check results and errors (and, for a dry run, the diff lines)."""
    lines = []
    for line in output.splitlines():
        text = line.rstrip()
        if (text.startswith("    [") and not _QUIET.search(text)) or "pyinfra error" in text \
                or "Could not connect" in text or (dry and text.startswith("      ")):
            lines.append(text if dry else text.strip())
    return lines


class PyinfraRunner:
    """The runner of rollout/orchestrate.py: each step is one pyinfra run of this
    project's deploy files over the inventory; the results are read back from
    the reports each host's run writes (never parsed from pyinfra's output,
    which is only shown)."""

    def __init__(self, fleet: Fleet, say: Callable[[str], None], operator: str, token: str,
                 verbose: bool = False):
        self.fleet = fleet
        self.hosts = fleet.hosts
        self.say = say
        self.operator = operator
        self.token = token
        self.verbose = verbose
        #: Data every run of this runner gets (``override``: promote --early).
        self.extra_data: dict[str, Any] = {}
        #: Each pyinfra run in a session of its own: a Ctrl-C or SIGTERM meant for
        #: ``watch --loop`` (which finishes its tick) must not cut the tick's run.
        self.own_session = False

    def run(self, files: list[str], title: str, data: dict[str, Any] | None = None,
            limit: list[str] | None = None, dry: bool = False, show: bool = True) -> Run:
        run = pyinfra(self.fleet, files, data={"operator": self.operator, **self.extra_data, **(data or {})},
                      limit=limit, dry=dry, stream=self.verbose, own_session=self.own_session)
        if show and not self.verbose:  # verbose: already streamed
            for line in summary_lines(run.output):
                self.say(f"  {line}")
            if run.returncode != 0:
                self.say(f"  {title}: pyinfra exited {run.returncode}")
        return run

    def _hosts_run(self, run: Run, hosts: list[str]) -> HostsRun:
        return HostsRun(
            ok=run.returncode == 0,
            unreachable=run.unreachable(hosts),
            recorded=[h for h in hosts if run.report(h, "record") is not None],
            verdicts={h: r["verdict"] for h in hosts if (r := run.report(h, "gate"))},
            proven={h: bool((run.report(h, "legacy-proof") or {}).get("ok"))
                    and bool((run.report(h, "mix") or {}).get("ok")) for h in hosts},
            holders=sorted({r["holder"] for h in hosts if (r := run.report(h, "lock")) and r.get("holder")}),
            waiting=waiting_for((run.report(h, "gate") or {}).get("reason", "") for h in hosts),
        )

    def status(self) -> dict[str, dict | None]:
        run = self.run(["tasks/status.py"], "status", show=False)
        statuses = {h: run.report(h, "status") for h in self.hosts}
        if any(not s or "error" in s for s in statuses.values()):
            for line in summary_lines(run.output):
                self.say(f"  {line}")
        return {h: s if s and "error" not in s else None for h, s in statuses.items()}

    def lock(self, action: str, *, command: str = "", force: bool = False, quiet: bool = False,
             hosts: list[str] | None = None, token: str | None = None) -> HostsRun:
        data = {"lock_action": action, "lock_token": token or self.token, "command": command, "break_lock": force}
        run = self.run(["tasks/lock.py"], "lock" if action == "acquire" else "unlock", data=data, show=not quiet,
                       limit=hosts)
        return self._hosts_run(run, hosts or self.hosts)

    def apply(self, hosts: list[str], stage: int, *, soak_s: float, smoke: bool | None, command: str,
              checks: bool = True) -> HostsRun:
        data: dict[str, Any] = {"stage": stage, "lock_token": self.token, "command": command}
        if checks:
            data.update({"soak_s": soak_s, "rollback_on_abort": False})
            data.update(_synthetic(smoke))
        else:
            data["checks"] = False
        run = self.run(["deploy.py"], "batch" if checks else "revert", data=data, limit=hosts)
        return self._hosts_run(run, hosts)

    def roll_back(self, hosts: list[str] | None, *, command: str, take_lock: bool = False) -> HostsRun:
        data = {"lock_token": self.token, "command": command, "take_lock": take_lock}
        run = self.run(["tasks/rollback.py"], "rollback", data=data, limit=hosts)
        return self._hosts_run(run, hosts or self.hosts)

    def gate(self, soak_s: float, smoke: bool | None) -> HostsRun:
        data: dict[str, Any] = {"soak_s": soak_s, **_synthetic(smoke)}
        return self._hosts_run(self.run(["tasks/gate.py"], "gate", data=data), self.hosts)

    def keep_alerts(self, sent: list[str]) -> None:
        """The watch's sent alert keys, on every host (tasks/watch_state.py)."""
        self.run(["tasks/watch_state.py"], "watch state", data={"watch_state": {"sent": sent}}, show=False)

    def hook(self, command: str) -> tuple[bool, str]:
        return hooks.run(command, self.fleet.project, float(self.fleet.setting("batch_hook_timeout_s")),
                         self.fleet.setting("hook_env"))

    def dry_run(self, stage: int) -> tuple[bool, list[str]]:
        """deploy.py under --dry --diff: what would change per host (no secret)."""
        run = pyinfra(self.fleet, ["deploy.py"], data={"operator": self.operator, "stage": stage, "checks": False},
                      dry=True, stream=self.verbose)
        return run.returncode == 0, summary_lines(run.output, dry=True)

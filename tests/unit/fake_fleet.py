"""A fleet of pyinfra @fake hosts for the ``rollout`` CLI's own tests, without a
real fleet: an inventory per test (in its tmp_path), each host's probe answers
scripted (pyinfra's ``fake_responses``: static, one answer per probe mode), and
a log of what the CLI did to the hosts.

The log is kept by the inventory itself: every pyinfra run the CLI starts
loads it, and it then records that run's command line (files, ``--limit``,
``--data``) and every command the run sends to each host (a probe call by its
mode; the spec of a lock, unlock or record; a probe write by the paths it writes
and each content's sha256, never the content). ``runs(log)`` reads it back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fake_inventory import SETTINGS, host_state

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROBE_MODE = re.compile(r"camera-rollout-probe (\w+)")
LEGACY = {"status": 200, "implementation": "legacy", "body": "{}", "content_type": "application/json",
          "error": None}
#: A lock another operator holds.
BOB = {"token": "bob-token", "owner": "bob@elsewhere", "time": "2026-11-23T10:00:00+00:00",
       "command": "rollout deploy fake --stage 50"}
#: When the hosts recorded their stage: long ago, so its minimum observation time is over.
LONG_AGO = "2020-01-06T00:00:00+00:00"

INVENTORY = '''"""@fake hosts of one test (tests/unit/fake_fleet.py); each pyinfra run logs to {log}."""
import json
import sys

sys.path.append({here!r})
import fake_fleet  # noqa: E402

fake_fleet.keep_log({log!r})
camera_api = [(name, data) for name, data in json.loads({hosts!r})]
'''


def answers(stage: int | None = 10, held_by: dict | None = None, **more) -> dict:
    """A host's probe answers: its state on ``stage`` (a record of it since
    LONG_AGO), the lock free or held by another (``held_by``: refused), records
    and writes accepted, 40 requests all answered by legacy; ``more``: other
    answers by probe mode."""
    state = host_state(stage, lock=held_by)
    if stage is not None:
        record = {"stage": stage, "time": LONG_AGO, "operator": "alice@ops", "verdict": "pass"}
        state.update(current=record, history=[record])
    scripted = {
        "state": state,
        "record": {"recorded": True, "record": {"stage": stage}},
        "lock": {"acquired": True, "holder": {}} if held_by is None else {"acquired": False, "holder": held_by},
        "unlock": {"released": True, "holder": held_by},
        "requests": [LEGACY] * 40,
        "write": {"written": []},
        **more,
    }
    return {f"camera-rollout-probe {mode}": json.dumps(answer) for mode, answer in scripted.items()}


def write_inventory(directory: Path, hosts: dict[str, dict], name: str = "fake") -> Path:
    """``directory/name.py``: ``hosts`` (short name -> host data, ``answers`` for
    its fake_responses) as @fake hosts in group camera_api; the log beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    listed = []
    for short, data in hosts.items():
        data = dict(data)
        listed.append([f"@fake/{short}", {"fake_responses": data.pop("answers", None) or answers(),
                                          "fake_delay": 0, "fake_delay_jitter": 0, **data}])
    path = directory / f"{name}.py"
    path.write_text(INVENTORY.format(here=str(HERE), log=str(directory / f"{name}.log"),
                                     hosts=json.dumps(listed)))
    return path


def rollout(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The operator CLI as an operator runs it (no terminal), on this checkout."""
    env = dict(os.environ, PYINFRA_FAKE_DELAY="0", PYINFRA_FAKE_DELAY_JITTER="0",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("ROLLOUT_PROJECT", None)
    return subprocess.run([sys.executable, "-m", "rollout", *args], cwd=ROOT, env=env, text=True, check=False,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)


# --- the log -----------------------------------------------------------------------------------


def _append(path: str, entry: dict) -> None:
    with open(path, "a") as log:
        log.write(json.dumps({"pid": os.getpid(), **entry}, sort_keys=True) + "\n")


def _written(spec: dict) -> list[dict]:
    written = []
    for one in spec.get("files") or [spec]:
        content = base64.b64decode(one["content_b64"]) if "content_b64" in one else str(one.get("content")).encode()
        written.append({"path": one.get("path"), "sha256": hashlib.sha256(content).hexdigest()})
    return written


def shown(command: str, stdin: str | None) -> dict:
    """One command as the log keeps it: a probe call by mode (with the spec of a
    lock, unlock or record, or what a write writes), any other command as is."""
    probe = PROBE_MODE.search(command)
    if not probe:
        return {"command": command}
    mode = probe.group(1)
    spec = json.loads(stdin) if stdin else {}
    if mode in ("lock", "unlock", "record"):
        return {"probe": mode, "spec": spec}
    if mode == "write":
        return {"probe": mode, "files": _written(spec)}
    return {"probe": mode}


def keep_log(path: str) -> None:
    """In a pyinfra run (not when the CLI loads the inventory): log the run's
    command line, and every command its fake connector simulates; a host with
    ``fake_unreachable`` data cannot be connected to."""
    if Path(sys.argv[0]).parent.name != "pyinfra":
        return
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.connectors.fake import FakeConnector

    if getattr(FakeConnector, "logged_to", None):
        return
    _append(path, {"argv": sys.argv[1:]})
    simulate = FakeConnector.run_shell_command

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        text = command if isinstance(command, str) else command.get_masked_value()
        _append(path, {"host": self.host.name, **shown(text, arguments.get("_stdin"))})
        return simulate(self, command, print_output, print_input, **arguments)

    def connect(self):
        if self.host.data.get("fake_unreachable"):
            raise ConnectError("no route to host (fake_unreachable)")

    FakeConnector.run_shell_command = run_shell_command
    FakeConnector.connect = connect
    FakeConnector.logged_to = path


@dataclass
class Run:
    """One pyinfra run the CLI started: its files (relative to the checkout),
    ``--limit`` hosts, ``--data``, and the commands each host got."""

    files: list[str]
    limit: list[str]
    data: dict
    dry: bool
    commands: dict[str, list[dict]] = field(default_factory=dict)

    def probes(self, host: str) -> list[str]:
        return [c["probe"] for c in self.commands.get(host, []) if "probe" in c]

    def written(self, host: str) -> list[dict]:
        """What probe writes wrote on ``host``: each file's path and sha256."""
        return [f for c in self.commands.get(host, []) if c.get("probe") == "write" for f in c["files"]]

    def recorded(self) -> dict[str, int]:
        """Per host, the stage its record says this run applied."""
        return {h: c["spec"]["record"]["target_stage"] for h, cs in self.commands.items()
                for c in cs if c.get("probe") == "record"}


def _run_of(argv: list[str]) -> Run:
    files, limit, data, dry = [], [], {}, False
    args = iter(argv)
    positional = []
    for arg in args:
        if arg in ("--limit", "--data", "--group-data"):
            value = next(args)
            if arg == "--limit":
                limit.append(value)
            elif arg == "--data":
                key, text = value.split("=", 1)
                try:
                    data[key] = json.loads(text)
                except ValueError:
                    data[key] = text
        elif arg == "--dry":
            dry = True
        elif not arg.startswith("-"):
            positional.append(arg)
    for file in positional[1:]:  # the first is the inventory
        path = Path(file)
        files.append(path.relative_to(ROOT).as_posix() if path.is_absolute() else file)
    return Run(files, limit, data, dry)


def runs(log: Path) -> list[Run]:
    """The pyinfra runs of the log, in order (the CLI runs them one at a time)."""
    found: list[Run] = []
    by_pid: dict[int, Run] = {}
    if not log.exists():
        return found
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if "argv" in entry:
            by_pid[entry["pid"]] = run = _run_of(entry["argv"])
            found.append(run)
        else:
            by_pid[entry["pid"]].commands.setdefault(entry["host"], []).append(entry)
    return found


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def rollout_env_sha(stage: int) -> str:
    """The checksum of the rollout env file of ``stage`` (the defaults' settings)."""
    from tasks.stage import render_rollout_env

    return sha256(render_rollout_env(SETTINGS, stage))

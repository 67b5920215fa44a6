"""A host's rollout state, apart from the checks' judgement: reading it, deciding
from it, and what a run writes besides the service's files (the lock, the
record) and reports (the status).

Reading is one probe call per host (the ``HostState`` fact, mode ``state`` of
rollout/hostprobe.py): the entry file reads it once, before any operation, and
hands it to the operations that decide from it (``known``). An operation given
``known=None`` reads it itself, when it runs: the state may have changed in
this run before it (a rollback after a failed check).
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from rollout import state_metrics
from rollout.facts import HostState
from rollout.probe import ProbeError, probe
from rollout.reports import now, report, say
from rollout.stages import allowed_stages, rollout_env, stage_from_env

#: systemd SubStates of a running unit (as pyinfra's SystemdStatus fact counts them).
RUNNING = ("running", "waiting", "exited", "listening", "mounted")
#: Records read with the status: enough for the timetable of a progression
#: (a record per stage change, rollback or re-apply on the host).
STATUS_HISTORY = 50
#: UnitFileStates of an enabled unit (as pyinfra's SystemdEnabled fact counts them).
ENABLED = ("enabled", "static")


# --- reading -------------------------------------------------------------------------------------


def unit_name(data) -> str:
    return f"{data.get('service_name')}.service"


def switch_names(data) -> list[str]:
    return list(data.get("switch_variables").values())


def state_spec(data, history: int = 0, secrets_checksum: bool | None = None) -> dict:
    """The probe's ``state`` spec from a host's settings (``host.data`` or a dict
    of settings): which unit, files, port and paths to read. The secrets file
    gives the names of its variables only; its checksum only when this run may
    write it (``secrets_checksum``, default ``write_secrets``)."""
    if secrets_checksum is None:
        secrets_checksum = bool(data.get("write_secrets"))
    return {
        "unit": unit_name(data), "port": int(data.get("bind_port")), "health_path": data.get("health_path"),
        "state_dir": data.get("state_dir"), "switch_file": data.get("rollout_env_file"),
        "switch_variables": switch_names(data), "history": history,
        "files": {
            data.get("env_dir"): {},
            data.get("unit_file"): {"checksum": True},
            data.get("rollout_env_file"): {"checksum": True},
            data.get("secrets_env_file"): {"checksum": secrets_checksum, "keys": True},
        },
    }


def read(host, history: int = 0, secrets_checksum: bool | None = None) -> dict | None:
    """The host's state now (one probe call); None when it could not be read
    (pyinfra has then logged why and failed the host)."""
    return host.get_fact(HostState, spec=state_spec(host.data, history, secrets_checksum))


# --- deciding (pure) -------------------------------------------------------------------------------


def path_state(known: Mapping | None, path: str) -> dict:
    """What ``known`` says about a managed path (``{"type": None}``: missing or
    unknown). KeyError when the path was not read: a bug, not a host state."""
    if known is None:
        return {"type": None}
    return known["files"][path]


def file_stage(known: Mapping | None, variables: Mapping[str, str] | None = None) -> int | None:
    """The stage the rollout env file holds (None: missing, no stage, unknown)."""
    switch = (known or {}).get("file_switch")
    return None if switch is None else stage_from_env(switch, variables)


def healthy(known: Mapping | None) -> bool:
    return ((known or {}).get("health") or {}).get("status") == 200


def unit_running(known: Mapping | None) -> bool:
    return ((known or {}).get("unit") or {}).get("sub") in RUNNING


def unit_enabled(known: Mapping | None) -> bool:
    return ((known or {}).get("unit") or {}).get("enabled") in ENABLED


def describe_lock(holder: Mapping) -> str:
    return (f"{holder.get('owner', 'unknown')} since {holder.get('time', '?')}"
            f" ({holder.get('command', '?')})")


def lock_refusal(known: Mapping | None, token: str | None) -> str | None:
    """Why this run may not go on (another holds the lock, or the state could
    not be read), or None when the lock is free or this run's own."""
    if known is None:
        return "rollout lock: the host's state could not be read"
    holder = known.get("lock")
    if holder and holder.get("token") != token:
        return f"rollout lock held by {describe_lock(holder)}"
    return None


def status_report(known: Mapping, variables: Mapping[str, str] | None = None) -> dict:
    """The ``status`` report the CLI reads: stage in the file and in the running
    process, health, unit, record, lock, history."""
    return {
        "unit_active": known["unit"]["active"], "file_switch": known["file_switch"],
        "process_switch": known["process_switch"], "health": known["health"]["status"],
        "current": known["current"], "lock": known["lock"], "history": known["history"],
        "gate_last": known.get("gate_last"), "watch": known.get("watch"),
        "file_stage": file_stage(known, variables),
        "process_stage": stage_from_env(known["process_switch"] or {}, variables),
    }


def record_verdict(verdicts: Mapping[str, Any], rolled_back: bool) -> str:
    """The verdict a record holds, from what this run's checks concluded."""
    failed = [name for name in ("preflight", "compare", "mix") if verdicts.get(name) is False]
    verdict = f"{', '.join(failed)} failed" if failed else verdicts.get("gate") or "not checked"
    return f"rolled back ({verdict})" if rolled_back else verdict


def operator_name(host) -> str:
    """Who runs this: ``operator`` data (the CLI sets it), else the local user."""
    return host.data.get("operator") or f"{getpass.getuser()}@{socket.gethostname()}"


# --- the lock, the record, the status: bodies of pyinfra FunctionCommands --------------------------


def _lock_path(host) -> str:
    return f"{host.data.state_dir}/lock.json"


def lock_refused(state, host, reason: str, holder: Mapping | None = None) -> bool:
    """Fail this host's run with ``reason``: the lock is another's (``holder``)
    or could not be taken or given back."""
    say(host, reason, error=True)
    if holder is not None:
        report(host, "lock", {"ok": False, "holder": describe_lock(holder)})
    return False


def acquire_lock(state, host, token: str | None, command: str = "") -> bool:
    """Take the rollout lock (or hold it already); refused when another holds it."""
    lock = {"token": token, "owner": operator_name(host), "command": command, "time": now()}
    try:
        answer = probe(host, "lock", {"path": _lock_path(host), "token": token, "lock": lock}, timeout=30)
    except ProbeError as error:
        return lock_refused(state, host, f"rollout lock: {error}")
    if not answer["acquired"]:
        return lock_refused(state, host, f"rollout lock held by {describe_lock(answer['holder'])}", answer["holder"])
    report(host, "lock", {"ok": True, "holder": None})
    return True


def release_lock(state, host, token: str | None, force: bool = False) -> bool:
    """Give the lock back; ``force`` breaks another operator's."""
    try:
        answer = probe(host, "unlock", {"path": _lock_path(host), "token": token, "force": force}, timeout=30)
    except ProbeError as error:
        return lock_refused(state, host, f"rollout lock: {error}")
    if not answer["released"]:
        return lock_refused(state, host, f"rollout lock not released: held by {describe_lock(answer['holder'])}",
                            answer["holder"])
    if force and answer.get("holder") and answer["holder"].get("token") != token:
        say(host, f"broke the rollout lock of {describe_lock(answer['holder'])}")
    return True


def record(state, host, target_stage: int, command: str, verdicts: Mapping[str, Any] | None = None,
           rolled_back: Callable[[], bool] | None = None) -> bool:
    """Record on the host what this run did, in one probe call: the stage its env
    file holds now and the recorded baseline P95 (both read there), operator,
    time, this run's verdict (``verdicts``: what its checks concluded;
    ``rolled_back``: did it roll the host back); appended to the history too."""
    data = host.data
    variables = data.switch_variables
    spec = {
        "dir": data.state_dir, "switch_file": data.rollout_env_file, "switch_variables": switch_names(data),
        "stages": [[rollout_env(stage, variables), stage] for stage in allowed_stages(data.stage_plan)],
        "baseline_file": f"{data.state_dir}/baseline.json",
        "record": {"target_stage": target_stage, "operator": operator_name(host), "time": now(),
                   "verdict": record_verdict(verdicts or {}, bool(rolled_back and rolled_back())),
                   "command": command},
    }
    if data.get("override"):  # promote --early: why, and how early (rollout/cli.py)
        spec["record"]["override"] = data.get("override")
    try:
        answer = probe(host, "record", spec, timeout=30)
    except ProbeError as error:
        say(host, f"record FAIL: {error}", error=True)
        return False
    report(host, "record", answer["record"])
    keep_stage_metrics(host, answer["record"])
    return True


def keep_stage_metrics(host, record: Mapping[str, Any]) -> None:
    """The recorded stage as metrics in node_exporter's textfile directory
    (``rollout_textfile_dir``; nothing when unset or absent on the host). Never
    fails the run: the record is the truth, the metrics its picture."""
    directory, stage = host.data.get("rollout_textfile_dir"), record.get("stage")
    if not directory or not isinstance(stage, int):
        return
    try:
        since = datetime.fromisoformat(str(record.get("stage_since") or record.get("time"))).timestamp()
    except ValueError:
        since = time.time()
    text = state_metrics.stage_text(host.data.service_name, stage, stage > 0, since)
    try:
        probe(host, "write", {"files": [{"path": f"{directory}/{state_metrics.STAGE_FILE}", "content": text,
                                         "if_dir_exists": True}]}, timeout=30)
    except ProbeError as error:
        say(host, f"stage metrics not written ({error})")


def write_status(host, known: Mapping | None) -> None:
    """Where the host stands, as the ``status`` report (an ``error`` when its
    state could not be read)."""
    if known is None:
        say(host, "status: the host's state could not be read", error=True)
        report(host, "status", {"error": "the host's state could not be read"})
        return
    report(host, "status", status_report(known, host.data.switch_variables))


def write_watch_state(state, host, content: Mapping) -> bool:
    """Replace ``state_dir/watch.json`` (the watch's sent alert keys) atomically."""
    try:
        probe(host, "write", {"path": f"{host.data.state_dir}/watch.json",
                              "content": json.dumps(dict(content), sort_keys=True) + "\n"}, timeout=30)
    except ProbeError as error:
        say(host, f"watch state not kept: {error}", error=True)
        return False
    report(host, "watch-state", {"ok": True})
    return True

"""@fake hosts for the unit tests: pyinfra's fake connector answers every command
with nothing, except the probe calls scripted here (a fresh host whose secrets
file is in place, no lock held, records written), so deploy.py and the rollback
task run their whole plan.

``host_state`` builds the probe's ``state`` answer (the HostState fact) for
other scripted hosts: a fresh one, or one already on a stage."""

import hashlib
import json

from rollout.project import defaults
from rollout.stages import rollout_env

SETTINGS = {key: defaults()[key] for key in (
    "app_module", "service_user", "service_group", "app_dir", "venv_dir", "secrets_env_file",
    "rollout_env_file", "bind_host", "bind_port", "workers", "service_name", "env_dir", "unit_file",
    "switch_variables", "secret_variables", "app_env")}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def host_state(stage=None, secrets_keys=("DATABASE_URL", "REDIS_URL"), lock=None, healthy=None,
               process_stage="file"):
    """The ``state`` answer of a host: ``stage`` None is a fresh host (no unit,
    no env file, not running); a stage is a host with every file in place for
    it, its unit enabled and running that stage (``process_stage``: another
    stage the process runs, e.g. after a lost restart)."""
    group = SETTINGS["service_group"]
    missing = {"type": None}
    files = {SETTINGS["env_dir"]: missing, SETTINGS["unit_file"]: missing,
             SETTINGS["rollout_env_file"]: missing,
             # A checksum no rendered secrets file has: written when write_secrets asks.
             SETTINGS["secrets_env_file"]: {"type": "file", "user": "root", "group": group, "mode": 640,
                                            "sha256": "0" * 64, "keys": sorted(secrets_keys)}
             if secrets_keys is not None else missing}
    switch = process = None
    unit = {"active": "inactive", "sub": "dead", "enabled": "", "main_pid": None}
    if stage is not None:
        from tasks.stage import render_rollout_env, render_unit

        files[SETTINGS["env_dir"]] = {"type": "directory", "user": "root", "group": group, "mode": 750}
        files[SETTINGS["unit_file"]] = {"type": "file", "user": "root", "group": "root", "mode": 644,
                                        "sha256": _sha256(render_unit(SETTINGS))}
        files[SETTINGS["rollout_env_file"]] = {"type": "file", "user": "root", "group": group, "mode": 640,
                                               "sha256": _sha256(render_rollout_env(SETTINGS, stage))}
        switch = rollout_env(stage)
        process = switch if process_stage == "file" else rollout_env(process_stage)
        unit = {"active": "active", "sub": "running", "enabled": "enabled", "main_pid": 4242}
    return {"lock": lock, "files": files, "file_switch": switch, "process_switch": process, "unit": unit,
            "health": {"status": 200 if (stage is not None if healthy is None else healthy) else None,
                       "error": None},
            "current": None, "baseline": None, "history": []}


_responses = {
    "camera-rollout-probe state": json.dumps(host_state()),
    "camera-rollout-probe record": json.dumps({"recorded": True, "record": {"stage": None}}),
    "camera-rollout-probe lock": json.dumps({"acquired": True, "holder": {}}),
    "camera-rollout-probe unlock": json.dumps({"released": True, "holder": None}),
}

camera_api = [
    (f"@fake/api-{n}", {"fake_responses": _responses, "fake_delay": 0, "fake_delay_jitter": 0})
    for n in (1, 2)
]

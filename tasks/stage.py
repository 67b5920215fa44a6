"""Put a host on a rollout stage: env files, unit, restart only on change, health.

Shared by deploy.py (any stage) and tasks/rollback.py (stage 0): one template and
one task for the switch, not a copy.

The secrets file is not part of a stage: a stage change or a rollback leaves it
as it is on the host (and refuses to go on when it lacks a secret). It is
written only on purpose: ``write_secrets`` on (every secret must have a value,
checked before any operation) or ``tasks/secrets.py``.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import systemd
from pyinfra.operations.util import any_changed

from rollout import hoststate
from rollout.operations import (
    atomic_file,
    directory,
    env_file_has,
    restart_unit,
    unit_enabled_and_running,
    wait_healthy,
    when,
)
from rollout.render import check_app_env, render, reserved_variables
from rollout.stages import rollout_env


def _unit_name() -> str:
    return hoststate.unit_name(host.data)


def _secret(data, name: str):
    """A secret from host data; a pyinfra HiddenValue is unmasked only here."""
    value = data.get(name)
    return value.unmask() if hasattr(value, "unmask") else value


def env_directory(data) -> tuple[str, str, int]:
    """Owner and mode of the env directory: made by ``apply_stage``, and by any
    write of a file into it when it is missing (``rollout write-secrets`` on a
    fresh host)."""
    return ("root", data.service_group, 750)


def render_rollout_env(data, stage: int) -> str:
    """The rollout env file of ``stage`` (``data``: host.data, or a dict of settings)."""
    switch_variables = data.get("switch_variables")
    reserved = reserved_variables(switch_variables, data.get("secret_variables"))
    return render(
        "rollout.env.j2",
        stage=stage,
        switch=rollout_env(stage, switch_variables),
        app_env=check_app_env(data.get("app_env") or {}, reserved),
        service_name=data.get("service_name"),
    )


def render_secrets_env(data) -> str:
    """Only called when every secret has a value (checked by tasks/entry.begin)."""
    return render(
        "secrets.env.j2",
        service_name=data.get("service_name"),
        secrets={variable: _secret(data, key) for variable, key in data.get("secret_variables").items()},
    )


def render_unit(data) -> str:
    return render(
        "service.j2",
        **{
            key: data.get(key)
            for key in (
                "app_module", "service_user", "service_group", "app_dir", "venv_dir",
                "secrets_env_file", "rollout_env_file", "bind_host", "bind_port",
                "workers", "service_name",
            )
        },
    )


@deploy("Apply rollout stage")
def require_secrets(known: dict | None = None):
    """Unless this run writes the secrets file: it must set every secret
    variable, or the host is refused. Called first by the entry files, before
    anything is written (a baseline, a stage): a restart without its secrets
    would take the service down."""
    data = host.data
    if data.write_secrets:
        return
    env_file_has(
        name=f"Secrets env file sets {', '.join(data.secret_variables)} (left as it is)",
        path=data.secrets_env_file,
        variables=list(data.secret_variables),
        known=known,
    )


@deploy("Apply rollout stage")
def apply_stage(stage: int, known: dict | None = None):
    """Write the stage and restart the service only when one of its files changed.

    ``known``: the host's state read before this run changed anything (every
    operation decides from it); None when an earlier operation of this run may
    have changed it (the rollback after a failed check): each operation then
    reads it when it runs.
    """
    data = host.data

    user, group, mode = env_directory(data)
    directory(
        name=f"Env directory {data.env_dir}",
        path=data.env_dir,
        user=user,
        group=group,
        mode=mode,
        known=known,
    )
    unit = atomic_file(
        name=f"Unit file {data.unit_file}",
        dest=data.unit_file,
        content=render_unit(data),
        mode=644,
        known=known,
    )
    systemd.daemon_reload(
        name="systemd daemon-reload (unit file changed)",
        _if=when(unit.did_change),
    )
    switch = atomic_file(
        name=f"Rollout env file: stage {stage}",
        dest=data.rollout_env_file,
        content=render_rollout_env(data, stage),
        group=data.service_group,
        mode=640,
        directory=env_directory(data),
        known=known,
    )
    secrets = [write_secrets_file(known)] if data.write_secrets else []
    files_changed = any_changed(unit, switch, *secrets)
    expected = rollout_env(stage, data.switch_variables)

    def restart_needed() -> bool:
        # Also when the files were written by a run whose restart never happened
        # (lost SSH, failed run): the running process must have the file's switch.
        if files_changed():
            return True
        now = known if known is not None else hoststate.read(host)
        return (now or {}).get("process_switch") != expected

    restart_and_wait(restart_needed, "its files changed or it runs another stage", known)


def write_secrets_file(known: dict | None = None):
    """The secrets env file, atomically; its contents are never shown. ``known``
    must hold the file's checksum (``hoststate.read(host, secrets_checksum=True)``)."""
    data = host.data
    return atomic_file(
        name="Secrets env file (contents never shown)",
        dest=data.secrets_env_file,
        content=render_secrets_env(data),
        group=data.service_group,
        mode=640,
        secret=True,
        directory=env_directory(data),
        known=known,
    )


def restart_and_wait(needed, why: str, known: dict | None = None) -> None:
    """Restart the unit when ``needed()`` says so at run time, then make sure it
    is healthy, enabled and running (from ``known`` unless it was restarted)."""
    data = host.data
    unit_name = _unit_name()
    restart = restart_unit(
        name=f"Restart {unit_name} ({why})",
        unit=unit_name,
        _if=when(needed),
    )
    wait_healthy(
        name=f"Health of {unit_name}",
        url=f"http://127.0.0.1:{data.bind_port}{data.health_path}",
        timeout_s=data.health_timeout_s,
        unit=unit_name,
        known=known,
        after=[restart],
    )
    unit_enabled_and_running(
        name=f"Keep {unit_name} enabled and running",
        unit=unit_name,
        known=known,
        after=[restart],
    )

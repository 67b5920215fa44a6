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
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from rollout.facts import ServiceSwitch
from rollout.operations import atomic_file, env_file_has, restart_unit, wait_healthy, when
from rollout.render import check_app_env, render
from rollout.stages import rollout_env


def _unit_name() -> str:
    return f"{host.data.service_name}.service"


def _secret(name: str):
    """A secret from host data; a pyinfra HiddenValue is unmasked only here."""
    value = host.data.get(name)
    return value.unmask() if hasattr(value, "unmask") else value


def render_rollout_env(stage: int) -> str:
    return render(
        "rollout.env.j2",
        stage=stage,
        switch=rollout_env(stage),
        app_env=check_app_env(host.data.get("app_env") or {}),
        service_name=host.data.service_name,
    )


def render_secrets_env() -> str:
    """Only called when every secret has a value (checked by tasks/entry.begin)."""
    return render(
        "secrets.env.j2",
        service_name=host.data.service_name,
        secrets={variable: _secret(key) for variable, key in host.data.secret_variables.items()},
    )


def render_unit() -> str:
    data = host.data
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
def apply_stage(stage: int):
    """Write the stage and restart the service only when one of its files changed."""
    data = host.data
    unit_name = _unit_name()

    if not data.write_secrets:
        # Before anything is written: a restart without its secrets would take
        # the service down.
        env_file_has(
            name=f"Secrets env file sets {', '.join(data.secret_variables)} (left as it is)",
            path=data.secrets_env_file,
            variables=list(data.secret_variables),
        )
    files.directory(
        name=f"Env directory {data.env_dir}",
        path=data.env_dir,
        user="root",
        group=data.service_group,
        mode=750,
    )
    unit = atomic_file(
        name=f"Unit file {data.unit_file}",
        dest=data.unit_file,
        content=render_unit(),
        mode=644,
    )
    systemd.daemon_reload(
        name="systemd daemon-reload (unit file changed)",
        _if=when(unit.did_change),
    )
    switch = atomic_file(
        name=f"Rollout env file: stage {stage}",
        dest=data.rollout_env_file,
        content=render_rollout_env(stage),
        group=data.service_group,
        mode=640,
    )
    secrets = [write_secrets_file()] if data.write_secrets else []
    files_changed = any_changed(unit, switch, *secrets)
    expected = rollout_env(stage)

    def restart_needed() -> bool:
        # Also when the files were written by a run whose restart never happened
        # (lost SSH, failed run): the running process must have the file's switch.
        return files_changed() or host.get_fact(ServiceSwitch, unit=unit_name) != expected

    restart_and_wait(restart_needed, "its files changed or it runs another stage")


def write_secrets_file():
    """The secrets env file, atomically; its contents are never shown."""
    data = host.data
    return atomic_file(
        name="Secrets env file (contents never shown)",
        dest=data.secrets_env_file,
        content=render_secrets_env(),
        group=data.service_group,
        mode=640,
        secret=True,
    )


def restart_and_wait(needed, why: str) -> None:
    """Restart the unit when ``needed()`` says so at run time, then make sure it
    is healthy, enabled and running."""
    data = host.data
    unit_name = _unit_name()
    restart_unit(
        name=f"Restart {unit_name} ({why})",
        unit=unit_name,
        _if=when(needed),
    )
    wait_healthy(
        name=f"Health of {unit_name}",
        url=f"http://127.0.0.1:{data.bind_port}{data.health_path}",
        timeout_s=data.health_timeout_s,
        unit=unit_name,
    )
    systemd.service(
        name=f"Keep {unit_name} enabled and running",
        service=unit_name,
        running=True,
        enabled=True,
    )

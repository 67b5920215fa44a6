"""Put a host on a rollout stage: env files, unit, restart only on change, health.

Shared by deploy.py (any stage) and tasks/rollback.py (stage 0): one template and
one task for the switch, not a copy.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

from rollout.facts import ServiceSwitch
from rollout.operations import atomic_file, restart_unit, wait_healthy, when
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
    return render(
        "secrets.env.j2",
        service_name=host.data.service_name,
        database_url=_secret("database_url"),
        redis_url=_secret("redis_url"),
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
def apply_stage(stage: int, also_restart_on=()):
    """Write the stage and restart the service only when one of its files changed.

    ``also_restart_on``: further operations (e.g. a new app release) whose change
    needs a restart too.
    """
    data = host.data
    unit_name = _unit_name()

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
    secrets = atomic_file(
        name="Secrets env file (contents never shown)",
        dest=data.secrets_env_file,
        content=render_secrets_env(),
        group=data.service_group,
        mode=640,
        secret=True,
    )
    files_changed = any_changed(unit, switch, secrets, *also_restart_on)
    expected = rollout_env(stage)

    def restart_needed() -> bool:
        # Also when the files were written by a run whose restart never happened
        # (lost SSH, failed run): the running process must have the file's switch.
        return files_changed() or host.get_fact(ServiceSwitch, unit=unit_name) != expected

    restart_unit(
        name=f"Restart {unit_name} (its files changed or it runs another stage)",
        unit=unit_name,
        _if=when(restart_needed),
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

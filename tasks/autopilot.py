"""Install the autopilot on a control host, or remove it (docs/autopilot.md):

    pyinfra CONTROL_INVENTORY tasks/autopilot.py --data autopilot_env=prod \\
        --data autopilot_wheelhouse=/srv/wheels --data autopilot_project=$HOME/camera-ops \\
        --data autopilot_ssh_key=$HOME/.ssh/id_rollout --data autopilot_known_hosts=$HOME/camera-ops/known_hosts
    pyinfra CONTROL_INVENTORY tasks/autopilot.py --data autopilot_state=absent

The autopilot is ``rollout <autopilot_command> <autopilot_env>`` run by a systemd
timer (``rollout-watch.timer``) as a oneshot service, as its own system user, logging
to the journal. Installed: the user and its home, the tool in a venv there (from a
wheelhouse copied over, or from the host's index), the operator's project
(``inventories/`` and ``group_data/``), the SSH key and known hosts, the alert
webhook URLs (``/etc/rollout-watch/alerts.env``, from the installing operator's
environment), the two units. Every setting is checked before any operation
(``rollout.autopilot.check_autopilot``); the key and the URLs are never printed.
Both states are idempotent: a second run changes nothing.

Run against the control host's inventory, from the root of a checkout (pyinfra
loads the defaults from ``group_data/all.py`` there; a setting missing from
host data takes that file's default anyway).
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import files, pip, server, systemd
from pyinfra.operations.util import any_changed

from rollout.autopilot import SETTINGS, alerts_env, check_autopilot, inside, time_span, wheel_fingerprint
from rollout.inputs import InputError
from rollout.operations import installed_file, installed_tree, pip_install, unit_idle
from rollout.project import defaults
from rollout.render import render

PRODUCT = "camera-rollout"


def _settings() -> dict:
    raw = {}
    for key in SETTINGS:
        value = host.data.get(key)
        raw[key] = defaults()[key] if value is None else value
    try:
        return check_autopilot(raw)
    except InputError as error:
        raise PyinfraError(str(error)) from None


def _paths(s: dict) -> dict:
    home, unit = s["autopilot_home"], s["autopilot_unit"]
    return {
        "home": home,
        "ssh_dir": f"{home}/.ssh",
        "venv": f"{home}/venv",
        "wheelhouse": f"{home}/wheelhouse",
        "project": f"{home}/project",
        "config_dir": f"/etc/{unit}",
        "alerts_env_file": f"/etc/{unit}/alerts.env",
        "service": f"{unit}.service",
        "timer": f"{unit}.timer",
        "service_file": f"/etc/systemd/system/{unit}.service",
        "timer_file": f"/etc/systemd/system/{unit}.timer",
    }


def install(s: dict) -> None:
    p = _paths(s)
    user, home, state_dir = s["autopilot_user"], p["home"], s["autopilot_state_dir"]

    server.user(
        name=f"System user {user} (no login shell, home {home})",
        user=user,
        home=home,
        shell="/usr/sbin/nologin",
        system=True,
        create_home=False,
        ensure_home=False,
    )
    # Root owns every directory root writes into (home, project, .ssh): the user
    # can plant no symlink there for a later install, running as root, to follow.
    # The state directory is the user's only writable place (and the tick's cwd).
    files.directory(name=f"Home {home} (root's; the user reads it)", path=home, user="root", group=user,
                    mode=750)
    files.directory(name=f"State directory {state_dir}", path=state_dir, user=user, group=user, mode=700)

    # --- the tool, in a venv owned by root: the user runs it and cannot change it
    pip.venv(name=f"venv {p['venv']}", path=p["venv"], python="python3")
    if s["autopilot_wheelhouse"]:
        files.directory(name=f"Wheelhouse directory {p['wheelhouse']}", path=p["wheelhouse"], user="root",
                        group="root", mode=755)
        installed_tree(
            name=f"Wheelhouse {p['wheelhouse']} (from {s['autopilot_wheelhouse']})",
            src=s["autopilot_wheelhouse"],
            dest=p["wheelhouse"],
            user="root",
            group="root",
            mode=644,
            dir_mode=755,
            exclude=["*.tmp"],
        )
        pip_install(
            name=f"Install {PRODUCT} from the wheelhouse (only when the wheels changed)",
            venv=p["venv"],
            requirement=PRODUCT,
            find_links=p["wheelhouse"],
            fingerprint=wheel_fingerprint(s["autopilot_wheelhouse"]),
        )
    else:
        files.directory(name=f"No wheelhouse at {p['wheelhouse']}", path=p["wheelhouse"], present=False)
        pip_install(
            name=f"Install {s['autopilot_package']} from the host's index",
            venv=p["venv"],
            requirement=s["autopilot_package"],
            fingerprint=s["autopilot_package"],
        )

    # --- the operator's project: inventories/ and group_data/ only, read-only to the user
    files.directory(name=f"Project {p['project']}", path=p["project"], user="root", group=user, mode=750)
    for folder in ("inventories", "group_data"):
        local = posixpath.join(s["autopilot_project"], folder)
        remote = f"{p['project']}/{folder}"
        if posixpath.isdir(local):
            files.directory(name=f"Project directory {remote}", path=remote, user="root", group=user, mode=750)
            installed_tree(
                name=f"Project {folder}/ -> {remote}",
                src=local,
                dest=remote,
                user="root",
                group=user,
                mode=640,
                dir_mode=750,
                exclude=["*.pyc"],
                exclude_dir=["__pycache__"],
            )
        else:
            files.directory(name=f"No {folder}/ in the project: {remote} removed", path=remote, present=False)

    # --- SSH: the key (never shown) and the fleet's host keys
    files.directory(name=f"SSH directory {p['ssh_dir']}", path=p["ssh_dir"], user="root", group=user, mode=750)
    installed_file(
        name=f"SSH key {p['ssh_dir']}/id_rollout (contents never shown)",
        src=s["autopilot_ssh_key"],
        dest=f"{p['ssh_dir']}/id_rollout",
        user="root",
        group=user,
        mode=640,
        secret=True,
    )
    installed_file(
        name=f"Known hosts {p['ssh_dir']}/known_hosts",
        src=s["autopilot_known_hosts"],
        dest=f"{p['ssh_dir']}/known_hosts",
        user="root",
        group=user,
        mode=640,
    )

    # --- alert webhook URLs: secrets, from the installing operator's environment
    files.directory(name=f"Config directory {p['config_dir']}", path=p["config_dir"], user="root", group=user,
                    mode=750)
    if s["alert_values"]:
        installed_file(
            name=f"Alerts env file {p['alerts_env_file']}: {', '.join(sorted(s['alert_values']))} "
                 "(contents never shown)",
            content=alerts_env(s["alert_values"]),
            dest=p["alerts_env_file"],
            user="root",
            group=user,
            mode=640,
            secret=True,
        )
    else:
        files.file(name=f"No alert variables: no {p['alerts_env_file']}", path=p["alerts_env_file"], present=False)

    # --- the units
    writable = [state_dir]
    context = {
        "unit": s["autopilot_unit"], "user": user, "home": home, "venv": p["venv"], "state_dir": state_dir,
        "alerts_env_file": p["alerts_env_file"], "command": s["autopilot_command"], "env": s["autopilot_env"],
        "timeout": s["autopilot_timeout"], "interval": s["autopilot_interval"], "writable": writable,
    }
    service = installed_file(
        name=f"Unit file {p['service_file']}",
        content=render("rollout-watch.service.j2", **context),
        dest=p["service_file"],
        mode=644,
    )
    timer = installed_file(
        name=f"Unit file {p['timer_file']}",
        content=render("rollout-watch.timer.j2", **context),
        dest=p["timer_file"],
        mode=644,
    )
    units_changed = any_changed(service, timer)
    systemd.daemon_reload(name="systemd daemon-reload (a unit file changed)", _if=units_changed)
    systemd.service(
        name=f"Restart {p['timer']} (a unit file changed)",
        service=p["timer"],
        running=True,
        restarted=True,
        _if=units_changed,
    )
    systemd.service(name=f"{p['timer']} enabled and started", service=p["timer"], running=True, enabled=True)


def remove(s: dict) -> None:
    p = _paths(s)
    user, home, state_dir = s["autopilot_user"], p["home"], s["autopilot_state_dir"]
    systemd.service(name=f"Stop and disable {p['timer']} (no new tick)", service=p["timer"], running=False,
                    enabled=False)
    unit_idle(
        name=f"Let a tick of {p['service']} in progress end",
        unit=p["service"],
        timeout_s=time_span("autopilot_timeout", s["autopilot_timeout"]) + 30,
    )
    removed = [
        files.file(name=f"Remove {path}", path=path, present=False)
        for path in (p["timer_file"], p["service_file"])
    ]
    systemd.daemon_reload(name="systemd daemon-reload (unit files removed)", _if=any_changed(*removed))
    server.shell(
        name=f"Forget {p['service']}'s failed state",
        commands=[f"systemctl reset-failed {p['service']} {p['timer']} 2>/dev/null || true"],
        _if=any_changed(*removed),
    )
    files.directory(name=f"Remove {p['config_dir']} (alerts env file)", path=p["config_dir"], present=False)
    if not inside(state_dir, home):
        files.directory(name=f"Remove {state_dir}", path=state_dir, present=False)
    files.directory(name=f"Remove {home} (venv, project, SSH key)", path=home, present=False)
    server.user(name=f"Remove user {user}", user=user, present=False)


settings = _settings()
if settings["autopilot_state"] == "present":
    install(settings)
else:
    remove(settings)

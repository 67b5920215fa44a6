"""The autopilot's settings (tasks/autopilot.py), checked in one place before any
operation: pure, no host is contacted.

The autopilot is ``rollout <autopilot_command> <autopilot_env>`` run by a systemd
timer on a control host, as its own user. ``check_autopilot`` takes the
``autopilot_*`` settings (group_data/all.py's section "Autopilot") and the
environment of the operator running the install (where the alert webhook URLs
come from), and returns them checked, or raises ``InputError`` with one line
that names the setting and never a secret's value.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rollout.inputs import InputError, is_host_path
from rollout.render import env_quote

#: Every autopilot setting (the keys of group_data/all.py's autopilot section).
SETTINGS = (
    "autopilot_state", "autopilot_env", "autopilot_command", "autopilot_unit", "autopilot_user", "autopilot_home",
    "autopilot_state_dir", "autopilot_wheelhouse", "autopilot_package", "autopilot_project",
    "autopilot_ssh_key", "autopilot_known_hosts", "autopilot_alert_env", "autopilot_interval",
    "autopilot_timeout",
)

#: The subcommands a tick may run: ``watch`` (judge, promote or roll back, alert),
#: ``check`` (judge only, roll back on a failed gate), ``status`` (read only).
COMMANDS = ("watch", "check", "status")

_ENV = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPTION = re.compile(r"--[a-z][a-z0-9-]*(=[A-Za-z0-9_.:%-]+)?")
#: A systemd time span: one or more ``<number><unit>`` (``30s``, ``1min``, ``1h 30min``).
_SPAN = re.compile(r"(\d+)\s*(s|sec|second|seconds|m|min|minute|minutes|h|hr|hour|hours|d|day|days)?")
_SPAN_SECONDS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
                 "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
                 "d": 86400, "day": 86400, "days": 86400, None: 1}


def time_span(key: str, value: Any) -> float:
    """Seconds of a systemd time span (``1min``, ``30s``, ``1h 30min``); more than zero."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    tokens = text.split()
    matches = [_SPAN.fullmatch(token) for token in tokens]
    if not tokens or not all(matches):
        raise InputError(f"setting {key}: {value!r} is not a duration (e.g. 30s, 1min, 1h)")
    seconds = sum(int(m.group(1)) * _SPAN_SECONDS[m.group(2)] for m in matches if m)  # all match (above)
    if seconds < 1:
        raise InputError(f"setting {key}: {value!r} must be at least one second")
    return seconds


#: What root writes under the home: the state directory (the user's) may not be, or hold, any of them.
_ROOTS_PLACES = (".ssh", "project", "venv", "wheelhouse")


def inside(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or under it (both absolute, normalised)."""
    return posixpath.commonpath([path, directory]) == directory


def _own_state_dir(home: str, state_dir: str) -> None:
    """The state directory is the user's (its only writable place): never the
    home, a directory above it, or one of the places root writes under it, or
    the user would own what the next install, as root, writes into."""
    if inside(home, state_dir) or any(inside(state_dir, f"{home}/{place}") for place in _ROOTS_PLACES):
        raise InputError(f"setting autopilot_state_dir: {state_dir!r} must be a directory of its own (e.g. "
                         f"{home}/state), not the home {home!r}, above it, or in its "
                         f"{', '.join(_ROOTS_PLACES)}")


def _absolute(key: str, value: Any, local: str | None = None) -> str:
    """An absolute path (``~`` expanded for local paths); ``local``: it must be an
    existing ``"file"`` or ``"dir"`` on the machine running the install."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"setting {key} is not set")
    path = os.path.expanduser(value) if local else value
    if not path.startswith("/") or "\n" in path or any(c.isspace() for c in path) or path.rstrip("/") == "":
        raise InputError(f"setting {key}: {value!r} must be an absolute path (no spaces, not /)")
    if not local and not is_host_path(path):  # it reaches the unit files: no specifier, quote or $
        raise InputError(f"setting {key}: {value!r} must be an absolute path of letters, digits and . _ + @ - "
                         "(no quote, $, % or ..)")
    path = os.path.normpath(path)
    if local == "file" and not os.path.isfile(path):
        raise InputError(f"setting {key}: no file {path} on this machine")
    if local == "dir" and not os.path.isdir(path):
        raise InputError(f"setting {key}: no directory {path} on this machine")
    return path


def _product_wheel(wheelhouse: str) -> None:
    if not list(Path(wheelhouse).glob("camera_rollout-*.whl")):
        raise InputError(f"setting autopilot_wheelhouse: {wheelhouse} holds no camera_rollout-*.whl "
                         "(build it with scripts/wheelhouse.sh)")


def alert_values(names: Any, environ: Mapping[str, str]) -> dict[str, str]:
    """The alert variables' values from ``environ``; a name without a value is
    refused (never written empty). The message names the variable, never a value."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InputError(f"setting autopilot_alert_env: must be a list of environment variable names, "
                         f"got {type(names).__name__}")
    values = {}
    for name in names:
        if not _VARIABLE.fullmatch(name):
            raise InputError(f"setting autopilot_alert_env: {name!r} is not an environment variable name")
        value = environ.get(name, "")
        if not value.strip():
            raise InputError(f"{name} has no value in this environment: refusing to install the autopilot "
                             "without it (set it, or take it out of autopilot_alert_env)")
        try:
            env_quote(value)
        except ValueError:
            raise InputError(f"{name}: the value may not contain a newline") from None
        values[name] = value
    return values


def check_autopilot(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The autopilot settings checked; the first bad one raises ``InputError``.

    Returns the settings with local paths expanded and, when installing, the
    ``alert_values`` (``{variable: value}``, secret: never print it). Removing
    (``autopilot_state="absent"``) needs only the user and the paths.
    """
    environ = os.environ if environ is None else environ
    state = settings.get("autopilot_state")
    if state not in ("present", "absent"):
        raise InputError(f"setting autopilot_state: must be present or absent, got {state!r}")
    user = settings.get("autopilot_user")
    if not isinstance(user, str) or not _USER.fullmatch(user) or user == "root":
        raise InputError(f"setting autopilot_user: {user!r} must be a plain user name (not root)")
    unit = settings.get("autopilot_unit")
    if not isinstance(unit, str) or not _USER.fullmatch(unit):
        raise InputError(f"setting autopilot_unit: {unit!r} must be a plain unit name (e.g. rollout-watch)")
    checked: dict[str, Any] = {key: settings.get(key) for key in SETTINGS}
    checked["autopilot_home"] = _absolute("autopilot_home", settings.get("autopilot_home"))
    checked["autopilot_state_dir"] = _absolute("autopilot_state_dir", settings.get("autopilot_state_dir"))
    _own_state_dir(checked["autopilot_home"], checked["autopilot_state_dir"])
    if state == "absent":
        return checked

    env = settings.get("autopilot_env")
    if not isinstance(env, str) or not _ENV.fullmatch(env):
        raise InputError(f"setting autopilot_env: {env!r} must be an inventory name "
                         "(inventories/NAME.py of autopilot_project), e.g. --data autopilot_env=prod")
    command = settings.get("autopilot_command")
    words = command.split() if isinstance(command, str) else []
    if not words or words[0] not in COMMANDS or not all(_OPTION.fullmatch(w) for w in words[1:]):
        raise InputError(f"setting autopilot_command: {command!r} must be one of {', '.join(COMMANDS)} "
                         "(optionally followed by --options)")
    checked["autopilot_command"] = " ".join(words)

    wheelhouse, package = settings.get("autopilot_wheelhouse"), settings.get("autopilot_package")
    if bool(wheelhouse) == bool(package):
        raise InputError("give exactly one of autopilot_wheelhouse (a directory of wheels here) and "
                         "autopilot_package (a pip requirement the control host installs from its index)")
    if wheelhouse:
        checked["autopilot_wheelhouse"] = _absolute("autopilot_wheelhouse", wheelhouse, local="dir")
        _product_wheel(checked["autopilot_wheelhouse"])
    elif not isinstance(package, str) or package.startswith("-") or any(c.isspace() for c in package.strip()):
        raise InputError(f"setting autopilot_package: {package!r} must be one pip requirement "
                         "(e.g. camera-rollout==0.1.0)")
    else:
        checked["autopilot_package"] = package.strip()

    project = checked["autopilot_project"] = _absolute("autopilot_project", settings.get("autopilot_project"),
                                                       local="dir")
    if not os.path.isfile(os.path.join(project, "inventories", f"{env}.py")):
        raise InputError(f"setting autopilot_project: {project} has no inventories/{env}.py")
    checked["autopilot_ssh_key"] = _absolute("autopilot_ssh_key", settings.get("autopilot_ssh_key"), local="file")
    checked["autopilot_known_hosts"] = _absolute("autopilot_known_hosts", settings.get("autopilot_known_hosts"),
                                                 local="file")
    time_span("autopilot_interval", settings.get("autopilot_interval"))
    time_span("autopilot_timeout", settings.get("autopilot_timeout"))
    checked["alert_values"] = alert_values(settings.get("autopilot_alert_env") or [], environ)
    return checked


def wheel_fingerprint(wheelhouse: str | os.PathLike) -> str:
    """What identifies a wheel set: each wheel's name and content digest (a
    rebuilt product wheel keeps its name but not its content)."""
    digest = hashlib.sha256()
    for wheel in sorted(Path(wheelhouse).glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0" + hashlib.sha256(wheel.read_bytes()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def alerts_env(values: Mapping[str, str]) -> str:
    """The alerts EnvironmentFile (secret: never print it)."""
    return "".join(f"{name}={env_quote(value)}\n" for name, value in sorted(values.items()))

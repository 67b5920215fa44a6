"""Render the host files (env files, systemd unit) from the Jinja2 templates.

Pure: the same text is produced for the deploy and for the unit tests, which
compare it with exact expected files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jinja2

from rollout.project import TEMPLATES_DIR, defaults


def env_quote(value: Any) -> str:
    """Quote a value for a systemd EnvironmentFile.

    systemd strips double quotes and honours backslash escapes inside them, so a
    value with spaces, ``#`` or quotes survives intact; a newline (or any control
    character) is refused: it would start a new assignment.
    """
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("an environment value may not contain a newline or another control character")
    if text and all(c.isalnum() or c in "-_.,:/@%+=" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reserved_variables(switch_variables: Mapping[str, str] | None = None,
                       secret_variables: Mapping[str, str] | None = None) -> frozenset[str]:
    """Variables that only the deploy's own templates may set: an ``app_env``
    entry would otherwise override the stage (last assignment wins) or a secret.
    From the ``switch_variables`` and ``secret_variables`` settings (group
    data's when not given)."""
    switch = switch_variables or defaults()["switch_variables"]
    secrets = secret_variables or defaults()["secret_variables"]
    return frozenset(switch.values()) | frozenset(secrets)


def check_app_env(app_env: object, reserved: frozenset[str] | None = None) -> dict[str, str]:
    """Validate the extra, non-secret variables for the rollout env file
    (``reserved``: see ``reserved_variables``)."""
    if not isinstance(app_env, dict):
        raise ValueError(f"app_env must be a mapping of variable names to values, got {app_env!r}")
    reserved = reserved_variables() if reserved is None else reserved
    for key, value in app_env.items():
        if not (isinstance(key, str) and key.replace("_", "a").isalnum() and not key[0].isdigit()):
            raise ValueError(f"app_env: {key!r} is not a valid environment variable name")
        if key in reserved:
            raise ValueError(f"app_env may not set {key}: the stage and the secrets files own it")
        env_quote(value)
    return {key: str(value) for key, value in app_env.items()}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["env_quote"] = env_quote
    return env


def render(template_name: str, **context: Any) -> str:
    """Render one template of ``templates/`` with strict undefined variables."""
    return _environment().get_template(template_name).render(**context)

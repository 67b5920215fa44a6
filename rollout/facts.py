"""pyinfra facts about the service as it runs (not as its files say)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from rollout.stages import switch_names


class HttpStatus(FactBase):
    """
    HTTP status code of ``url`` fetched on the host itself (``None`` when nothing
    answers within two seconds).
    """

    def command(self, url: str) -> str:
        return (
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 {shlex.quote(url)} || true"
        )

    def process(self, output):
        code = "".join(output).strip()
        return int(code) if code.isdigit() and code != "000" else None


class ServiceSwitch(FactBase):
    """
    The rollout switch variables in the environment of a unit's running main
    process (``/proc/<MainPID>/environ``); ``{}`` when the unit is not running.
    Filtered on the host: no other variable (no secret) leaves it.
    """

    def command(self, unit: str) -> str:
        pattern = "|".join(switch_names())
        return (
            f"pid=$(systemctl show -p MainPID --value {shlex.quote(unit)}); "
            f"[ \"${{pid:-0}}\" -gt 0 ] && tr '\\0' '\\n' < /proc/$pid/environ "
            f"| grep -E '^({pattern})=' || true"
        )

    def process(self, output):
        return dict(line.split("=", 1) for line in output if "=" in line)


class EnvFileKeys(FactBase):
    """
    The names of the variables an env file sets to a non-empty value, sorted
    (``None`` when the file is missing or unreadable). Only names leave the
    host, never a value: fit for the secrets file.
    """

    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return (
            f"if [ -r {quoted} ]; then echo present; "
            f"sed -n 's/^[[:space:]]*\\([A-Za-z_][A-Za-z0-9_]*\\)=[[:space:]]*[^[:space:]].*$/\\1/p' {quoted}; "
            f"else echo missing; fi"
        )

    def process(self, output):
        lines = [line.strip() for line in output]
        if not lines or lines[0] != "present":
            return None
        return sorted({line for line in lines[1:] if line})

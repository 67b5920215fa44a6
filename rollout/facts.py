"""pyinfra facts about the service as it runs (not as its files say)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from rollout.stages import ROLLOUT_VARIABLES


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
        pattern = "|".join(ROLLOUT_VARIABLES)
        return (
            f"pid=$(systemctl show -p MainPID --value {shlex.quote(unit)}); "
            f"[ \"${{pid:-0}}\" -gt 0 ] && tr '\\0' '\\n' < /proc/$pid/environ "
            f"| grep -E '^({pattern})=' || true"
        )

    def process(self, output):
        return dict(line.split("=", 1) for line in output if "=" in line)

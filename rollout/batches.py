"""Host batches of a rollout, like Ansible's ``serial: [1, "25%", "100%"]``.

Pure. Sizes are taken in turn (the last one repeats until every host is done); a
percentage is of the whole fleet, rounded up, at least one host. The canary is
chosen explicitly (pyinfra's host order is not stable): first the named canary,
then the others by name.
"""

from __future__ import annotations

import math
import re
import shlex
import string


class BatchError(ValueError):
    """A batch plan or host name that cannot be used; one line."""


def parse_batches(spec: str) -> list[str]:
    """``"1,25%,100%"`` -> ``["1", "25%", "100%"]``, each checked."""
    sizes = [part.strip() for part in str(spec).split(",") if part.strip()]
    if not sizes:
        raise BatchError("--batches is empty")
    for size in sizes:
        match = re.fullmatch(r"(\d+)(%?)", size)
        if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(1)) > 100):
            raise BatchError(f"batch size {size!r} must be a whole number of hosts or 1%..100%")
    return sizes


def plan_batches(hosts: list[str], spec: str, canary: str | None = None) -> list[list[str]]:
    """Split ``hosts`` into batches following ``spec``."""
    if not hosts:
        raise BatchError("the inventory has no hosts")
    if canary is not None and canary not in hosts:
        raise BatchError(f"canary {canary!r} is not a host of the inventory ({', '.join(sorted(hosts))})")
    order = ([canary] if canary else []) + sorted(h for h in hosts if h != canary)
    sizes = parse_batches(spec)
    batches, index, step = [], 0, 0
    while index < len(order):
        size = sizes[min(step, len(sizes) - 1)]
        count = (max(1, math.ceil(len(order) * int(size[:-1]) / 100)) if size.endswith("%")
                 else int(size))
        batches.append(order[index:index + count])
        index += count
        step += 1
    return batches


def parse_duration(text: str | int | float) -> float:
    """``"90"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match:
        raise BatchError(f"duration {text!r} must look like 30s, 5m, 2h or 1d")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def unknown_placeholders(command: str, known) -> list[str]:
    """The ``{placeholders}`` of a command line that are not ``known`` (a
    ValueError naming the command for an unmatched brace)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as error:
        raise ValueError(f"{error} in {command!r}") from None
    return [f for f in fields if f not in known]


def fill(template: str, **values: object) -> str:
    """``template`` with each ``{placeholder}`` replaced by its value quoted for
    the shell; a list or tuple becomes its items, each quoted, space separated.
    A ``{placeholder}`` with no value raises KeyError (settings are checked for
    unknown ones at load, rollout/inputs.py)."""
    def quoted(value: object) -> str:
        if isinstance(value, (list, tuple)):
            return " ".join(shlex.quote(str(item)) for item in value)
        return shlex.quote(str(value))

    return string.Formatter().vformat(template, (), {key: quoted(v) for key, v in values.items()})


def hook_commands(hooks: dict | None, when: str, hosts: list[str], stage: int, batch: int) -> list[str]:
    """The ``before``/``after`` commands of a batch with ``{hosts}`` (each
    quoted, space separated), ``{stage}`` and ``{batch}`` filled in."""
    if not hooks:
        return []
    unknown = set(hooks) - {"before", "after"}
    if unknown:
        raise BatchError(f"batch_hooks: unknown key(s) {', '.join(sorted(unknown))} (before, after)")
    commands = hooks.get(when) or []
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise BatchError(f"batch_hooks.{when} must be a list of command strings")
    for command in commands:
        try:
            placeholders = unknown_placeholders(command, ("hosts", "stage", "batch"))
        except ValueError as error:  # an unmatched brace
            raise BatchError(f"batch_hooks.{when}: {error}") from None
        if placeholders:
            raise BatchError(f"batch_hooks.{when}: unknown placeholder {placeholders[0]!r} in {command!r} "
                             "(hosts, stage, batch)")
    return [fill(c, hosts=list(hosts), stage=stage, batch=batch) for c in commands]

"""Data consistency across implementations: what one writes, the other reads back.

Pure: builds the request plan and judges the answers; the probe runs the plan.
The seed rolls back on a "data consistency problem", and a rollback relies on
legacy reading what the domain wrote. For each check of the
``consistency_checks`` setting, on the verification camera and rule:

1. write ``values[0]`` with ``force_domain=true``, read it with ``=false``;
2. write ``values[1]`` with ``force_domain=false``, read it with ``=true``.

A check names the write (method, path, body with ``{value}`` where the value
goes), the read path, and the field of the read's JSON that must hold the
value: a dotted path whose parts may select a list element, ``rules[id={rule_id}]``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rollout.catalog import fill, with_force
from rollout.verify import Finding

#: The placeholders a check may use (and ``{value}``, the written value, in the body).
PLACEHOLDERS = ("camera_id", "rule_id", "rule_name")
DIRECTIONS = (("domain", "legacy"), ("legacy", "domain"))
_SELECT = re.compile(r"^([^\[\]]+)\[([^=\[\]]+)=([^\[\]]*)\]$")


class ConsistencyError(ValueError):
    """A consistency check that cannot be used as written."""


def select(document: Any, path: str) -> Any:
    """The value at a dotted ``path``; ``name[key=value]`` picks the list element
    whose ``key`` is ``value`` (compared as text). KeyError when absent."""
    value = document
    for part in path.split("."):
        match = _SELECT.match(part)
        name = match.group(1) if match else part
        if not isinstance(value, dict) or name not in value:
            raise KeyError(f"no field {name!r}")
        value = value[name]
        if match:
            key, wanted = match.group(2), match.group(3)
            found = [item for item in value if isinstance(item, dict) and str(item.get(key)) == wanted] \
                if isinstance(value, list) else []
            if not found:
                raise KeyError(f"no element of {name} with {key}={wanted}")
            value = found[0]
    return value


def check_spec(check: Any) -> None:
    """Refuse a check that cannot run (ConsistencyError, one line)."""
    if not isinstance(check, dict):
        raise ConsistencyError(f"a consistency check must be a mapping, got {check!r}")
    missing = [k for k in ("name", "write", "read", "field", "values") if k not in check]
    if missing:
        raise ConsistencyError(f"consistency check {check.get('name')!r} lacks {', '.join(missing)}")
    write = check["write"]
    if not isinstance(write, dict) or write.get("method") not in ("POST", "PUT", "PATCH") \
            or not isinstance(write.get("path"), str) or not write["path"].startswith("/"):
        raise ConsistencyError(f"consistency check {check['name']!r}: write needs a method "
                               f"(POST, PUT, PATCH) and a path starting with /")
    if "{value}" not in json.dumps(write.get("body")):
        raise ConsistencyError(f"consistency check {check['name']!r}: the write's body has no {{value}}")
    if not isinstance(check["read"], str) or not check["read"].startswith("/"):
        raise ConsistencyError(f"consistency check {check['name']!r}: read must be a path starting with /")
    if not isinstance(check["field"], str) or not check["field"]:
        raise ConsistencyError(f"consistency check {check['name']!r}: field must be a dotted path")
    values = check["values"]
    if not isinstance(values, list) or len(values) != 2 or values[0] == values[1]:
        raise ConsistencyError(f"consistency check {check['name']!r}: values must be two different values")
    context = {name: "x" for name in (*PLACEHOLDERS, "value")}
    for text in (write["path"], write.get("body"), check["read"], check["field"]):
        try:
            fill(text, context)
        except Exception as error:  # noqa: BLE001 - a malformed format string raises any of several errors
            raise ConsistencyError(f"consistency check {check['name']!r}: {text!r}: {error}") from None


def plan(checks: list[dict], context: dict[str, Any], parameter: str | None = None) -> list[dict]:
    """Per check and direction: the write (one implementation), then the read (the other)."""
    calls = []
    for check in checks:
        for (writer, reader), value in zip(DIRECTIONS, check["values"]):
            write = check["write"]
            calls.append({"method": write["method"],
                          "path": with_force(fill(write["path"], context), writer, parameter),
                          "body": fill(write.get("body"), {**context, "value": value})})
            calls.append({"method": "GET", "path": with_force(fill(check["read"], context), reader, parameter),
                          "body": None})
    return calls


def judge(checks: list[dict], context: dict[str, Any], results: list[dict]) -> list[Finding]:
    """A finding per direction whose read does not give back the written value,
    naming the check (as the endpoint), the direction (as the mode), the
    endpoint and the field."""
    mismatches = []
    answers = iter(results)
    for check in checks:
        field_path = fill(check["field"], context)
        for (writer, reader), value in zip(DIRECTIONS, check["values"]):
            direction = f"{writer} wrote, {reader} read"
            written, read = next(answers, {}), next(answers, {})
            if written.get("status") not in (200, 201):
                mismatches.append(Finding(check["name"], direction,
                                           f"write {check['write']['method']} {check['write']['path']} "
                                           f"answered {written.get('status') or written.get('error')}"))
                continue
            if read.get("status") != 200:
                mismatches.append(Finding(
                    check["name"], direction,
                    f"read GET {check['read']} answered {read.get('status') or read.get('error')}"))
                continue
            try:
                found = select(json.loads(read.get("body") or ""), field_path)
            except (ValueError, KeyError) as error:
                mismatches.append(Finding(check["name"], direction,
                                           f"GET {check['read']} field {check['field']}: {error}"))
                continue
            if found != value:
                mismatches.append(Finding(check["name"], direction,
                                           f"GET {check['read']} field {check['field']}: wrote {value!r}, "
                                           f"read back {found!r}"))
    return mismatches

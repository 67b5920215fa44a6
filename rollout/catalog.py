"""The endpoint catalog: which endpoints a verification calls, as data.

Entries come from group data (``endpoints`` in group_data/all.py), so an operator
adds an endpoint without touching code. Paths and bodies may hold placeholders
filled per run: ``{camera_id}`` (the verification camera), ``{rule_id}`` and
``{rule_name}`` (the verification alert rule).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from rollout.project import defaults
from rollout.responses import ResponsePathError, parse_path

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class CatalogError(ValueError):
    """A catalog entry that cannot be used; one line, naming the entry."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    expect: int
    body: Any = None
    #: A POST that may be sent again after a server error (it sets a state, it
    #: does not add one). GET, PUT and DELETE always may.
    retry: bool = False
    #: A GET that paired traffic may repeat (both implementations, back to back,
    #: and once more to legacy when they differ); false for a GET too costly to repeat.
    paired: bool = True
    #: JSON path patterns (rollout/responses.py) whose values may differ between
    #: the implementations (timestamps, generated ids), and arrays whose order may.
    ignore: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return self.method == "GET"

    @property
    def repeatable(self) -> bool:
        """Safe for paired traffic: a GET not marked ``paired: false``."""
        return self.read_only and self.paired


def load_catalog(entries: Any) -> tuple[Endpoint, ...]:
    """Validate catalog entries (dicts with name, method, path, expect, body)."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise CatalogError("the endpoint catalog must be a non-empty list")
    catalog, names = [], set()
    for index, entry in enumerate(entries):
        label = entry.get("name", f"#{index}") if isinstance(entry, dict) else f"#{index}"
        if not isinstance(entry, dict):
            raise CatalogError(f"endpoint {label}: must be a mapping")
        unknown = set(entry) - {"name", "method", "path", "expect", "body", "retry", "paired", "ignore", "unordered"}
        if unknown:
            raise CatalogError(f"endpoint {label}: unknown key(s) {', '.join(sorted(unknown))}")
        name, method, path, expect = (entry.get(k) for k in ("name", "method", "path", "expect"))
        if not isinstance(name, str) or not name or name in names:
            raise CatalogError(f"endpoint {label}: needs a unique name")
        if method not in METHODS:
            raise CatalogError(f"endpoint {name}: method must be one of {', '.join(METHODS)}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise CatalogError(f"endpoint {name}: path must start with /")
        if isinstance(expect, bool) or not isinstance(expect, int) or not 100 <= expect <= 599:
            raise CatalogError(f"endpoint {name}: expect must be an HTTP status code")
        if not isinstance(entry.get("retry", False), bool):
            raise CatalogError(f"endpoint {name}: retry must be true or false")
        paired = entry.get("paired", method == "GET")
        if not isinstance(paired, bool) or (paired and method != "GET"):
            raise CatalogError(f"endpoint {name}: paired must be true or false, and true only for a GET "
                               "(paired traffic repeats what it sends)")
        patterns = {key: entry.get(key) or [] for key in ("ignore", "unordered")}
        for key, value in patterns.items():
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise CatalogError(f"endpoint {name}: {key} must be a list of JSON paths like $.rules[*].updated_at")
            for pattern in value:
                try:
                    parse_path(pattern)
                except ResponsePathError as error:
                    raise CatalogError(f"endpoint {name}: {key}: {error}") from None
        for text in _strings(path, entry.get("body")):
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
            except ValueError as error:
                raise CatalogError(f"endpoint {name}: {error} in {text!r}") from None
            placeholders = [f for f in fields if f not in PLACEHOLDERS]
            if placeholders:
                raise CatalogError(f"endpoint {name}: unknown placeholder {{{placeholders[0]}}} in {text!r} "
                                   f"({', '.join(PLACEHOLDERS)})")
        names.add(name)
        catalog.append(Endpoint(name, method, path, expect, entry.get("body"), entry.get("retry", False), paired,
                                tuple(patterns["ignore"]), tuple(patterns["unordered"])))
    return tuple(catalog)


#: What a verification fills into paths and bodies: the verification camera and rule.
PLACEHOLDERS = ("camera_id", "rule_name", "rule_id")


def _strings(*values: Any):
    """Every string inside paths and JSON bodies (recursively)."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from _strings(*value)
        elif isinstance(value, dict):
            yield from _strings(*value.values())


def fill(value: Any, context: dict[str, Any]) -> Any:
    """Fill ``{placeholders}`` in a path or a JSON body (recursively). A string
    that is exactly one placeholder takes the value's own type."""
    if isinstance(value, str):
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
        missing = [f for f in fields if f not in context]
        if missing:
            raise CatalogError(f"unknown placeholder {{{missing[0]}}} in {value!r}")
        if len(fields) == 1 and value == f"{{{fields[0]}}}":
            return context[fields[0]]
        return value.format_map(context)
    if isinstance(value, list):
        return [fill(item, context) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, context) for key, item in value.items()}
    return value


def with_force(path: str, mode: str | None, parameter: str | None = None) -> str:
    """The path with the ``force_domain_parameter`` (``parameter``; group data's
    when not given) for a forced mode (``domain``/``legacy``)."""
    if mode is None:
        return path
    parameter = parameter or defaults()["force_domain_parameter"]
    flag = "true" if mode == "domain" else "false"
    return f"{path}{'&' if '?' in path else '?'}{parameter}={flag}"

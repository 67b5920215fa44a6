"""Compare two JSON responses by structure: the same keys, recursively, with values
of the same type. Values may differ (ids, timestamps, hostnames)."""

from __future__ import annotations

from typing import Any


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"  # 1 and 1.0 are the same JSON type
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def shape_differences(
    expected: Any, actual: Any, path: str = "$", left: str = "legacy", right: str = "domain"
) -> list[str]:
    """Every place where ``actual`` differs in structure from ``expected``, as
    ``"<json path>: <what differs>"``. Empty when the structures agree.

    A null on one side and a value on the other is accepted: optional fields
    (``camera_id``, ``updated_at``) are legitimately null in one answer and set
    in another. Arrays are compared element by element, so an empty list on one
    side is fine and an element of the wrong shape is not.
    """
    kind_a, kind_b = _kind(expected), _kind(actual)
    if "null" in (kind_a, kind_b) and kind_a != kind_b:
        return []
    if kind_a != kind_b:
        return [f"{path}: {kind_a} in {left}, {kind_b} in {right}"]
    if kind_a == "object":
        differences = []
        for key in sorted(set(expected) | set(actual)):
            child = f"{path}.{key}"
            if key not in actual:
                differences.append(f"{child}: missing in {right}")
            elif key not in expected:
                differences.append(f"{child}: missing in {left}")
            else:
                differences += shape_differences(expected[key], actual[key], child, left, right)
        return differences
    if kind_a == "array":
        if not expected or not actual:
            return []  # an empty list has no element shape to compare
        differences = []
        for index in range(max(len(expected), len(actual))):
            # Extra elements of the longer list are held against the other's first.
            a = expected[index] if index < len(expected) else expected[0]
            b = actual[index] if index < len(actual) else actual[0]
            differences += shape_differences(a, b, f"{path}[{index}]", left, right)
        return differences
    return []

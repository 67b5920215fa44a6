"""The binomial usage test and the JSON structure comparison on fixed inputs."""

import pytest

from rollout.compare import shape_differences
from rollout.usage import binomial_p_value, usage_consistent


def test_binomial_p_value_known_values():
    # Fair coin, 10 tosses, 0 heads: 2 * 0.5**10
    assert binomial_p_value(0, 10, 0.5) == pytest.approx(2 * 0.5 ** 10)
    assert binomial_p_value(5, 10, 0.5) == pytest.approx(1.0)
    # Symmetric: 2 heads is as extreme as 8
    assert binomial_p_value(2, 10, 0.5) == pytest.approx(binomial_p_value(8, 10, 0.5))


@pytest.mark.parametrize(
    "domain, total, percent, consistent",
    [
        (20, 200, 10, True), (11, 200, 10, True), (45, 200, 10, False), (0, 200, 10, False),
        (50, 200, 25, True), (100, 200, 50, True), (200, 200, 100, True), (199, 200, 100, False),
        (0, 50, 0, True), (1, 50, 0, False), (0, 0, 10, False),
    ],
)
def test_usage_consistent(domain, total, percent, consistent):
    assert usage_consistent(domain, total, percent).consistent is consistent


def test_usage_description_names_the_numbers():
    text = usage_consistent(20, 200, 10).describe()
    assert "domain 20/200" in text and "stage 10%" in text and "consistent" in text


def test_same_structure_different_values_agree():
    a = {"id": 1, "name": "x", "state": {"running": True}, "logs": [{"t": "a"}], "camera_id": None}
    b = {"id": 2, "name": "y", "state": {"running": False}, "logs": [], "camera_id": "cam-1"}
    assert shape_differences(a, b) == []


def test_missing_key_and_type_change_are_reported_by_path():
    legacy = {"state": {"running": True, "auto_start": False}, "total": 3, "rules": [{"enabled": True}]}
    domain = {"state": {"running": "yes"}, "total": 3.0, "rules": [{"enabled": True}, {}]}
    assert shape_differences(legacy, domain) == [
        "$.rules[1].enabled: missing in domain",
        "$.state.auto_start: missing in domain",
        "$.state.running: bool in legacy, string in domain",
    ]


def test_extra_key_is_reported_on_the_other_side():
    assert shape_differences({"a": 1}, {"a": 1, "b": 2}) == ["$.b: missing in legacy"]

"""The stage plan: parsing, switch values, allowed moves."""

import pytest

from rollout.stages import (
    StageError,
    check_move,
    next_stage,
    parse_stage,
    rollout_env,
    stage_from_env,
    validate_plan,
)


@pytest.mark.parametrize("value, stage", [(10, 10), ("25", 25), (" 50 ", 50), ("100%", 100), (0, 0)])
def test_parse_stage_accepts_plan_stages(value, stage):
    assert parse_stage(value) == stage


@pytest.mark.parametrize("value", [33, "33", "abc", "", None, True, -10, 110, "10.5"])
def test_parse_stage_refuses_everything_else(value):
    with pytest.raises(StageError) as error:
        parse_stage(value)
    message = str(error.value)
    assert "\n" not in message
    assert "0, 10, 25, 50, 100" in message


def test_parse_stage_follows_a_custom_plan():
    assert parse_stage(5, plan=[5, 100]) == 5
    with pytest.raises(StageError):
        parse_stage(10, plan=[5, 100])


@pytest.mark.parametrize(
    "plan", [[], [10, 10, 100], [25, 10, 100], [10, 50], [0, 100], [10, 101], ["x"]]
)
def test_validate_plan_refuses_bad_plans(plan):
    with pytest.raises(StageError):
        validate_plan(plan)


def test_rollout_env_per_stage():
    assert rollout_env(0) == {"USE_DOMAIN_SERVICE": "false", "ROLLOUT_PERCENT": "0"}
    assert rollout_env(10) == {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "10"}
    assert rollout_env(100) == {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "100"}


@pytest.mark.parametrize("stage", [0, 10, 25, 50, 100])
def test_stage_round_trips_through_env(stage):
    assert stage_from_env(rollout_env(stage)) == stage


@pytest.mark.parametrize(
    "env", [{}, {"USE_DOMAIN_SERVICE": "true"}, {"USE_DOMAIN_SERVICE": "yes", "ROLLOUT_PERCENT": "10"},
            {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "ten"}],
)
def test_stage_from_env_gives_none_for_incomplete_env(env):
    assert stage_from_env(env) is None


def test_next_stage_walks_the_plan():
    assert [next_stage(s) for s in (0, 10, 25, 50, 100)] == [10, 25, 50, 100, None]


def test_check_move_allows_one_step_forward_and_any_step_back():
    check_move(0, 10)
    check_move(10, 25)
    check_move(None, 10)
    check_move(100, 0)
    check_move(50, 10)
    check_move(10, 100, allow_skip=True)


@pytest.mark.parametrize("current, target", [(10, 100), (0, 25), (None, 50), (25, 100)])
def test_check_move_refuses_a_skip(current, target):
    with pytest.raises(StageError, match="skips the plan"):
        check_move(current, target)


def test_stage_from_env_lines_reads_an_env_file():
    from rollout.stages import stage_from_env_lines

    assert stage_from_env_lines(["# stage 25", "USE_DOMAIN_SERVICE=true", "ROLLOUT_PERCENT=25", ""]) == 25
    assert stage_from_env_lines(["USE_DOMAIN_SERVICE=false", "ROLLOUT_PERCENT=0", "X=a=b"]) == 0
    assert stage_from_env_lines([]) is None

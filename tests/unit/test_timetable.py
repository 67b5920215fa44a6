"""The seed's timetable (rollout/timetable.py): durations as data, a stage's clock
from the hosts' records, due and overdue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from rollout.project import defaults
from rollout.timetable import (
    Duration,
    entries,
    format_timetable,
    human,
    parse_durations,
    progression,
    stage_since,
    time_left,
    timetable,
)

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
PLAN = [10, 25, 50, 100]


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def rec(stage, hours, target=None):
    return {"stage": stage, "time": at(hours), "target_stage": stage if target is None else target}


def test_the_seed_timetable_is_the_default():
    durations = parse_durations(defaults()["stage_durations"], PLAN)
    day = 86400
    assert durations == {10: Duration(1 * day, 2 * day), 25: Duration(3 * day, 5 * day),
                         50: Duration(7 * day, 7 * day), 100: Duration(7 * day, 14 * day)}


def test_time_compression_divides_every_duration():
    durations = parse_durations({10: ["1d", "2d"], "25": [60, "2m"], 50: ["1h", "1h"], 100: [0, 10]}, PLAN,
                                compression=86400)
    assert durations[10] == Duration(1, 2)
    assert durations[25] == Duration(60 / 86400, 120 / 86400)


@pytest.mark.parametrize("raw, message", [
    ({10: ["1d", "2d"]}, "missing: [25, 50, 100]"),
    ({10: ["1d", "2d"], 25: ["1d", "2d"], 50: ["1d", "2d"], 100: ["1d", "2d"], 75: ["1d", "2d"]},
     "not in the plan: [75]"),
    ({10: ["2d", "1d"], 25: [1, 2], 50: [1, 2], 100: [1, 2]}, "stage 10: the minimum 2d is longer than the maximum 1d"),
    ({10: "1d", 25: [1, 2], 50: [1, 2], 100: [1, 2]}, "stage 10: must be [minimum, maximum]"),
    ({10: ["1 day", "2d"], 25: [1, 2], 50: [1, 2], 100: [1, 2]}, "stage 10: durations look like"),
    ({"ten": [1, 2]}, "stage 'ten' is not a stage percent"),
    ([1, 2], "must map each stage"),
])
def test_bad_durations_are_refused_in_one_line(raw, message):
    with pytest.raises(ValueError) as error:
        parse_durations(raw, PLAN)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_stage_clock_starts_when_the_whole_fleet_is_on_it_and_a_reapply_does_not_restart_it():
    histories = {
        "h1": [rec(0, 0), rec(10, 1), rec(10, 5)],          # canary at 1 h, re-applied at 5 h
        "h2": [rec(0, 0), rec(10, 2)],                      # the rest at 2 h
    }
    assert stage_since(histories, 10) == T0 + timedelta(hours=2)
    assert entries(histories["h1"]) == [(0, T0), (10, T0 + timedelta(hours=1))]


def test_the_progression_begins_at_the_last_rollback():
    history = [rec(0, 0), rec(10, 1), rec(25, 30), rec(0, 40), rec(10, 50)]
    assert [stage for stage, _ in progression(history)] == [0, 10]
    assert stage_since({"h": history}, 10) == T0 + timedelta(hours=50)  # not the first time at 10


def test_a_host_without_an_entry_on_the_stage_makes_it_unknown():
    histories = {"h1": [rec(0, 0), rec(10, 1)], "h2": [rec(0, 0)]}
    assert stage_since(histories, 10) is None
    assert time_left(histories, 10, {10: Duration(3600, 7200)}, T0 + timedelta(hours=9))[0] == float("inf")


def test_time_left_before_the_minimum_and_none_after():
    histories = {"h1": [rec(0, 0), rec(10, 1)]}
    durations = {10: Duration(86400, 2 * 86400)}
    left, due = time_left(histories, 10, durations, T0 + timedelta(hours=5))
    assert left == pytest.approx(20 * 3600) and due == T0 + timedelta(hours=25)
    assert time_left(histories, 10, durations, T0 + timedelta(hours=26))[0] == 0
    assert time_left(histories, 0, durations, T0) == (0.0, None)  # stage 0 has no minimum


def test_the_table_shows_every_stage_since_verdict_due_and_overdue():
    histories = {"h1": [rec(0, 0), rec(10, 1), rec(25, 30)], "h2": [rec(0, 0), rec(10, 2), rec(25, 31)]}
    durations = parse_durations(defaults()["stage_durations"], PLAN)
    rows = timetable(histories, 25, PLAN, durations)
    assert [(r.stage, r.state) for r in rows] == [(10, "promoted"), (25, "observing"), (50, "planned"),
                                                  (100, "planned")]
    observing = rows[1]
    assert observing.since == T0 + timedelta(hours=31)
    assert observing.due == observing.since + timedelta(days=3)
    assert observing.overdue == observing.since + timedelta(days=5)
    lines = format_timetable(rows, {25: "pass"}, T0 + timedelta(hours=31 + 24))
    assert "observing" in lines[2] and "pass" in lines[2] and "(in 2d)" in lines[2] and "(in 4d)" in lines[2]
    late = format_timetable(rows, {25: "inconclusive"}, T0 + timedelta(hours=31 + 6 * 24))
    assert "OVERDUE" in late[2]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (12, "12s"), (425, "7m 5s"), (15120, "4h 12m"),
                                           (97200, "1d 3h"), (86400 * 7, "7d")])
def test_human_durations(seconds, text):
    assert human(seconds) == text

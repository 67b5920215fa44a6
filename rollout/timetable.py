"""The seed's timetable: how long each stage is observed, and where the fleet
stands in it.

Pure. The durations are data (``stage_durations`` and ``time_compression`` in
group_data/all.py); the times come from each host's records (``history.jsonl``:
one record per stage change or rollback, with the stage its env file holds and
the time). A stage's clock starts when the *whole fleet* is on it: the latest of
the hosts' entry times (an entry is the first record of a run of records on one
stage: re-applying a stage does not restart its clock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rollout.batches import BatchError, parse_duration
from rollout.stages import ROLLBACK_STAGE, validate_plan


@dataclass(frozen=True)
class Duration:
    """A stage's observation time, in (compressed) seconds."""

    min_s: float
    max_s: float


def parse_durations(raw, plan: Sequence[int], compression: float = 1) -> dict[int, Duration]:
    """``stage_durations`` checked against the plan: every stage of the plan has
    ``[minimum, maximum]`` with minimum <= maximum; ValueError (one line) otherwise.
    Keys may be ints or their text (JSON turns them into strings)."""
    stages = validate_plan(plan)
    if not isinstance(raw, Mapping):
        raise ValueError(f"must map each stage of the plan to [minimum, maximum], got {raw!r}")
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not compression > 0:
        raise ValueError(f"time_compression must be a number > 0, got {compression!r}")
    given: dict[int, object] = {}
    for key, value in raw.items():
        try:
            given[int(str(key).rstrip("%"))] = value
        except ValueError:
            raise ValueError(f"stage {key!r} is not a stage percent") from None
    unknown = sorted(set(given) - set(stages))
    missing = [s for s in stages if s not in given]
    if unknown or missing:
        raise ValueError(f"must give exactly the plan's stages {list(stages)}: "
                         + "; ".join(filter(None, [f"not in the plan: {unknown}" if unknown else None,
                                                   f"missing: {missing}" if missing else None])))
    durations = {}
    for stage in stages:
        value = given[stage]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"stage {stage}: must be [minimum, maximum], got {value!r}")
        try:
            low, high = (parse_duration(v) for v in value)
        except BatchError:
            raise ValueError(f"stage {stage}: durations look like 90, 30m, 36h or 2d, got {value!r}") from None
        if low > high:
            raise ValueError(f"stage {stage}: the minimum {value[0]} is longer than the maximum {value[1]}")
        durations[stage] = Duration(low / compression, high / compression)
    return durations


def parse_time(text) -> datetime | None:
    """A record's time (ISO 8601), None when missing or unreadable."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def entries(history: Sequence[Mapping]) -> list[tuple[int, datetime]]:
    """(stage, entered) of each run of consecutive records on one stage, oldest
    first; records without a stage or a readable time are skipped."""
    runs: list[tuple[int, datetime]] = []
    for record in history:
        stage, moment = record.get("stage"), parse_time(record.get("time"))
        if not isinstance(stage, int) or moment is None:
            continue
        if not runs or runs[-1][0] != stage:
            runs.append((stage, moment))
    return runs


def progression(history: Sequence[Mapping]) -> list[tuple[int, datetime]]:
    """The entries of the host's current progression: after its last entry on
    stage 0 (that entry included), or all of them."""
    runs = entries(history)
    zeros = [i for i, (stage, _) in enumerate(runs) if stage == ROLLBACK_STAGE]
    return runs[zeros[-1]:] if zeros else runs


@dataclass(frozen=True)
class StageTime:
    """One row of the timetable."""

    stage: int
    #: planned | observing | promoted | rolled back
    state: str
    #: First host on the stage, whole fleet on it (None: not yet / not known).
    started: datetime | None
    since: datetime | None
    due: datetime | None
    overdue: datetime | None


def histories(statuses: Mapping[str, Mapping]) -> dict[str, list]:
    """Each host's records, from the hosts' status reports."""
    return {host: list(status.get("history") or []) for host, status in statuses.items()}


def durations_from(setting) -> dict[int, Duration]:
    """The fleet's stage durations from its settings (``setting(key)``)."""
    return parse_durations(setting("stage_durations"), setting("stage_plan"), setting("time_compression"))


def stage_since(histories: Mapping[str, Sequence[Mapping]], stage: int) -> datetime | None:
    """When the whole fleet was on ``stage`` in its current progression: the
    latest of the hosts' entries; None if a host has no entry on it."""
    times = []
    for history in histories.values():
        found = [moment for s, moment in progression(history) if s == stage]
        if not found:
            return None
        times.append(found[-1])
    return max(times) if times else None


def timetable(histories: Mapping[str, Sequence[Mapping]], current: int | None, plan: Sequence[int],
              durations: Mapping[int, Duration]) -> list[StageTime]:
    """A row per stage of the plan: planned, observing (the fleet's ``current``
    stage), promoted (an earlier stage of the current progression)."""
    rows = []
    for stage in validate_plan(plan):
        firsts = [m for h in histories.values() for s, m in progression(h) if s == stage]
        since = stage_since(histories, stage) if firsts else None
        if current is not None and stage < current and firsts:
            state = "promoted"
        elif stage == current:
            state = "observing"
        else:
            state, since, firsts = "planned", None, []
        duration = durations.get(stage)
        due = since + timedelta(seconds=duration.min_s) if since and duration else None
        overdue = since + timedelta(seconds=duration.max_s) if since and duration else None
        rows.append(StageTime(stage, state, min(firsts) if firsts else None, since, due, overdue))
    return rows


def left(until: datetime | None, now: datetime) -> float | None:
    """Seconds from ``now`` until ``until`` (negative: past); None when unknown."""
    return None if until is None else (until - now).total_seconds()


def human(seconds: float) -> str:
    """``1d 3h``, ``4h 12m``, ``7m 5s``, ``12s``: the two largest units."""
    seconds = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)


def clock(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


def format_timetable(rows: Sequence[StageTime], verdicts: Mapping[int, str], now: datetime) -> list[str]:
    """The timetable as the operator reads it: since when, the verdict so far,
    when due, when overdue (with the time left or past)."""
    lines = [(f"{'stage':>5}  {'state':<10} {'since (whole fleet)':<21} {'verdict so far':<26} "
              f"{'due':<34} overdue")]
    for row in rows:
        def when(moment: datetime | None, word: str, row: StageTime = row) -> str:
            seconds = left(moment, now)
            if seconds is None or row.state != "observing":
                return clock(moment)
            return f"{clock(moment)} ({'in ' + human(seconds) if seconds > 0 else word})"
        lines.append(f"{row.stage:>5}  {row.state:<10} {clock(row.since):<21} "
                     f"{verdicts.get(row.stage, '-'):<26} {when(row.due, 'due'):<34} "
                     f"{when(row.overdue, 'OVERDUE')}")
    return lines


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def time_left(histories: Mapping[str, Sequence[Mapping]], stage: int | None, durations: Mapping[int, Duration],
              now: datetime) -> tuple[float, datetime | None]:
    """Seconds left before ``stage`` may be left forward (its minimum), and when
    it is due; (0, None) for stage 0 or a stage without a duration. A stage
    whose start no record tells is never due: (inf, None)."""
    if not stage or stage not in durations:
        return 0.0, None
    since = stage_since(histories, stage)
    if since is None:
        return float("inf"), None
    due = since + timedelta(seconds=durations[stage].min_s)
    return max(0.0, (due - now).total_seconds()), due

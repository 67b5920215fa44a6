"""What one tick of ``rollout watch`` decides, from what the hosts say.

Pure: the fleet's statuses (each host's stage in its env file and its process,
its record, its lock) and the gate's verdicts in, a decision out. The tick
itself (locks, runs, alerts) is rollout/controller.py's.

Before the gate, ``situation`` sorts the fleet:

- **settled**: every host runs the stage its file holds, all the same stage;
- **promotion**: a promotion from S to the plan's next stage T stopped half-way
  (a tick or an operator killed between batches): every host on T ran its
  batch's checks without a failure, the others still run S. What the hosts say
  of who started it (``started_by``) is only their word: the tick resumes it
  only when its own state directory says it started it, applying T to the
  others in batches, never redoing a finished one;
- **rollback**: a rollback stopped half-way (hosts on 0 recorded their move to
  0 after every other host's last record): it is finished first;
- **drift**: anything else (a failed batch or a failed gate left as it was, a
  revert stopped half-way, a host edited by hand, a stage outside the plan): the
  watch holds and alerts; a person settles it with deploy or rollback.

After the gate, ``after_gate`` applies the timetable to a settled stage: due and
passing -> promote (``auto_promote``) or alert "due"; due and not passing ->
alert; past the maximum -> alert "overdue"; at 100 % due and passing -> complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from rollout.stages import ROLLBACK_STAGE, next_stage
from rollout.timetable import Duration, human, parse_time

#: Record verdicts of a host whose stage change ended without a failed check.
CHECKED = ("pass", "inconclusive", "not checked")


@dataclass(frozen=True)
class Situation:
    kind: str  # settled | promotion | rollback | drift
    stage: int | None = None  # settled: the stage; promotion: from
    target: int | None = None  # promotion: to
    remaining: tuple[str, ...] = ()  # promotion: the hosts still to move
    reason: str = ""
    #: promotion: the commands the finished hosts recorded (who started it)
    started_by: tuple[str, ...] = ()


def _record(status: Mapping) -> Mapping:
    return status.get("current") or {}


def gate_on(status: Mapping, stage: int) -> Mapping:
    """The host's last gate if it judged ``stage`` in the host's current run on
    it (after the record of the stage before), else {}: a gate of an earlier
    time on the same stage says nothing of this one."""
    last = status.get("gate_last") or {}
    if last.get("stage") != stage:
        return {}
    history = status.get("history") or []
    before = [r for r in history if r.get("stage") != stage]
    judged, previous = parse_time(last.get("time")), parse_time(before[-1].get("time")) if before else None
    if previous is not None and (judged is None or judged <= previous):
        return {}
    return last


def situation(statuses: Mapping[str, Mapping], plan: Sequence[int]) -> Situation:
    """Sort the fleet (see the module docstring). A host counts as on a stage
    when its file and its process hold it and its record says it moved there (a
    tick killed after the restart but before the record leaves a host to redo:
    the record starts the stage's clock). Whatever is not plainly one of the
    safe cases is drift: the watch holds and a person decides."""
    files: dict[str, Any] = {h: s.get("file_stage") for h, s in statuses.items()}  # None: refused below
    if any(stage is None for stage in files.values()):
        unknown = sorted(h for h, stage in files.items() if stage is None)
        return Situation("drift", reason=f"no stage in the env file of {', '.join(unknown)}")
    outside = sorted(h for h, stage in files.items() if stage not in (ROLLBACK_STAGE, *plan))
    if outside:
        return Situation("drift", reason="stages outside the plan: " + ", ".join(f"{h}={files[h]}" for h in outside))
    stages = sorted(set(files.values()))
    lower, upper = stages[0], stages[-1]
    # A host back on the lower stage whose record still says the upper one moved
    # down without recording it: a rollback (or a revert) stopped half-way.
    down = sorted(h for h, s in statuses.items() if lower != upper and files[h] == lower
                  and _record(s).get("stage") == upper)
    if lower == ROLLBACK_STAGE and upper != ROLLBACK_STAGE:
        # Hosts moved to 0 after every other host's last change: a rollback under way.
        others = [parse_time(_record(s).get("time")) for h, s in statuses.items() if files[h] != lower]
        rolled = [parse_time(_record(s).get("time")) for h, s in statuses.items()
                  if files[h] == lower and _record(s).get("target_stage") == ROLLBACK_STAGE]
        if down or (rolled and all(others) and all(r and r > max(cast("list[datetime]", others)) for r in rolled)):
            return Situation("rollback", upper, ROLLBACK_STAGE,
                             tuple(sorted(h for h, stage in files.items() if stage != lower)),
                             "a rollback stopped half-way")
    if down:
        return Situation("drift", reason=f"{', '.join(down)} went back to stage {lower} without a record "
                                         "(a revert stopped half-way)")
    if len(stages) > 2 or (len(stages) == 2 and upper != next_stage(lower, plan)):
        return Situation("drift", reason="hosts are on stages " + ", ".join(
            f"{h}={stage}" for h, stage in sorted(files.items())))
    failed, remaining, started_by = [], [], set()
    for host, status in sorted(statuses.items()):
        record, process = _record(status), status.get("process_stage")
        gate = gate_on(status, upper)
        if upper != ROLLBACK_STAGE and gate.get("verdict") in ("abort", "error"):
            failed.append(f"{host} (its last gate on stage {upper}: {gate.get('verdict')})")
        elif files[host] == upper and process == upper and record.get("target_stage") == upper \
                and record.get("stage") == upper:
            started_by.add(str(record.get("command")))
            if upper != ROLLBACK_STAGE and record.get("verdict") not in CHECKED:
                failed.append(f"{host} ({record.get('verdict')})")
        elif files[host] == upper or (files[host] == lower and process == lower):
            remaining.append(host)
        else:
            failed.append(f"{host} (its file holds stage {files[host]}, its process runs {process})")
    if failed:
        return Situation("drift", reason=f"stage {upper} failed or half-applied on {', '.join(failed)}")
    if not remaining or (len(stages) == 1 and upper == ROLLBACK_STAGE):
        return Situation("settled", upper)
    origin = lower if len(stages) == 2 else _previous(upper, plan)
    return Situation("promotion", origin, upper, tuple(remaining),
                     f"a promotion to {upper} stopped half-way ({', '.join(remaining)} still to do)",
                     tuple(sorted(started_by)))


def _previous(stage: int, plan: Sequence[int]) -> int:
    earlier = [s for s in (ROLLBACK_STAGE, *plan) if s < stage]
    return earlier[-1] if earlier else ROLLBACK_STAGE


def fleet_verdict(statuses: Mapping[str, Mapping], stage: int) -> str:
    """The stage's verdict so far: the worst of the hosts' last gates on it
    (abort > error > inconclusive > pass); "-" when a host has none."""
    order = {"abort": 0, "error": 1, "inconclusive": 2, "pass": 3}
    found = []
    for status in statuses.values():
        last = gate_on(status, stage)
        if last.get("verdict") not in order:
            return "-"
        found.append(last["verdict"])
    return min(found, key=order.__getitem__) if found else "-"


@dataclass(frozen=True)
class Alert:
    """An alert a decision raises: the kind (rollout/alerts.py) and its text."""

    kind: str
    summary: str


@dataclass(frozen=True)
class Decision:
    """What a tick does on a settled stage after its gate."""

    promote_to: int | None = None
    alerts: tuple[Alert, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def after_gate(stage: int, verdicts: Mapping[str, str], since: datetime | None, duration: Duration | None,
               now: datetime, plan: Sequence[int], auto_promote: bool, waiting: str = "") -> Decision:
    """The timetable applied to a settled stage whose gate neither aborted nor
    missed a host (those end the tick before this). ``waiting``: what an
    inconclusive gate waits for, said in its alert."""
    if since is None or duration is None:
        return Decision(notes=(f"stage {stage}: no record of when the whole fleet reached it: never due",))
    passing = bool(verdicts) and all(v == "pass" for v in verdicts.values())
    elapsed = (now - since).total_seconds()
    due, overdue = elapsed >= duration.min_s, elapsed >= duration.max_s
    following = next_stage(stage, plan)
    notes = [(f"stage {stage} for {human(elapsed)} of {human(duration.min_s)}-{human(duration.max_s)}; "
              f"gate {'pass' if passing else 'not passing'}")]
    alerts: list[Alert] = []
    if due and passing and following is None:
        return Decision(alerts=(Alert("completed", f"stage 100 observed for {human(elapsed)} and passing: "
                                                   "the rollout is complete"),), notes=tuple(notes))
    if due and passing and auto_promote:
        return Decision(promote_to=following, notes=tuple(notes))
    if due and passing:
        alerts.append(Alert("due", f"stage {stage} is due and passing: promote to {following} "
                                   "(auto_promote is off)"))
    elif due:
        alerts.append(Alert("inconclusive-past-due", f"stage {stage} is due (after {human(duration.min_s)}) "
                                                     "but its gate does not pass yet: keep observing"
                                                     + (f" ({waiting})" if waiting else "")))
    if overdue:
        alert = overdue_alert(stage, since, duration, now)
        assert alert is not None  # past the maximum, the same test as overdue_alert's
        alerts.append(alert)
    if not due:
        notes.append(f"due in {human(duration.min_s - elapsed)}")
    return Decision(alerts=tuple(alerts), notes=tuple(notes))


def overdue_alert(stage: int, since: datetime | None, duration: Duration | None, now: datetime) -> Alert | None:
    """"overdue" for a stage past its maximum (not promoted: not passing, a
    person to promote, a confirm hook holding it); None before."""
    if since is None or duration is None or (now - since).total_seconds() < duration.max_s:
        return None
    return Alert("overdue", f"stage {stage} is overdue: {human((now - since).total_seconds())} past its start, "
                            f"maximum {human(duration.max_s)}")


def lock_holders(statuses: Mapping[str, Mapping]) -> list[Mapping]:
    """The distinct locks the hosts hold (by token)."""
    seen: dict[str, Mapping] = {}
    for status in statuses.values():
        lock = status.get("lock")
        if lock:
            seen.setdefault(str(lock.get("token")), lock)
    return list(seen.values())


#: How far ahead of this machine's clock a host's time may be and still count.
CLOCK_SKEW_S = 300


def trusted_time(text: Any, now: datetime) -> datetime | None:
    """A host-written time, unless unreadable or in the future (beyond the clock
    skew): root on one host can write any time, and a future one would hold a
    check that counts from it (a lock never stale, an alert key never new)."""
    moment = parse_time(text)
    if moment is None or (moment - now).total_seconds() > CLOCK_SKEW_S:
        return None
    return moment


def is_stale(lock: Mapping, now: datetime, stale_after_s: float, first_seen: datetime | None = None) -> bool:
    """Whether ``lock`` is held longer than ``stale_after_s``: from the earlier of
    the time it says it was taken and the time this machine first saw it
    (``first_seen``), so a lock with a forged time still grows stale."""
    taken = [t for t in (trusted_time(lock.get("time"), now), first_seen) if t is not None]
    return bool(taken) and (now - min(taken)).total_seconds() >= stale_after_s


def key_time(since: datetime | None, records: Iterable[Any], now: datetime) -> str:
    """The time an alert key tells a stage's time on it by: when the whole fleet
    reached it (``since``), else the newest of the hosts' current ``records``
    times (a new drift, a new rollback), future and unreadable times left out."""
    if since is not None and trusted_time(since, now) is not None:
        return since.isoformat()
    times = [t for t in (trusted_time(r, now) for r in records) if t is not None]
    return max(times).isoformat() if times else "-"

"""One tick of ``rollout watch ENV``: the controller that drives a rollout over
days, agentless, from cron, a systemd timer (tasks/autopilot.py) or CI.

A tick is safe to run every minute and to kill at any point:

1. it takes this control machine's tick lock (``flock``: the kernel lets go of
   it when a tick dies), so two ticks here never overlap;
2. it reads every host's state (stage, record, history, lock, last gate, the
   alerts already sent): the durable state of the rollout lives on the hosts,
   never in this process;
3. a rollout lock held by someone else (an operator's ``rollout deploy``, a tick
   on another machine) -> it does nothing and says so (alerted once when stale);
   a lock left by a dead tick of this machine (same operator, ``rollout watch``)
   is taken over;
4. it takes the fleet's lock (first host first: of two ticks at once, one wins),
   finishes what a killed tick left half-way (rollout/watch.py ``situation``), or
   judges the window since the previous passing check: abort -> roll back every
   host; due and passing -> confirm hooks -> promote in batches; the timetable's
   alerts (due, inconclusive past due, overdue, complete);
5. each alert goes out once: its key (kind, stage, when the stage began) is kept
   on this machine and on the hosts (``watch.json``); an alert a sink did not take
   is kept on this machine and sent again by the next tick.

What a host says is trusted only as far as one host cannot steer the fleet: a
half-way promotion is resumed only when this machine's state directory says one
of its ticks started it (a marker kept before the first batch), and only after
the stage's time, the gate and the confirm hooks, as a new one; an alert key
counts as sent when this machine sent it or every host keeps it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from rollout import hooks
from rollout.batches import fill, plan_batches
from rollout.orchestrate import EXIT_FAILED, EXIT_OK, EXIT_ROLLED_BACK, Orchestrator, StageChange, Stop
from rollout.stages import ROLLBACK_STAGE
from rollout.timetable import Duration, durations_from, histories, human, parse_time, stage_since, utcnow
from rollout.watch import after_gate, is_stale, key_time, lock_holders, overdue_alert, situation

#: Alert keys kept on the hosts and on this machine (the newest).
SENT_KEPT = 300
#: Rollout locks held by others, with when this machine first saw each (the newest).
LOCKS_SEEN_KEPT = 20
#: Alerts a sink did not take, kept here for the next tick (the newest), and for how long.
PENDING_KEPT = 100
PENDING_MAX_AGE_S = 24 * 3600


def one_line(text: str) -> str:
    """``text`` with every run of whitespace and control characters made one space."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def default_state_dir() -> Path:
    """``ROLLOUT_STATE_DIR``, else ``$XDG_STATE_HOME/rollout``, else ``~/.local/state/rollout``."""
    explicit = os.environ.get("ROLLOUT_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "rollout"


class LocalState:
    """The watch's state on this control machine, per inventory: the tick lock,
    the failed-tick count and the alerts still to deliver (``watch-ENV.json``,
    run_tick's); and what this machine's ticks did themselves, which no host can
    forge (``watch-ENV.own.json``, the tick's): the promotion a tick started and
    has not finished, the alert keys sent from here. The rollout itself is on the
    hosts."""

    def __init__(self, directory: Path, env: str):
        self.directory = directory
        self.lock_path = directory / f"watch-{env}.lock"
        self.path = directory / f"watch-{env}.json"
        self.own_path = directory / f"watch-{env}.own.json"
        self._lock_file: TextIO | None = None

    def try_lock(self) -> bool:
        """The tick lock, without waiting; False when another tick holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        return True

    def holder(self) -> str:
        try:
            return self.lock_path.read_text().strip() or "?"
        except OSError:
            return "?"

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def load(self) -> dict:
        return self._load(self.path)

    def save(self, data: dict) -> None:
        self._save(self.path, data)

    @staticmethod
    def _load(path: Path) -> dict:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self, path: Path, data: dict) -> None:
        """Replaced atomically and on disk before it returns: a tick killed while
        writing (or a power cut after) leaves the old file or the new one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        with open(temp, "w") as handle:
            handle.write(json.dumps(data, indent=1, sort_keys=True))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # --- what this machine's ticks did (the tick's own file) ------------------------------------

    def _own(self, **changes) -> None:
        """Change fields of the own file (one writer: the tick holding the tick lock)."""
        data = {**self._load(self.own_path), **changes}
        self._save(self.own_path, {k: v for k, v in data.items() if v is not None})

    def promotion(self) -> dict | None:
        """The promotion a tick of this state directory started and did not finish."""
        marker = self._load(self.own_path).get("promotion")
        return marker if isinstance(marker, dict) else None

    def start_promotion(self, marker: dict) -> None:
        self._own(promotion=marker)

    def end_promotion(self) -> None:
        if self.promotion() is not None:
            self._own(promotion=None)

    def sent(self) -> list[str]:
        """The alert keys sent from this machine (the newest ``SENT_KEPT``)."""
        keys = self._load(self.own_path).get("sent")
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []

    def keep_sent(self, new: list[str]) -> None:
        self._own(sent=sent_to_keep(self.sent(), new))

    def first_seen(self, token: str, now: datetime) -> datetime:
        """When a tick of this machine first saw the lock ``token`` (``now``, the
        first time): a lock's age that no host's clock or record can change. Kept
        by a digest of the token (a host writes it: any length), the newest
        ``LOCKS_SEEN_KEPT`` by time."""
        digest = hashlib.sha256(token.encode()).hexdigest()[:16]
        seen = self._load(self.own_path).get("locks_seen")
        times = {k: t for k, v in seen.items() if (t := parse_time(v))} if isinstance(seen, dict) else {}
        moment = times.get(digest)
        if moment is None:
            moment = times[digest] = now
            newest = sorted(times.items(), key=lambda item: item[1])[-LOCKS_SEEN_KEPT:]
            self._own(locks_seen={k: t.isoformat(timespec="seconds") for k, t in newest})
        return moment


@dataclass
class Alerts:
    """The tick's alerts: each key sent once (``sent``: the keys this machine
    sent, and those every host keeps), what a sink did not take kept in
    ``pending`` for the next tick."""

    env: str
    send: Callable[[dict], bool] | None  # the event's JSON -> delivered to every sink?
    say: Callable[[str], None]
    sent: set[str] = field(default_factory=set)
    new: list[str] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)
    base: str = "-"
    #: Keeps ``pending`` on this machine as soon as a sink refused an alert.
    keep_pending: Callable[[list[dict]], None] | None = None

    def __call__(self, kind: str, stage: int | None, summary: str, key: str = "") -> None:
        # One line each, whatever a host wrote into the text (a newline would
        # make the event unsendable after its key counted as sent).
        summary, full = one_line(summary), one_line(f"{kind}:{self.base}:{key}")
        if full in self.sent:
            return
        self.sent.add(full)
        self.new.append(full)
        self.say(f"alert {kind}: {summary}")
        event = {"kind": kind, "env": self.env, "key": full, "summary": summary, "stage": stage,
                 "time": utcnow().isoformat(timespec="seconds")}
        if self.send is not None and not self.send(event):
            self.pending.append(event)
            if self.keep_pending is not None:
                self.keep_pending(self.pending)

    def retry_pending(self, pending: list[dict], now: datetime) -> None:
        """Send again what earlier ticks could not deliver (the newest, not older than a day)."""
        for event in pending[-PENDING_KEPT:]:
            try:
                age = (now - datetime.fromisoformat(event["time"])).total_seconds()
            except (KeyError, TypeError, ValueError):
                continue
            if age > PENDING_MAX_AGE_S:
                self.say(f"alert {event.get('kind')} dropped: undelivered for {human(age)}")
            elif self.send is not None and not self.send(event):
                self.pending.append(event)


@dataclass(frozen=True)
class WatchSettings:
    """What a tick reads of the fleet's group data (checked by rollout/inputs.py)."""

    env: str
    plan: tuple[int, ...]
    durations: dict[int, Duration]
    auto_promote: bool
    soak_s: float
    batch_soak_s: float
    last_soak_s: float
    batches: str
    canary: str | None
    confirm_hooks: tuple[str, ...]
    confirm_hook_timeout_s: float
    lock_stale_after_s: float
    failing_after: int
    #: The environment variables a hook gets beyond the minimal ones (rollout/hooks.py).
    hook_env: tuple[str, ...] = ()

    @classmethod
    def of(cls, env: str, setting: Callable[[str], Any], soak_s: float | None = None) -> WatchSettings:
        plan = tuple(setting("stage_plan"))
        return cls(env, plan, durations_from(setting),
                   bool(setting("auto_promote")), float(setting("watch_soak_s") if soak_s is None else soak_s),
                   float(setting("batch_soak_s")), float(setting("soak_s")), setting("batches"),
                   setting("canary"), tuple(setting("confirm_hooks") or ()),
                   float(setting("confirm_hook_timeout_s")), float(setting("lock_stale_after_s")),
                   int(setting("watch_failing_after")), tuple(setting("hook_env") or ()))


def _rolled_back(status: Mapping) -> bool:
    """The host's last change was a rollback (by hand, by a check, by the watch)."""
    record = status.get("current") or {}
    return "rollback" in str(record.get("command")) or str(record.get("verdict")).startswith("rolled back") \
        or "gate failed" in str(record.get("command"))


def run_confirm_hook(command: str, cwd: Path, timeout_s: float, passthrough: tuple[str, ...] = ()
                     ) -> tuple[bool, str]:
    """One confirm hook on this machine (rollout/hooks.py: the minimal
    environment and ``hook_env``, bounded): (exited 0 in time, one line)."""
    return hooks.run(command, cwd, timeout_s, passthrough)


class Tick:
    """One tick over a runner (rollout/fleet.py's, or a fake one in the tests)."""

    def __init__(self, settings: WatchSettings, runner, orchestrator: Orchestrator, alerts: Alerts,
                 operator: str, project: Path, start: bool = False, local: str = "",
                 confirm: Callable[..., tuple[bool, str]] = run_confirm_hook,
                 now: Callable[[], datetime] = utcnow, stopping: Callable[[], bool] = lambda: False,
                 state: LocalState | None = None):
        self.settings = settings
        self.runner = runner
        self.orchestrator = orchestrator
        self.alerts = alerts
        self.operator = operator
        self.project = project
        self.start = start
        self.confirm = confirm
        self.now = now
        #: True once the operator asked the loop to stop (SIGTERM, Ctrl-C): a run
        #: that fails then may have been cut by the same signal, so nothing is
        #: rolled back on it; the next tick judges again.
        self.stopping = stopping
        self.command = f"rollout watch {settings.env}"
        #: The lock's words: which watch holds it (this machine's state directory:
        #: only a tick that shares it, and so its tick lock, may take it over).
        self.lock_label = f"{self.command} (state {local})" if local else self.command
        self.summary: dict[str, Any] = {}
        #: What this machine's ticks did (the promotion they started, the alert
        #: keys they sent): trusted over the hosts' word. None: nothing kept here,
        #: so no half-way promotion is ever resumed.
        self.state = state
        self.own_sent = state.sent() if state is not None else []
        self.alerts.sent.update(self.own_sent)
        #: The alert keys that count as sent (this machine's, then those every
        #: host keeps in watch.json), in order, once read: written back to the hosts.
        self.kept: list[str] = []
        self.read = False
        self.written = 0
        self.saved = 0

    def say(self, message: str) -> None:
        self.runner.say(message)

    # --- the tick -----------------------------------------------------------------------------

    def run(self) -> int:
        """The tick's body, after this machine's tick lock. Returns an exit code."""
        statuses = self._read()
        if not self._lock_free(statuses):
            self._keep_alerts()
            return EXIT_OK
        place = situation(statuses, self.settings.plan)
        if place.kind == "settled" and place.stage == ROLLBACK_STAGE and not self.start:
            self.summary.update(situation=place.kind, action="none: stage 0")
            self.say("stage 0: nothing to watch (start with `rollout deploy` or `rollout watch --start`)")
            self._forget_promotion()
            return EXIT_OK
        try:
            self.orchestrator.take_lock(self.lock_label, arbiter=True)
        except Stop as error:
            self.say(f"{error}: this tick does nothing")
            self.summary["action"] = "none: locked"
            return EXIT_OK
        try:
            # Decide from what the hosts say now that no one else may change them:
            # another tick or an operator may have acted since the first read.
            statuses = self._read()
            place = situation(statuses, self.settings.plan)
            self.summary["situation"] = place.kind
            since = stage_since(histories(statuses), place.stage) if place.stage is not None else None
            # The alerts' keys tell this stage's time on it from any other: when the
            # whole fleet reached it, else the newest record (a new drift, a new rollback).
            records = [(s.get("current") or {}).get("time") for s in statuses.values()]
            self.alerts.base = f"{place.stage}@{key_time(since, records, self.now())}"
            if place.kind in ("settled", "rollback"):
                self._forget_promotion()  # none half-way: whatever was started is over
            try:
                code = self._act(place, statuses, since)
            except Stop as stop:
                if stop.code == EXIT_ROLLED_BACK:
                    self._forget_promotion()
                raise
            if code == EXIT_ROLLED_BACK:
                self._forget_promotion()
            return code
        finally:
            self._keep_alerts()
            self.orchestrator.release_lock(quiet=True)

    def _read(self) -> dict[str, dict]:
        """Every host's state; a host that cannot be read ends the tick."""
        statuses = self.runner.status()
        missing = sorted(h for h, s in statuses.items() if s is None)
        if missing:
            raise Stop(EXIT_FAILED, f"cannot read the state of host(s) {', '.join(missing)} (unreachable?): "
                                    "nothing judged, nothing changed")
        self.say("fleet: " + ", ".join(f"{h} {s.get('file_stage')}/{s.get('process_stage')}"
                                       for h, s in sorted(statuses.items())) + " (stage in file/process)")
        agreed = agreed_keys(statuses)
        self.kept = list(dict.fromkeys([*self.kept, *(k for k in self.own_sent if k not in agreed), *agreed]))
        self.alerts.sent.update(self.kept)
        self.read = True
        return statuses

    def _keep_alerts(self) -> None:
        """The keys of this tick's alerts, kept on this machine, and on every host
        with those that count as sent (only once they were read: never a list
        that would forget them)."""
        if self.state is not None and len(self.alerts.new) > self.saved:
            self.state.keep_sent(self.alerts.new[self.saved:])
            self.saved = len(self.alerts.new)
        if self.read and len(self.alerts.new) > self.written:
            self.runner.keep_alerts(sent_to_keep(self.kept, self.alerts.new))
            self.written = len(self.alerts.new)

    def keep_alerts_after(self) -> None:
        """After the tick's own bookkeeping (watch failing, recovered): the keys
        not yet on the hosts; a host that does not answer is said, not fatal."""
        try:
            self._keep_alerts()
        except Exception as error:  # noqa: BLE001 - the tick is over; its alerts went out
            self.say(f"alert keys not kept on the hosts: {type(error).__name__}: {error}")

    def _lock_free(self, statuses: Mapping[str, Mapping]) -> bool:
        """True when the rollout lock is free, or held only by a tick of this
        machine that died (taken over: our tick lock proves none runs)."""
        holders = lock_holders(statuses)
        if not holders:
            return True
        ours = [lock for lock in holders if lock.get("owner") == self.operator
                and lock.get("command") == self.lock_label]
        if len(ours) == len(holders):
            self.say(f"taking over the lock of a tick that died ({ours[0].get('time')})")
            for lock in ours:  # by its own token: never anyone else's lock
                self.runner.lock("release", quiet=True, token=lock.get("token"))
            return True
        other = next(lock for lock in holders if lock not in ours)
        described = f"{other.get('owner')} since {other.get('time')} ({other.get('command')})"
        self.say(f"the rollout lock is held by {described}: this tick does nothing")
        self.summary["action"] = "none: locked"
        first_seen = self.state.first_seen(str(other.get("token")), self.now()) if self.state is not None else None
        if is_stale(other, self.now(), self.settings.lock_stale_after_s, first_seen):
            saved, self.alerts.base = self.alerts.base, "lock"
            self.alerts("lock-stale", None, f"the rollout lock is held by {described}, longer than "
                        f"{human(self.settings.lock_stale_after_s)}: `rollout unlock {self.settings.env} --force` "
                        "if that run is gone", f"{other.get('time')}/{other.get('owner')}")
            self.alerts.base = saved
        return False

    def _act(self, place, statuses: Mapping[str, Mapping], since: datetime | None) -> int:
        stage = place.stage
        if place.kind == "drift":
            return self._hold("drift", stage, f"{place.reason}; settle the fleet with `rollout deploy` or "
                                              "`rollout rollback`")
        if place.kind == "rollback":
            self.summary["action"] = "finish rollback"
            self.say(f"{place.reason}: finishing it")
            return self._roll_back()
        if place.kind == "promotion":
            refusal = self._not_resumable(place, since)
            if refusal:
                return self._hold("promotion", stage, refusal)
            if stage == ROLLBACK_STAGE:  # a --start: nothing to observe before it, as when it began
                self.summary["action"] = f"resume promotion to {place.target}"
                self.say(f"{place.reason}: finishing it")
                return self._promote(stage, place.target, list(place.remaining), resumed=True)
            self.say(f"{place.reason}: started by this watch; judged as a new promotion would be")
            return self._judge(stage, since, place)
        # Settled on one stage.
        if stage == ROLLBACK_STAGE:
            rolled = sorted(h for h, s in statuses.items() if _rolled_back(s))
            if rolled:
                self.summary["action"] = "none: rolled back"
                self.say(f"stage 0 after a rollback ({', '.join(rolled)}): --start never restarts a rolled-back "
                         f"rollout; start it again with `rollout deploy {self.settings.env} --stage "
                         f"{self.settings.plan[0]}`")
                return EXIT_OK
            self.summary["action"] = f"start stage {self.settings.plan[0]}"
            return self._promote(ROLLBACK_STAGE, self.settings.plan[0], list(self.runner.hosts))
        return self._judge(stage, since)

    def _not_resumable(self, place, since: datetime | None) -> str | None:
        """Why the half-way promotion ``place`` is not this watch's to finish (a
        one-line reason), or None. The hosts' word (their records say ``rollout
        watch``) is not enough: one host can forge it; this machine's state
        directory must hold the promotion, started by one of its ticks."""
        env, target = self.settings.env, place.target
        finish = f"finish it with `rollout deploy {env} --stage {target}` or `rollout rollback {env}`"
        who = ", ".join(place.started_by) or "unknown"
        if not self._started_here(place, since):
            where = self.state.directory if self.state is not None else "none"
            return (f"{place.reason}, recorded as started by {who}: not a promotion started from this watch's state "
                    f"directory ({where}), which the watch never resumes; {finish}")
        if set(place.started_by) - {self.command}:
            return f"{place.reason}, started by {who}: the watch finishes only its own promotions; {finish}"
        if not self.settings.auto_promote:
            return f"{place.reason}: the watch finishes its own promotions only with auto_promote; {finish}"
        return None

    def _started_here(self, place, since: datetime | None) -> bool:
        """This state directory's marker is of this promotion: the same stages,
        kept after the fleet reached the stage it leaves (the tick that kept it
        judged that stage due by the same records: an older marker is of an
        earlier time on it, left by a tick whose promotion someone else settled)."""
        marker = self.state.promotion() if self.state is not None else None
        if not marker or (marker.get("env"), marker.get("from"), marker.get("to")) != \
                (self.settings.env, place.stage, place.target):
            return False
        # No time on the stage it leaves: a stage never due (the timetable holds it),
        # or a --start from hosts never recorded on stage 0 (nothing happened to them
        # since the marker). With one, the marker must be newer (below).
        if since is None:
            return True
        started = parse_time(marker.get("time"))
        return started is not None and since <= started

    def _judge(self, stage: int, since: datetime | None, resume=None) -> int:
        """The gate, the timetable and the confirm hooks on ``stage``, then the
        next stage: on every host, or (``resume``, a half-way promotion of this
        watch) on the hosts still to move, without redoing a finished batch."""
        verdicts = self.orchestrator.gate(self.settings.soak_s, None)
        self.say("gate: " + ", ".join(f"{h} {v}" for h, v in verdicts.items()))
        if self.stopping():
            raise Stop(EXIT_FAILED, "stopping: this tick's gate is not acted on (a signal may have cut it); "
                                    "the next tick judges again")
        try:
            self.orchestrator.act_on_gate(verdicts, f"{self.command} (gate failed)", f"stage {stage}")
        except Stop as stop:
            self.summary["action"] = "rolled back" if stop.code == EXIT_ROLLED_BACK else "failed"
            raise
        now = self.now()
        decision = after_gate(stage, verdicts, since, self.settings.durations.get(stage), now,
                              self.settings.plan, self.settings.auto_promote, self.orchestrator.waiting)
        for note in decision.notes:
            self.say(note)
        for alert in decision.alerts:
            self.alerts(alert.kind, stage, alert.summary)
        if decision.promote_to is None:
            self.summary["action"] = "observe" if resume is None else f"observe: promotion to {resume.target} half-way"
            return EXIT_OK
        refusal = self._confirmed(stage, decision.promote_to)
        if refusal:
            self.summary["action"] = "hold: confirm hook"
            self.alerts("held", stage, f"promotion to {decision.promote_to} held: {refusal}", "confirm")
            late = overdue_alert(stage, since, self.settings.durations.get(stage), now)
            if late:
                self.alerts(late.kind, stage, late.summary)
            return EXIT_OK
        if resume is not None:  # its target is the stage after ``stage`` (rollout/watch.py situation)
            self.summary["action"] = f"resume promotion to {resume.target}"
            return self._promote(stage, resume.target, list(resume.remaining), resumed=True)
        self.summary["action"] = f"promote to {decision.promote_to}"
        return self._promote(stage, decision.promote_to, list(self.runner.hosts))

    def _hold(self, what: str, stage: int | None, reason: str) -> int:
        """The watch holds (alerted once): a person must act. Exit 1, but not a
        failing watch."""
        self.summary.update(action=f"hold: {what}", held=True)
        self.alerts("held", stage, f"the watch holds: {reason}", what)
        raise Stop(EXIT_FAILED, f"the watch holds: {reason}")

    def _confirmed(self, stage: int, following: int) -> str | None:
        """Every confirm hook, in order; the first refusal (its command and exit
        status: a hook's words stay in this tick's log, never in an alert), or None."""
        for template in self.settings.confirm_hooks:
            command = fill(template, env=self.settings.env, stage=stage, next_stage=following)
            ok, detail = self.confirm(command, self.project, self.settings.confirm_hook_timeout_s,
                                      self.settings.hook_env)
            self.say(f"confirm hook: {command} -> {detail}")
            if not ok:
                return f"{command} ({detail.split(':', 1)[0]})"
        return None

    def _promote(self, stage: int, target: int, hosts: list[str], resumed: bool = False) -> int:
        """``target`` on ``hosts`` in the fleet's batches (those of a killed run that
        finished are left out); a failed batch rolls every host back."""
        planned = plan_batches(list(self.runner.hosts), self.settings.batches, self.settings.canary)
        batches = [[h for h in batch if h in hosts] for batch in planned]
        batches = [batch for batch in batches if batch]
        self.say(f"{'resuming' if resumed else 'promoting'}: stage {target} in {len(batches)} batch(es): "
                 + " | ".join(", ".join(b) for b in batches))
        change = StageChange(target, batches, self.settings.last_soak_s, self.settings.batch_soak_s, None, "stop",
                             self.command, from_stage=stage, resumed=resumed)
        self._remember_promotion(stage, target)  # before any host moves: a tick killed later is resumed
        try:
            self.orchestrator.apply_in_batches(change, {})
        except Stop as stop:
            if self.stopping():
                raise Stop(EXIT_FAILED, f"{stop}; stopping: nothing rolled back (a signal may have cut the batch); "
                                        "the next tick finishes or judges it") from None
            self.say(f"{stop}: rolling every host back")
            self._roll_back()  # a rollback that did not complete raises its own Stop
            raise Stop(EXIT_ROLLED_BACK, f"{stop}; every host rolled back") from None
        self._forget_promotion()  # every host on the target
        return EXIT_OK

    def _remember_promotion(self, stage: int, target: int) -> None:
        """The promotion this tick starts (or resumes), kept on this machine
        before the first batch: what lets a later tick of this state directory
        resume it."""
        if self.state is not None:
            self.state.start_promotion({"env": self.settings.env, "from": stage, "to": target,
                                        "token": str(getattr(self.runner, "token", "")),
                                        "time": self.now().isoformat()})

    def _forget_promotion(self) -> None:
        if self.state is not None:
            self.state.end_promotion()

    def _roll_back(self) -> int:
        code = self.orchestrator.roll_back(f"{self.command} (rollback)")
        if code != EXIT_OK:
            raise Stop(EXIT_FAILED, "the rollback did not complete on every host (see above)")
        return EXIT_ROLLED_BACK


def tick_failed(local: dict, failing_after: int, alerts: Alerts, reason: str) -> dict:
    """Count a failed tick; "watch failing" once the count reaches ``failing_after``."""
    failures = int(local.get("failures") or 0) + 1
    first = local.get("first_failure") or utcnow().isoformat(timespec="seconds")
    local = {**local, "failures": failures, "first_failure": first}
    if failures >= failing_after and not local.get("failing_alerted"):
        alerts.base = "watch"
        alerts("watch-failing", None, f"{failures} ticks in a row failed since {first}; last: {reason}", first)
        local["failing_alerted"] = True
    return local


def tick_succeeded(local: dict, alerts: Alerts) -> dict:
    """A good tick after "watch failing" was alerted: "watch recovered"."""
    if local.get("failing_alerted"):
        alerts.base = "watch"
        alerts("watch-recovered", None, f"the watch works again (failing since {local.get('first_failure')})",
               str(local.get("first_failure")))
    return {k: v for k, v in local.items() if k not in ("failures", "first_failure", "failing_alerted")}


def agreed_keys(statuses: Mapping[str, Mapping]) -> list[str]:
    """The alert keys every host keeps in its watch.json (in the first host's
    order): one host alone cannot make an alert count as sent."""
    lists = []
    for _, status in sorted(statuses.items()):
        watch = status.get("watch")
        sent = watch.get("sent") if isinstance(watch, Mapping) else None
        lists.append([k for k in sent if isinstance(k, str)] if isinstance(sent, list) else [])
    if not lists:
        return []
    common = set(lists[0]).intersection(*lists[1:])
    return [k for k in dict.fromkeys(lists[0]) if k in common]


def sent_to_keep(kept: list[str], new: list[str]) -> list[str]:
    """The keys the hosts keep: what they had, then this tick's, the newest ``SENT_KEPT``."""
    return list(dict.fromkeys([*kept, *new]))[-SENT_KEPT:]


def wait_between(interval_s: float, stopping: Callable[[], bool], started: float) -> None:
    """Sleep until the next tick (interval counted from the tick's start), waking
    early when asked to stop."""
    while not stopping() and time.monotonic() - started < interval_s:
        time.sleep(min(0.5, interval_s))

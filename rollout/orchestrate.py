"""The orchestration of a rollout: host batches, the failure policy, the lock,
and gate-then-rollback, behind a runner interface.

Decisions only. The hosts are reached through a ``Runner``: ``rollout/fleet.py``
has the one that runs pyinfra against an inventory, the unit tests a fake one.
Nothing here prints or exits: progress goes to ``runner.say``, a command ends
with ``Stop(code, message)`` or returns, and what happened is kept as structured
data in ``Orchestrator.result`` (the CLI's ``--json``).

The path of ``rollout deploy``: the CLI checks the input and builds a
``StageChange`` -> ``Orchestrator.deploy`` takes the lock -> per batch: hooks
before -> ``runner.apply`` (one pyinfra run of deploy.py on the batch's hosts)
-> hooks after -> on a failure, the failure policy on the touched hosts ->
the lock is released.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout.batches import hook_commands
from rollout.stages import ROLLBACK_STAGE, next_stage

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ROLLED_BACK = 0, 1, 2, 3

#: Gate verdict of a host the run never connected to: nothing was measured there.
UNREACHABLE = "unreachable"
#: Gate verdict of a reached host whose gate gave none (a gate never passes on
#: missing data).
NOT_RUN = "not run"


class Stop(Exception):
    """End the command with an exit code and a one-line message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class HostsRun:
    """What one run over some hosts reports back, per host (structured, from
    the reports each host's run wrote)."""

    ok: bool
    unreachable: list[str] = field(default_factory=list)
    #: Hosts that recorded their change (deploy.py, the rollback task).
    recorded: list[str] = field(default_factory=list)
    #: Gate verdict per host (deploy.py with checks, tasks/gate.py).
    verdicts: dict[str, str] = field(default_factory=dict)
    #: Legacy proven per host (the rollback task).
    proven: dict[str, bool] = field(default_factory=dict)
    #: Lock holders that refused us (tasks/lock.py acquire), described.
    holders: list[str] = field(default_factory=list)
    #: What an inconclusive gate waits for ("needs 430 more domain at 1.5/s ≈ 5 min pooled").
    waiting: str = ""


class Runner(Protocol):
    """How the orchestration reaches the hosts."""

    hosts: list[str]

    def say(self, message: str) -> None: ...

    def status(self) -> dict[str, dict | None]:
        """Every host's status report (None for a host that could not be read)."""

    def lock(self, action: str, *, command: str = "", force: bool = False, quiet: bool = False,
             hosts: list[str] | None = None, token: str | None = None) -> HostsRun:
        """``acquire`` (with this rollout's token), ``release`` (ours, the lock of
        ``token``, or any with ``force``) on every host or on ``hosts``; ``quiet``:
        show nothing of the run."""

    def apply(self, hosts: list[str], stage: int, *, soak_s: float, smoke: bool | None, command: str,
              checks: bool = True) -> HostsRun:
        """deploy.py on ``hosts``: the stage, then (``checks``) preflight, verification, gate."""

    def roll_back(self, hosts: list[str] | None, *, command: str, take_lock: bool = False) -> HostsRun:
        """The rollback task (stage 0, legacy proof) on ``hosts`` (None: all)."""

    def gate(self, soak_s: float, smoke: bool | None) -> HostsRun:
        """The metrics gate alone on every host."""

    def hook(self, command: str) -> tuple[bool, str]:
        """One batch hook on the control machine: (succeeded, last line of its output)."""

    def keep_alerts(self, sent: list[str]) -> None:
        """The watch's sent alert keys, kept on every host."""


@dataclass(frozen=True)
class StageChange:
    """One stage applied in batches (deploy, and promote after its gate)."""

    stage: int
    batches: list[list[str]]
    soak_s: float
    batch_soak_s: float
    smoke: bool | None
    on_failure: str  # previous | rollback | stop
    command: str
    #: The fleet's stage before the change (a move forward ends with "promoted").
    from_stage: int | None = None
    #: Finishing a change a killed run left half-way: no "stage-started" again.
    resumed: bool = False


def gate_failures(verdicts: dict[str, str]) -> list[str]:
    """Hosts whose gate failed on their own evidence: an abort, an error
    (unusable metrics), or a reached host with no verdict at all.
    "inconclusive" is not a failure (observe longer), and neither is an
    unreachable host: nothing was measured there."""
    return [h for h, v in verdicts.items() if v in ("abort", "error", NOT_RUN)]


def drift(statuses: dict[str, dict]) -> list[str]:
    """What does not line up: hosts on different stages, file != process."""
    flags = []
    stages = {s["file_stage"] for s in statuses.values()}
    if len(stages) > 1:
        flags.append("hosts are on different stages: " + ", ".join(
            f"{h}={s['file_stage']}" for h, s in sorted(statuses.items())))
    for host, status in sorted(statuses.items()):
        if status["file_stage"] != status["process_stage"]:
            flags.append(f"{host}: file says stage {status['file_stage']}, "
                         f"process runs {status['process_stage']}")
    return flags


def fleet_stage(statuses: dict[str, dict]) -> int | None:
    """The stage the fleet is on, for the rule "one step forward at a time": the
    highest stage any host's file holds (a half-done rollout counts as started)."""
    stages = [s["file_stage"] for s in statuses.values() if s["file_stage"] is not None]
    return max(stages) if stages else None


#: ``alert(kind, stage, summary, key)``: an event for the alert sinks
#: (rollout/alerts.py kinds); ``key`` tells apart events of one kind and stage.
Alert = Callable[[str, "int | None", str, str], None]


def no_alert(kind: str, stage: int | None, summary: str, key: str = "") -> None:
    """The default: alerts go nowhere."""


class Orchestrator:
    """The rollout's steps over a runner; ``result`` collects what happened,
    ``alert`` is told what an operator must hear of."""

    def __init__(self, runner: Runner, hooks: dict | None = None, rollback_batches: list[list[str]] | None = None,
                 lock_hint: str = "ENV", result: dict[str, Any] | None = None, alert: Alert = no_alert):
        self.runner = runner
        self.hooks = hooks or {}
        self.rollback_batches = rollback_batches or [list(runner.hosts)]
        self.lock_hint = lock_hint
        self.result: dict[str, Any] = {} if result is None else result
        #: What the last inconclusive gate waits for (HostsRun.waiting).
        self.waiting = ""
        self.alert = alert

    def say(self, message: str) -> None:
        self.runner.say(message)

    # --- the lock -------------------------------------------------------------------------------

    def take_lock(self, command: str, arbiter: bool = False) -> None:
        """Take the fleet's lock on every host. With ``arbiter``, on the first
        host by name first: of two runs that start at once, the one that wins
        it takes the rest and the other gives up at once (taken on all hosts
        in one go, each could win some hosts and both would give up)."""
        if arbiter:
            first = sorted(self.runner.hosts)[:1]
            run = self.runner.lock("acquire", command=command, hosts=first)
            if not run.ok:
                raise Stop(EXIT_FAILED, f"another rollout holds the lock: {sorted(run.holders)[0]}" if run.holders
                           else f"could not take the rollout lock on {first[0]}")
        run = self.runner.lock("acquire", command=command)
        if not run.ok:
            self.runner.lock("release", quiet=True)  # only ours: the token must match
            raise Stop(EXIT_FAILED, f"another rollout holds the lock: {sorted(run.holders)[0]}" if run.holders
                       else "could not take the rollout lock on every host")

    def release_lock(self, quiet: bool = False) -> None:
        run = self.runner.lock("release", quiet=quiet)
        if not run.ok and not quiet:
            self.say(f"the lock may still be held on a host that did not answer: once it is back, "
                     f"`rollout unlock {self.lock_hint} --force`")

    # --- hooks ----------------------------------------------------------------------------------

    def run_hooks(self, when: str, hosts: list[str], stage: int, batch: int) -> bool:
        """The batch hooks of group data, in order; the first failing one fails the batch."""
        for hook in hook_commands(self.hooks, when, hosts, stage, batch):
            self.say(f"  hook ({when}): {hook}")
            ok, detail = self.runner.hook(hook)
            if not ok:
                self.say(f"  hook ({when}) failed with {detail}")
                return False
        return True

    # --- a stage in batches -------------------------------------------------------------------------

    def deploy(self, change: StageChange, previous: dict[str, int | None]) -> None:
        """Take the lock, apply the stage batch by batch, release the lock."""
        self.take_lock(change.command)
        try:
            self.apply_in_batches(change, previous)
        finally:
            self.release_lock()

    def apply_in_batches(self, change: StageChange, previous: dict[str, int | None]) -> None:
        """The batches, in order; the first failure stops the rollout and applies
        the failure policy to the hosts already touched. A batch whose before hook
        failed never ran: its hosts are not touched (no revert, no after hook),
        and when no earlier batch ran either, nothing changed: exit 1."""
        self.result["batches"] = []
        done: list[str] = []
        stage = change.stage
        if not change.resumed:
            self.alert("stage-started", stage, f"stage {stage} starting in {len(change.batches)} batch(es) "
                       f"(from stage {change.from_stage}): " + " | ".join(", ".join(b) for b in change.batches), "")
        for number, batch in enumerate(change.batches, start=1):
            last = number == len(change.batches)
            soak = change.soak_s if last else change.batch_soak_s
            self.say(f"batch {number}/{len(change.batches)}: {', '.join(batch)} -> stage {stage} "
                     f"(gate soak {soak:.0f}s)")
            started = time.monotonic()
            ran = self.run_hooks("before", batch, stage, number)
            if ran:
                run = self.runner.apply(batch, stage, soak_s=soak, smoke=change.smoke, command=change.command)
                if run.ok and not self.run_hooks("after", batch, stage, number):
                    run.ok = False
                done += batch
            else:
                run = HostsRun(ok=False)
            verdicts = {h: UNREACHABLE if h in run.unreachable else run.verdicts.get(h, NOT_RUN) for h in batch}
            self.result["batches"].append({"hosts": batch, "ok": run.ok, "ran": ran, "gate": verdicts,
                                           "seconds": round(time.monotonic() - started, 1)})
            unrecorded = [h for h in batch if h not in run.recorded]
            if unrecorded and run.ok:
                self.say(f"  no record from {', '.join(unrecorded)}: the run did not reach it")
                run.ok = False
            if run.ok:
                self.say(f"batch {number} done in {time.monotonic() - started:.1f}s: "
                         + ", ".join(f"{h} {v}" for h, v in verdicts.items()))
                self.alert("batch-passed", stage, f"stage {stage} batch {number}/{len(change.batches)} passed its "
                           "checks: " + ", ".join(f"{h} {v}" for h, v in verdicts.items()), ",".join(batch))
                continue
            untouched = [h for h in self.runner.hosts if h not in done]
            never = ":" if ran else f" before it ran: nothing changed on {', '.join(batch)};"
            self.say(f"batch {number} FAILED{never} the rollout stops; untouched: {', '.join(untouched) or 'none'}")
            what = (", ".join(f"{h} {v}" for h, v in verdicts.items()) if ran
                    else "its before hook failed, the batch never ran")
            self.alert("aborted", stage, f"stage {stage} failed in batch {number} on {', '.join(batch)} ("
                       + what + f"); on failure: {change.on_failure}", "")
            failed = f"stage {stage} failed in batch {number} ({', '.join(batch)})"
            if not ran:
                failed += ": its before hook failed, so the batch never ran"
                if not done:  # nothing ran anywhere: nothing to revert, nothing rolled back
                    raise Stop(EXIT_FAILED, f"{failed}; nothing was changed")
            code = self.handle_failure(done, previous, change.on_failure)
            if code == EXIT_ROLLED_BACK and ran:
                # Reverted and healthy again: back into the load balancer's pool. A
                # host whose revert failed stays drained.
                self.run_hooks("after", batch, stage, number)
            # The hosts the policy applied to are named when they are not the failed batch's.
            whose = "" if ran else f"{', '.join(done)} "
            outcome = {"stop": "; nothing was reverted", "previous": f"; {whose}reverted to the previous stage",
                       "rollback": f"; {whose}rolled back to stage 0"}[change.on_failure]
            if change.on_failure != "stop" and code == EXIT_FAILED:
                of = "" if ran else f" of {', '.join(done)}"
                outcome = f"; the revert ({change.on_failure}){of} FAILED on some host (see above)"
            if code == EXIT_ROLLED_BACK and change.on_failure == "rollback":
                self.alert("rolled-back", stage, f"rolled back to stage 0 after stage {stage} failed: "
                           f"{', '.join(done)} serve legacy", "")
            raise Stop(code, f"{failed}{outcome}")
        if change.from_stage is None or stage > change.from_stage:
            self.alert("promoted", stage, f"every host on stage {stage} (from {change.from_stage}), "
                       f"{len(change.batches)} batch(es) checked", "")

    def handle_failure(self, touched: list[str], previous: dict[str, int | None], on_failure: str) -> int:
        """Apply the failure policy to the hosts this rollout touched: exit 3
        when they are reverted, 1 when it leaves them (``stop``), a revert
        failed, or there is no host to revert (nothing was rolled back)."""
        if on_failure == "stop" or not touched:
            return EXIT_FAILED
        targets: dict[int, list[str]] = {}
        for host in touched:
            stage = ROLLBACK_STAGE if on_failure == "rollback" else (previous.get(host) or ROLLBACK_STAGE)
            targets.setdefault(stage, []).append(host)
        ok = True
        command = "rollout: revert after a failed batch"
        for stage, hosts in sorted(targets.items()):
            self.say(f"reverting {', '.join(hosts)} to stage {stage}")
            if stage == ROLLBACK_STAGE:
                run = self.runner.roll_back(hosts, command=command)
            else:
                run = self.runner.apply(hosts, stage, soak_s=0, smoke=None, command=command, checks=False)
            ok = ok and run.ok
        return EXIT_ROLLED_BACK if ok else EXIT_FAILED

    # --- rollback -------------------------------------------------------------------------------

    def roll_back(self, command: str) -> int:
        """Stage 0 with the legacy proof on every host: at once (one run that
        takes and releases the lock itself) or in the rollback batches with the
        hooks around each (behind a load balancer). Every batch is rolled back
        even if one fails, and a failing hook never stops a rollback."""
        started = time.monotonic()
        proven: dict[str, bool] = {}
        failed_run = False
        if len(self.rollback_batches) == 1 and not self.hooks:
            run = self.runner.roll_back(None, command=command, take_lock=True)
            if run.holders:
                self.release_lock(quiet=True)  # where it was taken
                raise Stop(EXIT_FAILED, f"another rollout holds the lock: {run.holders[0]} (nothing rolled "
                                        f"back there; `rollout rollback {self.lock_hint} --break-lock` in an "
                                        "emergency)")
            proven, failed_run = self._proven(run, self.runner.hosts), not run.ok
            if failed_run or not all(proven.values()):
                self.release_lock(quiet=True)  # the task releases it only on success
        else:
            self.take_lock(command)
            try:
                for number, batch in enumerate(self.rollback_batches, start=1):
                    self.say(f"rollback batch {number}/{len(self.rollback_batches)}: {', '.join(batch)}")
                    if not self.run_hooks("before", batch, ROLLBACK_STAGE, number):
                        self.say("  rolling back this batch anyway: a hook never stops a rollback")
                    run = self.runner.roll_back(batch, command=command)
                    proven.update(self._proven(run, batch))
                    failed_run = failed_run or not run.ok
                    if run.ok and not self.run_hooks("after", batch, ROLLBACK_STAGE, number):
                        failed_run = True
            finally:
                self.release_lock(quiet=True)
        self.result.update({"rollback_seconds": round(time.monotonic() - started, 1), "legacy_proven": proven})
        if failed_run or not all(proven.values()):
            failed = [h for h, ok in proven.items() if not ok]
            self.say(f"rollback FAILED on {', '.join(failed) or 'some host'}")
            return EXIT_FAILED
        self.say(f"rolled back in {time.monotonic() - started:.1f}s: every host serves legacy "
                 f"({', '.join(self.runner.hosts)})")
        self.alert("rolled-back", ROLLBACK_STAGE, f"rolled back: every host on stage 0, legacy proven on "
                   f"{', '.join(self.runner.hosts)}", "")
        return EXIT_OK

    @staticmethod
    def _proven(run: HostsRun, hosts: list[str]) -> dict[str, bool]:
        return {h: bool(run.proven.get(h)) for h in hosts}

    # --- the gate -------------------------------------------------------------------------------

    def gate(self, soak_s: float, smoke: bool | None) -> dict[str, str]:
        """The metrics gate on every host; each host's verdict (``unreachable``
        for a host the run never reached, ``not run`` for one that gave none)."""
        run = self.runner.gate(soak_s, smoke)
        verdicts = {h: UNREACHABLE if h in run.unreachable else run.verdicts.get(h, NOT_RUN)
                    for h in self.runner.hosts}
        self.result["gate"] = verdicts
        self.waiting = run.waiting
        if run.waiting:
            self.result["waiting"] = run.waiting
        return verdicts

    def act_on_gate(self, verdicts: dict[str, str], command: str, what: str, roll_back: bool = True) -> None:
        """The blast-radius rule of promote and check, in one place:
        - a host whose gate failed on its own evidence -> every host back to
          stage 0 (exit 3; 1 when the rollback itself failed), or exit 1 with
          ``roll_back`` off;
        - an unreachable host -> named, exit 1, nothing rolled back: one host that
          does not answer says nothing about the others' metrics, which are
          judged on their own evidence above.
        Returns when no host failed and every host was reached."""
        failed = gate_failures(verdicts)
        unreachable = [h for h, v in verdicts.items() if v == UNREACHABLE]
        if failed:
            self.alert("aborted", None, f"{what} failed its gate on " + ", ".join(
                f"{h} ({verdicts[h]})" for h in failed) + ("; rolling every host back" if roll_back else
                                                          "; not rolled back (--no-rollback)"), "")
        if failed and roll_back:
            self.say(f"gate failed on {', '.join(failed)}: rolling every host back")
            if self.roll_back(command) == EXIT_OK:
                raise Stop(EXIT_ROLLED_BACK, f"{what} failed its gate on {', '.join(failed)}")
            raise Stop(EXIT_FAILED, f"{what} failed its gate on {', '.join(failed)}; the rollback did not "
                                    f"complete on every host (see above)")
        if failed:
            raise Stop(EXIT_FAILED, f"{what} failed its gate on {', '.join(failed)} (not rolled back: --no-rollback)")
        if unreachable:
            measured = ", ".join(f"{h} {v}" for h, v in verdicts.items() if v != UNREACHABLE)
            raise Stop(EXIT_FAILED, f"cannot reach {', '.join(unreachable)}: not judged, nothing rolled back "
                                    f"(measured: {measured or 'none'})")

    # --- promote ------------------------------------------------------------------------------

    def promotion(self, statuses: dict[str, dict], plan) -> tuple[int | None, int]:
        """The fleet's stage and the one after it; a drifted fleet (hosts on
        different stages, a file its process does not run) is refused, and so is
        a fleet at 100 %."""
        flags = drift(statuses)
        if flags:
            for flag in flags:
                self.say(f"DRIFT {flag}")
            raise Stop(EXIT_FAILED, "the fleet has drifted; settle it with deploy or rollback first")
        current = fleet_stage(statuses)
        following = next_stage(current or 0, plan)
        if following is None:
            raise Stop(EXIT_FAILED, "already at 100%: nothing to promote")
        self.result["from_stage"] = current
        return current, following

    def gate_before_promote(self, current: int | None, following: int, soak_s: float, smoke: bool | None,
                            command: str) -> None:
        """The gate on what the fleet served on its stage since the previous
        passing check (and over ``soak_s`` more): a failure rolls every host back
        (``act_on_gate``), anything short of a pass everywhere is "keep
        observing" (exit 1). Returns when the promotion may go on."""
        self.say(f"gate on stage {current} ({'one read' if not soak_s else f'{soak_s:.0f}s'}) "
                 f"before promoting to {following}")
        verdicts = self.gate(soak_s, smoke)
        self.act_on_gate(verdicts, f"{command} (gate failed)", f"stage {current}")
        if any(v != "pass" for v in verdicts.values()):
            raise Stop(EXIT_FAILED, f"gate inconclusive on stage {current}: keep observing, then promote again")

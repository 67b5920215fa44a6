"""The checks after a stage change, as pyinfra tasks: preparation check, endpoint
verification, metrics gate, and the legacy proof after a rollback; the lock and
the record of the change.

The judging is in Python on the control machine (rollout/checks.py and the pure
modules it calls), run by pyinfra's own ``python.call``; the host's state (lock,
record) is rollout/hoststate.py's. On the host runs only a small probe script.

``verdicts``: a dict the entry file creates per host and hands to the checks and
then to the record, which records what they concluded.
"""

from __future__ import annotations

from typing import cast

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import python

from rollout import checks, gate_check, hoststate, operations as ops
from tasks.entry import run_command


@deploy("Checks")
def record_baseline(to_stage: int, known: dict | None = None):
    return ops.record_baseline(
        name="Record baseline P95 (before the stage changes)",
        to_stage=to_stage,
        known=known,
    )


@deploy("Checks")
def preflight(expected_stage: int | None = None, verdicts: dict | None = None, **kwargs):
    return python.call(name="Preparation check", function=checks.preflight,
                       expected_stage=expected_stage, verdicts=verdicts, **kwargs)


@deploy("Checks")
def verify(stage: int | None = None, verdicts: dict | None = None, **kwargs):
    """Both implementations compared, then the unforced mix. The comparison writes
    to one verification camera and rule that every host shares (through the
    common database and Redis), so it runs host by host; read-only, and the mix
    test, run on all hosts at once."""
    read_only = bool(host.data.get("verify_read_only"))
    compared = python.call(
        name="Endpoint verification: both implementations"
        + (" (read-only)" if read_only else " (host by host: shared verification camera)"),
        function=checks.compare,
        read_only=read_only,
        verdicts=verdicts,
        _serial=not read_only,
        **kwargs,
    )
    # when(): the deploy's own _if (pyinfra took it out of kwargs) and the comparison's success.
    mixed = python.call(name="Endpoint verification: unforced mix", function=checks.mix, stage=stage,
                        verdicts=verdicts, _if=ops.when(compared.did_succeed), **kwargs)
    return compared, mixed


@deploy("Checks")
def gate(stage: int | None = None, verdicts: dict | None = None, **kwargs):
    """The gate on every host at once, each host's window judged alone; then,
    once every host has judged, the hosts pooled and each verdict settled and
    kept (rollout/gate_check.py). Returns both operations."""
    measured = python.call(
        name=f"Metrics gate ({host.data.soak_s}s soak)",
        function=gate_check.measure,
        stage=stage,
        soak_s=float(host.data.soak_s),
        interval_s=float(host.data.gate_interval_s),
        verdicts=verdicts,
        **kwargs,
    )
    concluded = python.call(name="Metrics gate: the hosts pooled, each verdict kept", function=gate_check.conclude,
                            **kwargs)
    return measured, concluded


@deploy("Checks")
def prove_legacy(**kwargs):
    """After a rollback: every endpoint, called unforced, answered by legacy (a
    write-free probe, so on all hosts at once); and N unforced requests all on legacy."""
    proof = python.call(name="Legacy proof: every endpoint unforced answered by legacy",
                        function=checks.legacy_proof, **kwargs)
    mix = python.call(name="Legacy proof: unforced mix all legacy", function=checks.mix, stage=0,
                      legacy_proof=True, **kwargs)
    return proof, mix


def after_stage(stage: int, verdicts: dict | None = None):
    """Preflight, then verification, then the gate; each runs only if the one
    before passed, and their errors are let through so the caller can roll back
    first. Returns a run-time test: did any of them fail on this host?"""
    # A skipped operation counts as succeeded, so each step waits on all before it.
    steps = [preflight(expected_stage=stage, verdicts=verdicts, _ignore_errors=True)]
    # verify() returns its two operations (pyinfra types any @deploy's result as one).
    steps += cast("tuple[OperationMeta, OperationMeta]",
                  verify(stage=stage, verdicts=verdicts, _ignore_errors=True, _if=[steps[0].did_succeed]))
    steps += cast("tuple[OperationMeta, OperationMeta]",
                  gate(stage=stage, verdicts=verdicts, _ignore_errors=True, _if=[s.did_succeed for s in steps]))
    return lambda: any(step.is_complete() and step.did_error() for step in steps)


def fail(name: str, reason: str, **kwargs):
    """Fail the run on this host with ``reason`` (after earlier steps whose errors
    were let through, e.g. to roll back first)."""
    return python.call(name=name, function=checks.fail, reason=reason, **kwargs)


@deploy("Lock")
def lock(action: str, known: dict | None = None, **kwargs):
    """The rollout lock: ``acquire`` it, ``check`` that it is free or this run's
    (``lock_token``; from ``known``, the host's state), or ``release`` it
    (``break_lock``: another operator's too)."""
    token = host.data.get("lock_token")
    if action == "check":
        return ops.lock_free(name="Rollout lock is free or ours", token=token, known=known, **kwargs)
    if action == "acquire":
        return python.call(name="Take the rollout lock", function=hoststate.acquire_lock,
                           token=token, command=run_command(), **kwargs)
    return python.call(name="Release the rollout lock", function=hoststate.release_lock,
                       token=token, force=bool(host.data.get("break_lock")), **kwargs)


@deploy("Record")
def record(target_stage: int, verdicts: dict | None = None, rolled_back=None):
    """Record the change on the host; ``rolled_back``: a run-time test, did this
    run roll the host back after a failed check?"""
    return python.call(
        name="Record the change on the host (stage, operator, baseline, verdict)",
        function=hoststate.record,
        target_stage=target_stage,
        command=run_command(),
        verdicts=verdicts,
        rolled_back=rolled_back,
    )

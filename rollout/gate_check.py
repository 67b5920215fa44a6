"""The metrics gate as a check of a pyinfra run, in two steps.

1. ``measure`` (on every host at once): read the host's window over the soak and
   judge it alone (rollout/gate.py); nothing is kept yet.
2. ``conclude`` (once every host's gate has judged: pyinfra runs an operation on
   every host before the next): judge the hosts of the run pooled
   (rollout/pool.py) when there are two or more, settle each host's verdict,
   print and keep it, and keep each passing window's end as the next check's
   start only when every host the run reached passed.

The hosts' measurements meet in ``_measured``, keyed by the run's state: the
greenlets of one run share this process.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import gevent

from rollout import hoststate
from rollout.checks import Verdicts, _current, _note, baseline_p95, paired_traffic, traffic
from rollout.gate import (
    ABORT,
    ERROR,
    INCONCLUSIVE,
    LATENCY_QUANTILE,
    PASS,
    GateRun,
    SideRow,
    Thresholds,
    compared_totals,
    format_verdict,
    missing,
    p95_within,
)
from rollout.pool import outlier_rows, pool, poolable, pooled_rows, pooled_verdict, time_to_evidence
from rollout.probe import ProbeError
from rollout.reports import report, say
from rollout.responses import add_tallies
from rollout.sources import Window, keep_cursor, keep_gate, read_tallies
from rollout.state_metrics import GATE_FILE, gate_text
from rollout.window import Counters, continues


@dataclass
class Measured:
    """One host's gate, judged alone, waiting for the run's other hosts."""

    stage: int
    run: GateRun
    thresholds: Thresholds
    note: str
    cursor: tuple[dict, list] | None
    #: Requests a second of each implementation during this gate's reads (None:
    #: one read only, no rate).
    rates: dict[str, float] | None
    verdicts: Verdicts | None = None
    final: tuple[str, str] | None = None
    #: ``gate_pooled`` of the host's data: may it be judged with the others.
    poolable: bool = True


@dataclass
class Pooled:
    verdict: str
    reason: str
    rows: list[SideRow]
    outliers: dict[str, list[SideRow]] = field(default_factory=dict)
    #: What the pooled block misses and how long that takes ("" if unknown).
    estimate: str = ""


#: Per run (its state, held weakly: a run's entries go with it).
_measured: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_pooled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gate_metrics(host, stage: int, verdict: str) -> list[dict]:
    """The verdict as metrics for node_exporter's textfile directory, when set."""
    directory = host.data.get("rollout_textfile_dir")
    if not directory:
        return []
    return [{"path": f"{directory}/{GATE_FILE}", "if_dir_exists": True,
             "content": gate_text(host.data.service_name, stage, verdict, time.time())}]


def _rates(run: GateRun, window: Window, first: tuple[float, Counters] | None,
           last: tuple[float, Counters] | None) -> dict[str, float] | None:
    """Requests a second of each implementation, and of unforced requests (the
    host's real traffic, the paired traffic's budget): over the whole window
    when its start is known (a tick of one read has rates too), else between
    this gate's first and last reads; None when neither is known."""
    if run.served is not None and window.started_at is not None and time.time() - window.started_at > 1:
        return _per_s(run.served, time.time() - window.started_at)
    return _read_rates(first, last)


def _per_s(served: Counters, seconds: float) -> dict[str, float]:
    return {"domain": served.domain.requests / seconds, "legacy": served.legacy.requests / seconds,
            "unforced": served.usage_requests / seconds}


def _read_rates(first: tuple[float, Counters] | None, last: tuple[float, Counters] | None) -> dict[str, float] | None:
    """The rates between two of this gate's reads (monotonic clock of this machine)."""
    if first is None or last is None or last[0] - first[0] <= 0 or not continues(last[1], first[1]):
        return None
    return _per_s(last[1].minus(first[1]), last[0] - first[0])


def _pairs(compared: dict | None) -> int:
    return sum(int(c.get("pairs") or 0) + int(c.get("skipped") or 0) for c in (compared or {}).values())


def measure(state, host, stage: int | None, soak_s: float, interval_s: float,
            verdicts: Verdicts | None = None) -> bool:
    """Read the metrics over the soak window and judge what the window served,
    this host alone (``conclude`` settles and keeps the verdict). The window
    starts at the previous check's cursor of this stage (or its restart). The
    stage (the env file's when None) and the baseline are read when the gate
    starts: the baseline was recorded earlier in this run."""
    thresholds = Thresholds.from_data(host.data.gate)
    try:
        known = _current(host)
    except ProbeError as error:
        say(host, f"gate ERROR: {error}", error=True)
        return False
    stage = hoststate.file_stage(known, host.data.switch_variables) if stage is None else stage
    if stage is None:
        say(host, "gate ERROR: the rollout env file holds no stage", error=True)
        return False
    run = GateRun(thresholds, stage, baseline_p95(known, stage))
    # Prometheus: only scrapes of the process running now (this run may have restarted it).
    window = Window(host, stage, not_before=(known.get("unit") or {}).get("started"))
    started, deadline = time.time(), time.monotonic() + soak_s
    based = False
    first = last = None
    smoke, paired, paired_note = traffic(host, soak_s), None, ""
    try:
        while True:
            now, read_error, wait_s = window.read()
            if wait_s is not None and time.monotonic() + min(wait_s, interval_s) <= deadline:
                gevent.sleep(min(wait_s, interval_s))  # too early for a first read: not a failed one
                continue
            if now is not None and not based:  # the window's base, as its first good read says
                run.base, based = window.base, True
            if now is not None:
                last = (time.monotonic(), now)
                first = first or last
            if paired is not None and paired.tally_files:
                tallies = read_tallies(host, paired.tally_files)
                compared = add_tallies(tallies) if tallies is not None else None
                # Counts only grow: an unreadable or vanished tally keeps what was read before.
                if compared is not None and _pairs(compared) >= _pairs(run.compared):
                    run.compared = compared
            if run.observe(now, read_error) or time.monotonic() + interval_s > deadline:
                break
            if paired is None and now is not None:
                # Paired traffic starts once the gate's reads give the host's real rate now (its budget).
                starting, paired_note = paired_traffic(host, deadline - time.monotonic(), stage,
                                                       (_read_rates(first, last) or {}).get("unforced"))
                if starting.streams or paired_note:
                    paired = starting
                    run.compared = {} if paired.tally_files else None
                if paired_note:
                    say(host, f"gate: {paired_note}")
            gevent.sleep(interval_s)
    finally:
        smoke.stop(host)
        if paired is not None:
            paired.stop(host)
    # Where the window ends: kept by ``conclude`` if the host passes, alone or pooled.
    cursor = window.cursor(run.latest) if run.latest is not None else None
    _measured.setdefault(state, {})[host.name] = Measured(
        stage, run, thresholds, f"{window.note}, {time.time() - started:.0f}s of reads", cursor,
        _rates(run, window, first, last), verdicts, poolable=bool(host.data.get("gate_pooled", True)))
    return True


def _open_rows(m: Measured) -> list[str]:
    """What of the host a pooled pass may not pass over: its aggregate rows but
    the request count (a breach not yet held, domain usage not yet consistent
    with the stage, a P95 without its baseline each say something of this host
    the pool cannot), and its side-by-side point estimates (the domain's error
    rate at or above the pass line, its errors beyond the margin of legacy's,
    its P95 beyond legacy's limit: not yet significant, yet no pass), and a
    domain that served it nothing. Thin evidence alone is what pooling answers."""
    run, t = m.run, m.thresholds
    if run.last is None or run.served is None:
        return ["no read"]
    still = [r.metric for r in run.last.rows if r.outcome != PASS and r.metric != "requests"]
    d, lg = run.served.domain, run.served.legacy
    if not d.requests:
        return [*still, "no domain request"]
    if d.error_rate >= t.error_rate_pass_below or 1 - d.error_rate <= t.success_rate_pass_above:
        still.append("domain error rate")
    if lg.requests and d.error_rate > t.error_ratio_margin * lg.error_rate and d.error_rate > t.error_rate_floor:
        still.append("errors vs legacy")
    if p95_within(d.quantile(LATENCY_QUANTILE), lg.quantile(LATENCY_QUANTILE), t) is False:
        still.append("p95 vs legacy")
    pairs, differ = compared_totals(run.compared)
    if run.compared is not None and pairs >= t.responses_min_pairs and differ > t.responses_differ_tolerated * pairs:
        still.append("responses differ")
    return still


def _pool(state, measured: dict[str, Measured]) -> Pooled | None:
    """The run's hosts pooled, once per run (None: fewer than two hosts, or not
    on one stage)."""
    if state in _pooled:
        return _pooled[state]
    windows = {name: m.run.served for name, m in measured.items() if m.run.served is not None}
    stages = {m.stage for m in measured.values()}
    pooled = None
    # Hosts alike enough to pool (and allowed to: ``gate_pooled``): two or more, on one stage but 0 (where the
    # domain serves nobody and only the host-wide rows judge), under the same
    # thresholds (a group may set its own), windows with the same buckets, and
    # every host the run still has measured (not so under --no-wait or --serial).
    if (len(measured) >= 2 and len(stages) == 1 and stages != {0} and all(m.poolable for m in measured.values())
            and len({m.thresholds for m in measured.values()}) == 1 and poolable(windows)
            and set(measured) == {h.name for h in state.active_hosts}):
        first = next(iter(measured.values()))
        thresholds, stage = first.thresholds, first.stage
        compared = [m.run.compared for m in measured.values()]
        rows = pooled_rows(windows, stage, thresholds, compared) if windows else []
        outliers = {name: outlier_rows(windows, name, thresholds) for name in windows} if len(windows) >= 2 else {}
        host_verdicts = {}
        for name, m in measured.items():
            verdict, _ = m.run.verdict()
            still = _open_rows(m) if verdict == INCONCLUSIVE else []
            host_verdicts[name] = f"its own rows open ({', '.join(still)})" if still else verdict
        verdict, reason = pooled_verdict(rows, host_verdicts, outliers) if rows else (ERROR, "no window read")
        estimate = ""
        if verdict == INCONCLUSIVE:
            rates = [m.rates for m in measured.values()]
            short = missing(pool(windows), thresholds, stage)
            if short and all(rates):
                pooled_rates = {n: sum(r[n] for r in rates if r) for n in ("domain", "legacy")}
                estimate = f"{time_to_evidence(short, pooled_rates)} pooled"
                reason = f"{reason}; {estimate}"
        pooled = Pooled(verdict, reason, rows, outliers, estimate)
    _pooled[state] = pooled
    return pooled


def _settle(name: str, m: Measured, pooled: Pooled | None) -> tuple[str, str]:
    """A host's verdict once the run's hosts are pooled: an abort of the pooled
    block aborts every host (the evidence is all of theirs); an outlier aborts
    (its own domain is worse than the others'); a pooled pass passes a host
    whose own window was only too thin (``_open_rows``);
    otherwise its own verdict (a host aborting on its own evidence makes no
    other host's record an abort: the rollback is the orchestration's)."""
    verdict, reason = m.run.verdict()
    short = missing(m.run.served, m.thresholds, m.stage) if m.run.served is not None else {}
    if verdict == INCONCLUSIVE and m.rates and short:
        reason = f"{reason}; {time_to_evidence(short, m.rates)}"
    if pooled is None or verdict in (ABORT, ERROR):
        return verdict, reason
    if any(r.outcome == ABORT for r in pooled.rows):
        return ABORT, f"the stage's hosts pooled: {pooled.reason}"
    outlying = [f"{r.metric} {r.domain} against {r.legacy} ({r.statistic})"
                for r in pooled.outliers.get(name, []) if r.outcome == ABORT]
    if outlying:
        return ABORT, f"an outlier among the stage's hosts: {'; '.join(outlying)}"
    if pooled.verdict == PASS and verdict == INCONCLUSIVE and not _open_rows(m):
        return PASS, f"pooled with the stage's other hosts ({reason})"
    if pooled.verdict == INCONCLUSIVE and verdict == INCONCLUSIVE:
        # The pooled block's own reason (every host's open rows) is printed once, with the block.
        return verdict, f"{reason}; pooled: {pooled.estimate or 'not yet conclusive'}"
    return verdict, reason


def _pooled_lines(pooled: Pooled, hosts: list[str]) -> list[str]:
    lines = [f"gate pooled ({', '.join(hosts)}): {pooled.verdict.upper()} - {pooled.reason}"]
    lines.append(f"  {'side by side':<16} {'domain':<10} {'legacy':<10} {'pass when':<40} "
                 f"{'abort when':<40} {'statistic':<34} result")
    for row in pooled.rows:
        lines.append(f"  {row.metric:<16} {row.domain:<10} {row.legacy:<10} {row.pass_when:<40} "
                     f"{row.abort_when:<40} {row.statistic:<34} {row.outcome}")
    for name, rows in sorted(pooled.outliers.items()):
        for row in rows:
            if row.outcome == ABORT:
                lines.append(f"  outlier {name}: {row.metric} {row.domain} against {row.legacy} "
                             f"({row.statistic}): {row.outcome}")
    return lines


def conclude(state, host) -> bool:
    """Settle, print and keep this host's verdict, once every host's gate of
    the run has judged; keep its window's end only when every host the run
    reached passed. Fails (False) on an abort or an error."""
    measured = _measured.get(state, {})
    mine = measured.get(host.name)
    if mine is None:
        return True  # no gate on this host (an earlier check failed, or it could not start)
    pooled = _pool(state, measured)
    for name, m in measured.items():
        m.final = m.final or _settle(name, m, pooled)
    assert mine.final is not None
    verdict, reason = mine.final
    run = mine.run
    keep_gate(host, mine.stage, verdict, reason, gate_metrics(host, mine.stage, verdict))
    if pooled is not None and host.name == min(measured):
        for line in _pooled_lines(pooled, sorted(measured)):
            say(host, line, error=pooled.verdict in (ABORT, ERROR))
    run_verdict, run_reason = run.verdict()
    for index, line in enumerate(format_verdict(host.name, run, mine.note)):
        if index == 0 and (verdict, reason) != (run_verdict, run_reason):
            # The settled verdict and reason, then the window's details as format_verdict gave them.
            details = line[len(f"gate {host.name}: {run_verdict.upper()} - {run_reason} "):]
            alone = f" (alone: {run_verdict})" if verdict != run_verdict else ""
            line = f"gate {host.name}: {verdict.upper()} - {reason} {details}{alone}"
        say(host, line, error=verdict in (ABORT, ERROR))
    if verdict == INCONCLUSIVE:
        say(host, "gate: not promoted; keep observing, then check again")
    document: dict[str, Any] = {
        "verdict": verdict, "reason": reason, "stage": mine.stage, "baseline_p95_ms": run.baseline_p95_ms,
        "reads": run.reads, "history": run.history, "window": mine.note, "alone": run_verdict,
        "rows": [vars(r) for r in run.last.rows] if run.last else [],
        "side_by_side": [vars(r) for r in run.last.sides] if run.last else [],
        "served": run.served.to_json() if run.served else None,
    }
    if pooled is not None:
        document["pooled"] = {"verdict": pooled.verdict, "reason": pooled.reason,
                              "rows": [vars(r) for r in pooled.rows],
                              "outlier": [vars(r) for r in pooled.outliers.get(host.name, [])]}
    report(host, "gate", document)
    _note(mine.verdicts, "gate", verdict)
    reached = {h.name for h in state.activated_hosts}
    if (mine.cursor is not None and verdict == PASS and set(measured) == reached
            and all(m.final is not None and m.final[0] == PASS and m.cursor is not None for m in measured.values())):
        keep_cursor(host, mine.cursor)
    elif verdict == PASS:
        say(host, "gate: the window stays open (not every host of this check passed)")
    return verdict in (PASS, INCONCLUSIVE)

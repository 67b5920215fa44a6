"""Where the gate's window of counters comes from (``metrics_provider``), inside
a pyinfra run: thin I/O around rollout/window.py and rollout/promql.py.

- ``json``: the app's metrics endpoint read on the host by the probe; each read
  is cumulative since the instance started and the window is the difference
  from its base (the previous passing check's cursor, or the restart).
- ``prometheus``: the server at ``prometheus["url"]``, asked from this machine
  for ``increase()`` over the window so far; each read already is the window.

Both end in the same Counters, judged by the same GateRun (rollout/gate.py).
After a pass the window's end is kept on the host as a cursor
(``state_dir/gate-cursors.json``), marked with its provider: a cursor of one
provider is never the base of the other's window.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rollout import prometheus, promql
from rollout.metrics import MetricsError, field_paths, parse_metrics
from rollout.probe import ProbeError, probe
from rollout.promql import JSON, PROMETHEUS
from rollout.reports import say
from rollout.window import Counters, choose_base, keep_cursors


def cursors_file(host) -> str:
    return f"{host.data.state_dir}/gate-cursors.json"


def _provider(host) -> str:
    return host.data.get("metrics_provider") or JSON


def read_json_metrics(host, with_cursors: bool = False) -> tuple[Counters | None, str | None, list | None]:
    """(Counters, None, cursors) or (None, why not, cursors): one read of the app's
    cumulative counters; ``with_cursors``: also the gate's cursors kept on the
    host (None when they were not read)."""
    cursors: list | None = None
    try:
        reply = probe(host, "metrics", {"port": int(host.data.bind_port), "path": host.data.metrics_path,
                                        "timeout": 5, "cursors_file": cursors_file(host) if with_cursors else None},
                      timeout=30)
        cursors, answer = reply["cursors"], reply["answer"]
        paths = field_paths(host.data.metrics_fields, host.data.metrics_field_defaults)
        return parse_metrics(answer["status"], answer["body"], answer["content_type"], paths), None, cursors
    except (MetricsError, ProbeError) as error:
        return None, str(error), cursors
    except (ValueError, KeyError, TypeError):  # not an answer of the probe's shape
        return None, "the probe's answer to the metrics read is malformed", cursors


def read_tallies(host, files: list[str]) -> list[dict] | None:
    """The paired streams' comparisons so far (rollout/responses.py), as their
    tally files on the host hold them; None when they could not be read."""
    try:
        reply = probe(host, "metrics", {"path": None, "tally_files": files}, timeout=30)
    except ProbeError:
        return None
    tallies = reply.get("tallies") if isinstance(reply, dict) else None
    return tallies if isinstance(tallies, list) else None


def _read_cursors(host) -> list:
    reply = probe(host, "metrics", {"path": None, "cursors_file": cursors_file(host)}, timeout=30)
    return reply["cursors"] if isinstance(reply.get("cursors"), list) else []


def _usable(host, cursors: list, provider: str) -> list:
    """This provider's cursors that can be read; the others passed over with a note."""
    usable = []
    for cursor in cursors:
        if not isinstance(cursor, dict) or (cursor.get("provider") or JSON) != provider:
            continue
        try:
            Counters.from_json(cursor["counters"])
            usable.append(cursor)
        except (TypeError, KeyError, ValueError):
            say(host, f"gate: an unreadable cursor in {cursors_file(host)} passed over")
    return usable


def _lookback(host) -> float | None:
    lookback = host.data.get("gate_lookback_s")
    return None if lookback is None else float(lookback)


class Window:
    """The reads of one gate's window on one host. ``read()`` gives (counters,
    error, wait_s): the counters to fold into the GateRun (cumulative for the
    JSON provider, whose ``base`` the run subtracts; the window itself for
    Prometheus), why a read failed, or how long to wait before the first read
    can be taken (Prometheus: the window needs a few scrapes)."""

    def __init__(self, host, stage: int | None, not_before: float | None = None):
        self.host, self.stage = host, stage
        self.provider = _provider(host)
        self.cursors: list | None = None
        self.base: Counters | None = None
        self.since_check = False
        self.last_at: float | None = None
        #: When the window began (its base cursor's time, or the instance's
        #: start), once a read said it: the window's request rates (the time
        #: to a verdict) are measured over it.
        self.started_at: float | None = None
        self._latest: Counters | None = None
        # Prometheus answers only from scrapes taken since then: the service's
        # start when the host said it, else the window's first read.
        self.instance_started = not_before
        self.not_before = not_before if not_before is not None else time.time()

    def read(self) -> tuple[Counters | None, str | None, float | None]:
        if self.provider == PROMETHEUS:
            return self._read_prometheus()
        now, error, fetched = read_json_metrics(self.host, with_cursors=self.cursors is None)
        if fetched is not None:
            self.cursors = fetched
        if now is not None and self.last_at is None:  # the window starts where the first good read says
            self.base = self._json_base(now)
            self.since_check = self.base is not None
        if now is not None:
            self.last_at = time.time()
        return now, error, None

    def _json_base(self, now: Counters) -> Counters | None:
        if self.stage is None:
            return None
        chosen = choose_base(_usable(self.host, self.cursors or [], JSON), now.instance, self.stage,
                             time.time(), _lookback(self.host))
        self.started_at = float(chosen["at"]) if chosen else self.instance_started
        return Counters.from_json(chosen["counters"]) if chosen else None

    def _read_prometheus(self) -> tuple[Counters | None, str | None, float | None]:
        settings = self.host.data.prometheus
        try:
            if self.cursors is None:
                self.cursors = _usable(self.host, _read_cursors(self.host), PROMETHEUS)
            at = time.time()
            read = prometheus.read(settings, self.host.name, self._cursor_at, at, not_before=self.not_before)
        except prometheus.TooEarly as early:
            return None, str(early), early.wait_s
        except (MetricsError, ProbeError, ValueError) as error:
            return None, str(error), None
        # The window grows from a fixed start: an estimate below the previous
        # read's is the extrapolation's wobble, not a reset.
        now = promql.at_least(read.counters, self._latest)
        self._latest, self.last_at, self.started_at = now, read.at, read.window_start
        self.since_check = read.window_start > read.instance_started
        return now, None, None

    def _cursor_at(self, instance: str) -> float | None:
        if self.stage is None:
            return None
        chosen = choose_base(self.cursors or [], instance, self.stage, time.time(), _lookback(self.host))
        return float(chosen["at"]) if chosen else None

    @property
    def note(self) -> str:
        where = "window since the previous check" if self.since_check else "window since the restart"
        return f"{where}, {self.provider}"

    def cursor(self, latest: Counters) -> tuple[dict, list] | None:
        """The cursor a pass keeps (the window's end) and the cursors read."""
        if self.cursors is None or self.last_at is None:
            return None
        new: dict[str, Any] = {"at": self.last_at, "stage": self.stage, "counters": latest.to_json()}
        if self.provider != JSON:
            new["provider"] = self.provider
        return new, [c for c in self.cursors if isinstance(c, dict)]


def keep_gate(host, stage: int, verdict: str, reason: str, extra_files: list[dict] | None = None) -> None:
    """Keep the gate's verdict on the host (``gate-last.json``: the stage's
    "verdict so far" of ``rollout status`` and the watch) and ``extra_files``;
    one probe call, each file replaced atomically."""
    from rollout.reports import now as now_iso

    files = [{"path": f"{host.data.state_dir}/gate-last.json",
              "content": json.dumps({"stage": stage, "verdict": verdict, "reason": reason, "time": now_iso()}) + "\n"}]
    _write(host, files + list(extra_files or []), "the verdict was not kept")


def keep_cursor(host, cursor: tuple[dict, list]) -> None:
    """Keep where a passing window ended (``cursor``: the new cursor and those
    read at the window's start): the next check of the stage starts there."""
    new, cursors = cursor
    kept = keep_cursors(cursors, new, int(host.data.gate_cursors_kept))
    _write(host, [{"path": cursors_file(host), "content": json.dumps(kept) + "\n"}],
           "the window's cursor was not kept: the next check's window starts earlier")


def _write(host, files: list[dict], failed: str) -> None:
    try:
        probe(host, "write", {"files": files}, timeout=30)
    except ProbeError as error:
        say(host, f"gate: {failed} ({error})")


def read_since_restart(host) -> tuple[Counters | None, str | None]:
    """What the host served since its service instance started (a baseline's
    sample), from the environment's provider."""
    if _provider(host) == JSON:
        counters, error, _ = read_json_metrics(host)
        return counters, error
    try:
        return prometheus.read(host.data.prometheus, host.name, None, time.time()).counters, None
    except (prometheus.TooEarly, MetricsError, ValueError) as error:
        return None, str(error)


def prometheus_has(host) -> dict:
    """Does the Prometheus server hold the host's series (the preparation check)?
    Right after a restart it may not yet (a failed scrape marks them stale): asked
    again until ``min_window_s`` has passed."""
    settings = host.data.prometheus
    deadline = time.monotonic() + float(settings["min_window_s"])
    while True:
        try:
            started = prometheus.instance_started(settings, host.name, time.time())
            return {"ok": True, "detail": f"the instance's series are there (started {time.time() - started:.0f}s ago)"}
        except (MetricsError, ValueError) as error:
            if time.monotonic() >= deadline:
                return {"ok": False, "detail": str(error)}
        time.sleep(1.0)  # gevent-patched inside a pyinfra run

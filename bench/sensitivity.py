"""Sensitivity of the metrics gate (issue 11): how often and how fast the default
batch gate aborts a faulty domain implementation, and how often it aborts a
healthy one. A benchmark that prints a table, not a test.

Method (the issue allows it): capture real per-request records from sandbox
hosts, each host serving one fault configuration, then replay them offline
through the gate's own judge (rollout.gate.GateRun with the default
thresholds), resampling many windows.

    # 1. capture (hosts of a sandbox fleet, one fault configuration per host at a time)
    python bench/sensitivity.py capture --ssh-config DIR/ssh_config \\
        --hosts bench-1=10.231.9.11,bench-2=10.231.9.12,bench-3=10.231.9.13 --out RECORDS.json
    # 2. replay (offline, seconds): the table, the results JSON
    python bench/sensitivity.py replay RECORDS.json [--e2e E2E.json] --json bench/sensitivity-DATE.json
    python bench/sensitivity.py --replay-only RECORDS.json      # the same as 2.
    # 3. end to end: summarise the gate reports (report_dir) of real gate runs
    python bench/sensitivity.py e2e REPORT_DIR... --out E2E.json

Capture: per host, the gate's traffic shape driven from the control machine
against http://HOST:8000, as rollout/hostprobe.py's ``traffic`` mode drives it
on the host: the catalog's GET endpoints with ``force_domain=true`` and
``=false`` interleaved, one request at a time on a schedule of 20 pairs/s (a
slow answer delays the next, as in the probe), plus unforced GETs at 20/s in a
second stream (load as in a gate; the host is at stage 0, so they are legacy).
Each request is a record ``[t s, impl d/l/-, status, latency ms (client side),
forced 1/0]``. Every second the host's metrics are also read (the server-side
histograms), to compare the client-side latencies with what the gate reads.

Replay: one trial is one window of the default batch gate (batch soak 60 s,
reads every 5 s, a pass judged on the last read): from a random start t0 in a capture, read k
holds the paired records with t in [t0, t0 + 5k); the unforced smoke traffic of
stage S (20/s, a stage-S draw per request, sequential on a schedule like the
probe's) is drawn from the same capture's records of the drawn implementation
served within 2.5 s of the request's time (drawing from the whole capture mixes
a quiet minute with a busy one and made healthy windows abort on latency). The
baseline P95 is, per trial, that of the 105 legacy records just before t0 (the
deploy records it over ~105 requests just before the change). The latencies are
binned over the service's 32 bucket bounds into cumulative Counters fed to
GateRun(Thresholds.from_data({}), S, baseline). Detected:
ABORT within the window; time: the read's index x 5 s.

``--source server`` (and ``both``, the default) replays the same windows from
the per-second server-side metrics snapshots instead: what the gate itself
reads, at 1 s resolution (the capture's unforced traffic, at the host's stage
then, stands in for the smoke traffic; usage counts are drawn for the stage).

The saved records file (bench/sensitivity-records-DATE.json) holds the records
as columns (``pack``/``unpack``).
"""

from __future__ import annotations

import argparse
import bisect
import http.client
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rollout.gate import ABORT, PASS, GateRun, Thresholds  # noqa: E402
from rollout.window import Counters, Side  # noqa: E402

#: The reference service's bounds (examples/camera_api/src/api/metrics.py BUCKET_BOUNDS_MS).
BOUNDS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0,
          60.0, 80.0, 100.0, 125.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 750.0,
          1000.0, 1500.0, 2000.0, 3000.0, 5000.0, 10000.0)

#: The catalog's GET endpoints with the tool's placeholders (group_data/all.py:
#: verification_camera "cam-verify"), as rollout/checks.py _read_paths fills them.
READ_PATHS = ("/api/v1/alerts/rules", "/api/v1/cameras/cam-verify/status",
              "/api/v1/cameras/cam-verify/logs?limit=20")
PAIRS_PER_S = 20.0          # paired_pairs_per_s
SMOKE_PER_S = 20.0          # smoke_requests_per_s
READ_EVERY_S = 5.0          # gate_interval_s
BATCH_SOAK_S = 60.0         # rollout deploy --batch-soak default
HEADER = "X-Rollout-Implementation"
PORT = 8000

#: Fault configurations: name -> the service's environment.
CONFIGS = {
    "healthy": {},
    "background-0.5%": {"DOMAIN_ERROR_RATE": "0.005", "LEGACY_ERROR_RATE": "0.005"},
    "errors-1%": {"DOMAIN_ERROR_RATE": "0.01"},
    "errors-3%": {"DOMAIN_ERROR_RATE": "0.03"},
    "errors-10%": {"DOMAIN_ERROR_RATE": "0.10"},
    "latency+30ms": {"DOMAIN_EXTRA_LATENCY_MS": "30"},
    "latency+80ms": {"DOMAIN_EXTRA_LATENCY_MS": "80"},
    "latency+300ms": {"DOMAIN_EXTRA_LATENCY_MS": "300"},
}
FAULTS = ("errors-1%", "errors-3%", "errors-10%", "latency+30ms", "latency+80ms", "latency+300ms")
STAGES = (10, 25, 50)
DROP_IN = "/etc/systemd/system/camera-api.service.d/bench-fault.conf"

#: Issue 11's goal figures: (fault, stage) -> (detection share, within s or None).
GOALS = {("errors-3%", 10): (0.95, 60.0), ("latency+80ms", 10): (0.95, 60.0),
         ("latency+30ms", 10): (0.90, None)}


# --- capture --------------------------------------------------------------------------------------


def ssh(ssh_config: str, host: str, command: str, timeout: float = 60) -> str:
    done = subprocess.run(["ssh", "-F", ssh_config, host, command], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{host}: {command!r} failed: {done.stderr.strip()}")
    return done.stdout


def set_fault(ssh_config: str, host: str, env: dict[str, str]) -> None:
    """The fault as a systemd drop-in (none: the drop-in removed), then a restart."""
    if env:
        content = "[Service]\\n" + "".join(f"Environment={k}={v}\\n" for k, v in env.items())
        write = f"mkdir -p {Path(DROP_IN).parent} && printf '{content}' > {DROP_IN}"
    else:
        write = f"rm -f {DROP_IN}"
    ssh(ssh_config, host, f"{write} && systemctl daemon-reload && systemctl restart camera-api")


def get(address: str, path: str, timeout: float = 10.0) -> tuple[int | None, str | None, float, bytes]:
    """One GET on a new connection (as the probe's urllib call): status, implementation, ms, body."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(address, PORT, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return response.status, response.headers.get(HEADER), (time.monotonic() - started) * 1000, body
    except OSError:
        return None, None, (time.monotonic() - started) * 1000, b""
    finally:
        connection.close()


def wait_healthy(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, _, _ = get(address, "/api/v1/monitoring/health", timeout=2)
        if status == 200:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{address}: not healthy after {timeout} s")


def stream(address: str, paths: list[str], rate: float, seconds: float, forced: int, t0: float,
           out: list) -> None:
    """Requests cycling through ``paths`` one at a time on a schedule of ``rate``/s."""
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        wait = started + sent / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        at = time.monotonic()
        status, impl, ms, _ = get(address, paths[sent % len(paths)])
        sent += 1
        out.append([round(at + ms / 1000 - t0, 3), {"domain": "d", "legacy": "l"}.get(impl, "-"),
                    status or 0, round(ms, 2), forced])


def snapshots(address: str, seconds: float, t0: float, out: list, stop: threading.Event) -> None:
    while not stop.is_set() and time.monotonic() - t0 < seconds + 2:
        at = time.monotonic()
        status, _, _, body = get(address, "/api/v1/monitoring/metrics")
        if status == 200:
            try:
                doc = json.loads(body)
                impls = doc["implementations"]
                out.append([round(at - t0, 3), doc["started_at"],
                            {k: [impls[k]["requests"], impls[k]["errors"],
                                 [c for _, c in impls[k]["latency_buckets_ms"]]] for k in ("domain", "legacy")}])
            except (ValueError, KeyError):
                pass
        stop.wait(1.0)


def capture_one(ssh_config: str, host: str, address: str, config: str, seconds: float) -> dict:
    env = CONFIGS[config]
    set_fault(ssh_config, host, env)
    wait_healthy(address)
    paired = [f"{p}{'&' if '?' in p else '?'}force_domain={flag}" for p in READ_PATHS for flag in ("true", "false")]
    records_p, records_u, snaps = [], [], []
    t0 = time.monotonic()
    stop = threading.Event()
    threads = [threading.Thread(target=stream, args=(address, paired, 2 * PAIRS_PER_S, seconds, 1, t0, records_p)),
               threading.Thread(target=stream, args=(address, list(READ_PATHS), SMOKE_PER_S, seconds, 0, t0,
                                                     records_u)),
               threading.Thread(target=snapshots, args=(address, seconds, t0, snaps, stop))]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join()
    stop.set()
    threads[2].join()
    records = sorted(records_p + records_u)
    return {"config": config, "env": env, "host": host, "seconds": seconds,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "records": records, "snapshots": snaps}


def capture(args) -> None:
    hosts = [h.split("=") for h in args.hosts.split(",")]
    plan = [r.split(",") for r in args.rounds.split(";")]
    out = Path(args.out)
    document = json.loads(out.read_text()) if out.exists() else {"captures": []}
    for round_no, configs in enumerate(plan, 1):
        seconds = [float(c.split(":")[1]) if ":" in c else args.seconds for c in configs]
        configs = [c.split(":")[0] for c in configs]
        print(f"round {round_no}: " + ", ".join(f"{h[0]}={c} ({s:.0f}s)" for h, c, s in zip(hosts, configs, seconds)),
              flush=True)
        results: list = [None] * len(configs)

        def work(i, results=results, configs=configs, seconds=seconds):  # this round's, bound now
            results[i] = capture_one(args.ssh_config, hosts[i][0], hosts[i][1], configs[i], seconds[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(configs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if result is None:
                raise SystemExit("a capture failed (see above)")
            forced = [r for r in result["records"] if r[4]]
            print(f"  {result['host']} {result['config']}: {len(forced)} forced, "
                  f"{len(result['records']) - len(forced)} unforced, {len(result['snapshots'])} snapshots",
                  flush=True)
            document["captures"].append(result)
        out.write_text(json.dumps(document, separators=(",", ":")))
    for host, _ in hosts:
        set_fault(args.ssh_config, host, {})
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


# --- replay ---------------------------------------------------------------------------------------


def bucket_index(ms: float) -> int:
    """Index of the smallest bound >= ms (len(BOUNDS): beyond the last, +Inf only)."""
    return bisect.bisect_left(BOUNDS, ms)


class Acc:
    """Cumulative counters of one implementation."""

    def __init__(self):
        self.requests = 0
        self.errors = 0
        self.per_bucket = [0] * (len(BOUNDS) + 1)

    def add(self, status: int, ms: float) -> None:
        self.requests += 1
        self.errors += status >= 500 or status == 0
        self.per_bucket[bucket_index(ms)] += 1

    def side(self) -> Side:
        total, cumulative = 0, []
        for bound, n in zip(BOUNDS, self.per_bucket):
            total += n
            cumulative.append((bound, total))
        return Side(self.requests, self.errors, tuple(cumulative))


class Capture:
    """One configuration's records, ready for resampling."""

    def __init__(self, entries: list[dict]):
        self.config = entries[0]["config"]
        self.hosts = [e["host"] for e in entries]
        # Several hosts' captures of one configuration: parallel captures, one after another in time.
        self.segments = []
        for e in entries:
            paired = sorted((r[0], r[1], r[2], r[3]) for r in e["records"] if r[4] and r[1] in "dl")
            # Each implementation's records (forced and unforced) in time order: the
            # unforced requests of a trial are drawn from those served at the same time.
            local = {impl: sorted((r[0], r[2], r[3]) for r in e["records"] if r[1] == impl) for impl in "dl"}
            self.segments.append((paired, max(r[0] for r in paired), local))
        self.by_impl = {"d": [], "l": []}
        for e in entries:
            for r in e["records"]:
                if r[1] in "dl":
                    self.by_impl[r[1]].append((r[2], r[3]))

    def window_source(self, rng: random.Random, span: float):
        """A contiguous block of paired records of ``span`` seconds from a random start."""
        weights = [max(0.0, end - span) for _, end, _ in self.segments]
        if not any(weights):
            raise ValueError(f"{self.config}: no capture longer than {span} s")
        paired, end, local = rng.choices(self.segments, weights=weights)[0]
        t0 = rng.uniform(paired[0][0], end - span)
        start = bisect.bisect_left(paired, (t0,))
        return paired, start, t0, local


#: Requests of the baseline the deploy records at stage 0 before the change (min_requests + 5).
BASELINE_REQUESTS = 105

#: 0: the baseline is the 105 requests before the window; else all legacy requests of this many
#: seconds before it (``--baseline-window``: the baseline over the previous stage's traffic).
BASELINE_WINDOW_S = 0.0

#: Unforced requests are drawn from the records served within this many seconds of their time.
LOCAL_S = 2.5


def simulate_smoke(rng: random.Random, local: dict, t0: float, stage: int,
                   span: float) -> list[tuple[float, str, int, float]]:
    """Unforced GETs at 20/s on a schedule, one at a time (as the probe), each
    drawn domain with probability stage %; status and latency drawn from the
    capture's records of that implementation served within LOCAL_S seconds of
    the request's time (the load on the host varies: a draw from the whole
    capture would mix a quiet minute with a busy one)."""
    out, now, i = [], 0.0, 0
    while True:
        scheduled = i / SMOKE_PER_S
        start = max(scheduled, now)
        if start >= span:
            return out
        impl = "d" if rng.random() * 100 < stage else "l"
        pool = local[impl]
        lo = bisect.bisect_left(pool, (t0 + start - LOCAL_S,))
        hi = bisect.bisect_left(pool, (t0 + start + LOCAL_S,))
        if hi <= lo:  # nothing of this implementation then (e.g. very slow answers): the nearest
            lo, hi = max(0, lo - 1), min(len(pool), lo + 1)
        _, status, ms = pool[rng.randrange(lo, hi)]
        now = start + ms / 1000
        out.append((now, impl, status, ms))
        i += 1


def trial_records(rng: random.Random, cap: Capture, stage: int, baseline: float, thresholds: Thresholds,
          span: float = BATCH_SOAK_S) -> tuple[str, float | None, dict]:
    """One batch-gate window: (verdict, seconds to the verdict, what it had at the end)."""
    paired, start, t0, local = cap.window_source(rng, span)
    smoke = simulate_smoke(rng, local, t0, stage, span)
    if baseline is None:
        # As the deploy records it just before the change: the P95 of about 105
        # requests at stage 0 (legacy), here the capture's legacy records just before the window.
        before = bisect.bisect_left(local["l"], (t0,))
        if BASELINE_WINDOW_S:  # all legacy records of the BASELINE_WINDOW_S seconds before t0
            first = bisect.bisect_left(local["l"], (t0 - BASELINE_WINDOW_S,))
            chosen = local["l"][first:before] or local["l"][:BASELINE_REQUESTS]
        else:
            chosen = local["l"][max(0, before - BASELINE_REQUESTS):max(before, BASELINE_REQUESTS)]
        baseline = quantile_from_records([ms for _, _, ms in chosen], 0.95)
    run = GateRun(thresholds, stage, baseline, base=None)
    acc = {"d": Acc(), "l": Acc()}
    usage = [0, 0]
    j, k = start, 0
    reads = int(span // READ_EVERY_S)
    for read in range(1, reads + 1):
        edge = read * READ_EVERY_S
        while j < len(paired) and paired[j][0] < t0 + edge:
            _, impl, status, ms = paired[j]
            acc[impl].add(status, ms)
            j += 1
        while k < len(smoke) and smoke[k][0] < edge:
            _, impl, status, ms = smoke[k]
            acc[impl].add(status, ms)
            usage[0] += 1
            usage[1] += impl == "d"
            k += 1
        counters = Counters("replay", usage[0], usage[1], acc["d"].side(), acc["l"].side())
        verdict = run.observe(counters)
        if verdict:
            return verdict, edge, {"domain": acc["d"].requests, "legacy": acc["l"].requests,
                                   "reason": run.reason}
    verdict, reason = run.verdict()  # judged at the window's end (a pass is judged only there)
    return verdict, reads * READ_EVERY_S, {"domain": acc["d"].requests, "legacy": acc["l"].requests,
                                           "reason": reason}


class ServerCapture:
    """One configuration's per-second metrics snapshots (the server-side
    histograms the gate reads), for the cross-check replay: a window is the
    difference of two snapshots, as the gate computes it. The capture's
    unforced traffic ran at stage 0 (legacy); the usage counts are drawn for
    the stage, the stage's unforced domain requests are missing (a few per
    second: a slight underestimate of the domain's evidence)."""

    def __init__(self, entries: list[dict]):
        self.config = entries[0]["config"]
        self.segments = []
        for e in entries:
            snaps = [s for s in e["snapshots"] if s[1] == e["snapshots"][-1][1]]
            times = [s[0] for s in snaps]
            sides = [{k: Side(s[2][k][0], s[2][k][1], tuple(zip(BOUNDS, s[2][k][2]))) for k in ("domain", "legacy")}
                     for s in snaps]
            self.segments.append((times, sides))

    def legacy_p95(self) -> float:
        total = None
        for _times, sides in self.segments:
            side = sides[-1]["legacy"].minus(sides[0]["legacy"])
            total = side if total is None else total.plus(side)
        return total.quantile(0.95)


def trial_server(rng: random.Random, cap: ServerCapture, stage: int, baseline: float, thresholds: Thresholds,
                 span: float = BATCH_SOAK_S) -> tuple[str, float | None, dict]:
    weights = [max(0.0, times[-1] - times[0] - span) for times, _ in cap.segments]
    times, sides = rng.choices(cap.segments, weights=weights)[0]
    t0 = rng.uniform(times[0], times[-1] - span)
    i0 = bisect.bisect_left(times, t0)
    base = sides[i0]
    if baseline is None:
        # The legacy requests of the ~3 s before the window (~120): the deploy's baseline of ~105.
        back = max(3, round(BASELINE_WINDOW_S))
        earlier = sides[max(0, i0 - back)] if i0 >= 3 else sides[0]
        later = base if i0 >= 3 else sides[min(3, len(sides) - 1)]
        baseline = later["legacy"].minus(earlier["legacy"]).quantile(0.95)
    run = GateRun(thresholds, stage, baseline, base=None)
    usage = [0, 0]
    for read in range(1, int(span // READ_EVERY_S) + 1):
        i = bisect.bisect_right(times, times[i0] + read * READ_EVERY_S) - 1
        step = int(SMOKE_PER_S * READ_EVERY_S)
        usage[0] += step
        usage[1] += sum(rng.random() * 100 < stage for _ in range(step))
        now = sides[i]
        counters = Counters("replay", usage[0], usage[1], now["domain"].minus(base["domain"]),
                            now["legacy"].minus(base["legacy"]))
        verdict = run.observe(counters)
        if verdict:
            return verdict, read * READ_EVERY_S, {"domain": counters.domain.requests,
                                                  "legacy": counters.legacy.requests, "reason": run.reason}
    verdict, reason = run.verdict()  # judged at the window's end (a pass is judged only there)
    return verdict, read * READ_EVERY_S, {"domain": run.served.domain.requests,
                                          "legacy": run.served.legacy.requests, "reason": reason}


def quantile_from_records(values: list[float], q: float) -> float:
    """The q-quantile of latencies as the gate computes it: binned, interpolated in the bucket."""
    acc = Acc()
    for ms in values:
        acc.add(200, ms)
    return acc.side().quantile(q)


def pack(capture: dict) -> dict:
    """A capture's records as columns (the saved file stays small): time in ms as
    differences, implementation and forced as strings, statuses other than 200
    by index, latency in 0.1 ms."""
    records = capture["records"]
    times = [round(r[0] * 1000) for r in records]
    packed = {k: v for k, v in capture.items() if k != "records"}
    packed["columns"] = {
        "t_ms_delta": [t - p for t, p in zip(times, [0] + times[:-1])],
        "impl": "".join(r[1] for r in records),
        "status_not_200": {str(i): r[2] for i, r in enumerate(records) if r[2] != 200},
        "latency_0.1ms": [round(r[3] * 10) for r in records],
        "forced": "".join(str(r[4]) for r in records),
    }
    return packed


def unpack(capture: dict) -> dict:
    if "records" in capture:
        return capture
    c = capture["columns"]
    t, records = 0, []
    for i, (dt, impl, ms, forced) in enumerate(zip(c["t_ms_delta"], c["impl"], c["latency_0.1ms"], c["forced"])):
        t += dt
        records.append([t / 1000, impl, c["status_not_200"].get(str(i), 200), ms / 10, int(forced)])
    return {**{k: v for k, v in capture.items() if k != "columns"}, "records": records}


def read_document(path: Path) -> dict:
    document = json.loads(path.read_text())
    document["captures"] = [unpack(c) for c in document["captures"]]
    return document


def load_captures(path: Path) -> dict[str, Capture]:
    document = read_document(path)
    grouped: dict[str, list] = {}
    for entry in document["captures"]:
        grouped.setdefault(entry["config"], []).append(entry)
    return {name: Capture(entries) for name, entries in grouped.items()}


def describe_captures(path: Path) -> list[dict]:
    """Per capture: requests, error rates, client-side P95 of each implementation
    and the server-side P95 over the same capture (from the metrics snapshots)."""
    document = read_document(path)
    rows = []
    for e in document["captures"]:
        forced = [r for r in e["records"] if r[4] and r[1] in "dl"]
        row = {"config": e["config"], "host": e["host"], "seconds": e["seconds"],
               "pairs_per_s": round(len(forced) / 2 / e["seconds"], 1)}
        for impl, name in (("d", "domain"), ("l", "legacy")):
            mine = [r for r in e["records"] if r[1] == impl]
            row[f"{name}_requests"] = len(mine)
            row[f"{name}_error_rate"] = round(sum(r[2] >= 500 or r[2] == 0 for r in mine) / max(1, len(mine)), 4)
            row[f"{name}_p95_client_ms"] = round(quantile_from_records([r[3] for r in mine], 0.95) or 0, 1)
        snaps = [s for s in e["snapshots"] if s[1] == e["snapshots"][-1][1]] if e["snapshots"] else []
        if len(snaps) >= 2:
            for name in ("domain", "legacy"):
                first, last = snaps[0][2][name], snaps[-1][2][name]
                side = Side(last[0] - first[0], last[1] - first[1],
                            tuple((b, c1 - c0) for b, c0, c1 in zip(BOUNDS, first[2], last[2])))
                row[f"{name}_p95_server_ms"] = round(side.quantile(0.95) or 0, 1)
        rows.append(row)
    return rows


def provenance() -> dict:
    """Which judge ran: the commit, and the judge's files as they were (another
    engineer may be editing them in the same working tree)."""
    import hashlib

    def git(*argv):
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    files = ("rollout/gate.py", "rollout/sequential.py", "rollout/window.py", "rollout/usage.py", "group_data/all.py")
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", *files).splitlines(),
            "sha256": {f: hashlib.sha256((ROOT / f).read_bytes()).hexdigest()[:16] for f in files}}


def replay(args) -> dict:
    path = Path(args.records)
    thresholds = Thresholds.from_data({})
    rng = random.Random(args.seed)
    if args.source == "server":
        document = read_document(path)
        grouped: dict[str, list] = {}
        for entry in document["captures"]:
            grouped.setdefault(entry["config"], []).append(entry)
        captures = {name: ServerCapture(entries) for name, entries in grouped.items()}
        baseline = args.baseline_ms  # None: per trial, the legacy requests of the ~3 s before the window
        trial = trial_server
    else:
        captures = load_captures(path)
        # None: per trial, the capture's legacy records just before the window; or a fixed value.
        baseline = args.baseline_ms
        trial = trial_records
    started = time.monotonic()
    cells = []
    for fault in FAULTS:
        if fault not in captures:
            continue
        for stage in STAGES:
            outcomes = [trial(rng, captures[fault], stage, baseline, thresholds) for _ in range(args.trials)]
            aborted = [t for v, t, _ in outcomes if v == ABORT]
            goal = GOALS.get((fault, stage))
            detected = len(aborted) / len(outcomes)
            median = statistics.median(aborted) if aborted else None
            met = None
            if goal:
                within = sum(1 for t in aborted if goal[1] is None or t <= goal[1]) / len(outcomes)
                met = within >= goal[0]
            reasons: dict[str, int] = {}
            for v, _, info in outcomes:
                if v == ABORT:
                    key = info["reason"].split(":")[0]
                    reasons[key] = reasons.get(key, 0) + 1
            cells.append({"fault": fault, "stage": stage, "trials": len(outcomes), "detected": detected,
                          "median_s": median, "p90_s": (sorted(aborted)[int(0.9 * (len(aborted) - 1))]
                                                        if aborted else None),
                          "goal": goal, "met": met, "abort_reasons": reasons,
                          "verdicts": {v: sum(1 for o in outcomes if o[0] == v) for v in {o[0] for o in outcomes}}})
    alarms, rollouts = [], []
    for config in ("healthy", "background-0.5%"):
        if config not in captures:
            continue
        for stage in STAGES:
            outcomes = [trial(rng, captures[config], stage, baseline, thresholds) for _ in range(args.windows)]
            aborts = [o for o in outcomes if o[0] == ABORT]
            passes = [o for o in outcomes if o[0] == PASS]
            thin = [o for o in passes if o[2]["domain"] < thresholds.min_requests_per_implementation
                    or o[2]["legacy"] < thresholds.min_requests_per_implementation]
            reasons: dict[str, int] = {}
            for _, _, info in aborts:
                key = info["reason"].split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
            alarms.append({"config": config, "stage": stage, "windows": len(outcomes),
                           "aborted": len(aborts), "abort_share": len(aborts) / len(outcomes),
                           "abort_reasons": reasons, "passed": len(passes), "passed_thin": len(thin),
                           "median_pass_s": statistics.median([o[1] for o in passes]) if passes else None,
                           "verdicts": {v: sum(1 for o in outcomes if o[0] == v) for v in {o[0] for o in outcomes}}})
        # A rollout of 4 hosts x 4 stages: 16 batch-gate windows, aborted if any of them aborts.
        aborted_rollouts, reasons = 0, {}
        for _ in range(args.rollouts):
            for s in (10, 25, 50, 100):
                verdicts = [trial(rng, captures[config], s, baseline, thresholds) for _host in range(4)]
                hit = [info["reason"].split(":")[0] for v, _, info in verdicts if v == ABORT]
                if hit:
                    aborted_rollouts += 1
                    reasons[f"stage {s}: {hit[0]}"] = reasons.get(f"stage {s}: {hit[0]}", 0) + 1
                    break
        rollouts.append({"config": config, "rollouts": args.rollouts, "aborted": aborted_rollouts,
                         "abort_reasons": reasons})
    return {"records": str(path), "source": args.source, "judge": provenance(),
            "baseline_window_s": BASELINE_WINDOW_S, "seed": args.seed, "baseline_p95_ms": baseline, "cells": cells,
            "false_alarms": alarms, "rollouts": rollouts, "captures": describe_captures(path),
            "replay_seconds": round(time.monotonic() - started, 1)}


# --- end to end: the gate reports of real runs -------------------------------------------------------


def e2e(args) -> None:
    """Summarise the gate reports (``report_dir``) of real gate runs: verdict,
    reads, and the time to the verdict ((reads - 1) x 5 s: the first read is at 0)."""
    rows = []
    for directory in args.dirs:
        label = Path(directory).name
        cells_file = Path(directory) / "cells.json"
        cells = json.loads(cells_file.read_text()) if cells_file.exists() else {}
        for report in sorted(Path(directory).glob("*.gate.json")):
            doc = json.loads(report.read_text())
            rows.append({"run": label, "host": doc.get("host"), "cell": cells.get(doc.get("host"), label),
                         "wall_s": cells.get("_wall_s"), "file": str(report), "verdict": doc.get("verdict"),
                         "reason": doc.get("reason"), "reads": doc.get("reads"), "stage": doc.get("stage"),
                         "seconds": (doc["reads"] - 1) * READ_EVERY_S if doc.get("reads") else None,
                         "served": {k: (doc.get("served") or {}).get(k, {}).get("requests")
                                    for k in ("domain", "legacy")}})
    Path(args.out).write_text(json.dumps(rows, indent=1))
    for row in rows:
        print(row["run"], row["host"], row["cell"], row["verdict"], row["seconds"], row["reason"])


# --- the table ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def table(results: dict, e2e_rows: list[dict] | None = None) -> str:
    lines = ["| cell | trials | detected | median time to abort | goal | met? |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in results["cells"]:
        goal = c["goal"]
        goal_text = "" if not goal else (f"abort >= {goal[0] * 100:.0f} %"
                                         + (f" within {goal[1]:.0f} s" if goal[1] else ""))
        met = "" if c["met"] is None else ("**yes**" if c["met"] else "**no**")
        median = "-" if c["median_s"] is None else f"{c['median_s']:.0f} s"
        lines.append(f"| stage {c['stage']}, {c['fault']} | {c['trials']} | {_pct(c['detected'])} | {median} | "
                     f"{goal_text} | {met} |")
    lines += ["", ("| false alarms | stage | windows | aborted | passed | passed on too few requests | "
                   "median time to pass | goal | met? |"),
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in results["false_alarms"]:
        goal, met = "", None
        if a["config"] == "healthy":
            goal = "<= 1 % of windows abort, 0 passes on too few requests"
            met = a["abort_share"] <= 0.01 and a["passed_thin"] == 0
        median = "-" if a["median_pass_s"] is None else f"{a['median_pass_s']:.0f} s"
        lines.append(f"| {a['config']} | {a['stage']} | {a['windows']} | {a['aborted']} ({_pct(a['abort_share'])}) | "
                     f"{a['passed']} | {a['passed_thin']} | {median} | {goal} | "
                     f"{'' if met is None else ('**yes**' if met else '**no**')} |")
    lines += ["", "| rollouts of 4 hosts x 4 stages (16 batch-gate windows) | rollouts | aborted | goal | met? |",
              "| --- | --- | --- | --- | --- |"]
    for r in results["rollouts"]:
        share = r["aborted"] / r["rollouts"] if r["rollouts"] else 0
        goal = "<= 1 % of rollouts aborted" if r["config"] == "background-0.5%" else ""
        met = "" if not goal or not r["rollouts"] else ("**yes**" if share <= 0.01 else "**no**")
        lines.append(f"| {r['config']} | {r['rollouts']} | {r['aborted']} ({_pct(share)}) | {goal} | {met} |")
    return "\n".join(lines)


def e2e_table(e2e_rows: list[dict]) -> str:
    lines = [("| end to end (real gate, sandbox) | runs | aborted | by a side-by-side test / by an aggregate row | "
              "passed | inconclusive | median time to verdict | times (s) |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    cells: dict[str, list] = {}
    for row in e2e_rows:
        cells.setdefault(row.get("cell", row["run"]), []).append(row)
    for cell, rows in cells.items():
        times = [r["seconds"] for r in rows if r["seconds"] is not None and r["verdict"] in ("abort", "pass")]
        each = ", ".join(f"{r['seconds']:.0f}" if r["verdict"] != "inconclusive" else "-" for r in rows)
        aborts = [r for r in rows if r["verdict"] == "abort"]
        aggregate = sum("consecutive reads" in (r["reason"] or "") for r in aborts)
        lines.append(f"| {cell} | {len(rows)} | {len(aborts)} | {len(aborts) - aggregate} / {aggregate} | "
                     f"{sum(r['verdict'] == 'pass' for r in rows)} | "
                     f"{sum(r['verdict'] == 'inconclusive' for r in rows)} | "
                     f"{'-' if not times else f'{statistics.median(times):.1f} s'} | "
                     f"{each} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay-only", metavar="FILE", help="replay saved records (the same as `replay FILE`)")
    sub = parser.add_subparsers(dest="command")
    cap = sub.add_parser("capture", help="capture per-request records from sandbox hosts")
    cap.add_argument("--ssh-config", required=True)
    cap.add_argument("--hosts", required=True, help="name=address,... (one fault configuration per host at a time)")
    cap.add_argument("--rounds", default="healthy:300,healthy:300,background-0.5%:300;"
                                         "errors-1%,errors-3%,errors-10%;latency+30ms,latency+80ms,latency+300ms",
                     help="rounds separated by ';', a configuration per host (config[:seconds])")
    cap.add_argument("--seconds", type=float, default=150.0)
    cap.add_argument("--out", required=True)
    rep = sub.add_parser("replay", help="replay records through the gate")
    rep.add_argument("records")
    for p in (parser, rep):
        p.add_argument("--trials", type=int, default=1000, help="trials per fault cell")
        p.add_argument("--windows", type=int, default=1000, help="healthy windows per stage")
        p.add_argument("--rollouts", type=int, default=1000, help="simulated rollouts of 4 hosts x 4 stages")
        p.add_argument("--seed", type=int, default=11)
        p.add_argument("--baseline-window", type=float, default=0.0, metavar="S",
                       help="per-trial baseline over all legacy requests of the S seconds before the window "
                            "(default 0: the 105 requests before it)")
        p.add_argument("--baseline-ms", type=float, default=None,
                       help="a fixed baseline P95 (default: per trial, the P95 of the 105 legacy records "
                            "just before the window, as the deploy records it just before the change)")
        p.add_argument("--source", choices=("records", "server", "both"), default="both",
                       help="records: per-request records, client-side latency (default); server: the "
                            "per-second server-side metrics snapshots (cross-check)")
        p.add_argument("--e2e", help="the JSON written by `e2e` (rows of real gate runs)")
        p.add_argument("--json", help="write the results here")
    end = sub.add_parser("e2e", help="summarise real gate runs' reports")
    end.add_argument("dirs", nargs="+")
    end.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.replay_only:
        args.records, args.command = args.replay_only, "replay"
    global BASELINE_WINDOW_S
    BASELINE_WINDOW_S = getattr(args, "baseline_window", 0.0) or 0.0
    if args.command == "capture":
        capture(args)
    elif args.command == "replay":
        e2e_rows = json.loads(Path(args.e2e).read_text()) if args.e2e else None
        sources = ("records", "server") if args.source == "both" else (args.source,)
        combined = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "e2e": e2e_rows}
        for source in sources:
            args.source = source
            results = replay(args)
            combined[f"replay_{source}"] = results
            what = ("per-request records (client-side latency)" if source == "records"
                    else "per-second server metrics snapshots (server-side latency)")
            print(f"\n### replay from {what}\n")
            print(table(results, None))
            baseline = results["baseline_p95_ms"]
            print(f"\nbaseline p95: {'per trial' if baseline is None else f'{baseline:.1f} ms'}; "
                  f"replay took {results['replay_seconds']} s")
        if e2e_rows:
            print("\n### end to end\n")
            print(e2e_table(e2e_rows))
        if args.json:
            Path(args.json).write_text(json.dumps(combined, indent=1))
    elif args.command == "e2e":
        e2e(args)
    else:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Zero-downtime drill: a bounded load generator sends mixed GETs and POSTs
through the sandbox's load balancer (nginx on loopback) during a full
0 -> 10 -> 25 -> 50 -> 100 progression and a rollback. Goal: 0 failed requests
out of at least 3,000; prints the count and the P95 the client saw.

    sudo .venv/bin/python drills/zero_downtime.py [--hosts 5] [--rate 40] [--no-drain]

Each stage is `rollout deploy sandbox --stage N --yes` (batches 1,25%,100%, every
check and the gate on); the batch hooks of group_data/sandbox_lb.py drain each
batch before its restart and put it back after. ``--no-drain`` runs the same
progression without the hooks (the control run: what the drain buys).
A request fails when it gets no HTTP answer or a 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollout_sandbox import lb  # noqa: E402
from rollout_sandbox.loadgen import LoadGenerator, summarize  # noqa: E402

PY = sys.executable


def rollout(*args: str, env: dict | None = None) -> tuple[int, str]:
    result = subprocess.run([PY, "-m", "rollout", *args], cwd=ROOT, text=True, capture_output=True,
                            stdin=subprocess.DEVNULL, env=env)
    return result.returncode, result.stdout + result.stderr


def sandbox(*args: str) -> tuple[int, str]:
    result = subprocess.run([PY, "-m", "rollout_sandbox", *args], cwd=ROOT, text=True, capture_output=True,
                            stdin=subprocess.DEVNULL)
    return result.returncode, result.stdout + result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--rate", type=float, default=40, help="requests per second through nginx")
    parser.add_argument("--min-requests", type=int, default=3000)
    parser.add_argument("--max-seconds", type=float, default=900, help="bound of the load generator")
    parser.add_argument("--soak", default="10s", help="gate window after the last batch of each stage")
    parser.add_argument("--no-drain", action="store_true", help="control run: no batch hooks")
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    options = parser.parse_args()

    env = dict(os.environ)
    if options.no_drain:
        env["ROLLOUT_SANDBOX_NO_DRAIN"] = "1"
    code, output = sandbox("up", "--hosts", str(options.hosts), "--lb")
    if code != 0:
        print(output[-3000:])
        return 1
    generator = LoadGenerator(lb.address(), rate=options.rate, max_seconds=options.max_seconds).start()
    phases = []
    steps = [("stage", s, ["deploy", "sandbox", "--stage", str(s), "--yes", "--soak", options.soak,
                           "--batch-soak", "5s"]) for s in (10, 25, 50, 100)]
    steps.append(("rollback", 0, ["rollback", "sandbox"]))
    failed_step = None
    for kind, stage, args in steps:
        started = generator.elapsed()
        code, output = rollout(*args, env=env)
        phase = summarize(generator.since(started))
        phase.update({"phase": f"{kind} {stage}" if kind == "stage" else "rollback",
                      "exit": code, "seconds": round(generator.elapsed() - started, 1)})
        phases.append(phase)
        print(f"{phase['phase']:<10} exit {code}  {phase['seconds']:6.1f}s  requests {phase['requests']:5}  "
              f"failed {phase['failed']}  p95 {phase['p95_ms'] or 0:.0f} ms  {phase['implementations']}",
              flush=True)
        if code != 0:
            print(output[-3000:])
            failed_step = phase["phase"]
            break
    # The load keeps running until the minimum count is reached, then stops.
    deadline = time.monotonic() + options.max_seconds
    while len(generator.samples) < options.min_requests and time.monotonic() < deadline:
        time.sleep(0.2)
    total = summarize(generator.stop())
    result = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})",
        "hosts": options.hosts, "rate": options.rate, "drain": not options.no_drain,
        "phases": phases, "total": total, "failed_step": failed_step,
    }
    print(f"total: {total['requests']} requests ({total['posts']} POST), failed {total['failed']}, "
          f"client p50 {total['p50_ms']:.1f} ms, p95 {total['p95_ms']:.1f} ms, max {total['max_ms']:.0f} ms; "
          f"statuses {total['statuses']}")
    for line in total["first_failures"]:
        print(f"  failure: {line}")
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(result, indent=2))
    ok = failed_step is None and total["failed"] == 0 and total["requests"] >= options.min_requests
    print("drill PASSED: no request failed" if ok else "drill FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

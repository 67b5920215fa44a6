#!/usr/bin/env python3
"""Benchmarks of the rollout on the sandbox fleet; prints a table. Not a test:
timing goals live here, never in the test suite.

    sudo .venv/bin/python bench/bench.py --hosts 5 --runs 3 [--scale 20]

Each figure is the median of ``--runs`` runs; each ratio is computed inside one
run (these machines are noisy) and then its median is taken.

figures (goals from issue 5):
  floor             one host: systemctl restart until health answers 200 (measured on the host)
  parallel floor    every host at once by bare ssh, restart until healthy (the shared CPUs' own limit)
  rollback          `rollout rollback` on every host until each is proven legacy   (<= 1.5 x floor)
  no-change apply   the same stage again, checks off (no restart)                  (<= 1.5 x fact run)
  fact run          a bare pyinfra fact run on the same hosts
  deploy            `rollout deploy --stage 10`, plan 1,25%,100%, with checks (gate soak 0)
  scale             rollback on --scale hosts / rollback on --hosts hosts          (<= 1.5)
  peak memory       max RSS of the control processes during the scale rollback    (<= 200 MB)

control plane (issue 10), with --control 10,100 on light sandbox hosts (systemd, sshd, a stub
service; `rollout-sandbox up --light`):
  status            `rollout status sandbox` on N hosts; 100 / 10                   (<= 3)
  no-change apply   the same stage again on N hosts (checks off); 100 / 10         (<= 3)
  peak memory       max RSS of any control process at the largest N               (<= 200 MB)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rollout.project import defaults

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=ROOT, text=True, capture_output=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args[:5])} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result


def timed(*args: str) -> float:
    started = time.monotonic()
    run(*args)
    return time.monotonic() - started


def pyinfra(*args: str) -> list[str]:
    return [PY, "-m", "pyinfra", "-y", "inventories/sandbox.py", *args]


def rollout(*args: str) -> list[str]:
    return [PY, "-m", "rollout", *args]


_SERVICE = defaults()  # the service's name, port and health path, from group_data/all.py
RESTART_UNTIL_HEALTHY = (
    f"systemctl restart {_SERVICE['service_name']}; "
    f"until curl -fs -o /dev/null http://127.0.0.1:{_SERVICE['bind_port']}{_SERVICE['health_path']}; "
    "do sleep 0.05; done"
)


def floor_seconds() -> float:
    """One host's restart until healthy, timed on the host itself."""
    script = (
        f"s=$(date +%s.%N); {RESTART_UNTIL_HEALTHY}; "
        "e=$(date +%s.%N); python3 -c \"print($e - $s)\""
    )
    result = run("ssh", "-F", str(ROOT / ".sandbox" / "ssh_config"), "camera-1", script)
    return float(result.stdout.strip().splitlines()[-1])


def parallel_floor_seconds(count: int) -> float:
    """Every host restarted at once by bare ssh, until each is healthy: what the
    machine itself allows when all sandbox hosts share its CPUs."""
    started = time.monotonic()
    procs = [subprocess.Popen(["ssh", "-F", str(ROOT / ".sandbox" / "ssh_config"), f"camera-{n}",
                               RESTART_UNTIL_HEALTHY], stdin=subprocess.DEVNULL)
             for n in range(1, count + 1)]
    if any(p.wait(timeout=300) != 0 for p in procs):
        raise SystemExit("bench: a bare restart failed")
    return time.monotonic() - started


def fleet_up(count: int, light: bool = False) -> None:
    # Without --lb: no load balancer, so no drain hooks (the drill's subject, not the bench's).
    run(PY, "-m", "rollout_sandbox", "up", "--hosts", str(count), *(["--light"] if light else []))


def control_plane(sizes: list[int], runs: int) -> dict[str, float]:
    """How the control plane's cost grows with the fleet: status and a no-change
    apply on light hosts, for each size; the ratios of the largest to the smallest."""
    table: dict[str, float] = {}
    for count in sizes:
        fleet_up(count, light=True)
        run(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false"))
        table[f"status on {count}"] = statistics.median(timed(*rollout("status", "sandbox")) for _ in range(runs))
        table[f"no-change apply on {count}"] = statistics.median(
            timed(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false")) for _ in range(runs))
    small, big = min(sizes), max(sizes)
    table[f"status {big} / {small}"] = table[f"status on {big}"] / table[f"status on {small}"]
    table[f"no-change {big} / {small}"] = table[f"no-change apply on {big}"] / table[f"no-change apply on {small}"]
    # ru_maxrss of the children: the largest single control process (pyinfra runs
    # its SSH connections in-process, in greenlets), at most at the largest fleet.
    table[f"peak memory MB on {big} (control)"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return table


def one_run(hosts: int) -> dict[str, float]:
    run(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false"))
    figures = {"floor": floor_seconds(), "parallel floor": parallel_floor_seconds(hosts)}
    run(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false"))  # healthy again
    figures["no-change apply"] = timed(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false"))
    figures["fact run"] = timed(*pyinfra("fact", "server.Hostname"))
    figures["rollback"] = timed(*rollout("rollback", "sandbox"))
    figures["deploy"] = timed(*rollout("deploy", "sandbox", "--stage", "10", "--yes",
                                       "--batch-soak", "0", "--soak", "0"))
    playbook = Path(PY).with_name("ansible-playbook")
    if playbook.exists():
        run(*rollout("rollback", "sandbox"))
        run(PY, "bench/ansible/make_inventory.py")
        figures["ansible deploy"] = timed(str(playbook), "-i", "bench/ansible/inventory.ini",
                                          "bench/ansible/deploy.yml", "-e", "stage=10")
        figures["deploy / ansible"] = figures["deploy"] / figures["ansible deploy"]
    figures["rollback / floor"] = figures["rollback"] / figures["floor"]
    figures["rollback / parallel floor"] = figures["rollback"] / figures["parallel floor"]
    figures["no-change / fact run"] = figures["no-change apply"] / figures["fact run"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=0, help="also measure rollback on this many hosts")
    parser.add_argument("--control", help="only the control-plane figures, on light hosts of these sizes "
                        "(e.g. 10,100)")
    parser.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    options = parser.parse_args()

    runs: list[dict[str, float]] = []
    if options.control:
        sizes = sorted(int(n) for n in options.control.split(","))
        table = control_plane(sizes, options.runs)
        options.hosts, big, small = sizes[-1], sizes[-1], sizes[0]
        goals = {f"status {big} / {small}": "<= 3", f"no-change {big} / {small}": "<= 3",
                 f"peak memory MB on {big} (control)": "<= 200"}
        return report(table, goals, options, runs)

    fleet_up(options.hosts)
    runs = [one_run(options.hosts) for _ in range(options.runs)]
    table = {name: statistics.median(r[name] for r in runs) for name in runs[0]}

    if options.scale:
        small = table["rollback"]
        fleet_up(options.scale)
        run(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false"))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        big, big_floor = [], []
        for _ in range(options.runs):
            big_floor.append(parallel_floor_seconds(options.scale))
            run(*pyinfra("deploy.py", "--data", "stage=10", "--data", "checks=false"))
            big.append(timed(*rollout("rollback", "sandbox")))
        table[f"rollback on {options.scale}"] = statistics.median(big)
        table[f"parallel floor on {options.scale}"] = statistics.median(big_floor)
        table[f"rollback {options.scale} / {options.hosts}"] = statistics.median(big) / small
        table[f"rollback / parallel floor on {options.scale}"] = statistics.median(
            b / f for b, f in zip(big, big_floor))
        table["peak memory MB (control)"] = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024

    if "ansible deploy" not in table:
        print("bench: ansible-core is not installed, no Ansible comparison "
              "(.venv/bin/pip install ansible-core)", file=sys.stderr)
    goals = {"rollback / floor": "<= 1.5", "rollback / parallel floor": "<= 1.2", "no-change / fact run": "<= 1.5",
             "deploy / ansible": "<= 0.5", f"rollback {options.scale} / {options.hosts}": "<= 1.5",
             "peak memory MB (control)": "<= 200"}
    return report(table, goals, options, runs)


def report(table: dict[str, float], goals: dict[str, str], options, runs: list) -> int:
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"bench {stamp} on {platform.node()} ({platform.machine()}, {platform.python_version()}), "
          f"{options.hosts} hosts, median of {options.runs} runs")
    print(f"{'figure':<30} {'value':>10}  goal")
    for name, value in table.items():
        unit = "" if "/" in name or "MB" in name else " s"
        print(f"{name:<30} {value:>8.2f}{unit:<2}  {goals.get(name, '')}")
    if options.json_path:
        Path(options.json_path).write_text(json.dumps({"time": stamp, "hosts": options.hosts,
                                                       "runs": runs, "median": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

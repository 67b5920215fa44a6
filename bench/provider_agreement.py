#!/usr/bin/env python3
"""Do the two metrics providers judge alike? On the sandbox fleet
(`rollout-sandbox up --hosts 4` first): stage 10, then for each case (healthy;
3 % domain errors on every host, a systemd drop-in the tool does not manage)
`rollout check` is run in turns through the JSON provider and the Prometheus
provider, ``--no-rollback``, each on a freshly restarted instance (independent
windows: a check judges since the restart).
Prints one row per provider and case: the hosts' gate verdicts (a healthy
domain's aborts are false alarms; a faulty one's passes are misses) and the
check's duration.

    python bench/provider_agreement.py [--trials 5] [--soak 20s] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLEET = json.loads((ROOT / ".sandbox" / "fleet.json").read_text())
SSH = ["ssh", "-F", FLEET["ssh_config"]]
DROP_IN = "/etc/systemd/system/camera-api.service.d/provider-bench.conf"
CASES = {"healthy": None, "domain errors 3%": "DOMAIN_ERROR_RATE=0.03"}
#: The sandbox inventory with the gate's provider chosen (named sandbox.py: group sandbox).
INVENTORY = """import runpy
_base = runpy.run_path({base!r})
camera_api = [(n, {{**d, 'metrics_provider': {provider!r}}}) for n, d in _base['camera_api']]
"""


def rollout(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollout", *args], cwd=ROOT, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL)


def on_every_host(command: str) -> None:
    for host in FLEET["hosts"]:
        subprocess.run([*SSH, host["name"], command], check=True, capture_output=True, timeout=120)


def set_case(environment: str | None) -> None:
    """The case's drop-in (or none), then a restart: a new instance, a new window."""
    if environment:
        on_every_host(f"mkdir -p {Path(DROP_IN).parent} && printf '[Service]\\nEnvironment={environment}\\n' "
                      f"> {DROP_IN} && systemctl daemon-reload && systemctl restart camera-api")
    else:
        on_every_host(f"rm -f {DROP_IN} && systemctl daemon-reload && systemctl restart camera-api")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--soak", default="20s")
    parser.add_argument("--json", dest="out")
    options = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="provider-bench-"))
    inventories = {}
    for provider in ("json", "prometheus"):
        (directory / provider).mkdir()
        path = directory / provider / "sandbox.py"
        path.write_text(INVENTORY.format(base=str(ROOT / "inventories" / "sandbox.py"), provider=provider))
        inventories[provider] = str(path)
    results = []
    try:
        set_case(None)
        deployed = rollout("deploy", "sandbox", "--stage", "10", "--yes", "--batches", "100%", "--soak", "20s")
        print(f"stage 10: exit {deployed.returncode}", flush=True)
        for case, environment in CASES.items():
            for trial in range(options.trials):
                for provider, inventory in inventories.items():
                    # A fresh instance for every check: with no passing gate to leave a cursor
                    # (a fault), a window since the restart would hold the earlier checks' traffic.
                    set_case(environment)
                    began = time.monotonic()
                    result = rollout("--json", "check", inventory, "--no-rollback", "--yes", "--soak", options.soak)
                    seconds = time.monotonic() - began
                    try:
                        gate = json.loads(result.stdout).get("gate") or {}
                    except ValueError:
                        gate = {}
                    results.append({"case": case, "provider": provider, "trial": trial, "exit": result.returncode,
                                    "seconds": round(seconds, 1), "gate": gate})
                    print(f"{case:18} {provider:10} trial {trial}: exit {result.returncode} {seconds:5.0f}s "
                          f"{dict(Counter(gate.values()))}", flush=True)
    finally:
        set_case(None)
    print()
    print(f"{'case':18} {'provider':10} {'host gates':>10} {'pass':>5} {'inconcl.':>8} {'abort':>5} "
          f"{'other':>5} {'median s':>8}")
    for case in CASES:
        for provider in inventories:
            rows = [r for r in results if r["case"] == case and r["provider"] == provider]
            verdicts = Counter(v for r in rows for v in r["gate"].values())
            other = sum(n for v, n in verdicts.items() if v not in ("pass", "inconclusive", "abort"))
            print(f"{case:18} {provider:10} {sum(verdicts.values()):>10} {verdicts['pass']:>5} "
                  f"{verdicts['inconclusive']:>8} {verdicts['abort']:>5} {other:>5} "
                  f"{statistics.median(r['seconds'] for r in rows):>8.0f}")
    if options.out:
        Path(options.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

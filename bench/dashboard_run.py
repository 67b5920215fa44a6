#!/usr/bin/env python3
"""A real run for the dashboard's screenshot (docs/dashboard.png), on the
sandbox fleet (`rollout-sandbox up --hosts 4` first): unforced traffic on every
host throughout; stage 10, then a healthy stage 25; then 20 % domain errors on
one host (a systemd drop-in the tool does not manage); `rollout check` aborts
and rolls every host back. Prints when each step happened, when Alertmanager
delivered the alert, and writes the screenshot of `rollout dashboard sandbox`.

    python bench/dashboard_run.py [docs/dashboard.png]
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import Browser  # noqa: E402

FLEET = json.loads((ROOT / ".sandbox" / "fleet.json").read_text())
SSH = ["ssh", "-F", FLEET["ssh_config"]]
DROP_IN = "/etc/systemd/system/camera-api.service.d/dashboard-run.conf"


def rollout(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollout", *args], cwd=ROOT, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL)


def on(host: str, command: str) -> None:
    subprocess.run([*SSH, host, command], check=True, capture_output=True, timeout=120)


def main(out: str) -> int:
    hosts = FLEET["hosts"]
    faulty = hosts[1]["name"]
    alert_log = Path(FLEET["monitoring"]["alert_log"])
    alerts_before = len(alert_log.read_text().splitlines()) if alert_log.exists() else 0
    stop = threading.Event()

    def traffic(address: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    session.get(f"http://{address}:8000/api/v1/alerts/rules", timeout=5)
                except requests.RequestException:
                    pass
                time.sleep(0.1)
    senders = [threading.Thread(target=traffic, args=(h["address"],), daemon=True) for h in hosts]
    for sender in senders:
        sender.start()
    events: list[tuple[str, float]] = []
    began = time.time()

    def step(name: str) -> None:
        events.append((name, time.time()))
        print(f"{time.time() - began:6.0f}s  {name}", flush=True)

    try:
        step("traffic on every host; rollback to 0")
        rollout("rollback", "sandbox", "--yes")
        time.sleep(20)
        for stage in ("10", "25"):
            result = rollout("deploy", "sandbox", "--stage", stage, "--yes", "--batches", "1,100%",
                             "--batch-soak", "15s", "--soak", "15s")
            step(f"stage {stage}: exit {result.returncode}")
        time.sleep(60)
        step(f"fault: 20 % domain errors on {faulty}")
        on(faulty, f"mkdir -p {Path(DROP_IN).parent} && printf '[Service]\\nEnvironment=DOMAIN_ERROR_RATE=0.2\\n' "
                   f"> {DROP_IN} && systemctl daemon-reload && systemctl restart camera-api")
        fault_at = time.time()
        time.sleep(40)
        result = rollout("check", "sandbox", "--yes", "--soak", "20s")
        step(f"rollout check: exit {result.returncode} (3: aborted and rolled back)")
        time.sleep(45)
        first = None
        for line in alert_log.read_text().splitlines()[alerts_before:]:
            for alert in json.loads(line)["alerts"]:
                at = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00")).timestamp()
                # this fault's alert (a notification also lists the group's older alerts)
                if alert["status"] == "firing" and alert["labels"].get("host") == faulty and at >= fault_at - 2:
                    first = at if first is None else min(first, at)
        if first is not None:
            print(f"first alert for {faulty} fired {first - fault_at:.0f}s after the fault began")
        dashboard = subprocess.Popen([sys.executable, "-m", "rollout", "dashboard", "sandbox", "--port", "0",
                                      "--range", f"{int(time.time() - began) + 60}s", "--rate-window", "20s"],
                                     cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            url = None
            for line in dashboard.stdout:
                if "serving on " in line:
                    url = line.split("serving on ")[1].split()[0]
                    break
            with Browser(1400, 900) as browser:
                browser.open(url)
                browser.wait_for("document.body.dataset.ready === 'yes' && document.body.dataset.charts === '3'",
                                 60, "the three charts")
                browser.drain(1.0)
                browser.screenshot(out)
                if browser.errors:
                    print("console errors: " + "; ".join(browser.errors))
                    return 1
        finally:
            dashboard.send_signal(2)
            dashboard.wait(30)
        print(f"wrote {out}")
    finally:
        stop.set()
        on(faulty, f"rm -f {DROP_IN} && systemctl daemon-reload && systemctl restart camera-api")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs" / "dashboard.png")))

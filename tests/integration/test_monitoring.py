"""Issue 13 on a real fleet: the sandbox's Prometheus scrapes every host's app
and node_exporter; a fault makes the repo's alert rules fire and Alertmanager
deliver the alert to the receiver, naming the host and the implementation."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from fleetlib import ROOT, SANDBOX_DIR, wait_until
from test_side_by_side import HEALTH, clear_faults, set_drop_in


@pytest.fixture(scope="module")
def monitoring(fleet) -> dict:
    where = json.loads((SANDBOX_DIR / "fleet.json").read_text()).get("monitoring") or {}
    assert where.get("prometheus_url") and where.get("alertmanager_url"), "rollout-sandbox up started no monitoring"
    return where


def query(url: str, promql: str) -> list[dict]:
    answer = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_every_host_is_scraped_app_and_node(fleet, monitoring):
    names = {h.name for h in fleet}

    def healthy_targets():
        targets = requests.get(f"{monitoring['prometheus_url']}/api/v1/targets", timeout=10).json()
        up = {(t["labels"]["job"], t["labels"]["host"]) for t in targets["data"]["activeTargets"]
              if t["health"] == "up"}
        return up == {(job, n) for job in ("camera-api", "node") for n in names}
    wait_until(healthy_targets, 60, "every host's app and node_exporter up in Prometheus", interval_s=1)
    series = query(monitoring["prometheus_url"], "camera_api_requests_total")
    assert {r["metric"]["host"] for r in series} == names
    # every combination exists from the start (an absent series is an error for the gate, not a zero)
    per_host = {(r["metric"]["implementation"], r["metric"]["status_class"], r["metric"]["forced"])
                for r in series if r["metric"]["host"] == fleet[0].name}
    assert len(per_host) == 2 * 4 * 2
    assert requests.get(f"{monitoring['alertmanager_url']}/-/ready", timeout=5).status_code == 200
    rules = requests.get(f"{monitoring['prometheus_url']}/api/v1/rules", timeout=10).json()
    loaded = [rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]]
    assert len(loaded) >= 3, loaded  # the repo's monitoring/rules.yml


def alerts_in(log: Path, since: int) -> list[dict]:
    """The alerts Alertmanager delivered after the log's first ``since`` lines."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines()[since:]
    return [alert for line in lines for alert in json.loads(line)["alerts"]]


def started_at(alert: dict) -> float:
    """An alert's startsAt (RFC 3339, up to nanoseconds) as epoch seconds."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", alert["startsAt"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def active_alerts(monitoring: dict, host: str) -> list[dict]:
    answer = requests.get(f"{monitoring['alertmanager_url']}/api/v2/alerts", timeout=10,
                          params={"filter": [f'host="{host}"', 'implementation="domain"'], "active": "true"})
    answer.raise_for_status()
    return answer.json()


def test_a_domain_fault_reaches_the_receiver_naming_host_and_implementation(fleet, monitoring):
    host = fleet[-1]
    log = Path(monitoring["alert_log"])
    # An alert still active from an earlier test's fault would not be sent again as new.
    wait_until(lambda: not active_alerts(monitoring, host.name), 300,
               f"no active alert for {host.name}'s domain implementation before the fault", interval_s=2)
    before = len(log.read_text().splitlines()) if log.exists() else 0
    fault_began = time.time()
    set_drop_in([host], "DOMAIN_ERROR_RATE=0.3")
    host.testinfra.check_output("systemctl restart camera-api")
    wait_until(lambda: host.testinfra.run(HEALTH).rc == 0, 60, f"{host.name} healthy")
    stop = threading.Event()

    def traffic():  # forced to the domain, so its errors count at any stage
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    session.get(host.url("/api/v1/alerts/rules?force_domain=true"), timeout=5)
                except requests.RequestException:
                    pass
                time.sleep(0.03)
    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    started = time.monotonic()
    try:
        firing = wait_until(
            lambda: [a for a in alerts_in(log, before) if a["status"] == "firing"
                     and a["labels"].get("host") == host.name and a["labels"].get("implementation") == "domain"],
            180, f"a firing alert for {host.name}'s domain implementation at the receiver", interval_s=1)
    finally:
        stop.set()
        sender.join(10)
        clear_faults([host])
    print(f"alert delivered {time.monotonic() - started:.0f}s after the fault's traffic began: "
          f"{sorted({a['labels']['alertname'] for a in firing})}")
    alert = firing[0]
    assert host.name in alert["annotations"]["summary"] and "domain" in alert["annotations"]["summary"]
    # only the faulty host and implementation
    # (an alert that began before this fault, re-sent at its repeat interval, is not this one's)
    others = [a for a in alerts_in(log, before) if a["status"] == "firing" and started_at(a) >= fault_began - 1
              and (a["labels"].get("host") != host.name or a["labels"].get("implementation") != "domain")]
    assert not others, others


def serving_url(board) -> str:
    """The URL `rollout dashboard` says it serves on (loopback)."""
    url = None
    for line in board.stdout:
        if "serving on " in line:
            url = line.split("serving on ")[1].split()[0]
            break
    assert url and url.startswith("http://127.0.0.1:"), board.stderr.read() if board.poll() is not None else url
    return url


def test_the_dashboard_shows_the_fleet_from_prometheus_in_a_real_browser(fleet, monitoring):
    """`rollout dashboard sandbox` on the real Prometheus, in headless Chromium:
    no console error, the three charts with data, every host's verdict row."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from browser import Browser
    from fleetlib import start_rollout

    with requests.Session() as session:  # unforced traffic: every chart has something to draw
        for host in fleet:
            for _ in range(100):
                session.get(host.url("/api/v1/alerts/rules"), timeout=10)
    names = {h.name for h in fleet}
    wait_until(lambda: {r["metric"]["host"] for r in query(
        monitoring["prometheus_url"], 'sum by (host) (rate(camera_api_requests_total{forced="false"}[20s])) > 0')}
        == names, 60, "the traffic in Prometheus", interval_s=1)
    board = start_rollout("dashboard", "sandbox", "--port", "0", "--range", "10m", "--rate-window", "20s")
    try:
        url = serving_url(board)
        with Browser() as browser:
            browser.open(url)
            browser.wait_for("document.body.dataset.ready === 'yes' && document.body.dataset.charts === '3'", 60,
                             "the three charts drawn with data")
            rows = browser.evaluate("[...document.querySelectorAll('#verdicts tbody tr')]"
                                    ".map(r => r.firstChild.innerText)")
            source = browser.evaluate("document.getElementById('meta').textContent")
            browser.drain(0.5)
        assert browser.errors == []
        assert set(rows) == names and "source: prometheus" in source
    finally:
        board.send_signal(2)  # Ctrl-C: the server stops cleanly
        assert board.wait(30) == 0


def test_without_prometheus_the_dashboard_shows_what_the_hosts_recorded(fleet, tmp_path):
    """No prometheus["url"]: the page's data come from the hosts' records over SSH:
    every host's current stage and last verdict, no series (and says why)."""
    from fleetlib import sandbox_inventory, stages, start_rollout
    from rollout.project import defaults

    inventory = sandbox_inventory(tmp_path, prometheus={**defaults()["prometheus"], "url": None})
    board = start_rollout("dashboard", inventory, "--port", "0", "--refresh", "2s")

    def recorded() -> dict | None:
        data = requests.get(f"{url}/data", timeout=60).json()
        return data if data.get("verdicts") else None
    try:
        url = serving_url(board)
        data = wait_until(recorded, 120, "the hosts' records on the page", interval_s=2)
    finally:
        board.send_signal(2)
        assert board.wait(30) == 0
    assert data["source"] == "records" and "error" not in data, data
    current = {name: file_stage for name, (file_stage, _) in stages().items()}
    assert {v["host"]: v["current_stage"] for v in data["verdicts"]} == current, data["verdicts"]
    assert all(chart["series"] == [] for chart in data["charts"].values()) and data["notice"]

"""The sandbox's Prometheus and Alertmanager configurations (pure)."""

from __future__ import annotations

from pathlib import Path

from rollout_sandbox.monitoring import alertmanager_config, prometheus_config

HOSTS = [{"name": "camera-1", "address": "10.231.7.11"}, {"name": "camera-2", "address": "10.231.7.12"}]


def test_every_host_is_scraped_twice_with_its_inventory_name_as_host():
    config = prometheus_config(HOSTS, 8000, "10.231.7.1", Path("/p/monitoring/rules.yml"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"camera-api", "node"}
    assert jobs["camera-api"]["metrics_path"] == "/metrics"
    assert [(s["targets"], s["labels"]) for s in jobs["camera-api"]["static_configs"]] == [
        (["10.231.7.11:8000"], {"host": "camera-1"}), (["10.231.7.12:8000"], {"host": "camera-2"})]
    assert [s["targets"] for s in jobs["node"]["static_configs"]] == [["10.231.7.11:9100"], ["10.231.7.12:9100"]]
    assert config["rule_files"] == ["/p/monitoring/rules.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["10.231.7.1:9093"]


def test_without_a_rules_file_no_rule_files():
    assert "rule_files" not in prometheus_config(HOSTS, 8000, "10.231.7.1", None)


def test_every_alert_goes_to_the_receiver_with_its_resolution():
    config = alertmanager_config("http://10.231.7.1:9095/alerts")
    assert config["route"]["receiver"] == "sandbox"
    assert {"host", "implementation"} <= set(config["route"]["group_by"])
    (receiver,) = config["receivers"]
    assert receiver["webhook_configs"] == [{"url": "http://10.231.7.1:9095/alerts", "send_resolved": True}]

"""The rollout's own state as Prometheus metrics, for node_exporter's textfile
collector on each host (its ``--collector.textfile.directory``, Debian's
``/var/lib/prometheus/node-exporter``): where the host stands and what its gate
said last, so a graph of ``rollout_stage_percent`` shows when each stage began.

Pure: renders the text (prometheus_client's exposition format); the record and
the gate write it on the host beside their own files (rollout/hoststate.py,
rollout/checks.py), each file replaced atomically and only where the directory
exists (the tool never installs node_exporter's directory itself).

Two files, one per writer, so neither has to read the other's state:
``rollout-stage.prom`` (at every record) and ``rollout-gate.prom`` (at every
gate verdict).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

STAGE_FILE = "rollout-stage.prom"
GATE_FILE = "rollout-gate.prom"
VERDICTS = ("pass", "inconclusive", "abort", "error")


def stage_text(service: str, stage: int, use_domain: bool, changed_at: float) -> str:
    """The host's stage, its switch and when the stage last changed (epoch s)."""
    registry = CollectorRegistry()
    labels = ("service",)
    Gauge("rollout_stage_percent", "The rollout stage the host's env file holds (percent).",
          labels, registry=registry).labels(service).set(stage)
    Gauge("rollout_use_domain_service", "1 when the host's env file switches the domain service on.",
          labels, registry=registry).labels(service).set(1 if use_domain else 0)
    Gauge("rollout_stage_changed_timestamp_seconds", "When the host's stage last changed (epoch s).",
          labels, registry=registry).labels(service).set(changed_at)
    return generate_latest(registry).decode()


def gate_text(service: str, stage: int, verdict: str, decided_at: float) -> str:
    """The host's last gate verdict (one-hot over VERDICTS), its stage and time."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    registry = CollectorRegistry()
    gauge = Gauge("rollout_gate_verdict", "The host's last gate verdict (1 for the verdict it gave).",
                  ("service", "verdict"), registry=registry)
    for one in VERDICTS:
        gauge.labels(service, one).set(1 if one == verdict else 0)
    Gauge("rollout_gate_stage_percent", "The stage the host's last gate judged (percent).",
          ("service",), registry=registry).labels(service).set(stage)
    Gauge("rollout_gate_timestamp_seconds", "When the host's last gate decided (epoch s).",
          ("service",), registry=registry).labels(service).set(decided_at)
    return generate_latest(registry).decode()

"""The preparation check: is a host ready for (or still sound on) its stage?

Pure: judges one host's observation (gathered on the host by the probe's
``preflight`` mode) and returns one row per check. No secret is part of an
observation: database and Redis come as reachable yes/no only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollout.metrics import MetricsError, parse_metrics
from rollout.stages import stage_from_env


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def judge_preflight(
    observation: dict[str, Any], expected_stage: int | None = None, field_paths: dict | None = None,
    secret_variables: tuple[str, ...] = (), switch_variables: Mapping[str, str] | None = None,
) -> list[Check]:
    """One row per check. ``field_paths``: where each metric sits (see
    rollout.gate.field_paths); ``secret_variables``: the names the secrets file
    must set (the observation holds names only, never a value);
    ``switch_variables``: the app's switch (group data's when not given)."""
    checks = []
    active = observation.get("unit_active") or "unknown"
    checks.append(Check("unit active", active == "active", f"systemd says {active}"))

    file_switch = observation.get("file_switch")
    file_stage = stage_from_env(file_switch, switch_variables) if file_switch is not None else None
    if file_switch is None:
        checks.append(Check("env file stage", False, "rollout env file missing or unreadable"))
    elif file_stage is None:
        checks.append(Check("env file stage", False, f"env file holds no valid switch: {file_switch}"))
    elif expected_stage is not None and file_stage != expected_stage:
        checks.append(Check("env file stage", False, f"file says stage {file_stage}, expected {expected_stage}"))
    else:
        checks.append(Check("env file stage", True, f"stage {file_stage}"))

    process_switch = observation.get("process_switch")
    if process_switch is None:
        checks.append(Check("process runs the file's stage", False, "no running main process"))
    elif process_switch != file_switch:
        process_stage = stage_from_env(process_switch, switch_variables)
        checks.append(Check("process runs the file's stage", False,
                            f"file says stage {file_stage}, process runs {process_stage} "
                            f"(written but not restarted?)"))
    else:
        checks.append(Check("process runs the file's stage", True,
                            f"stage {stage_from_env(process_switch, switch_variables)}"))

    health = observation.get("health") or {}
    checks.append(Check("health answers 200", health.get("status") == 200,
                        f"HTTP {health['status']}" if health.get("status") else health.get("error") or "no answer"))

    metrics = observation.get("metrics") or {}
    if "prometheus" in observation:  # metrics_provider = "prometheus": the gate reads the server
        answer = observation["prometheus"] or {}
        checks.append(Check("prometheus has the host", bool(answer.get("ok")), answer.get("detail") or "no answer"))
    else:
        checks.append(_json_metrics(metrics, field_paths))

    cameras = observation.get("cameras") or {}
    if not cameras.get("exists"):
        checks.append(Check("cameras config", False, "config/cameras.yaml missing"))
    else:
        count = cameras.get("count", 0)
        checks.append(Check("cameras config", count >= 1, f"{count} camera(s)"))

    if secret_variables:
        present = observation.get("secrets_file")
        missing = [name for name in secret_variables if present is None or name not in present]
        if present is None:
            detail = "secrets env file missing or unreadable"
        elif missing:
            detail = f"secrets env file lacks {', '.join(missing)}"
        else:
            detail = f"sets {', '.join(secret_variables)}"
        checks.append(Check("secrets file", not missing, detail))

    for key, label in (("database", "database reachable"), ("redis", "redis reachable")):
        target = observation.get(key) or {}
        if not target.get("configured"):
            checks.append(Check(label, True, "not set"))
        else:
            checks.append(Check(label, bool(target.get("reachable")),
                                "yes" if target.get("reachable") else "no: no TCP connection from the host"))
    return checks


def _json_metrics(metrics: dict[str, Any], field_paths: dict | None) -> Check:
    try:
        parse_metrics(metrics.get("status"), metrics.get("body") or "", metrics.get("content_type"), field_paths)
        return Check("metrics complete", True, "valid JSON with every gate field")
    except MetricsError as error:
        return Check("metrics complete", False, str(error))

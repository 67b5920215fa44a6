"""Endpoint verification: the old and the new implementation side by side.

Pure: builds the request plans and judges the answers; the probe runs the plans on
the host. A verification run, per host:

1. discovery (legacy): the verification camera's state, and the id of the one
   named verification alert rule, created once if it is missing;
2. every catalog endpoint with ``force_domain=false``, then again with
   ``force_domain=true`` (the ``force_domain_parameter`` setting): both statuses
   must be the expected one, the bodies must have the same structure, and the
   implementation header must name the forced implementation;
3. the camera's running/active/auto-start state put back as it was (legacy);
4. N unforced requests whose implementation mix must fit the stage.

Writes touch only the verification camera and the verification rule; with
``read_only`` only the GET endpoints run and nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rollout.catalog import Endpoint, fill, with_force
from rollout.compare import shape_differences
from rollout.gate import ABORT, error_rows
from rollout.sequential import RatioTest
from rollout.usage import UsageResult, usage_consistent
from rollout.window import Side

MODES = ("legacy", "domain")
RULES_PATH = "/api/v1/alerts/rules"


@dataclass(frozen=True)
class Finding:
    endpoint: str
    mode: str
    problem: str

    def __str__(self) -> str:
        return f"{self.endpoint} [{self.mode}]: {self.problem}"


def request(method: str, path: str, body: Any = None, retry: bool = False) -> dict[str, Any]:
    """One call of a plan; ``retry``: a POST that may be sent again after a 5xx."""
    return {"method": method, "path": path, "body": body, **({"retry": True} if retry else {})}


def body_json(result: dict[str, Any]) -> Any:
    try:
        return json.loads(result.get("body") or "")
    except ValueError:
        return None


# --- 1. discovery ------------------------------------------------------------------------


def discovery_plan(camera_id: str, parameter: str | None = None) -> list[dict]:
    """``parameter``: the ``force_domain_parameter`` setting (here and below)."""
    return [
        request("GET", with_force(f"/api/v1/cameras/{camera_id}/status", "legacy", parameter)),
        request("GET", with_force(RULES_PATH, "legacy", parameter)),
    ]


def camera_state(status_result: dict[str, Any]) -> dict[str, bool]:
    """running/active/auto_start of the verification camera, from its status."""
    document = body_json(status_result)
    if status_result.get("status") != 200 or not isinstance(document, dict):
        raise ValueError(f"verification camera status answered {status_result.get('status')}")
    state = document.get("state") or {}
    return {key: bool(state.get(key)) for key in ("running", "active", "auto_start")}


def find_rule_id(rules_result: dict[str, Any], rule_name: str) -> int | None:
    document = body_json(rules_result)
    if rules_result.get("status") != 200 or not isinstance(document, dict):
        raise ValueError(f"listing alert rules answered {rules_result.get('status')}")
    for rule in document.get("rules") or []:
        if isinstance(rule, dict) and rule.get("name") == rule_name:
            return rule.get("id")
    return None


def create_rule_plan(create: Endpoint, context: dict[str, Any], parameter: str | None = None) -> list[dict]:
    """Create the verification rule (once, with the catalog's create body)."""
    return [request(create.method, with_force(fill(create.path, context), "legacy", parameter),
                    fill(create.body, context))]


# --- 2. both implementations --------------------------------------------------------------


def comparison_plan(
    catalog: tuple[Endpoint, ...], context: dict[str, Any], read_only: bool,
    modes: tuple[str | None, ...] = MODES, parameter: str | None = None,
) -> list[tuple[Endpoint, str | None, dict]]:
    """Every endpoint under each mode, in catalog order, one mode after the other
    (so a write sequence leaves the same state before each mode's calls). Mode
    ``None`` calls the endpoint unforced: after a rollback legacy must answer."""
    plan = []
    for mode in modes:
        for endpoint in catalog:
            if read_only and not endpoint.read_only:
                continue
            path = with_force(fill(endpoint.path, context), mode, parameter)
            plan.append((endpoint, mode, request(endpoint.method, path, fill(endpoint.body, context), endpoint.retry)))
    return plan


def judge_comparison(plan: list[tuple[Endpoint, str | None, dict]], results: list[dict]) -> list[Finding]:
    """Expected statuses, the forced implementation in the header (legacy when
    unforced: the rollback proof), the same status and the same JSON structure
    under both implementations."""
    findings: list[Finding] = []
    answers: dict[str, dict[str, dict]] = {}
    for (endpoint, forced, _), result in zip(plan, results):
        mode = forced or "unforced"
        expected_implementation = forced or "legacy"
        answers.setdefault(endpoint.name, {})[mode] = result
        if result.get("status") is None:
            findings.append(Finding(endpoint.name, mode, f"no answer: {result.get('error')}"))
            continue
        if result["status"] != endpoint.expect:
            findings.append(Finding(endpoint.name, mode, f"status {result['status']}, expected {endpoint.expect}"))
        if result.get("implementation") != expected_implementation:
            findings.append(Finding(endpoint.name, mode,
                                    f"answered by {result.get('implementation') or 'no implementation header'}"))
    for name, by_mode in answers.items():
        legacy, domain = by_mode.get("legacy"), by_mode.get("domain")
        if not (legacy and domain) or legacy.get("status") is None or domain.get("status") is None:
            continue
        if legacy["status"] != domain["status"]:
            # An error body against a normal one: the shapes say nothing more.
            findings.append(Finding(name, "both", f"status legacy {legacy['status']} != domain {domain['status']}"))
            continue
        legacy_body, domain_body = body_json(legacy), body_json(domain)
        if legacy_body is None or domain_body is None:
            if (legacy_body is None) != (domain_body is None):
                findings.append(Finding(name, "both", "one answer is JSON, the other is not"))
            continue
        for difference in shape_differences(legacy_body, domain_body):
            findings.append(Finding(name, "both", difference))
    return findings


# --- after a rollback: the legacy proof ---------------------------------------------------------

#: Ids that exist nowhere: the proof observes the switch without changing anything.
PROOF_CONTEXT = {"camera_id": "rollout-proof-no-such-camera", "rule_id": 0, "rule_name": ""}


def legacy_proof_plan(catalog: tuple[Endpoint, ...]) -> list[tuple[Endpoint, None, dict]]:
    """Every catalog endpoint, unforced, aimed at a camera and a rule that do not
    exist and (for writes) with an empty body: the app picks the implementation
    before it looks at either, so the header proves the switch, while the answer
    (404 or 422) writes nothing. Safe on every host at once."""
    return [
        (e, None, request(e.method, fill(e.path, PROOF_CONTEXT), None if e.read_only else {}))
        for e in catalog
    ]


def judge_legacy_proof(plan: list[tuple[Endpoint, None, dict]], results: list[dict]) -> list[Finding]:
    findings = []
    for (endpoint, _, _), result in zip(plan, results):
        if result.get("status") is None or result["status"] >= 500:
            findings.append(Finding(endpoint.name, "unforced",
                                    f"answered {result.get('status') or result.get('error')}"))
        elif result.get("implementation") != "legacy":
            findings.append(Finding(endpoint.name, "unforced",
                                    f"answered by {result.get('implementation') or 'no implementation header'}"))
    return findings


# --- 3. restore --------------------------------------------------------------------------


def restore_plan(camera_id: str, before: dict[str, bool], parameter: str | None = None) -> list[dict]:
    """Put the verification camera back the way discovery found it (legacy)."""
    base = f"/api/v1/cameras/{camera_id}"

    def legacy(path: str) -> str:
        return with_force(path, "legacy", parameter)

    plan = [request("POST", legacy(f"{base}/{'activate' if before['active'] else 'deactivate'}"))]
    if before["active"]:
        plan.append(request("POST", legacy(f"{base}/{'start' if before['running'] else 'stop'}")))
    plan.append(request("PUT", legacy(f"{base}/auto-start"), {"enabled": before["auto_start"]}))
    return plan


def judge_restore(plan: list[dict], results: list[dict]) -> list[Finding]:
    return [
        Finding("restore camera state", "legacy", f"{r['method']} {r['path']} answered {res.get('status')}")
        for r, res in zip(plan, results) if res.get("status") != 200
    ]


# --- 4. unforced traffic ------------------------------------------------------------------


def unforced_plan(catalog: tuple[Endpoint, ...], context: dict[str, Any], count: int) -> list[dict]:
    """``count`` unforced GETs, cycling over the catalog's read-only endpoints."""
    reads = [fill(e.path, context) for e in catalog if e.read_only]
    if not reads:
        raise ValueError("the catalog has no GET endpoint for unforced traffic")
    return [request("GET", reads[i % len(reads)]) for i in range(count)]


def judge_unforced(results: list[dict], stage: int, thresholds) -> tuple[UsageResult, list[Finding]]:
    """The mix of unforced answers against the stage. A request without an
    answer, or an answer without the implementation header, is a finding; a
    server error is not by itself (a real service has a background rate): the
    errors of each implementation go through the gate's side-by-side tests
    (rollout/gate.py), and only a test that rejects is a finding."""
    findings = []
    unanswered = [r for r in results if r.get("status") is None]
    if unanswered:
        findings.append(Finding("unforced traffic", "-", f"{len(unanswered)} of {len(results)} requests got no answer"))
    answered = [r for r in results if r.get("status") is not None]
    served = [r.get("implementation") for r in answered]
    unknown = [s for s in served if s not in MODES]
    if unknown:
        findings.append(Finding("unforced traffic", "-", f"{len(unknown)} answers without an implementation header"))
    usage = usage_consistent(served.count("domain"), len(served), stage, thresholds.usage_confidence)
    if not usage.consistent:
        findings.append(Finding("unforced traffic", "-", usage.describe()))
    for row in answer_error_rows(answered, thresholds):
        if row.outcome == ABORT:
            findings.append(Finding("unforced traffic", "-", f"server errors: {row.metric} domain {row.domain} "
                                                              f"vs legacy {row.legacy} ({row.statistic})"))
    return usage, findings


def answer_error_rows(answered: list[dict], thresholds) -> list:
    """The gate's side-by-side error rows for a list of answers (5xx = error)."""
    sides = {}
    for mode in MODES:
        mine = [r for r in answered if r.get("implementation") == mode]
        sides[mode] = Side(len(mine), sum(1 for r in mine if r["status"] >= 500), ())
    ratio = RatioTest(thresholds.error_ratio_margin)
    ratio.update(sides["domain"].errors, sides["legacy"].errors, sides["domain"].requests, sides["legacy"].requests)
    return error_rows(sides["domain"], sides["legacy"], ratio, thresholds)

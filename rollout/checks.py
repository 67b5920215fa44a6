"""The checks as they run against one host inside a pyinfra run: thin I/O around
the pure modules (preflight, verify, gate) and the on-host probe. The host's
state (lock, record, status) is rollout/hoststate.py's.

Each function here is the body of a pyinfra ``FunctionCommand`` (tasks/checks.py
runs them with ``python.call``): it gets ``(state, host, ...)``, runs the probe
on the host over the run's own SSH connection, judges with pure code, logs one
line per finding, writes a JSON report (named as the check) when ``report_dir``
is set, and returns False to fail the operation. What a check concluded goes
into ``verdicts`` when the caller hands one (a dict per host, read by the
record: ``rollout.hoststate.record``).

One name per check, for its function, its report and its verdict: ``preflight``,
``compare``, ``legacy-proof`` (``legacy_proof``), ``mix``, ``gate``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import gevent

from rollout import consistency, hoststate, verify as v
from rollout.catalog import CatalogError, fill, load_catalog
from rollout.gate import LATENCY_QUANTILE, Thresholds
from rollout.metrics import field_paths
from rollout.paired import pair_plan, pairs_per_s
from rollout.preflight import judge_preflight
from rollout.probe import ProbeError, probe
from rollout.reports import now as now_iso, report, say
from rollout.sources import prometheus_has, read_since_restart

#: What this run's checks concluded on one host: check name -> verdict.
Verdicts = dict[str, Any]


def _port(host) -> int:
    return int(host.data.bind_port)


def _note(verdicts: Verdicts | None, check: str, value: Any) -> None:
    if verdicts is not None:
        verdicts[check] = value


def _current(host) -> dict:
    """The host's state now, read when the check runs (an earlier operation of
    this run may have changed it)."""
    known = hoststate.read(host)
    if known is None:
        raise ProbeError("the host's state could not be read")
    return known


def _read_paths(host) -> list[str]:
    context = {"camera_id": host.data.verification_camera,
               "rule_name": host.data.verification_rule_name, "rule_id": 0}
    return [fill(e.path, context) for e in load_catalog(host.data.endpoints) if e.read_only]


@dataclass
class Traffic:
    """Synthetic traffic streams running on a host, each with its stop file;
    ``tally_files``: where paired streams keep their comparisons."""

    streams: list[gevent.Greenlet] = field(default_factory=list)
    stop_files: list[str] = field(default_factory=list)
    tally_files: list[str] = field(default_factory=list)

    def join(self) -> None:
        for stream in self.streams:
            stream.join()

    def stop(self, host) -> None:
        """Stop the traffic on the host now (it would run on up to its own
        bounds), then let go of the local greenlets."""
        if self.stop_files:
            try:
                probe(host, "stop", {"stop_files": self.stop_files, "remove": self.tally_files}, timeout=30)
            except ProbeError as error:
                say(host, f"synthetic traffic not stopped ({error}): it ends by its own bounds")
        for stream in self.streams:
            if stream.ready() and not stream.successful():  # a stream that failed says so, once
                say(host, f"synthetic traffic failed: {stream.exception}", error=True)
            stream.kill()
        self.streams, self.stop_files = [], []


def _start(host, streams: list[dict], seconds: float, tally: bool = False) -> Traffic:
    token = secrets.token_hex(6)
    stop_files = [f"{host.data.state_dir}/traffic-{token}-{i}.stop" for i in range(len(streams))]
    tally_files = [f"{host.data.state_dir}/pairs-{token}-{i}.json" for i in range(len(streams))] if tally else []
    specs = [{**spec, "stop_file": stop_file, **({"tally_file": tally_files[i]} if tally else {})}
             for i, (spec, stop_file) in enumerate(zip(streams, stop_files))]
    return Traffic([gevent.spawn(probe, host, "traffic", spec, seconds + 60) for spec in specs],
                   stop_files, tally_files)


def traffic(host, seconds: float, count: int | None = None) -> Traffic:
    """Smoke traffic (``smoke_traffic``), bounded, in the background of this
    run: unforced GETs of the catalog at ``smoke_requests_per_s``, which the
    stage's draw splits; with ``count``, that many back to back (a baseline
    top-up). It stops by itself (a rate, a count, a time limit) or when told."""
    data = host.data
    reads = _read_paths(host)
    if seconds <= 0 or not reads or not data.get("smoke_traffic"):
        return Traffic()
    rate = float(data.smoke_requests_per_s)
    return _start(host, [{"port": _port(host), "header": data.implementation_header, "seconds": seconds,
                          "paths": reads, "count": count or int(rate * seconds) + 1,
                          "rate": None if count else rate}], seconds)


def paired_traffic(host, seconds: float, stage: int | None, real_rps: float | None) -> tuple[Traffic, str]:
    """Paired traffic (``paired_traffic``; rollout/paired.py plans it): each
    repeatable GET of the catalog forced to the domain and to legacy, back to
    back, both answers compared on the host; at the budget's rate, at most
    ``paired_max_pairs``. Not at stage 0: the domain serves nobody, and its
    forced calls would count in the host-wide rows. With a note of its rate."""
    data = host.data
    if seconds <= 0 or not data.get("paired_traffic") or stage == 0:
        return Traffic(), ""
    share = data.get("paired_share")
    if share is not None and real_rps is None:
        return Traffic(), ""  # the host's rate is not known yet: asked again at the next read
    rate = pairs_per_s(float(data.paired_pairs_per_s), None if share is None else float(share), real_rps)
    if rate <= 0:
        return Traffic(), "paired traffic: none (no real traffic to budget it against)"
    context = {"camera_id": data.verification_camera, "rule_name": data.verification_rule_name}
    plan = pair_plan(load_catalog(data.endpoints), context, data.force_domain_parameter)
    if not plan:
        return Traffic(), "paired traffic: none (no repeatable GET in the catalog)"
    pairs = min(int(rate * seconds) + 1, int(data.paired_max_pairs))
    spec = {"port": _port(host), "header": data.implementation_header, "seconds": seconds,
            "pairs": plan, "count": pairs, "rate": rate}
    budget = f" ({share:g} of {real_rps:.2g} real requests/s)" if share is not None and real_rps else ""
    return _start(host, [spec], seconds, tally=True), f"paired traffic: {rate:.3g} pairs/s{budget}"


# --- preflight ------------------------------------------------------------------------------


def preflight(state, host, expected_stage: int | None = None, verdicts: Verdicts | None = None) -> bool:
    """The preparation check (rollout/preflight.py judges the probe's observation)."""
    data = host.data
    spec = {**hoststate.state_spec(data, secrets_checksum=False),
            "secrets_file": data.secrets_env_file, "cameras_file": f"{data.app_dir}/config/cameras.yaml",
            "metrics_path": data.metrics_path}
    try:
        observation = probe(host, "preflight", spec, timeout=60)
    except ProbeError as error:
        say(host, f"preflight FAIL: {error}", error=True)
        return False
    if (data.get("metrics_provider") or "json") == "prometheus":
        observation["prometheus"] = prometheus_has(host)
    checks = judge_preflight(observation, expected_stage,
                             field_paths(data.metrics_fields, data.metrics_field_defaults),
                             tuple(data.secret_variables), data.switch_variables)
    for check in checks:
        say(host, f"preflight {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}", error=not check.ok)
    ok = all(c.ok for c in checks)
    report(host, "preflight", {"ok": ok, "checks": [vars(c) for c in checks]})
    _note(verdicts, "preflight", ok)
    return ok


# --- endpoint verification ---------------------------------------------------------------------


def _requests(host, plan: list[dict], retries: int | None = None) -> list[dict]:
    """The calls of ``plan`` in order; a server error is sent again up to
    ``verify_retries`` times (``retries``), so a background error rate does not
    fail a deterministic check while an endpoint that always fails still does."""
    retries = int(host.data.verify_retries) if retries is None else retries
    return probe(host, "requests", {"port": _port(host), "header": host.data.implementation_header,
                                    "requests": plan, "timeout": 10, "retries": retries})


def _ensure_rule(host, catalog, context, rules_result) -> int | None:
    """The verification rule's id; created once (legacy) when it is missing."""
    parameter = host.data.force_domain_parameter
    rule_id = v.find_rule_id(rules_result, context["rule_name"])
    if rule_id is not None:
        return rule_id
    creates = [e for e in catalog if e.method == "POST" and e.path == v.RULES_PATH]
    if not creates:
        return None
    (created,) = _requests(host, v.create_rule_plan(creates[0], context, parameter))
    if created.get("status") == 201:
        say(host, f"verify: created the verification rule {context['rule_name']!r}")
        return v.body_json(created).get("id")
    if created.get("status") == 409:  # another host of the fleet created it just now
        (listed,) = _requests(host, v.discovery_plan(context["camera_id"], parameter)[1:])
        return v.find_rule_id(listed, context["rule_name"])
    raise ProbeError(f"creating the verification rule answered {created.get('status')}")


def _findings(host, what: str, report_name: str, calls: int, modes: str, findings: list[v.Finding],
              read_only: bool = False) -> bool:
    say(host, f"{what}: {calls} calls ({modes}{', read-only' if read_only else ''}), "
              f"{len(findings)} finding(s)")
    for finding in findings:
        say(host, f"{what} FAIL {finding}", error=True)
    report(host, report_name, {"ok": not findings, "read_only": read_only, "calls": calls,
                               "findings": [vars(f) for f in findings]})
    return not findings


def compare(state, host, read_only: bool = False, verdicts: Verdicts | None = None) -> bool:
    """Every catalog endpoint under both forced implementations, compared (see
    rollout/verify.py); with ``read_only`` the GET endpoints only."""
    data = host.data
    parameter = data.force_domain_parameter
    findings: list[v.Finding] = []
    calls = 0
    try:
        catalog = load_catalog(data.endpoints)
        context = {"camera_id": data.verification_camera, "rule_name": data.verification_rule_name}
        status_result, rules_result = _requests(host, v.discovery_plan(data.verification_camera, parameter))
        before = v.camera_state(status_result)
        context["rule_id"] = (v.find_rule_id(rules_result, context["rule_name"]) if read_only
                              else _ensure_rule(host, catalog, context, rules_result))
        plan = v.comparison_plan(catalog, context, read_only, parameter=parameter)
        calls = len(plan)
        findings += v.judge_comparison(plan, _requests(host, [call for _, _, call in plan]))
        if not read_only:
            findings += _consistency(host, context)
            calls += 4 * len(data.consistency_checks)
            restore = v.restore_plan(data.verification_camera, before, parameter)
            findings += v.judge_restore(restore, _requests(host, restore))
    except (ProbeError, CatalogError, ValueError) as error:
        findings.append(v.Finding("verification", "-", str(error)))
    ok = _findings(host, "verify", "compare", calls, f"{parameter}=false and =true", findings, read_only)
    _note(verdicts, "compare", ok)
    return ok


def _consistency(host, context: dict) -> list[v.Finding]:
    """What one implementation writes, the other reads back (rollout/consistency.py)."""
    checks = list(host.data.consistency_checks)
    if context.get("rule_id") is None:
        return [v.Finding("data consistency", "-", "the verification rule is missing")]
    plan = consistency.plan(checks, context, host.data.force_domain_parameter)
    return consistency.judge(checks, context, _requests(host, plan))


def legacy_proof(state, host) -> bool:
    """After a rollback: every catalog endpoint called unforced must be answered
    by legacy (a write-free probe of each route, see rollout/verify.py)."""
    findings: list[v.Finding] = []
    calls = 0
    try:
        plan = v.legacy_proof_plan(load_catalog(host.data.endpoints))
        calls = len(plan)
        findings += v.judge_legacy_proof(plan, _requests(host, [call for _, _, call in plan]))
    except (ProbeError, CatalogError, ValueError) as error:
        findings.append(v.Finding("verification", "-", str(error)))
    return _findings(host, "legacy proof", "legacy-proof", calls, "unforced, writing nothing", findings)


def mix(state, host, stage: int | None = None, legacy_proof: bool = False,
        verdicts: Verdicts | None = None) -> bool:
    """N unforced requests: their implementation mix must fit the stage (the env
    file's when None). ``legacy_proof``: part of the proof after a rollback
    (``legacy_proof_requests`` of them)."""
    data = host.data
    usage = None
    findings: list[v.Finding] = []
    try:
        stage = hoststate.file_stage(_current(host), data.switch_variables) if stage is None else stage
        if stage is None:
            raise ProbeError("the rollout env file holds no stage")
        context = {"camera_id": data.verification_camera, "rule_name": data.verification_rule_name,
                   "rule_id": 0}
        count = data.legacy_proof_requests if legacy_proof else data.unforced_requests
        plan = v.unforced_plan(load_catalog(data.endpoints), context, int(count))
        # No retries: every server error counts in the side-by-side statistics.
        usage, findings = v.judge_unforced(_requests(host, plan, retries=0), stage, Thresholds.from_data(data.gate))
    except (ProbeError, CatalogError, ValueError) as error:
        findings.append(v.Finding("unforced traffic", "-", str(error)))
    if usage is not None:
        say(host, f"unforced traffic: {usage.describe()}")
    for finding in findings:
        say(host, f"unforced traffic FAIL {finding.problem}", error=True)
    report(host, "mix", {
        "ok": not findings, "stage": stage, "findings": [vars(f) for f in findings],
        "usage": None if usage is None else {"domain": usage.domain, "total": usage.total,
                                             "p_value": usage.p_value, "consistent": usage.consistent},
    })
    _note(verdicts, "mix", not findings)
    return not findings


# --- baseline ----------------------------------------------------------------------------------


def record_baseline(state, host, from_stage: int | None, to_stage: int) -> bool:
    """Record the P95 the host serves now, before its stage changes, on the host:
    over everything the current stage served since its restart (a baseline wants
    a long window, not a fresh one), topped up with smoke traffic when that holds
    too few requests."""
    thresholds = Thresholds.from_data(host.data.gate)
    served, error = read_since_restart(host)  # the whole stage since its restart
    if served is not None and served.combined.requests < thresholds.min_requests:
        # Just the missing requests, back to back: a baseline needs a sample, not a rate.
        traffic(host, 30.0, count=thresholds.min_requests - served.combined.requests + 5).join()
        served, error = read_since_restart(host)
    if served is not None and served.combined.requests < thresholds.min_requests:
        error = f"only {served.combined.requests} requests served (fewer than {thresholds.min_requests})"
        served = None
    p95 = served.combined.quantile(LATENCY_QUANTILE) if served is not None else None
    record = {
        "from_stage": from_stage, "to_stage": to_stage,
        "p95_ms": p95, "requests": served.combined.requests if served else None,
        "recorded_at": now_iso(),
    }
    try:
        probe(host, "write", {"path": f"{host.data.state_dir}/baseline.json",
                              "content": json.dumps(record) + "\n"}, timeout=30)
    except ProbeError as err:
        say(host, f"baseline FAIL: {err}", error=True)
        return False
    if served is not None:
        say(host, f"baseline p95 {p95:.1f} ms over {served.combined.requests} requests at stage {from_stage}")
    else:
        say(host, f"no baseline p95 ({error}): the P95 condition stays inconclusive")
    return True


def baseline_p95(known: dict, stage: int) -> float | None:
    """The baseline P95 recorded for the change to ``stage`` (None otherwise)."""
    baseline = known.get("baseline")
    if not isinstance(baseline, dict) or baseline.get("to_stage") != stage:
        return None
    return baseline.get("p95_ms")


# --- the gate ----------------------------------------------------------------------------------


def fail(state, host, reason: str) -> bool:
    """Fail this host's run with ``reason``."""
    say(host, reason, error=True)
    return False

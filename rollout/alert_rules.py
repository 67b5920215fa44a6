"""The seed's alert rules as a Prometheus rules file, written from the gate's
own thresholds (``gate`` in group_data/all.py: one source) and the
``alert_rules`` setting (windows, ``for``, the minimum traffic).

Pure: ``render(settings)`` gives the YAML text; ``rollout rules ENV`` prints it
for an environment's settings, and ``monitoring/rules.yml`` is the render of the
defaults (a unit test keeps them equal; promtool tests it).

The seed's rules, per host and implementation:
- error rate > ``error_rate_abort_above`` (5 %): at once;
- success rate < ``success_rate_abort_below`` (95 %): at once (success: every
  answer but a 5xx, as the gate counts it; a client's 4xx is the client's, so
  a flood of them pages neither rule);
- response time up > 50 %: the domain's P95 above both ``p95_max_ratio`` x
  legacy's P95 and legacy's P95 + ``domain_p95_min_increase_ms`` (the gate's
  bound), on the same host and window, for ``latency_for`` (a P95 over a short
  window is noisy).
Each rule needs ``min_requests_per_s`` of the implementation's traffic over the
window: one failed request of one is not a page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from rollout.gate import Thresholds

GROUP = "camera-rollout"
_DURATION = re.compile(r"^[1-9][0-9]*[smh]$")
KEYS = ("window", "latency_for", "min_requests_per_s", "severity")


def check(settings: Any) -> None:
    """Refuse an ``alert_rules`` setting that cannot be rendered (ValueError)."""
    if not isinstance(settings, Mapping):
        raise ValueError(f"must be a mapping with {', '.join(KEYS)}")
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    for key in ("window", "latency_for"):
        if not isinstance(settings.get(key), str) or not _DURATION.match(settings[key]):
            raise ValueError(f"{key} must be a Prometheus duration like 1m or 30s, got {settings.get(key)!r}")
    rate = settings.get("min_requests_per_s")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f"min_requests_per_s must be a number > 0, got {rate!r}")
    if not isinstance(settings.get("severity"), str) or not re.fullmatch(r"[a-z]+", settings["severity"]):
        raise ValueError(f"severity must be a lower-case word, got {settings.get('severity')!r}")


def check_names(names: Any) -> None:
    """Refuse a ``prometheus_metric_names`` setting (ValueError)."""
    if not isinstance(names, Mapping) or set(names) != {"requests", "latency"}:
        raise ValueError("must be a mapping with exactly requests and latency")
    for key, name in names.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
            raise ValueError(f"{key} must be a Prometheus metric name, got {name!r}")


def _number(value: float) -> str:
    return f"{value:g}"


def rules(gate: Mapping[str, Any], settings: Mapping[str, Any], names: Mapping[str, str]) -> dict:
    """The rules file as a document (``names``: the app's metric names,
    ``prometheus_metric_names``)."""
    check(settings)
    counter, histogram = names["requests"], f"{names['latency']}_bucket"
    thresholds = Thresholds.from_data(dict(gate))
    window, minimum = settings["window"], _number(settings["min_requests_per_s"])
    requests = f"sum by (host, implementation) (rate({counter}[{window}]))"
    enough = f"{requests} >= {minimum}"

    def share(selector: str) -> str:
        return (f"sum by (host, implementation) (rate({counter}{{{selector}}}[{window}]))\n"
                f"  / on (host, implementation) {requests}")

    def p95(implementation: str) -> str:
        return ("histogram_quantile(0.95, sum by (host, le) (rate("
                f'{histogram}{{implementation="{implementation}"}}[{window}])))')

    labels = {"severity": settings["severity"]}
    server_errors, successes = 'status_class="5xx"', 'status_class!="5xx"'
    error_above = thresholds.error_rate_abort_above
    success_below = thresholds.success_rate_abort_below
    ratio, floor_s = thresholds.p95_max_ratio, thresholds.domain_p95_min_increase_ms / 1000.0
    domain_enough = (f'sum by (host) (rate({counter}{{implementation="domain"}}[{window}])) '
                     f">= {minimum}")
    legacy_enough = (f'sum by (host) (rate({counter}{{implementation="legacy"}}[{window}])) '
                     f">= {minimum}")
    return {"groups": [{"name": GROUP, "rules": [
        {"alert": "CameraApiErrorRateHigh",
         "expr": f"(\n  {share(server_errors)}\n) > {_number(error_above)}\n"
                 f"and on (host, implementation) {enough}",
         "for": "0s", "labels": labels,
         "annotations": {"summary": "{{ $labels.host }}: the {{ $labels.implementation }} implementation "
                                    "fails {{ $value | humanizePercentage }} of its requests "
                                    f"(alert above {error_above:.0%})",
                         "source": "gate.error_rate_abort_above"}},
        {"alert": "CameraApiSuccessRateLow",
         "expr": f"(\n  {share(successes)}\n) < {_number(success_below)}\n"
                 f"and on (host, implementation) {enough}",
         "for": "0s", "labels": labels,
         "annotations": {"summary": "{{ $labels.host }}: the {{ $labels.implementation }} implementation "
                                    "succeeds on {{ $value | humanizePercentage }} of its requests "
                                    f"(alert below {success_below:.0%})",
                         "source": "gate.success_rate_abort_below"}},
        {"alert": "CameraApiDomainLatencyUp",
         "expr": f"(\n  {p95('domain')}\n  > {_number(ratio)} * {p95('legacy')}\n"
                 f"and\n  {p95('domain')}\n  > {p95('legacy')} + {_number(floor_s)}\n)\n"
                 f"and on (host) {domain_enough}\nand on (host) {legacy_enough}",
         "for": settings["latency_for"], "labels": {**labels, "implementation": "domain"},
         "annotations": {"summary": "{{ $labels.host }}: the domain implementation's P95 is "
                                    "{{ $value | humanizeDuration }}, above "
                                    f"{ratio:g} x legacy's and legacy's + {thresholds.domain_p95_min_increase_ms:g} ms",
                         "source": "gate.p95_max_ratio, gate.domain_p95_min_increase_ms"}},
    ]}]}


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks (readable, as promtool prints them); no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


def render(gate: Mapping[str, Any], settings: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The rules file's text (deterministic)."""
    header = ("# Generated by `rollout rules` (rollout/alert_rules.py) from the gate's thresholds\n"
              "# (group_data/all.py: gate, alert_rules, prometheus_metric_names). "
              "Do not edit: change the settings and render again.\n")
    return header + yaml.dump(rules(gate, settings, names), Dumper=_Dumper, sort_keys=False, width=120)

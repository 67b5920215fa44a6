"""Paired traffic, planned: which endpoints, how fast, how many. Pure.

Paired traffic sends the same GET forced to the domain and to legacy, back to
back, so a gate gets evidence of both implementations whatever the stage's draw
gives the domain, and each pair's two answers are compared (rollout/responses.py).
It is the analogue of Flagger's load tester, with two differences that make it
fit for a production host: it repeats only what is safe to repeat (the catalog's
GETs not marked ``paired: false``), and its rate is a budget relative to the
host's own traffic, not a fixed load:

    pairs/s = min(paired_pairs_per_s, paired_share x real requests/s / 2)

(a pair is two requests, plus a third when its answers differ), at most
``paired_max_pairs`` per gate; the real rate is the host's unforced requests over
the gate's window so far. Without real traffic (a quiet host, a rate of zero)
there is no budget, hence no paired traffic: an idle host is not loaded to
judge it. ``paired_share`` unset: the absolute cap alone (the sandbox, whose
only traffic is synthetic).
"""

from __future__ import annotations

from typing import Any

from rollout.catalog import CatalogError, Endpoint, fill, with_force


def pairs_per_s(cap: float, share: float | None, real_rps: float | None) -> float:
    """The paired traffic's rate in pairs a second (0: none)."""
    if share is None:
        return cap
    if real_rps is None or real_rps <= 0:
        return 0.0
    return min(cap, share * real_rps / 2)


def pair_plan(catalog: tuple[Endpoint, ...], context: dict[str, Any], parameter: str) -> list[dict[str, Any]]:
    """The probe's pairs: per repeatable endpoint its name, its two forced
    paths and its normalisation rules."""
    plan = []
    for endpoint in catalog:
        if not endpoint.repeatable:
            continue
        try:
            path = fill(endpoint.path, context)
        except CatalogError:  # a path naming what a run's context lacks (a rule made by the verification)
            continue
        plan.append({"name": endpoint.name, "domain": with_force(path, "domain", parameter),
                     "legacy": with_force(path, "legacy", parameter),
                     "ignore": list(endpoint.ignore), "unordered": list(endpoint.unordered)})
    return plan

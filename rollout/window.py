"""Windows over the app's cumulative counters: what was served between two reads.

Pure. The app reports counters cumulative since its instance started (requests,
server errors, latency histogram buckets, per implementation; the unforced
requests and how many of them the domain served), like Prometheus counters. A
judgement never uses those totals: it uses the difference between the read at
the window's start (its *base*) and now. A counter reset (a restart: another
instance, or any counter lower than at the base) starts a new window at the
restart, never a negative difference.

The base of a window, by what judges:
- a soak (the gate after a stage change): the read when the window began, or the
  restart itself when the service restarted for the change;
- ``promote`` and ``check``: the cursor the previous check of that stage left on
  the host (or, with a look-back, the newest cursor at least that old); without
  one, the restart that began the stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

IMPLEMENTATIONS = ("domain", "legacy")


@dataclass(frozen=True)
class Side:
    """One implementation's counters: requests, server errors, and cumulative
    latency buckets ((upper bound ms, requests at or below it), ...)."""

    requests: int
    errors: int
    buckets: tuple[tuple[float, int], ...]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def at_or_below(self, bound: float) -> int:
        """Requests no slower than ``bound`` (a bucket bound)."""
        for upper, count in self.buckets:
            if upper == bound:
                return count
        raise ValueError(f"{bound} ms is not a bucket bound")

    def quantile(self, q: float) -> float | None:
        """The q-quantile in ms, interpolated inside its bucket as Prometheus'
        histogram_quantile does; None without requests. Beyond the last bound:
        that bound (a lower limit of the truth)."""
        if self.requests <= 0:
            return None
        rank = q * self.requests
        lower, below = 0.0, 0
        for upper, count in self.buckets:
            if count >= rank:
                inside = count - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = upper, count
        return lower

    def minus(self, base: Side) -> Side:
        return Side(self.requests - base.requests, self.errors - base.errors,
                    tuple((u, c - b) for (u, c), (_, b) in zip(self.buckets, base.buckets)))

    def plus(self, other: Side) -> Side:
        return Side(self.requests + other.requests, self.errors + other.errors,
                    tuple((u, c + o) for (u, c), (_, o) in zip(self.buckets, other.buckets)))


@dataclass(frozen=True)
class Counters:
    """One read of the app's cumulative counters, or a window's differences."""

    instance: str
    usage_requests: int
    usage_domain: int
    domain: Side
    legacy: Side

    @property
    def combined(self) -> Side:
        """Both implementations together: the host-wide aggregate."""
        return self.domain.plus(self.legacy)

    def minus(self, base: Counters) -> Counters:
        return Counters(self.instance, self.usage_requests - base.usage_requests,
                        self.usage_domain - base.usage_domain,
                        self.domain.minus(base.domain), self.legacy.minus(base.legacy))

    def to_json(self) -> dict[str, Any]:
        return {"instance": self.instance, "usage_requests": self.usage_requests,
                "usage_domain": self.usage_domain,
                **{name: {"requests": side.requests, "errors": side.errors,
                          "buckets": [list(b) for b in side.buckets]}
                   for name, side in (("domain", self.domain), ("legacy", self.legacy))}}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Counters:
        """A cursor's snapshot as written by ``to_json`` (ValueError otherwise)."""
        try:
            sides = {name: Side(int(document[name]["requests"]), int(document[name]["errors"]),
                                tuple((float(u), int(c)) for u, c in document[name]["buckets"]))
                     for name in IMPLEMENTATIONS}
            return cls(str(document["instance"]), int(document["usage_requests"]),
                       int(document["usage_domain"]), sides["domain"], sides["legacy"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a counters snapshot: {error}") from None


def zero_like(now: Counters) -> Counters:
    """The counters of ``now``'s instance when it started: all zero."""
    def zero(side: Side) -> Side:
        return Side(0, 0, tuple((u, 0) for u, _ in side.buckets))
    return Counters(now.instance, 0, 0, zero(now.domain), zero(now.legacy))


def _never_lower(now: Counters, base: Counters) -> bool:
    def side(a: Side, b: Side) -> bool:
        return (a.requests >= b.requests and a.errors >= b.errors and len(a.buckets) == len(b.buckets)
                and all(ua == ub and ca >= cb for (ua, ca), (ub, cb) in zip(a.buckets, b.buckets)))
    return (now.usage_requests >= base.usage_requests and now.usage_domain >= base.usage_domain
            and side(now.domain, base.domain) and side(now.legacy, base.legacy))


def continues(now: Counters, base: Counters | None) -> bool:
    """Do ``now``'s counters continue from ``base`` (same instance, none lower)?"""
    return base is not None and base.instance == now.instance and _never_lower(now, base)


def window(now: Counters, base: Counters | None) -> tuple[Counters, bool]:
    """(what was served since ``base``, whether the window restarted): from the
    instance's start when ``base`` is missing or belongs to another instance."""
    if base is not None and continues(now, base):
        return now.minus(base), False
    return now, base is not None


def choose_base(cursors: list[dict[str, Any]], instance: str, stage: int, now_s: float,
                lookback_s: float | None) -> dict[str, Any] | None:
    """The cursor a check's window starts at, among those kept on the host
    (``{"at": epoch s, "stage": N, "counters": {...}}``): of this instance and stage
    only; the newest (since the previous check), or with ``lookback_s`` the newest
    at least that old (else the oldest: a shorter window, never a diluted one).
    None: the window starts at the instance's start."""
    mine = sorted((c for c in cursors
                   if isinstance(c, dict) and c.get("stage") == stage and isinstance(c.get("counters"), dict)
                   and c["counters"].get("instance") == instance and isinstance(c.get("at"), (int, float))),
                  key=lambda c: c["at"])
    if not mine:
        return None
    if lookback_s is None:
        return mine[-1]
    old_enough = [c for c in mine if c["at"] <= now_s - lookback_s]
    return old_enough[-1] if old_enough else mine[0]


def keep_cursors(cursors: list[dict[str, Any]], new: dict[str, Any], keep: int) -> list[dict[str, Any]]:
    """The cursors to keep after ``new``: this instance and stage only (an older
    one can never be a base again), the newest ``keep``."""
    same = [c for c in cursors if isinstance(c, dict) and c.get("stage") == new["stage"]
            and isinstance(c.get("counters"), dict)
            and c["counters"].get("instance") == new["counters"]["instance"]]
    return (same + [new])[-keep:]


def is_finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)

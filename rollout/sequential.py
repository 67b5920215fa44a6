"""Anytime-valid sequential tests: e-processes that may be read as often as
wanted, for as long as wanted, without inflating false alarms.

Pure arithmetic, in log space. Each test is a likelihood ratio of "the new
implementation is worse" against the null hypothesis, mixed over a fixed grid of
alternatives (a discrete prior). Under the null hypothesis such a mixture is a
nonnegative supermartingale with expectation <= 1, so by Ville's inequality the
chance that it *ever* reaches 1/alpha is at most alpha: a gate may read every
few seconds for days and stop at the first crossing (docs/gate.md says why this
family, and what each rule tests). The always-valid p-value is 1 / (the largest
e-value seen), capped at 1.

- ``log_e_rate``: one sample of yes/no outcomes (server errors, requests slower
  than a bound) against "rate <= p0";
- ``RatioTest``: the new implementation's errors against the old one's, given
  how many requests each served ("domain rate <= margin x legacy rate"),
  conditioned on the errors seen (rare errors: a Poisson approximation); a
  clean legacy (no error at all) needs no special case, and a fault of a
  shared backend (both sides fail alike) is no evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The alternatives each test mixes over, as multiples of the null's odds (or
#: rate ratio): from a fault barely above the null to one 1000 times worse, so
#: small and large effects are both detected without tuning.
MULTIPLIERS = (1.25, 1.6, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0)


def _log_mean_exp(terms: list[float]) -> float:
    top = max(terms)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(t - top) for t in terms)) - math.log(len(terms))


def log_e_rate(k: int, n: int, p0: float) -> float:
    """Log e-value of ``k`` yes out of ``n`` against H0: rate <= ``p0``.

    Mixes the alternatives ``odds(p) = odds(p0) * m`` for m in MULTIPLIERS. For an
    alternative p > p0 the likelihood ratio (p/p0)^k ((1-p)/(1-p0))^(n-k) is a
    supermartingale under every rate <= p0, so the mixture is an e-process for
    the composite null. Depends on the totals only: evaluating it on a window's
    totals at each read is a look at one e-process at a stopping time."""
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0!r}")
    if n <= 0:
        return 0.0
    odds0 = p0 / (1 - p0)
    terms = []
    for m in MULTIPLIERS:
        p = odds0 * m / (1 + odds0 * m)
        terms.append(k * math.log(p / p0) + (n - k) * math.log1p(-p) - (n - k) * math.log1p(-p0))
    return _log_mean_exp(terms)


@dataclass
class RatioTest:
    """H0: domain error rate <= ``margin`` x legacy error rate.

    Conditioned on the errors of an interval, each one is the domain's with
    probability q = r s / (r s + 1 - s), where s is the domain's share of the
    interval's requests and r the true rate ratio; under H0, q <= q0 (r = margin).
    Each interval multiplies every alternative's likelihood ratio (r = margin x m),
    so the share may change from one read to the next (stage traffic, paired
    traffic). The legacy rate itself never enters: a clean legacy (0 errors) is
    no division by zero, and a backend fault that hits both sides is no evidence."""

    margin: float
    log_ratios: list[float] = field(default_factory=list)
    log_e_max: float = 0.0

    def __post_init__(self):
        if self.margin < 1:
            raise ValueError(f"the error ratio margin must be >= 1, got {self.margin!r}")
        if not self.log_ratios:
            self.log_ratios = [0.0] * len(MULTIPLIERS)

    def update(self, domain_errors: int, legacy_errors: int, domain_requests: int, legacy_requests: int,
               share: float | None = None) -> None:
        """Fold in one interval's increments (new errors and requests of each
        side). ``share``: the domain's share to assume, when the interval mixes
        kinds of traffic with different shares (the largest: see
        rollout.gate.largest_share); its own share otherwise."""
        if domain_requests <= 0 or legacy_requests <= 0 or domain_errors + legacy_errors <= 0:
            return  # no error, or one side absent: the interval says nothing about the ratio
        share = domain_requests / (domain_requests + legacy_requests) if share is None else share
        if not 0 < share < 1:
            return  # one side only: nothing to compare

        def q(ratio: float) -> float:
            return ratio * share / (ratio * share + 1 - share)

        q0 = q(self.margin)
        for i, m in enumerate(MULTIPLIERS):
            qa = q(self.margin * m)
            self.log_ratios[i] += (domain_errors * math.log(qa / q0)
                                   + legacy_errors * (math.log1p(-qa) - math.log1p(-q0)))
        self.log_e_max = max(self.log_e_max, self.log_e())

    def log_e(self) -> float:
        return _log_mean_exp(self.log_ratios)


def p_value(log_e_max: float) -> float:
    """The always-valid p-value of an e-process whose largest value so far is exp(log_e_max)."""
    return min(1.0, math.exp(-log_e_max))


def format_e(log_e: float) -> str:
    """An e-value for a table: plain when small, in powers of ten when large."""
    if log_e < math.log(1e4):
        return f"{math.exp(log_e):.3g}"
    return f"10^{log_e / math.log(10):.1f}"

"""Is an observed implementation mix consistent with a stage's percent?

A fixed +/- tolerance is wrong both ways: too strict for small samples, too lax
for large ones. An exact two-sided binomial test asks instead how likely a mix
at least this far from the stage's share would be if the switch worked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class UsageResult:
    consistent: bool
    domain: int
    total: int
    expected_rate: float
    p_value: float
    confidence: float

    @property
    def observed_rate(self) -> float:
        return self.domain / self.total if self.total else 0.0

    def describe(self) -> str:
        return (
            f"domain {self.domain}/{self.total} = {self.observed_rate:.1%} vs stage "
            f"{self.expected_rate:.0%} (binomial p={self.p_value:.3g}, "
            f"{'consistent' if self.consistent else 'inconsistent'} at {self.confidence:.4%} confidence)"
        )


def _log_pmf(k: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        + k * math.log(p) + (n - k) * math.log1p(-p)
    )


def binomial_p_value(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value: the probability of an outcome no more likely than
    ``k`` successes out of ``n`` when each succeeds with probability ``p``."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    observed = _log_pmf(k, n, p)
    # Relative tolerance so ties in floating point count as "as likely".
    limit = observed + 1e-7 * abs(observed) + 1e-12
    return min(1.0, sum(math.exp(lp) for i in range(n + 1) if (lp := _log_pmf(i, n, p)) <= limit))


def usage_consistent(domain: int, total: int, percent: float, confidence: float = 0.999) -> UsageResult:
    """Test ``domain`` of ``total`` requests against the stage's ``percent``.

    At 0 % and 100 % the answer is exact: every request must be on one side.
    With no requests at all nothing is consistent: no data never passes.
    """
    p = percent / 100.0
    if total <= 0:
        return UsageResult(False, domain, total, p, 0.0, confidence)
    p_value = binomial_p_value(domain, total, p)
    return UsageResult(p_value >= 1.0 - confidence, domain, total, p, p_value, confidence)

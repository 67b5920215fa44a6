"""The metrics gate under the null hypothesis: simulated windows in which the
domain is no worse than legacy, judged read by read by the gate itself
(rollout.gate.GateRun), abort no more often than each rule's level allows.

Deterministic: every simulation draws from a ``random.Random`` with a fixed
seed, so a run never depends on luck. What each test asserts is a bound
computed from its own statistics (a binomial upper quantile of the abort count
at the rule's level), which the real code meets by construction (Ville's
inequality), and does for that seed. Detection (how often and how fast a fault
aborts) is a benchmark's question (bench/sensitivity.py), not these tests'.

The thresholds are the defaults except three, each within what group data may
set (rollout/gate.py Thresholds._check_ranges):
- ``alpha`` 0.1, the largest allowed: at 0.1 false alarms are frequent enough
  to count in a few hundred or thousand windows, in seconds; the guarantee
  (Ville's inequality) holds at every alpha alike;
- ``p95_max_ratio`` 1 and ``domain_p95_min_increase_ms`` 0, the smallest
  allowed: the latency rule's null is then "domain P95 <= legacy P95", the
  tightest the rule may be asked to judge, so its bound and its test have no
  slack to hide a miscalibration behind.
"""

import bisect
import math
import random

import pytest

from rollout.gate import ABORT, GateRun, Thresholds
from rollout.sequential import log_e_rate
from rollout.window import Counters, Side
from tests.unit.metrics_body import BOUNDS

T = Thresholds.from_data({"alpha": 0.1, "p95_max_ratio": 1.0, "domain_p95_min_increase_ms": 0.0})
#: The tail each asserted count bound leaves: if the true false-alarm rate were
#: exactly at its bound, one seed in 1,000 would exceed it.
TAIL = 1e-3


def binomial_upper(trials: int, p: float, tail: float = TAIL) -> int:
    """The smallest count c with P(Binomial(trials, p) > c) <= tail."""
    log_p, log_q = math.log(p), math.log1p(-p)
    below = 0.0
    for c in range(trials + 1):
        below += math.exp(math.lgamma(trials + 1) - math.lgamma(c + 1) - math.lgamma(trials - c + 1)
                          + c * log_p + (trials - c) * log_q)
        if 1.0 - below <= tail:
            return c
    return trials


class Served:
    """One implementation's counters as the app keeps them: requests, server
    errors, and a request per latency bucket (the first bound >= its latency,
    examples/camera_api/src/api/metrics.py), read out cumulatively."""

    def __init__(self):
        self.requests = self.errors = 0
        self.per_bucket = [0] * len(BOUNDS)

    def serve(self, latency_ms: float, error: bool = False) -> None:
        self.requests += 1
        self.errors += error
        index = bisect.bisect_left(BOUNDS, latency_ms)
        if index < len(BOUNDS):
            self.per_bucket[index] += 1

    def side(self) -> Side:
        cumulative, buckets = 0, []
        for bound, count in zip(BOUNDS, self.per_bucket):
            cumulative += count
            buckets.append((float(bound), cumulative))
        return Side(self.requests, self.errors, tuple(buckets))


def side_aborts(run: GateRun) -> list[str]:
    """The side-by-side rules a finished run aborted on (none unless it aborted)."""
    return run.last.breached("side") if run.decided == ABORT else []


# --- the same distribution on both sides: every rule -------------------------------------------


#: One distribution for both: 1 % server errors, latency log-normal with a
#: median of 12 ms and a P95 of about 38 ms (between the 30 and 40 ms bounds).
ERROR_RATE, MEDIAN_MS, SIGMA = 0.01, 12.0, 0.7
#: A window: 30 reads of the traffic of a shape (below).
READS = 30


def alike_false_alarms(trials: int, rng: random.Random, percent: int, unforced: int, pairs: int) -> dict[str, int]:
    """Per side-by-side rule, how many of ``trials`` windows the gate aborts on
    it when domain and legacy draw from one distribution. Each read adds
    ``unforced`` requests, all the domain's (at stage ``percent`` 100; none at
    other stages), and ``pairs`` forced pairs."""
    aborts: dict[str, int] = {}
    for _ in range(trials):
        domain, legacy = Served(), Served()
        run = GateRun(T, percent, None)
        for read in range(1, READS + 1):
            for served, count in ((domain, unforced + pairs), (legacy, pairs)):
                for _ in range(count):
                    served.serve(rng.lognormvariate(math.log(MEDIAN_MS), SIGMA), rng.random() < ERROR_RATE)
            if run.observe(Counters("i-1", unforced * read, unforced * read, domain.side(), legacy.side())):
                break
        for rule in side_aborts(run):
            aborts[rule] = aborts.get(rule, 0) + 1
    return aborts


@pytest.mark.parametrize("percent, unforced, pairs", [
    (50, 0, 50),     # paired traffic alone: as many of each, the errors ratio test in play
    (100, 90, 10),   # stage 100, paired traffic: the domain serves ten times legacy's requests
])
def test_no_rule_aborts_more_often_than_alpha_when_domain_and_legacy_are_alike(percent, unforced, pairs):
    """Each side-by-side rule is an anytime-valid test at alpha: over windows
    in which domain and legacy are alike, read after read, the count of those
    it aborts stays under the binomial upper bound at alpha.

    At stage 100 legacy's few requests make its plain P95 a noisy estimate,
    often a bucket below the truth: a latency rule that took that estimate
    for its limit, instead of a confident upper bound, aborts about 40 % of
    these windows."""
    trials = 200
    aborts = alike_false_alarms(trials, random.Random(20240521), percent, unforced, pairs)
    # Ville's inequality bounds each rule's false alarms by alpha; a rule at
    # exactly alpha would exceed this bound (34 of 200) in one seed of 1,000.
    bound = binomial_upper(trials, T.alpha)
    assert all(count <= bound for count in aborts.values()), (aborts, bound)


# --- the latency rule at its least favourable null: its legacy bound at alpha / 2 ---------------

#: Legacy: 94.9 % of requests at 3.5 ms (the 4 ms bucket), the rest at 4.5 ms
#: (the 5 ms bucket): its P95 is 4.5 ms, just above the 4 ms bound.
LEGACY_FAST_SHARE, FAST_MS, SLOW_MS = 0.949, 3.5, 4.5


def allowed_slow(n: int, log_needed: float) -> int:
    """The most slow legacy requests out of ``n`` with which the 4 ms bound is
    still shown (its share of legacy above 95 % at e >= exp(log_needed)); -1: none."""
    slow = -1
    while slow < n and log_e_rate(n - slow - 1, n, 0.95) >= log_needed:
        slow += 1
    return slow


#: Any bound at level alpha needs e >= 1 / alpha (Ville's inequality): the laxest
#: evidence a correct rule could take, used below only to skip what cannot abort.
LOG_ANY_BOUND = math.log(1 / T.alpha)
#: Paired traffic, read every 3 pairs up to 200 (the anytime-valid tests may be
#: read as often as wanted, and more looks are more chances of a false alarm),
#: from the first read at which a bound could be shown at all: before it, legacy's
#: requests fall short of e >= 1 / alpha even when all are fast.
FIRST_READ = next(n for n in range(1, 1000) if allowed_slow(n, LOG_ANY_BOUND) >= 0)
LATENCY_READS = list(range(FIRST_READ, 202, 3))
#: A window whose legacy has more slow requests than any read of the window may
#: have for a bound (at e >= 1 / alpha) can no longer abort: slow requests only
#: accumulate. It ends there; that saves time and changes no outcome.
HOPELESS = max(allowed_slow(n, LOG_ANY_BOUND) for n in LATENCY_READS)


def false_bound_probability(log_needed: float) -> float:
    """The exact chance that legacy's P95 bound, tested at e >= exp(log_needed)
    on the reads of LATENCY_READS, ever lands on the 4 ms bound (below legacy's
    true P95): that some read has at most ``allowed_slow`` slow requests. The
    distribution of the slow count, request by request, the last state holding
    every count beyond the most any read allows (it can never cross again)."""
    allowed = {n: allowed_slow(n, log_needed) for n in LATENCY_READS}
    cap = max(allowed.values()) + 1
    p_slow = 1 - LEGACY_FAST_SHARE
    dist, crossed = [1.0] + [0.0] * cap, 0.0
    for n in range(1, LATENCY_READS[-1] + 1):
        dist = ([dist[0] * (1 - p_slow)]
                + [dist[k] * (1 - p_slow) + dist[k - 1] * p_slow for k in range(1, cap)]
                + [dist[cap] + dist[cap - 1] * p_slow])
        for k in range(allowed.get(n, -1) + 1):
            crossed, dist[k] = crossed + dist[k], 0.0
    return crossed


def latency_false_alarms(trials: int, rng: random.Random) -> int:
    """How many of ``trials`` windows the gate aborts on its P95 row, when every
    domain request takes legacy's P95 (SLOW_MS) and legacy's requests are fast
    with LEGACY_FAST_SHARE, paired, read at LATENCY_READS."""
    aborted = 0
    for _ in range(trials):
        domain, legacy = Served(), Served()
        run = GateRun(T, 50, None)
        pairs = slow = 0
        for read_at in LATENCY_READS:
            while pairs < read_at:
                fast = rng.random() < LEGACY_FAST_SHARE
                domain.serve(SLOW_MS)
                legacy.serve(FAST_MS if fast else SLOW_MS)
                slow, pairs = slow + (not fast), pairs + 1
            if slow > HOPELESS or run.observe(Counters("i-1", 0, 0, domain.side(), legacy.side())):
                break
        aborted += "p95 latency" in side_aborts(run)
    return aborted


def test_the_latency_rule_aborts_only_on_a_false_legacy_bound_at_alpha_over_2():
    """The latency rule's null at its edge: every domain request takes 4.5 ms,
    legacy's P95, so the domain's P95 equals legacy's, and the rule (domain P95
    <= 1 x legacy P95) must not abort. It would, and at once (every domain
    request is above 4 ms), exactly when legacy's confident P95 bound lands on
    the 4 ms bound, below its true P95. That bound is tested at alpha / 2
    (the other half is the domain test's, which cannot fire here: no domain
    request is above a correct bound), so the windows that abort are those
    where the legacy test at alpha / 2 falsely crosses: a chance computed
    exactly (``false_bound_probability``), at most alpha / 2 by Ville's
    inequality, and in fact under it (the e-value jumps past its threshold, and
    a window ends; 0.028 here).

    Why not the same distribution on both sides: there an abort needs a false
    legacy bound at a bucket where the domain's share above is near 5 %, which
    the domain's mixture test (its nearest alternative 1.25 x the odds) all but
    never rejects, so the false alarms are near zero whether the two parts run
    at alpha / 2 or at alpha. Here the domain side is certain, and the rate
    is the legacy bound's own: at alpha instead, it more than doubles."""
    trials = 2000
    aborted = latency_false_alarms(trials, random.Random(11))
    false_bound = false_bound_probability(math.log(2 / T.alpha))
    assert false_bound <= T.alpha / 2
    # The gate aborts exactly when the legacy bound is falsely low, so the count
    # is a draw of Binomial(trials, false_bound): about 56 (0.028 x 2000), at
    # most 80 but in one seed of 1,000 (this seed: 59). A legacy bound at alpha
    # would be false with 0.063: about 126 (this seed: 128).
    assert aborted <= binomial_upper(trials, false_bound), (aborted, false_bound)
    assert aborted > 0  # the windows do reach the rule: the bound above is not vacuous

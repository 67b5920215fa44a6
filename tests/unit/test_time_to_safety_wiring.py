"""The time-to-safety benchmark's simulation judges with the product's own code
(rollout/gate_check.py's pooled settle): a change there must not leave the
benchmark measuring something else. Its figures live in docs/benchmarks.md."""

import importlib.util
import sys
from pathlib import Path

from rollout.gate import Thresholds

SPEC = importlib.util.spec_from_file_location(
    "time_to_safety", Path(__file__).resolve().parents[2] / "bench" / "time_to_safety.py")
bench = importlib.util.module_from_spec(SPEC)
sys.modules["time_to_safety"] = bench  # its dataclasses look their module up
SPEC.loader.exec_module(bench)


def test_a_domain_failing_every_request_is_rolled_back_by_the_canary_gate():
    line = bench.Timeline()
    safe = bench.simulate_row(5, 5, bench.Fault("all", domain_errors=1.0), True, 1, line, Thresholds.from_data({}))
    # the canary's batch (15 s before its gate) aborts within its 60 s gate, then the rollback
    assert safe is not None and safe <= line.batch_overhead_s + line.batch_soak_s + line.rollback_s


def test_pooled_finds_a_fault_too_thin_for_each_host_first():
    t, line = Thresholds.from_data({}), bench.Timeline()
    fault = bench.FAULTS["errors=0.03"]
    alone = bench.simulate_row(10, 1, fault, False, 3, line, t)
    pooled = bench.simulate_row(10, 1, fault, True, 3, line, t)
    assert pooled is not None and (alone is None or pooled < alone)

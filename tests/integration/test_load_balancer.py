"""Issue 5 on a real fleet behind the sandbox's load balancer (nginx on loopback):
with the drain hooks of group_data/sandbox_lb.py, a stage in batches and a
rollback in halves lose no request of a client going through nginx; without
them, the same rollback does (the control: this test can fail)."""

from __future__ import annotations

import os

from fleetlib import run_rollout, run_sandbox, stages
from rollout_sandbox import lb
from rollout_sandbox.loadgen import LoadGenerator, summarize

FAST = ("--soak", "6s", "--batch-soak", "3s")


def test_batches_behind_the_load_balancer_lose_no_request(fleet):
    up = run_sandbox("up", "--hosts", str(len(fleet)), "--lb")
    assert up.returncode == 0, up.stderr[-3000:]
    try:
        load = LoadGenerator(lb.address(), rate=30, max_seconds=600).start()
        deployed = run_rollout("deploy", "sandbox", "--stage", "10", "--yes", *FAST)
        rolled_back = run_rollout("rollback", "sandbox")
        drained = summarize(load.stop())
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-2000:]
        assert rolled_back.returncode == 0, rolled_back.stdout[-3000:] + rolled_back.stderr[-2000:]
        assert f"sandbox lb drain {fleet[0].name}" in deployed.stdout  # the canary's batch
        assert "rollback batch 2/2" in rolled_back.stdout
        assert set(stages().values()) == {(0, 0)}
        assert drained["requests"] >= 500 and drained["posts"] > 0, drained
        assert drained["failed"] == 0, drained
        assert set(drained["statuses"]) == {"200"}, drained

        # The control: no hooks, so every host restarts at once behind nginx.
        run_rollout("deploy", "sandbox", "--stage", "10", "--yes", "--soak", "0", "--batch-soak", "0")
        load = LoadGenerator(lb.address(), rate=30, max_seconds=600).start()
        bare = run_rollout("rollback", "sandbox", env={**os.environ, "ROLLOUT_SANDBOX_NO_DRAIN": "1"})
        undrained = summarize(load.stop())
        assert bare.returncode == 0, bare.stdout[-3000:] + bare.stderr[-2000:]
        assert "rollback batch" not in bare.stdout
        assert undrained["failed"] > 0, undrained
    finally:
        # Back to the fleet the other tests expect: no balancer (the rollback left stage 0).
        reset = run_sandbox("lb", "stop")
        assert reset.returncode == 0, reset.stderr[-3000:]

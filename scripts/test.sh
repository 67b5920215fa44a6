#!/usr/bin/env bash
# The whole test suite: lint and types (scripts/lint.sh), unit tests (pure logic,
# pyinfra's @fake connector), the reference service's tests (real PostgreSQL and
# Redis on loopback) and the integration tests (pyinfra over SSH to a real
# systemd-nspawn fleet, checked with testinfra). The fleet is stopped at the end.
# A skipped test fails the run (conftest.py); every test is bounded (pytest-timeout).
#
# Three lanes at once. The integration tests mostly wait on a fleet (boots,
# restarts, gate windows), so they run in two lanes, each with a fleet of its own
# (its own bridge, subnet, host names, sandbox directory and load-balancer port;
# one fleet per lane, each module on one). Beside them, niced so they only take
# what the fleets leave idle, the tests that need no fleet. The other lanes'
# output follows the first's. With arguments, one pytest run of just those.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
bash scripts/setup.sh
echo "suite: set up after $(( $(date +%s) - started )) s"
status=0
bash scripts/lint.sh || status=$?
pytest=(.venv/bin/python -m pytest -v -p no:cacheprovider --durations=30)
export ROLLOUT_TESTS_NO_SKIP=1
#: The second lane's modules: about half the integration lane's time (the
#: durations printed at the end of each lane show the balance).
second_lane=(test_drills test_load_balancer test_prometheus_gate test_side_by_side test_stage_deploy
             test_production_safety test_autopilot)
if [ "$#" -gt 0 ]; then
    "${pytest[@]}" "$@" || status=$?
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    first=() second=()
    declare -A pids
    for module in tests/integration/test_*.py; do
        name=$(basename "$module" .py)
        if [[ " ${second_lane[*]} " == *" $name "* ]]; then second+=("$module"); else first+=("$module"); fi
    done
    nice -n 15 "${pytest[@]}" tests/unit sandbox/tests examples >"$out/unit" 2>&1 &
    pids=([unit]=$!)
    env ROLLOUT_SANDBOX_BRIDGE=rollout-br1 ROLLOUT_SANDBOX_SUBNET=10.231.8.0/24 ROLLOUT_SANDBOX_HOST_PREFIX=api- \
        ROLLOUT_SANDBOX_DIR="$PWD/.sandbox-lane2" ROLLOUT_SANDBOX_LB_PORT=8081 \
        ROLLOUT_STATE_DIR="$PWD/.sandbox-lane2/rollout-state" \
        "${pytest[@]}" "${second[@]}" >"$out/second" 2>&1 &
    pids[second]=$!
    "${pytest[@]}" "${first[@]}" || status=$?
    for lane in second unit; do
        lane_status=0
        wait "${pids[$lane]}" || lane_status=$?
        echo "=== lane $lane: exit $lane_status ==="
        cat "$out/$lane"
        [ "$lane_status" -eq 0 ] || status=$lane_status
    done
fi
elapsed=$(( $(date +%s) - started ))
echo "suite: $(( elapsed / 60 )) min $(( elapsed % 60 )) s, exit $status"
exit "$status"

#!/usr/bin/env bash
# The whole test suite: lint and types (scripts/lint.sh), unit tests (pure logic,
# pyinfra's @fake connector), the reference service's tests (real PostgreSQL and
# Redis on loopback) and the integration tests (pyinfra over SSH to a real
# systemd-nspawn fleet, checked with testinfra). The fleet is stopped at the end.
# A skipped test fails the run (conftest.py); every test is bounded (pytest-timeout).
#
# Two lanes at once: the integration tests, which mostly wait on the fleet (boots,
# restarts, gate windows), and beside them, niced so they only take what the
# fleet leaves idle, the tests that need no fleet. Their output follows the
# integration lane's. With arguments, one pytest run of just those.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
bash scripts/setup.sh
echo "suite: set up after $(( $(date +%s) - started )) s"
status=0
bash scripts/lint.sh || status=$?
pytest=(.venv/bin/python -m pytest -v -p no:cacheprovider --durations=30)
export ROLLOUT_TESTS_NO_SKIP=1
if [ "$#" -gt 0 ]; then
    "${pytest[@]}" "$@" || status=$?
else
    lane=$(mktemp)
    trap 'rm -f "$lane"' EXIT
    nice -n 15 "${pytest[@]}" tests/unit sandbox/tests examples >"$lane" 2>&1 &
    lane_pid=$!
    "${pytest[@]}" tests/integration || status=$?
    lane_status=0
    wait "$lane_pid" || lane_status=$?
    echo "=== the lane without a fleet (unit, sandbox, reference service): exit $lane_status ==="
    cat "$lane"
    [ "$lane_status" -eq 0 ] || status=$lane_status
fi
elapsed=$(( $(date +%s) - started ))
echo "suite: $(( elapsed / 60 )) min $(( elapsed % 60 )) s, exit $status"
exit "$status"

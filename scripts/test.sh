#!/usr/bin/env bash
# The whole test suite: lint and types (scripts/lint.sh), unit tests (pure logic,
# pyinfra's @fake connector), the reference service's tests (real PostgreSQL and
# Redis on loopback) and the integration tests (pyinfra over SSH to a real
# systemd-nspawn fleet, checked with testinfra). The fleet is stopped at the end.
# A skipped test fails the run (conftest.py); every test is bounded (pytest-timeout).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
bash scripts/setup.sh
echo "suite: set up after $(( $(date +%s) - started )) s"
status=0
bash scripts/lint.sh || status=$?
ROLLOUT_TESTS_NO_SKIP=1 .venv/bin/python -m pytest -v -p no:cacheprovider --durations=30 "$@" || status=$?
elapsed=$(( $(date +%s) - started ))
echo "suite: $(( elapsed / 60 )) min $(( elapsed % 60 )) s, exit $status"
exit "$status"

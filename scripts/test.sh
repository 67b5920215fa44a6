#!/usr/bin/env bash
# The whole test suite: unit tests (pure logic, pyinfra's @fake connector), the
# reference service's tests (real PostgreSQL and Redis on loopback) and the
# integration tests (pyinfra over SSH to a real systemd-nspawn fleet, checked
# with testinfra). The fleet is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -v -p no:cacheprovider "$@"

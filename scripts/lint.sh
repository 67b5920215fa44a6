#!/usr/bin/env bash
# Lint and type check, from the repository root with the venv's tools (the test
# extras: scripts/setup.sh installs them): ruff over the whole repository and
# mypy over the product, its deploy files and the sandbox, both as configured in
# pyproject.toml. Exits non-zero on any finding; both run either way. No cache
# is written into the work tree. VENV: another venv than .venv.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
venv=${VENV:-.venv}
if [ ! -x "$venv/bin/ruff" ] || ! "$venv/bin/python" -c "import mypy" 2>/dev/null; then
    echo "lint.sh: ruff or mypy missing in $venv (bash scripts/setup.sh installs them)" >&2
    exit 2
fi
status=0
echo "lint: ruff"
"$venv/bin/ruff" check --no-cache . || status=1
echo "lint: mypy"
"$venv/bin/python" -m mypy --cache-dir=/dev/null || status=1
exit "$status"

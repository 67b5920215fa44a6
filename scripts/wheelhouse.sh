#!/usr/bin/env bash
# Build the wheelhouse the autopilot installs on a control host without PyPI
# (tasks/autopilot.py, autopilot_wheelhouse): this checkout's wheel and the
# wheels of every dependency, for the Python that runs this script.
#
#   bash scripts/wheelhouse.sh DIR            # PYTHON=... to pick the interpreter
#
# Build on a machine like the control host (same CPU architecture, a Python of
# the same minor version, a glibc at least as old). The wheel is built from a
# copy of the checkout's files: a stale build/ folder never leaks into it.
set -euo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 DIR" >&2; exit 2; fi
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
target="$1"
mkdir -p "$target"
source_copy="$(mktemp -d)"
trap 'rm -rf "$source_copy"' EXIT
tar -C "$root" --exclude=./.git --exclude=./.venv --exclude=./.sandbox --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$source_copy" -xf -
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$target" "$source_copy"
ls "$target"/camera_rollout-*.whl >/dev/null
echo "wheelhouse: $target ($(ls "$target"/*.whl | wc -l) wheels)"

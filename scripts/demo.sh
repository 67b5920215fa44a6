#!/usr/bin/env bash
# The main job on the built-in sandbox fleet, from a fresh machine:
# install, boot 3 real systemd hosts, install the reference service at stage 0,
# apply stage 10 in batches (canary, quarter, rest; each checked and gated),
# and show where every host stands.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/rollout-sandbox up --hosts "${HOSTS:-3}"
.venv/bin/rollout deploy sandbox --stage 10 --yes
.venv/bin/rollout status sandbox
.venv/bin/rollout-sandbox status
echo "demo: the fleet keeps running; stop it with: .venv/bin/rollout-sandbox down"

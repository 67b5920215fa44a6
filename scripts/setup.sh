#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine (as root):
# the Debian packages for the sandbox fleet and a venv with the product and its
# test extras, the sandbox package and the reference service's test requirements.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages and the sandbox needs root)" >&2
    exit 2
fi

APT_PACKAGES=(systemd-container mmdebstrap openssh-client postgresql redis-server iproute2 curl python3-venv
              nginx-light prometheus prometheus-alertmanager chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # The packages' own services (PostgreSQL, Redis, nginx on port 80) must not start:
    # the sandbox runs its own instances. policy-rc.d 101 = "do not start".
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod 755 "$guard"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$guard" ]; then rm -f "$guard"; fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# The product with its tests' extras, the sandbox (its own distribution, the
# rollout-sandbox command) and the reference service's test requirements.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' -e ./sandbox \
    -r examples/camera_api/requirements-test.txt
echo "setup: ready (.venv/bin/rollout, .venv/bin/rollout-sandbox)"

"""Where a sandbox fleet lives comes from the environment: a second fleet on its
own bridge, subnet and host names stays clear of the first."""

import json
import os
import subprocess
import sys

SHOW = (
    "import json; from rollout_sandbox import settings as s; "
    "print(json.dumps({'bridge': s.BRIDGE, 'gateway': s.gateway(), 'first': [s.host_name(1), s.host_address(1)], "
    "'run_dir': str(s.RUN_DIR), 'max_hosts': s.max_hosts()}))"
)


def settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_SANDBOX_")}
    result = subprocess.run([sys.executable, "-c", SHOW], env={**clean, **env}, text=True,
                            capture_output=True, check=True)
    return json.loads(result.stdout)


def test_defaults():
    assert settings() == {"bridge": "rollout-br0", "gateway": "10.231.7.1", "first": ["camera-1", "10.231.7.11"],
                          "run_dir": "/var/lib/rollout-sandbox/rollout-br0", "max_hosts": 244}


def test_a_second_fleet_beside_the_first():
    second = settings(ROLLOUT_SANDBOX_BRIDGE="rollout-br9", ROLLOUT_SANDBOX_SUBNET="10.231.9.0/24",
                      ROLLOUT_SANDBOX_HOST_PREFIX="c9-")
    assert second == {"bridge": "rollout-br9", "gateway": "10.231.9.1", "first": ["c9-1", "10.231.9.11"],
                      "run_dir": "/var/lib/rollout-sandbox/rollout-br9", "max_hosts": 244}


def test_a_small_subnet_holds_few_hosts():
    assert settings(ROLLOUT_SANDBOX_SUBNET="10.231.9.0/27")["max_hosts"] == 20

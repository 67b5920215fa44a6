"""Example inventory for a real fleet. Copy it, name the hosts, and keep secrets
out of git: they are read here from the operator's environment (or a CI secret).

    pyinfra inventories/prod.py deploy.py --data stage=10
    rollout deploy prod --stage 10

Every host of this file is in group ``prod``: put environment-wide overrides in
``group_data/prod.py``. Hosts here need: systemd, python3, curl, SSH access as a
user that may sudo (or root), and the service's checkout + venv already installed
(see group_data/all.py for the paths).
"""

import os

from pyinfra.api.hiddenvalue import HiddenValue

_common = {
    "ssh_user": "deploy",
    "ssh_key": os.path.expanduser("~/.ssh/camera_api_deploy"),
    # Host keys must already be known: never trust on first use in production.
    "ssh_strict_host_key_checking": "yes",
    "_sudo": True,
}

# Read secrets from the environment at run time; HiddenValue keeps them masked
# should pyinfra ever print host data. They are written to the host's secrets
# env file (0640) and nowhere else.
for _name in ("database_url", "redis_url"):
    _value = os.environ.get(f"CAMERA_API_{_name.upper()}")
    if _value:
        _common[_name] = HiddenValue(_value)

camera_api = [
    ("api-1.prod.example.internal", dict(_common)),
    ("api-2.prod.example.internal", dict(_common)),
    ("api-3.prod.example.internal", dict(_common)),
    ("api-4.prod.example.internal", dict(_common)),
]

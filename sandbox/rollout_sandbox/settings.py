"""Where the sandbox lives and what its hosts are called, read once from the
environment.

- ``ROLLOUT_SANDBOX_BRIDGE`` (``rollout-br0``) and ``ROLLOUT_SANDBOX_SUBNET``
  (``10.231.7.0/24``): one fleet per bridge; PostgreSQL and Redis listen on the
  bridge's gateway address (the subnet's first address).
- ``ROLLOUT_SANDBOX_HOST_PREFIX`` (``camera-``): the hosts are ``<prefix>1``,
  ``<prefix>2``, ... systemd-nspawn names each host's interface on the bridge
  after it (``vb-<name>``), so a second fleet on the same machine needs its own.
- ``ROLLOUT_SANDBOX_PROJECT``: the project the sandbox serves
  (``inventories/sandbox.py``, ``group_data/sandbox*.py``, ``examples/camera_api``);
  by default the checkout this package sits in, else the nearest directory up
  from the working directory that has ``inventories/sandbox.py``. The deploy
  files (``deploy.py``, ``tasks/``, the defaults) are the product's own
  (``rollout.project.DEPLOY_ROOT``).
- ``ROLLOUT_SANDBOX_DIR`` (``<project>/.sandbox``): SSH key, known_hosts,
  ssh_config, ``fleet.json`` (what ``inventories/sandbox.py`` reads),
  ``secrets.json`` (0600).
- ``/var/lib/rollout-sandbox/<bridge>/``: the hosts' root file systems, the
  PostgreSQL and Redis data, the load balancer, logs, and ``owner.json`` naming
  the checkout whose fleet holds the bridge.
- ``ROLLOUT_SANDBOX_CACHE`` (``/var/cache/rollout-sandbox``): the cached base
  image and wheelhouse.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path


class SandboxError(RuntimeError):
    """A sandbox step that cannot go on; the message is one line for the operator."""


def log(message: str) -> None:
    print(f"[sandbox] {message}", flush=True)


def _project_root() -> Path:
    explicit = os.environ.get("ROLLOUT_SANDBOX_PROJECT")
    if explicit:
        return Path(explicit).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "inventories" / "sandbox.py").is_file():
        return checkout
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / "inventories" / "sandbox.py").is_file():
            return directory
    return here


PROJECT_ROOT = _project_root()
APP_SOURCE = PROJECT_ROOT / "examples" / "camera_api"

BRIDGE = os.environ.get("ROLLOUT_SANDBOX_BRIDGE", "rollout-br0")
SUBNET = ipaddress.ip_network(os.environ.get("ROLLOUT_SANDBOX_SUBNET", "10.231.7.0/24"))
HOST_PREFIX = os.environ.get("ROLLOUT_SANDBOX_HOST_PREFIX", "camera-")
STATE_DIR = Path(os.environ.get("ROLLOUT_SANDBOX_DIR", PROJECT_ROOT / ".sandbox"))
RUN_DIR = Path("/var/lib/rollout-sandbox") / BRIDGE
CACHE_DIR = Path(os.environ.get("ROLLOUT_SANDBOX_CACHE", "/var/cache/rollout-sandbox"))

#: Host addresses start at the subnet's 11th address (the gateway is the first).
FIRST_HOST_OFFSET = 10


def gateway() -> str:
    return str(SUBNET.network_address + 1)


def host_address(index: int) -> str:
    return str(SUBNET.network_address + FIRST_HOST_OFFSET + index)


def host_name(index: int) -> str:
    return f"{HOST_PREFIX}{index}"


def max_hosts() -> int:
    """How many hosts the subnet holds (addresses up to the last before broadcast)."""
    return max(0, SUBNET.num_addresses - 2 - FIRST_HOST_OFFSET)


# --- small records on disk -----------------------------------------------------------


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: dict, mode: int = 0o644) -> None:
    """Write ``data`` atomically (a temporary file renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.chmod(temp, mode)
    os.replace(temp, path)

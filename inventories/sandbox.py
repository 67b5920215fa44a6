"""The local sandbox fleet booted by ``rollout-sandbox up`` (real Debian hosts with
systemd as PID 1, on a private bridge; the sandbox package, camera-rollout-sandbox).
Read from ``.sandbox/fleet.json``.

    rollout-sandbox up --hosts 3
    pyinfra inventories/sandbox.py deploy.py --data stage=10
"""

import os as _os

from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.hiddenvalue import HiddenValue

import rollout.project as _project
from rollout_sandbox import lb as _lb
from rollout_sandbox.fleet import load_fleet as _load_fleet
from rollout_sandbox.services import service_urls as _service_urls

_fleet = _load_fleet()
if not _fleet.get("hosts"):
    raise PyinfraError("no sandbox fleet is up: run `rollout-sandbox up` first")

# The gate reads the app's JSON endpoint unless an inventory says
# metrics_provider = "prometheus"; this is the fleet's own Prometheus (on the
# bridge, scraping every 2 s, started by `rollout-sandbox up`), so a window of
# 6 s holds three scrapes. Host data here, not group_data/sandbox.py: group data
# is read by tools that have no fleet (and no rollout_sandbox) to ask.
_prometheus = {**_project.defaults()["prometheus"],
               "url": (_fleet.get("monitoring") or {}).get("prometheus_url"), "min_window_s": 6}

# Wrapped so that pyinfra prints *MASKED* should it ever print host data.
_urls = {key: HiddenValue(value) for key, value in _service_urls().items()}

camera_api = [
    (
        host["name"],
        {
            "ssh_hostname": host["address"],
            # root, or a non-root sudoer with root's login refused (`rollout-sandbox ssh-login deploy`).
            "ssh_user": _fleet.get("ssh_user") or "root",
            "_sudo": (_fleet.get("ssh_user") or "root") != "root",
            "ssh_key": _fleet["ssh_key"],
            "ssh_known_hosts_file": _fleet["known_hosts"],
            "ssh_strict_host_key_checking": "yes",
            # The reference service's wheels (rollout_sandbox/install_app.py).
            "wheelhouse_dir": _fleet["wheelhouse"],
            **_urls,
            "prometheus": _prometheus,
        },
    )
    for host in _fleet["hosts"]
]

# With the sandbox's load balancer up (`rollout-sandbox up --lb`), the hosts are
# also in group sandbox_lb: group_data/sandbox_lb.py drains each batch from it.
# (ROLLOUT_SANDBOX_NO_DRAIN=1: the zero-downtime drill's control run, no hooks.)
if _lb.master_pid() is not None and not _os.environ.get("ROLLOUT_SANDBOX_NO_DRAIN"):
    sandbox_lb = [host["name"] for host in _fleet["hosts"]]

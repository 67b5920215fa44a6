"""The sandbox behind its load balancer (``rollout-sandbox up --lb``): nginx on the
control machine's loopback. Like Ansible's rolling-update playbook, each batch is
taken out of the pool before its restart and put back once it is healthy and
judged, so a client of the load balancer never meets a restarting host.

``rollout-sandbox lb drain`` returns only when nginx can no longer send a request
to the drained hosts (its old workers finished theirs); it refuses to drain the
last host serving.
"""

import shlex
import sys

batch_hooks = {
    "before": [f"{shlex.quote(sys.executable)} -m rollout_sandbox lb drain {{hosts}}"],
    "after": [f"{shlex.quote(sys.executable)} -m rollout_sandbox lb enable {{hosts}}"],
}
#: A rollback behind the load balancer goes in two halves so that one half always
#: serves; without a load balancer every host rolls back at once (the default).
rollback_batches = "50%"
#: The hooks reach the same sandbox as the run: a second fleet beside the first
#: (its own bridge, directory and load-balancer port) is named by these.
hook_env = ["ROLLOUT_SANDBOX_BRIDGE", "ROLLOUT_SANDBOX_SUBNET", "ROLLOUT_SANDBOX_HOST_PREFIX",
            "ROLLOUT_SANDBOX_DIR", "ROLLOUT_SANDBOX_LB_PORT", "ROLLOUT_SANDBOX_PROJECT", "ROLLOUT_SANDBOX_CACHE"]

"""Global rollback: ``USE_DOMAIN_SERVICE=false``, ``ROLLOUT_PERCENT=0``, restart,
health, then proof that legacy answers every endpoint.

    pyinfra inventories/prod.py tasks/rollback.py

The same task as any stage (tasks/stage.py), at stage 0.
"""

from pyinfra import host

from rollout import hoststate
from rollout.stages import ROLLBACK_STAGE
from tasks import checks
from tasks.entry import begin
from tasks.stage import apply_stage, require_secrets

begin()

# The host's state in one read; the lock check and the stage task decide from it.
known = hoststate.read(host)
# The CLI's rollback takes the lock itself (take_lock) for this one run.
checks.lock(action="acquire" if host.data.get("take_lock") else "check", known=known)
require_secrets(known=known)
apply_stage(stage=ROLLBACK_STAGE, known=known)
if host.data.checks:
    checks.prove_legacy()
checks.record(target_stage=ROLLBACK_STAGE)
if host.data.get("take_lock"):
    checks.lock(action="release")

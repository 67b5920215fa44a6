"""Global rollback: ``USE_DOMAIN_SERVICE=false``, ``ROLLOUT_PERCENT=0``, restart, health.

    pyinfra inventories/prod.py tasks/rollback.py

The same task as any stage (tasks/stage.py), at stage 0. Proving that every
endpoint is back on the legacy implementation is the CLI's ``rollout rollback``.
"""

from rollout.stages import ROLLBACK_STAGE
from tasks.stage import apply_stage

apply_stage(ROLLBACK_STAGE)

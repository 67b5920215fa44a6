"""Set one rollout stage on every host of an inventory.

    pyinfra inventories/prod.py deploy.py --data stage=10

1. refuse a missing or unknown stage before any operation is planned;
2. (sandbox only, ``install_app``) install the reference service;
3. write the stage into the service's EnvironmentFile, atomically;
4. restart the unit only if one of its files changed, then wait for health.

Host batches, checks and the metrics gate are driven from the ``rollout`` CLI.
"""

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError

from rollout.render import check_app_env
from rollout.stages import StageError, parse_stage
from tasks.stage import apply_stage

try:
    stage = parse_stage(host.data.get("stage"), host.data.stage_plan)
    check_app_env(host.data.get("app_env") or {})
except (StageError, ValueError) as error:
    raise PyinfraError(str(error)) from None

app_changes = ()
if host.data.get("install_app"):
    from tasks.app import install_app

    app_changes = install_app()

apply_stage(stage, also_restart_on=app_changes)

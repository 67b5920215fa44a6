"""Set one rollout stage on every host of an inventory, and judge it.

    pyinfra inventories/prod.py deploy.py --data stage=10

1. refuse a missing or unknown stage (or a bad setting) before any operation;
   the secrets file is left as it is on the host unless ``write_secrets`` is on
   (then every secret must have a value);
2. record the P95 the host serves now: the baseline of the gate;
3. write the stage into the service's EnvironmentFile, atomically; restart the
   unit only if one of its files changed; wait for health;
4. preparation check -> endpoint verification -> metrics gate over ``soak_s``;
5. on a failed check: roll that host back to stage 0, prove that legacy answers
   every endpoint, and fail the run with the reason.

Steps 2 and 4-5 run when ``checks`` is on (the default). Host batches, the
recorded history and promotion live in the ``rollout`` CLI.
"""

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError

from rollout import hoststate
from rollout.stages import ROLLBACK_STAGE, StageError, parse_stage
from tasks import checks
from tasks.entry import begin
from tasks.stage import apply_stage, require_secrets

begin()
try:
    stage = parse_stage(host.data.get("stage"), host.data.stage_plan)
except StageError as error:
    raise PyinfraError(str(error)) from None

# The host's state before this run changes anything, in one read: lock, files,
# running process, unit, health. The lock check, the baseline and the stage
# decide from it.
known = hoststate.read(host)
# What the checks conclude on this host, for its record.
verdicts: dict = {}

# A rollout driven by the CLI holds the fleet's lock; anyone else is refused.
checks.lock(action="check", known=known)
require_secrets(known=known)

if host.data.checks:
    checks.record_baseline(to_stage=stage, known=known)

apply_stage(stage=stage, known=known)

rolled_back = None
if host.data.checks:
    failed = checks.after_stage(stage, verdicts)
    if host.data.rollback_on_abort and stage != ROLLBACK_STAGE:
        # No ``known``: the files and the process may have changed in this run.
        apply_stage(stage=ROLLBACK_STAGE, _if=[failed])
        checks.prove_legacy(_if=[failed])
        rolled_back = failed

checks.record(target_stage=stage, verdicts=verdicts, rolled_back=rolled_back)

if host.data.checks:
    checks.fail(
        name=f"Stage {stage} failed its checks",
        reason=(
            f"stage {stage} failed its checks"
            + (": rolled back to stage 0" if host.data.rollback_on_abort and stage else "")
        ),
        _if=[failed],
    )

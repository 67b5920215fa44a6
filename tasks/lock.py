"""The fleet's rollout lock, alone (the ``rollout`` CLI holds it across its runs):

    pyinfra inventories/ENV.py tasks/lock.py --data lock_action=acquire --data lock_token=T
    pyinfra inventories/ENV.py tasks/lock.py --data lock_action=release --data lock_token=T
    pyinfra inventories/ENV.py tasks/lock.py --data lock_action=release --data break_lock=true
"""

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError

from rollout import hoststate
from tasks import checks
from tasks.entry import begin

begin()
action = host.data.get("lock_action") or "check"
if action not in ("acquire", "check", "release"):
    raise PyinfraError(f"lock_action must be acquire, check or release, got {action!r}")
checks.lock(action=action, known=hoststate.read(host) if action == "check" else None)

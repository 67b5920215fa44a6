"""The watch's own bookkeeping, kept on every host beside the records: the keys
of the alerts it has sent (so a later tick, on this control machine or another,
never sends one twice). Written by ``rollout watch`` (rollout/controller.py):

    pyinfra inventories/ENV.py tasks/watch_state.py --data 'watch_state={"sent": [...]}'
"""

from pyinfra import host
from pyinfra.operations import python

from rollout import hoststate
from tasks.entry import begin

begin()
python.call(name="Keep the watch's sent alerts on the host", function=hoststate.write_watch_state,
            content=host.data.get("watch_state") or {})

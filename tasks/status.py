"""Where each host stands, as a ``status`` report per host in ``report_dir``
(``rollout status ENV`` prints it as a table). Reads only: writes nothing on a host."""

from pyinfra import host

from rollout import hoststate
from tasks.entry import begin

begin()
# One read of the host's state (with the last records), written as the report
# before any operation: there is none.
hoststate.write_status(host, hoststate.read(host, history=hoststate.STATUS_HISTORY))

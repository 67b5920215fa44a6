"""Where each host stands, as a ``status`` report per host in ``report_dir``
(``rollout status ENV`` prints it as a table). Reads only: writes nothing."""

from rollout import operations as ops
from tasks.entry import begin

begin()
ops.read_status(name="Read the rollout status")

"""Where each host stands, as a ``status`` report per host in ``report_dir``
(``rollout status ENV`` prints it as a table). Reads only: writes nothing."""

from pyinfra.operations import python

from rollout import checks
from tasks.entry import begin

begin()
python.call(name="Read the rollout status", function=checks.status_check)

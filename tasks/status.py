"""Where each host stands, as a ``status`` report per host in ``report_dir``
(``rollout status ENV`` prints it as a table)."""

from rollout import operations as ops
from tasks.checks import install_probe

install_probe()
ops.read_status(name="Read the rollout status")

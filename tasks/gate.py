"""The metrics gate alone, on what the hosts serve now:
``pyinfra inventories/ENV.py tasks/gate.py [--data soak_s=60]``.

Judges only: rolling back on an abort is deploy.py's (or the CLI's) decision."""

from tasks.checks import gate
from tasks.entry import begin

begin()
gate()

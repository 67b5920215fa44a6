"""The preparation check alone: ``pyinfra inventories/ENV.py tasks/preflight.py``.

One row per host and check; a non-zero exit on any failure."""

from tasks.checks import preflight
from tasks.entry import begin

begin()
preflight()

"""The endpoint verification alone: ``pyinfra inventories/ENV.py tasks/verify.py``
(``--data verify_read_only=true`` for the GET endpoints only)."""

from tasks.checks import verify
from tasks.entry import begin

begin()
verify()

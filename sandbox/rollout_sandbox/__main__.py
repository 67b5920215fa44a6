"""``python -m rollout_sandbox`` is the ``rollout-sandbox`` command."""

from rollout_sandbox.cli import main

main()

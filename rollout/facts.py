"""The pyinfra fact of this package: a host's whole rollout state in one read."""

from __future__ import annotations

import json

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from rollout.probe import probe_command


class HostState(FactBase):
    """
    The host's rollout state, read by the probe in one call (rollout/hostprobe.py,
    mode ``state``): the lock holder; per managed file its type, owner, group,
    mode and, as asked, sha256 and the names of the variables it sets (never a
    value); the rollout env file's switch; the running main process's switch;
    the unit's active, sub and enabled state and MainPID; health; the current
    record, the baseline, and the last ``history`` records. ``spec``: see
    ``rollout.hoststate.state_spec``. Read once per host by the entry file and
    passed to the operations (pyinfra runs a fact's command on each call).
    """

    def command(self, spec: dict):
        return probe_command("state", spec)

    def process(self, output):
        try:
            return json.loads("\n".join(output))
        except ValueError:
            raise FactProcessError("the probe's state answer is not JSON") from None


class Tree(FactBase):
    """
    What a directory holds, read by the probe (mode ``tree``): per file under
    ``path`` its sha256, owner, group and mode, per directory its owner, group
    and mode, by relative path; None when the directory does not exist.
    """

    def command(self, path: str):
        return probe_command("tree", {"path": path})

    def process(self, output):
        try:
            return json.loads("\n".join(output))
        except ValueError:
            raise FactProcessError("the probe's tree answer is not JSON") from None

"""What every pyinfra entry file (deploy.py, tasks/*.py) does first, per host."""

from __future__ import annotations

import sys

from pyinfra import host
from pyinfra.api.exceptions import PyinfraError

from rollout.inputs import InputError, check_connection, check_secrets_for_writing, check_settings, settings_of
from rollout.reports import report


def begin(writes_secrets: bool = False) -> None:
    """Refuse a bad setting before any operation is planned (the CLI has checked
    them before connecting; a plain pyinfra run is checked here), then mark the
    host as reached: the CLI names the hosts of a run that never got this far."""
    try:
        check_connection(host.name, host.data.get)
        settings = settings_of(host.data.get)
        check_settings(settings)
        if writes_secrets or settings["write_secrets"]:
            check_secrets_for_writing(settings["secret_variables"], host.data.get)
    except InputError as error:
        raise PyinfraError(str(error)) from None
    report(host, "reached", {})


def run_command() -> str:
    """What this run is, for the lock and the records: the CLI's own words when
    it drives the run, else pyinfra's inventory and deploy files. Never the
    ``--data`` values: a secret may have been passed there."""
    files = [arg for arg in sys.argv[1:] if arg.endswith(".py") and not arg.startswith("-")]
    return host.data.get("command") or "pyinfra " + " ".join(files)

"""What a run tells the operator and the CLI about a host: log lines, and one
JSON report per host and check in ``report_dir`` (never a secret in either)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pyinfra import logger


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def say(host, message: str, error: bool = False) -> None:
    host.log(message, logger.error if error else logger.info)


def report(host, check: str, payload: dict) -> None:
    """One JSON file per host and check, for the CLI and CI (never a secret in it)."""
    directory = host.data.get("report_dir")
    if not directory:
        return
    path = Path(directory) / f"{host.name}.{check}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"host": host.name, "check": check, "time": now(), **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))

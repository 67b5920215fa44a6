#!/usr/bin/env python3
"""Fault drills on the sandbox: runs tests/integration/test_drills.py (the same
tests CI runs) and prints their report as a Markdown table: scenario, expected,
observed, data lost.

    sudo .venv/bin/python drills/faults.py [--hosts 4] [--markdown docs/drills-latest.md]

Exit status: pytest's (0 only when every drill passed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table(rows: list[dict], header: str) -> str:
    lines = [header, "", "| scenario | expected | observed | data lost | result |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        cells = [row.get("scenario", row["test"]), row.get("expected", "-"), row.get("observed", "(failed before "
                 "its report)"), row.get("data_lost", "-"), "pass" if row.get("passed") else "FAIL"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=4, help="sandbox hosts (the tests' fleet size)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("-k", dest="select", help="only the drills matching this pytest -k expression")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "drills.json"
        env = {**os.environ, "ROLLOUT_DRILL_REPORT": str(report), "ROLLOUT_TEST_HOSTS": str(options.hosts)}
        args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/integration/test_drills.py"]
        if options.select:
            args += ["-k", options.select]
        code = subprocess.run(args, cwd=ROOT, env=env).returncode
        rows = json.loads(report.read_text()) if report.exists() else []
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = table(rows, f"Fault drills, {stamp}, {platform.node()} ({os.cpu_count()} cores, "
                       f"{platform.machine()}), {options.hosts} sandbox hosts; pytest exit {code}")
    print(text)
    if options.markdown:
        Path(options.markdown).write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main())

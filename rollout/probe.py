"""Run the on-host probe (rollout/hostprobe.py) over a run's own SSH connection.

The probe's source travels inside each command (compressed), so nothing is ever
uploaded to a host to read its state: a ``--dry`` run writes nothing. Its spec
goes on stdin (``probe``), or base64 in the command itself when there is no
stdin (a pyinfra fact, a testinfra or ssh command: ``probe_argv``).
"""

from __future__ import annotations

import base64
import functools
import json
import shlex
import zlib
from pathlib import Path
from typing import Any

from pyinfra.api import QuoteString, StringCommand

#: The probe's source, run on the host by its own python3: the comparison of
#: paired answers, then the probe (which finds it there, not as an import).
PROBE_SOURCES = (Path(__file__).with_name("responses.py"), Path(__file__).with_name("hostprobe.py"))
#: An argument that names the probe in the host's process list (and in tests).
PROBE_NAME = "camera-rollout-probe"


class ProbeError(RuntimeError):
    """The probe could not run on a host; one line."""


@functools.cache
def _probe_program() -> str:
    source = b"\n".join(path.read_bytes() for path in PROBE_SOURCES)
    packed = base64.b64encode(zlib.compress(source, 9)).decode()
    return f'import base64,zlib;exec(zlib.decompress(base64.b64decode("{packed}")))'


def probe_argv(mode: str, spec: dict | None = None) -> list[str]:
    """The probe's command line; with ``spec``, the spec is its last argument."""
    argv = ["python3", "-c", _probe_program(), PROBE_NAME, mode]
    if spec is not None:
        argv.append(base64.b64encode(json.dumps(spec, sort_keys=True).encode()).decode())
    return argv


def probe_shell(mode: str, spec: dict) -> str:
    """``probe_argv`` as one shell command line (for testinfra or ssh)."""
    return shlex.join(probe_argv(mode, spec))


def probe_command(mode: str, spec: dict | None = None, stdin: dict | None = None) -> StringCommand:
    """``probe_argv`` as a pyinfra command; ``stdin``: the spec, sent on the
    command's stdin instead (never on its command line: a file's content)."""
    # No terminal with stdin, whatever the inventory's _get_pty: a pty echoes what
    # it is given, and a file's content (a secret) would come back as output.
    arguments: dict[str, Any] = {"_stdin": json.dumps(stdin), "_get_pty": False} if stdin is not None else {}
    return StringCommand(*(QuoteString(arg) for arg in probe_argv(mode, spec)), **arguments)


def parse_answer(mode: str, stdout: str) -> Any:
    try:
        return json.loads(stdout)
    except ValueError:
        raise ProbeError(f"probe {mode} answered no JSON") from None


def probe(host, mode: str, spec: dict, timeout: float = 300) -> Any:
    """Run the probe on ``host``; the spec goes over stdin, the answer is JSON."""
    ok, output = host.run_shell_command(
        probe_command(mode), _stdin=json.dumps(spec), _timeout=timeout, _sudo=bool(host.data.get("_sudo")),
        _get_pty=False,
    )
    if not ok:
        detail = (output.stderr_lines or ["no output"])[-1]
        raise ProbeError(f"probe {mode} failed: {detail}")
    return parse_answer(mode, output.stdout)

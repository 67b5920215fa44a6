"""The operator's hooks, run on the control machine: the batch hooks around each
batch (``batch_hooks``: drain a load balancer, put the hosts back) and the
confirm hooks before a promotion (``confirm_hooks``). One runner for every kind:

- the placeholders are filled in shell-quoted (``rollout.batches.fill``:
  ``{hosts}`` is each host name quoted, space separated), so no value of an
  inventory is ever run as shell;
- the hook gets a minimal environment: ``PATH``, ``HOME``, the user, the
  locale, ``TZ``, ``TMPDIR``, and the names listed in ``hook_env``. Nothing
  else of the control machine's environment: not the secrets an inventory reads
  (``CAMERA_API_*``), not the alert sinks' webhook URLs;
- it is bounded: killed with its whole process group after its timeout;
- its result is one line: ``exit N: <its last line of output>``, or ``no
  answer within Ns``; the hook's words stay in the run's output, never in an
  alert.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

#: What a hook gets of the control machine's environment, besides ``hook_env``.
MINIMAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
#: PATH when the control machine's has none.
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def environment(passthrough: Iterable[str] = (), source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a hook runs with: MINIMAL_ENV, the locale's ``LC_*``, and
    the ``passthrough`` names (``hook_env``), as far as ``source`` (this
    process's environment) has them."""
    source = os.environ if source is None else source
    wanted = set(MINIMAL_ENV) | set(passthrough)
    env = {key: value for key, value in source.items() if key in wanted or key.startswith("LC_")}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def run(command: str, cwd: Path | str, timeout_s: float, passthrough: Iterable[str] = ()) -> tuple[bool, str]:
    """One hook: (exited 0 within ``timeout_s``, one line saying how it ended)."""
    process = subprocess.Popen(["bash", "-c", command], cwd=cwd, text=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(passthrough),
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # Its own process group, by its own id: a hook's children die with it and
        # release the pipes (communicate would wait for them otherwise).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        return False, f"no answer within {timeout_s:g}s (killed)"
    lines = (out.strip() or err.strip()).splitlines() if process.returncode == 0 else \
        (err.strip() or out.strip()).splitlines()
    return process.returncode == 0, f"exit {process.returncode}: {lines[-1] if lines else ''}"

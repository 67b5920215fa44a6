"""Processes, by their own id: commands run, command lines and children read
from /proc, waits for a process to go or a port to answer. Nothing is ever
killed by pattern; the callers check a process's command line before signalling
it. Shared by the fleet, its services and its load balancer.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from rollout_sandbox.settings import SandboxError


def run(cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd``; with ``check``, a failure becomes one SandboxError line."""
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SandboxError(f"{' '.join(cmd[:3])} failed: {detail[-1] if detail else result.returncode}")
    return result


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (empty when it is gone)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited; False when it is still there at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        try:
            # Reap it if it is our child; otherwise it disappears on its own.
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()


def wait_port(address: str, port: int, timeout_s: float, what: str) -> None:
    """Wait until something accepts TCP connections on ``address:port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise SandboxError(f"{what} at {address}:{port} did not answer within {timeout_s:.0f} s") from error
            time.sleep(0.1)

"""pyinfra operations this package needs beyond pyinfra's own.

Small generator functions in pyinfra's style: facts are read first, commands are
yielded only for what differs.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from io import StringIO

from pyinfra import host, logger, state
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.operations.util.files import generate_color_diff
from pyinfra.facts.files import File, FileContents, Sha256File

from rollout.facts import HttpStatus


@operation()
def atomic_file(
    dest: str,
    content: str,
    user: str = "root",
    group: str = "root",
    mode: int = 644,
    secret: bool = False,
):
    """
    Install ``content`` at ``dest`` atomically: upload beside it, set owner and
    mode on the temporary file, then ``mv`` it over ``dest`` (a rename within one
    directory), so a reader or a crash never sees a half-written file.

    + dest: remote path
    + content: full text of the file
    + user/group/mode: owner and permissions (mode as in ``chmod``, e.g. 640)
    + secret: never show the content, not even with ``--diff``
    """
    remote = host.get_fact(File, path=dest)
    remote_sum = host.get_fact(Sha256File, path=dest) if remote else None
    local_sum = hashlib.sha256(content.encode()).hexdigest()

    same_content = remote_sum == local_sum
    same_meta = bool(remote) and (
        remote["user"] == user and remote["group"] == group and remote["mode"] == mode
    )
    if same_content and same_meta:
        host.noop(f"{dest} is up to date")
        return

    if state.config.DIFF:
        verb = "Will modify" if remote else "Will create"
        if secret:
            host.log(f"{verb} {dest} (secret: contents not shown)", logger.info)
        elif not same_content:
            host.log(f"{verb} {dest}", logger.info)
            old = []
            if remote:
                old = [line + "\n" for line in host.get_fact(FileContents, path=dest) or []]
            for line in generate_color_diff(old, content.splitlines(keepends=True)):
                logger.info("  %s", line)
        if not same_meta:
            logger.info("  owner/mode -> %s:%s %s", user, group, mode)

    # Same directory as dest, so the final mv is a rename on one filesystem.
    temp = posixpath.join(posixpath.dirname(dest), f".{posixpath.basename(dest)}.rollout-tmp")
    yield StringCommand("rm", "-f", temp)
    yield FileUploadCommand(StringIO(content), temp)
    yield StringCommand(
        " && ".join(
            [
                f"chown {shlex.quote(user)}:{shlex.quote(group)} {shlex.quote(temp)}",
                f"chmod {mode:03d} {shlex.quote(temp)}",
                f"mv -f {shlex.quote(temp)} {shlex.quote(dest)}",
            ]
        )
    )


@operation(is_idempotent=False)
def restart_unit(unit: str):
    """
    Restart a systemd unit. Guard it with ``_if=`` (evaluated at run time) so it
    runs only when one of the unit's files changed.

    + unit: the unit name, e.g. ``camera-api.service``
    """
    yield StringCommand("systemctl", "restart", unit)


@operation(is_idempotent=False)
def wait_healthy(url: str, timeout_s: int = 60, unit: str | None = None):
    """
    Make sure ``url`` answers HTTP 200 on the host: nothing to do when it already
    does; otherwise wait, bounded, and fail with a clear message when it does not
    within ``timeout_s``. Checked on every run, so a host left unhealthy by an
    earlier run is never reported as fine.

    + url: health URL as seen from the host itself
    + timeout_s: upper bound on the wait, in seconds
    + unit: unit whose failure ends the wait early
    """
    if host.get_fact(HttpStatus, url=url) == 200:
        host.noop(f"{url} answers 200")
        return
    # Each curl is capped at 2 s, the loop at timeout_s by the clock; a unit that
    # systemd gave up on (start limit hit) fails at once.
    gave_up = ""
    if unit:
        gave_up = (
            f"if systemctl is-failed --quiet {shlex.quote(unit)}; then "
            f"echo \"{unit} failed (see: journalctl -u {unit})\" >&2; exit 1; fi; "
        )
    script = (
        f"deadline=$(( $(date +%s) + {int(timeout_s)} )); "
        f"until curl -fs -o /dev/null --max-time 2 {shlex.quote(url)}; do "
        f"{gave_up}"
        f"if [ $(date +%s) -ge $deadline ]; then "
        f"echo \"{unit or 'service'} not healthy after {int(timeout_s)}s: {url}\" >&2; exit 1; fi; "
        f"sleep 0.2; done"
    )
    yield StringCommand("sh", "-c", shlex.quote(script))


@operation()
def pip_install_offline(venv: str, wheelhouse: str, requirements: str, fingerprint: str):
    """
    Install ``requirements`` into ``venv`` from a wheelhouse on the host (no index).
    Idempotent by a marker holding ``fingerprint`` (of the requirements and the
    wheels), written only after pip succeeded, so a failed install is retried by
    the next run instead of being hidden behind an unchanged upload.

    + venv: the virtualenv directory
    + wheelhouse: directory of wheels on the host
    + requirements: requirements file on the host
    + fingerprint: identifies what should be installed
    """
    marker = f"{venv}/.rollout-installed"
    if (host.get_fact(FileContents, path=marker) or [None])[0] == fingerprint:
        host.noop(f"dependencies in {venv} are up to date")
        return
    yield StringCommand(
        f"{shlex.quote(venv)}/bin/pip install --quiet --no-index --find-links "
        f"{shlex.quote(wheelhouse)} -r {shlex.quote(requirements)} "
        f"&& echo {shlex.quote(fingerprint)} > {shlex.quote(marker)}"
    )

"""pyinfra operations this package needs beyond pyinfra's own.

Small generator functions in pyinfra's style: commands are yielded only for what
differs. They decide from the host's state read once per host before any
operation (``known``: the HostState fact, see rollout/hoststate.py), or, given
``known=None``, from the state read when they run: an operation after a change
this run made to the same thing (a rollback after a failed check) must not
decide from what was there before it.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import posixpath
import shlex
from collections.abc import Sequence

from pyinfra import host, logger, state
from pyinfra.api import FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import FileContents
from pyinfra.operations.util.files import generate_color_diff

from rollout import checks, hoststate
from rollout.probe import probe_command


def when(*conditions):
    """``_if`` for an operation inside a deploy function: pyinfra lets an
    operation's own ``_if`` replace the enclosing deploy's, so carry that over
    (``apply_stage(0, _if=[failed])`` must skip every one of its operations)."""
    deploy_kwargs = host.current_deploy_kwargs
    inherited = (deploy_kwargs.get("_if") if deploy_kwargs else None) or []
    return [*(inherited if isinstance(inherited, list) else [inherited]), *conditions]


def _state(known: dict | None, secrets_checksum: bool | None = None) -> dict | None:
    """``known``, or the host's state read now."""
    return known if known is not None else hoststate.read(host, secrets_checksum=secrets_checksum)


def _changed(operations: Sequence[OperationMeta]) -> bool:
    """Did any of these operations change something (False before they ran)?"""
    return any(op.is_complete() and op.did_change() for op in operations)


@operation()
def atomic_file(
    dest: str,
    content: str,
    user: str = "root",
    group: str = "root",
    mode: int = 644,
    secret: bool = False,
    directory: tuple[str, str, int] | None = None,
    known: dict | None = None,
):
    """
    Install ``content`` at ``dest`` atomically: a private temporary file beside
    it, given its owner and mode, renamed over ``dest``, so a reader or a crash
    never sees a half-written file; the content travels on the stdin of one
    root-side command (``_replace``), never through a file another user can read.

    + dest: remote path (one of the files HostState reads, with its checksum)
    + content: full text of the file
    + user/group/mode: owner and permissions (mode as in ``chmod``, e.g. 640)
    + secret: never show the content, not even with ``--diff``
    + directory: (user, group, mode) of ``dest``'s directory if it must be created
    + known: the host's state read before this run changed anything (None: read now)
    """
    remote = hoststate.path_state(_state(known, secrets_checksum=secret or None), dest)
    if remote["type"] == "file" and "sha256" not in remote:
        raise ValueError(f"atomic_file: the host state was read without the checksum of {dest}")
    exists = remote["type"] == "file"
    local_sum = hashlib.sha256(content.encode()).hexdigest()

    same_content = exists and remote["sha256"] == local_sum
    same_meta = exists and (remote["user"] == user and remote["group"] == group and remote["mode"] == mode)
    if same_content and same_meta:
        host.noop(f"{dest} is up to date")
        return

    if state.config.DIFF:
        _show_change(dest, exists, same_content, same_meta, secret, content, (user, group, mode))
    yield from _replace(dest, content, user, group, mode, directory)


def _show_change(dest: str, exists: bool, same_content: bool, same_meta: bool, secret: bool, text: str,
                 owner: tuple) -> None:
    """What ``--diff`` shows of a replaced file: its diff, or for a secret only
    that it changes."""
    verb = "Will modify" if exists else "Will create"
    if secret:
        host.log(f"{verb} {dest} (secret: contents not shown)", logger.info)
    elif not same_content:
        host.log(f"{verb} {dest}", logger.info)
        old = [line + "\n" for line in host.get_fact(FileContents, path=dest) or []] if exists else []
        for line in generate_color_diff(old, text.splitlines(keepends=True)):
            logger.info("  %s", line)
    if not same_meta:
        logger.info("  owner/mode -> %s:%s %s", *owner)


def _replace(dest: str, text: str, user: str, group: str, mode: int, directory: tuple | None = None):
    """The command that replaces ``dest`` atomically: one call of the on-host
    probe (rollout/hostprobe.py, mode ``write``, as root under ``_sudo``), the
    content on its stdin. Nothing goes through a file another user could read
    or predict: pyinfra's upload would stage it by SFTP, as the SSH user, in a
    world-readable ``/tmp/pyinfra-<sha1>`` before ``sudo cp``. The probe writes a
    private temporary file beside ``dest`` (mkstemp, umask 077), gives it its
    owner and mode, renames it over ``dest`` and removes it on any failure; it
    creates the directory when missing (``directory``: user, group, mode)."""
    spec: dict = {"path": dest, "content": text, "user": user, "group": group, "mode": f"{mode:03d}"}
    if directory is not None:
        spec["directory"] = dict(zip(("user", "group", "mode"), (*directory[:2], f"{directory[2]:03d}")))
    yield probe_command("write", stdin=spec)


@operation()
def directory(path: str, user: str, group: str, mode: int, known: dict | None = None):
    """
    A directory with this owner and mode (created with its parents if missing).

    + path: the directory (one HostState reads)
    + user/group/mode: owner and permissions (mode as in ``chmod``, e.g. 750)
    + known: the host's state (None: read now)
    """
    found = hoststate.path_state(_state(known), path)
    if found["type"] == "directory" and (found["user"], found["group"], found["mode"]) == (user, group, mode):
        host.noop(f"directory {path} exists")
        return
    quoted = shlex.quote(path)
    yield StringCommand(f"mkdir -p {quoted} && chown {shlex.quote(user)}:{shlex.quote(group)} {quoted}"
                        f" && chmod {mode:03d} {quoted}")


@operation(is_idempotent=False)
def env_file_has(path: str, variables: list[str], known: dict | None = None):
    """
    Make sure an env file on the host sets every one of ``variables`` (e.g. the
    secrets file the unit reads): nothing to do when it does, else fail naming
    the file and the missing names. Reads names only, never a value.

    + path: the env file on the host (one HostState reads the names of)
    + variables: the variable names it must set to a non-empty value
    + known: the host's state (None: read now)
    """
    present = hoststate.path_state(_state(known), path).get("keys")
    missing = [v for v in variables if present is None or v not in present]
    if not missing:
        host.noop(f"{path} sets {', '.join(variables)}")
        return
    problem = "is missing" if present is None else f"lacks {', '.join(missing)}"
    yield FunctionCommand(checks.fail, ((f"{path} {problem}: write the secrets first "
                                         "(rollout write-secrets ENV)"),), {})


@operation(is_idempotent=False)
def lock_free(token: str | None, known: dict | None = None):
    """
    Go on only if the fleet's rollout lock is free or held by this run (``token``);
    otherwise fail naming the holder.

    + token: this run's lock token
    + known: the host's state (None: read now)
    """
    known = _state(known)
    refusal = hoststate.lock_refusal(known, token)
    if refusal is None:
        host.noop("the rollout lock is free or this run's")
        return
    yield FunctionCommand(hoststate.lock_refused, (refusal, (known or {}).get("lock")), {})


@operation(is_idempotent=False)
def restart_unit(unit: str):
    """
    Restart a systemd unit. Guard it with ``_if=`` (evaluated at run time) so it
    runs only when one of the unit's files changed.

    + unit: the unit name, e.g. ``camera-api.service``
    """
    # reset-failed first: a unit that crash-looped into its start limit refuses a
    # plain restart ("start request repeated too quickly"), e.g. during a revert.
    yield StringCommand("systemctl", "reset-failed", unit, "2>/dev/null", "||", "true", ";",
                        "systemctl", "restart", unit)


@operation(is_idempotent=False)
def wait_healthy(url: str, timeout_s: int = 60, unit: str | None = None, known: dict | None = None,
                 after: Sequence[OperationMeta] = ()):
    """
    Make sure ``url`` answers HTTP 200 on the host: nothing to do when it already
    does; otherwise wait, bounded, and fail with a clear message when it does not
    within ``timeout_s``. Checked on every run, so a host left unhealthy by an
    earlier run is never reported as fine.

    + url: health URL as seen from the host itself (the one HostState reads)
    + timeout_s: upper bound on the wait, in seconds
    + unit: unit whose failure ends the wait early
    + known: the host's state (None: read now)
    + after: operations (a restart) after whose change ``known`` says nothing: wait
    """
    if not _changed(after) and hoststate.healthy(_state(known)):
        host.noop(f"{url} answers 200")
        return
    # Each curl is capped at 2 s, the loop at timeout_s by the clock; a unit that
    # systemd gave up on (start limit hit) fails at once. Every value is quoted:
    # nothing of the settings is ever read by the shell.
    gave_up = ""
    if unit:
        gave_up = (
            f"if systemctl is-failed --quiet {shlex.quote(unit)}; then "
            f"echo {shlex.quote(f'{unit} failed (see: journalctl -u {unit})')} >&2; exit 1; fi; "
        )
    late = f"{unit or 'service'} not healthy after {int(timeout_s)}s: {url}"
    script = (
        f"deadline=$(( $(date +%s) + {int(timeout_s)} )); "
        f"until curl -fs -o /dev/null --max-time 2 {shlex.quote(url)}; do "
        f"{gave_up}"
        f"if [ $(date +%s) -ge $deadline ]; then "
        f"echo {shlex.quote(late)} >&2; exit 1; fi; "
        f"sleep 0.2; done"
    )
    yield StringCommand("sh", "-c", shlex.quote(script))


@operation(is_idempotent=False)
def unit_enabled_and_running(unit: str, known: dict | None = None, after: Sequence[OperationMeta] = ()):
    """
    Keep a systemd unit enabled (``enabled`` or ``static``) and running.

    + unit: the unit name, e.g. ``camera-api.service``
    + known: the host's state (None: read now)
    + after: operations (a restart that then proved healthy) whose change means running
    """
    restarted = _changed(after)
    known = _state(known)
    running = restarted or hoststate.unit_running(known)
    enabled = hoststate.unit_enabled(known)
    if running and enabled:
        host.noop(f"{unit} is enabled and running")
        return
    if not running:
        yield StringCommand("systemctl", "start", unit)
    if not enabled:
        yield StringCommand("systemctl", "enable", unit)


@operation(is_idempotent=False)
def record_baseline(to_stage: int, known: dict | None = None):
    """
    Record on the host the P95 it serves now, before its stage changes; nothing
    to do when the stage stays (the recorded baseline is kept).

    + to_stage: the stage about to be applied
    + known: the host's state before the change (None: read now)
    """
    current = hoststate.file_stage(_state(known), host.data.switch_variables)
    if current == to_stage:
        host.noop(f"stage stays {to_stage}: baseline kept")
        return
    yield FunctionCommand(checks.record_baseline, (current, to_stage), {})


# --- the autopilot's control host (tasks/autopilot.py): decided from pyinfra's own facts ---------


@operation()
def installed_file(
    dest: str,
    src: str | None = None,
    content: str | None = None,
    user: str = "root",
    group: str = "root",
    mode: int = 644,
    secret: bool = False,
):
    """
    Install a local file (``src``) or ``content`` at ``dest`` atomically, like
    ``atomic_file`` (upload beside it, owner and mode on the temporary file, then
    a rename), deciding from pyinfra's File and Sha256File facts. A ``secret``
    file's contents are never shown, not even with ``--diff``; give it by ``src``
    (a path) rather than ``content`` where it can be, so no argument holds it.

    + dest: remote path; its directory must exist (and, for a secret, be closed to others)
    + src: local file to install (read when the operation runs)
    + content: the text to install instead of ``src``
    + user/group/mode: owner and permissions (mode as in ``chmod``, e.g. 600)
    + secret: never show the content
    """
    from pyinfra.facts.files import File, Sha256File

    text = content if src is None else open(src, encoding="utf-8").read()
    assert text is not None  # every caller gives src or content
    remote = host.get_fact(File, path=dest)
    exists = bool(remote)
    same_content = exists and host.get_fact(Sha256File, path=dest) == hashlib.sha256(text.encode()).hexdigest()
    same_meta = False
    if remote:  # exists
        same_meta = (remote["user"], remote["group"], remote["mode"]) == (user, group, mode)
    if same_content and same_meta:
        host.noop(f"{dest} is up to date")
        return
    if state.config.DIFF:
        _show_change(dest, exists, same_content, same_meta, secret, text, (user, group, mode))
    yield from _replace(dest, text, user, group, mode)


def _local_tree(src: str, exclude: Sequence[str], exclude_dir: Sequence[str]) -> tuple[dict[str, bytes], set[str]]:
    """The files (relative path -> bytes) and directories under ``src``, less
    the excluded names (shell patterns, as pyinfra's ``files.sync`` takes them)."""
    files, dirs = {}, set()
    for root, names, filenames in os.walk(src):
        names[:] = sorted(n for n in names if not any(fnmatch.fnmatch(n, p) for p in exclude_dir))
        for name in names:
            dirs.add(os.path.relpath(os.path.join(root, name), src))
        for name in sorted(filenames):
            if not any(fnmatch.fnmatch(name, p) for p in exclude):
                with open(os.path.join(root, name), "rb") as handle:
                    files[os.path.relpath(os.path.join(root, name), src)] = handle.read()
    return files, dirs


@operation()
def installed_tree(src: str, dest: str, user: str, group: str, mode: int, dir_mode: int,
                   exclude: Sequence[str] = (), exclude_dir: Sequence[str] = ()):
    """
    Make the directory ``dest`` hold exactly the files of the local directory
    ``src`` (like ``files.sync`` with ``delete=True``), each written as
    ``atomic_file`` writes one: through the root-side writer, content on stdin,
    never staged where another user could read or swap it. Decides from one read
    of what ``dest`` holds (the probe's ``tree``).

    + src: local directory (read when the operation is planned)
    + dest: remote directory; it must exist
    + user/group/mode: owner and permissions of every file (mode as in ``chmod``)
    + dir_mode: permissions of every directory under ``dest``
    + exclude/exclude_dir: shell patterns of file and directory names left out
    """
    from rollout.facts import Tree

    def left_out(rel: str, is_file: bool) -> bool:  # on either side: never compared, never removed
        parts = rel.split("/")
        return any(fnmatch.fnmatch(part, p) for part in (parts[:-1] if is_file else parts) for p in exclude_dir) \
            or (is_file and any(fnmatch.fnmatch(parts[-1], p) for p in exclude))

    local, local_dirs = _local_tree(src, exclude, exclude_dir)
    found = host.get_fact(Tree, path=dest) or {"files": {}, "dirs": {}}
    remote = {"files": {r: m for r, m in found["files"].items() if not left_out(r, True)},
              "dirs": {r: m for r, m in found["dirs"].items() if not left_out(r, False)}}
    owner = {"user": user, "group": group}
    changed = [rel for rel, data in local.items()
               if remote["files"].get(rel, {}).get("sha256") != hashlib.sha256(data).hexdigest()
               or {k: remote["files"][rel].get(k) for k in ("user", "group", "mode")} != {**owner, "mode": mode}]
    extra = sorted({*(rel for rel in remote["files"] if rel not in local),
                    *(rel for rel in remote["dirs"] if rel not in local_dirs)})
    loose = sorted(rel for rel, meta in remote["dirs"].items() if rel in local_dirs
                   and (meta.get("user"), meta.get("group"), meta.get("mode")) != (user, group, dir_mode))
    if not changed and not extra and not loose:
        host.noop(f"{dest} is up to date")
        return
    if changed:
        yield probe_command("write", stdin={"files": [
            {"path": posixpath.join(dest, rel), "content_b64": base64.b64encode(local[rel]).decode(), **owner,
             "mode": f"{mode:03d}", "directory": {**owner, "mode": f"{dir_mode:03d}"}} for rel in changed]})
    if extra:
        yield StringCommand("rm", "-rf", *(QuoteString(posixpath.join(dest, rel)) for rel in extra))
    if loose:
        paths = [QuoteString(posixpath.join(dest, rel)) for rel in loose]
        yield StringCommand("chown", QuoteString(f"{user}:{group}"), *paths, "&&", "chmod", f"{dir_mode:03d}", *paths)


@operation()
def pip_install(venv: str, requirement: str, fingerprint: str, find_links: str | None = None):
    """
    Install ``requirement`` into ``venv``: from a wheelhouse on the host with no
    index (``find_links``), else from the host's index. Idempotent by a marker
    holding ``fingerprint`` (of the wheel set, or the requirement), removed before
    pip runs and written only after it succeeded, so a failed install is retried
    by the next run. From a wheelhouse every wheel is reinstalled: a rebuilt wheel
    may keep its version.

    + venv: the virtualenv directory
    + requirement: what pip installs (``camera-rollout``, ``camera-rollout==0.1.0``)
    + fingerprint: identifies what should be installed
    + find_links: directory of wheels on the host (no index), or None
    """
    marker = f"{venv}/.rollout-installed"
    if (host.get_fact(FileContents, path=marker) or [None])[0] == fingerprint:
        host.noop(f"{requirement} in {venv} is up to date")
        return
    source = (f"--no-index --find-links {shlex.quote(find_links)} --force-reinstall" if find_links
              else "--upgrade")
    yield StringCommand(
        f"rm -f {shlex.quote(marker)} && {shlex.quote(venv)}/bin/pip install --quiet "
        f"--disable-pip-version-check {source} {shlex.quote(requirement)} "
        f"&& echo {shlex.quote(fingerprint)} > {shlex.quote(marker)}"
    )


@operation(is_idempotent=False)
def unit_idle(unit: str, timeout_s: float):
    """
    Wait, bounded, until ``unit`` is not starting or stopping (a oneshot tick in
    progress ends on its own instead of being killed); nothing to do when it is idle.

    + unit: the unit name, e.g. ``rollout-watch.service``
    + timeout_s: upper bound on the wait, in seconds
    """
    from pyinfra.facts.server import Command

    show = f"systemctl show -P ActiveState {shlex.quote(unit)}"
    now = (host.get_fact(Command, command=f"{show} 2>/dev/null || true") or "").strip()
    if now not in ("activating", "deactivating", "reloading"):
        host.noop(f"{unit} is {now or 'unknown'}: no tick in progress")
        return
    script = (
        f"deadline=$(( $(date +%s) + {int(timeout_s)} )); "
        f"while case $({show}) in activating|deactivating|reloading) true;; *) false;; esac; do "
        f"if [ $(date +%s) -ge $deadline ]; then echo {shlex.quote(f'{unit} still busy after {int(timeout_s)}s')} >&2; "
        f"exit 1; fi; sleep 1; done"
    )
    yield StringCommand("sh", "-c", shlex.quote(script))

#!/usr/bin/env python3
"""Probe the service from inside one host; sent with each command by the checks.

    python3 -c <this file, compressed> camera-rollout-probe MODE [SPEC]
        ->   one JSON document on stdout

SPEC is the mode's JSON spec, base64-encoded (a pyinfra fact has no stdin); when
it is not given, the spec is read from stdin. Runs on the host, with the host's
own python3 and its standard library only, so the checks need nothing but SSH:
the service's port need not be reachable from the control machine, and secrets
are read here and never sent back (only the names of the variables the secrets
file sets, and "is the database reachable: yes/no"). Everything the service's
contract names (switch variables, implementation header) comes in the spec.

Modes:
  state     the host's whole state in one read: lock, the managed files (owner,
            mode, checksum; names only for an env file), the env file's switch,
            the running process's switch, unit state, health, record, baseline
  requests  call a list of endpoints in order; status, implementation, body each
  preflight the state plus what only the preparation check needs: metrics,
            cameras config, database and Redis reachability
  metrics   one read of the app's metrics, with the gate's cursors
  traffic   bounded traffic (a rate, a count, a time limit and a stop file)
  stop      stop that traffic now (write its stop files)
  write     replace files atomically (the spec, content included, on stdin)
  tree      what a directory holds (checksums, owners, modes)
  lock      take the fleet's rollout lock on this host (or say who holds it)
  unlock    release it (only the holder's token, or forced)
  record    write the current stage record and append it to the history
"""

import base64
import grp
import hashlib
import json
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

if "PairTally" not in globals():  # on a host the probe program carries rollout/responses.py in front
    from rollout.responses import PairTally

MAX_BODY = 256 * 1024


def call(port, method, path, body=None, timeout=10.0, header=None):
    """One HTTP request to the service on this host; never raises. ``header``:
    the response header that names the implementation."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    started = time.monotonic()
    result = {"method": method, "path": path, "status": None, "implementation": None,
              "content_type": None, "body": "", "error": None}
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        response = error
    except (OSError, ValueError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        result["ms"] = (time.monotonic() - started) * 1000
        return result
    with response:
        result["status"] = response.status
        result["implementation"] = response.headers.get(header) if header else None
        result["content_type"] = response.headers.get("Content-Type")
        raw = response.read(MAX_BODY)
        result["body"] = raw.decode("utf-8", "replace")
        result["truncated"] = len(raw) >= MAX_BODY
    result["ms"] = (time.monotonic() - started) * 1000
    return result


def read_env_file(path):
    """KEY=VALUE lines of a systemd EnvironmentFile (quotes and escapes undone)."""
    values = {}
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return None
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key.strip()] = value
    return values


def only(values, names):
    """The ``names`` among ``values`` (None stays None)."""
    return None if values is None else {k: v for k, v in values.items() if k in names}


def unit_status(unit):
    """ActiveState, SubState, UnitFileState and MainPID of a systemd unit."""
    try:
        shown = subprocess.run(
            ["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "UnitFileState", "-p", "MainPID",
             unit], capture_output=True, text=True).stdout
    except OSError:  # no systemctl: nothing is known about the unit
        shown = ""
    values = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    pid = values.get("MainPID", "")
    return {"active": values.get("ActiveState") or "unknown", "sub": values.get("SubState") or "unknown",
            "enabled": values.get("UnitFileState") or "unknown",
            "main_pid": int(pid) if pid.isdigit() and pid != "0" else None,
            "started": process_started(int(pid)) if pid.isdigit() and pid != "0" else None}


def process_started(pid):
    """When a process started (epoch s, from /proc: its start in clock ticks since
    boot plus the boot time), or None."""
    if not pid:
        return None
    try:
        ticks = int(open(f"/proc/{pid}/stat", encoding="utf-8").read().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in open("/proc/stat", encoding="utf-8") if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_switch(main_pid, names):
    """The switch variables in the environment of the unit's main process: the
    one reader of /proc/PID/environ (no other variable leaves the host)."""
    if not main_pid:
        return None
    try:
        raw = open(f"/proc/{main_pid}/environ", "rb").read()
    except OSError:
        return None
    pairs = (item.decode("utf-8", "replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key: value for key, value in pairs if key in names}


def read_json(path):
    """A JSON file's document, or None (missing or unreadable)."""
    try:
        return json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError):
        return None


class Refused(Exception):
    """A mode could not do what it was asked: one line on stderr, exit 1."""


def _owner_ids(user, group):
    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
    except KeyError:
        raise Refused(f"unknown user {user!r}") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError:
        raise Refused(f"unknown group {group!r}") from None
    return uid, gid


def make_directory(path, owner):
    """The directory a file goes into, created when missing (with its missing
    parents): each private while it is made (umask 077), then given ``owner``
    (user, group, mode)."""
    uid, gid = _owner_ids(owner.get("user"), owner.get("group"))  # an unknown owner makes nothing
    parent = os.path.dirname(path.rstrip("/"))
    if parent and not os.path.isdir(parent):
        make_directory(parent, owner)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chown(path, uid, gid)
    os.chmod(path, int(str(owner.get("mode", "755")), 8))


def write_atomic(path, content, mode="644", user=None, group=None, directory=None):
    """Replace a file atomically: a private temporary file beside it (mkstemp:
    0600, root's, an unpredictable name), written and synced, given its owner
    and mode, then renamed over ``path``; removed on any failure. The directory
    is created when missing (``directory``: its owner and mode)."""
    parent = os.path.dirname(path)
    uid, gid = _owner_ids(user, group)  # before anything is made: an unknown owner leaves no trace
    if not os.path.isdir(parent):
        make_directory(parent, directory or {"mode": "755"})
    fd, temp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.")
    try:
        with (os.fdopen(fd, "wb") if isinstance(content, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), int(str(mode), 8))
        os.replace(temp, path)
    except BaseException:
        remove(temp)
        raise
    try:  # the rename itself survives a crash
        directory_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    except OSError:
        pass


def remove_leftovers(path):
    """What earlier versions of the tool may have left of a file they wrote: the
    upload beside it (``.NAME.rollout-tmp``) and pyinfra's staged copy of that
    upload in the temporary directory (``pyinfra-<sha1 of its path>``, written
    by SFTP as the SSH user before ``sudo cp``)."""
    beside = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.rollout-tmp")
    staged = os.path.join(tempfile.gettempdir(), "pyinfra-" + hashlib.sha1(beside.encode()).hexdigest())
    for leftover in (beside, staged):
        remove(leftover)


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def path_state(path, checksum=False, keys=False):
    """What a managed file (or directory) is: type, owner, group, mode (as in
    chmod, e.g. 640), and on request the sha256 of its bytes and, for an env
    file, the names of the variables it sets to a value (never a value)."""
    try:
        info = os.lstat(path)
    except OSError:
        return {"type": None}
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "link"}
    found = {"type": kinds.get(stat.S_IFMT(info.st_mode), "other"),
             "user": _name(pwd.getpwuid, info.st_uid), "group": _name(grp.getgrgid, info.st_gid),
             "mode": int(format(stat.S_IMODE(info.st_mode), "o"))}
    if found["type"] == "file":
        if checksum:
            with open(path, "rb") as handle:
                found["sha256"] = hashlib.sha256(handle.read()).hexdigest()
        if keys:
            values = read_env_file(path)
            found["keys"] = None if values is None else sorted(k for k, v in values.items() if v.strip())
    return found


def host_state(spec):
    """The host's whole state in one read (see mode ``state``)."""
    names = spec["switch_variables"]
    unit = unit_status(spec["unit"])
    health = call(spec["port"], "GET", spec["health_path"], timeout=float(spec.get("health_timeout", 3)))
    state_dir = spec["state_dir"]
    history = []
    if spec.get("history"):
        try:
            lines = open(os.path.join(state_dir, "history.jsonl"), encoding="utf-8").read().splitlines()
            history = [json.loads(line) for line in lines[-int(spec["history"]):] if line.strip()]
        except (OSError, ValueError):
            pass
    return {
        "lock": read_json(os.path.join(state_dir, "lock.json")),
        "files": {path: path_state(path, **wanted) for path, wanted in spec.get("files", {}).items()},
        "file_switch": only(read_env_file(spec["switch_file"]), names),
        "process_switch": process_switch(unit["main_pid"], names),
        "unit": unit,
        "health": {"status": health["status"], "error": health["error"]},
        "current": read_json(os.path.join(state_dir, "current.json")),
        "baseline": read_json(os.path.join(state_dir, "baseline.json")),
        "history": history,
        # The last gate's verdict (rollout/checks.py) and the watch's alert keys
        # (rollout/controller.py): small files of the rollout's own state.
        "gate_last": read_json(os.path.join(state_dir, "gate-last.json")),
        "watch": read_json(os.path.join(state_dir, "watch.json")),
    }


def reachable(url, default_port):
    """Whether the host:port of a connection URL accepts TCP from here."""
    if not url:
        return {"configured": False, "reachable": False}
    try:
        parts = urlsplit(url)
        address = (parts.hostname, parts.port or default_port)
    except ValueError:
        return {"configured": True, "reachable": False}
    try:
        with socket.create_connection(address, timeout=3):
            return {"configured": True, "reachable": True}
    except OSError:
        return {"configured": True, "reachable": False}


def count_cameras(path):
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return {"exists": False, "count": 0}
    try:
        import yaml  # present in the app's venv, not always in the system python

        document = yaml.safe_load(text) or {}
        cameras = document.get("cameras") if isinstance(document, dict) else None
        count = len(cameras) if isinstance(cameras, list) else 0
    except ImportError:
        count = len(re.findall(r"^\s*-\s*id\s*:", text, flags=re.MULTILINE))
    except Exception:  # noqa: BLE001 - a file that does not parse lists no camera
        count = 0
    return {"exists": True, "count": count}


def mode_state(spec):
    return host_state(spec)


#: Methods whose request may be sent again: repeating it changes nothing more.
IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}


def mode_requests(spec):
    """Each request in order. ``retries``: a server error (5xx) of an idempotent
    request (or one marked ``retry``) is sent again up to that many times;
    ``server_errors`` says how many answers were 5xx."""
    timeout = float(spec.get("timeout", 10))
    results = []
    for r in spec["requests"]:
        server_errors = 0
        retries = int(spec.get("retries", 0)) if r["method"] in IDEMPOTENT or r.get("retry") else 0
        for _ in range(1 + retries):
            result = call(spec["port"], r["method"], r["path"], r.get("body"), timeout, spec.get("header"))
            if not (result["status"] or 0) >= 500:
                break
            server_errors += 1
        result["server_errors"] = server_errors
        results.append(result)
    return results


def mode_preflight(spec):
    state = host_state(spec)
    port = spec["port"]
    secrets = read_env_file(spec["secrets_file"]) or {}
    metrics = call(port, "GET", spec["metrics_path"], timeout=5)
    return {
        "unit_active": state["unit"]["active"],
        "file_switch": state["file_switch"],
        "process_switch": state["process_switch"],
        "health": state["health"],
        "metrics": {k: metrics[k] for k in ("status", "content_type", "body", "error")},
        "cameras": count_cameras(spec["cameras_file"]),
        # Names of the variables set to a value, never a value.
        "secrets_file": state["files"][spec["secrets_file"]].get("keys"),
        "database": reachable(secrets.get("DATABASE_URL"), 5432),
        "redis": reachable(secrets.get("REDIS_URL"), 6379),
    }


def mode_metrics(spec):
    """One read of the metrics (none without a ``path``: another provider reads
    them), and (when asked) the gate's cursors kept on the host."""
    answer = (call(spec["port"], "GET", spec["path"], timeout=float(spec.get("timeout", 5)))
              if spec.get("path") else None)
    cursors = read_json(spec["cursors_file"]) if spec.get("cursors_file") else None
    tallies = [read_json(path) for path in spec.get("tally_files") or ()]
    return {"answer": {k: answer[k] for k in ("status", "content_type", "body", "error")} if answer else None,
            "cursors": cursors if isinstance(cursors, list) else [],
            "tallies": [t for t in tallies if isinstance(t, dict)]}


def mode_traffic(spec):
    """Traffic: cycle through the paths until count or time runs out, at ``rate``
    requests per second (on a schedule, so slow answers do not lower the rate;
    back to back without one). ``stop_file``: the traffic stops as soon as it
    exists (mode ``stop``: the caller's gate has ended; a closed SSH channel
    does not stop a process on the host), and removes it."""
    started = time.monotonic()
    deadline = started + float(spec["seconds"])
    rate = float(spec.get("rate") or 0)
    stop_file = spec.get("stop_file")
    if stop_file:
        remove_stale(os.path.dirname(stop_file), "traffic-", ".stop", max_age_s=3600)
    statuses: dict[str, int] = {}
    implementations: dict[str, int] = {}
    paired = spec.get("pairs")
    tally = PairTally(paired) if paired else None
    tally_file, written = spec.get("tally_file"), 0.0
    if tally_file:
        remove_stale(os.path.dirname(tally_file), "pairs-", ".json", max_age_s=3600)

    def get(path):
        result = call(spec["port"], "GET", path, timeout=5, header=spec.get("header"))
        key = str(result["status"] or result["error"].split(":")[0])
        statuses[key] = statuses.get(key, 0) + 1
        impl = result["implementation"] or "none"
        implementations[impl] = implementations.get(impl, 0) + 1
        return result

    sent = 0
    while sent < int(spec["count"]) and time.monotonic() < deadline \
            and not (stop_file and os.path.exists(stop_file)):
        if rate:
            wait = started + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -1:  # a stalled service: no burst to catch up, the schedule moves on
                started = time.monotonic() - sent / rate
        if tally is None:
            get(spec["paths"][sent % len(spec["paths"])])
        else:
            endpoint = paired[sent % len(paired)]
            # Legacy first, then the domain, and legacy again when they differ: a change
            # of the data between the calls shows as legacy against itself.
            legacy = get(endpoint["legacy"])
            tally.compare(endpoint["name"], legacy, get(endpoint["domain"]),
                          lambda path=endpoint["legacy"]: get(path))
            if tally_file and time.monotonic() - written >= 1:
                write_atomic(tally_file, json.dumps(tally.as_json()), mode="600")
                written = time.monotonic()
        sent += 1
    stopped = bool(stop_file) and os.path.exists(stop_file)
    if stop_file:
        remove(stop_file)
    answer = {"sent": sent, "statuses": statuses, "implementations": implementations}
    if tally is not None:
        answer["pairs"] = tally.as_json()
        if tally_file and not stopped:  # stopped: its gate has read it and removes it
            write_atomic(tally_file, json.dumps(tally.as_json()), mode="600")
    return answer


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def remove_stale(directory, prefix, suffix, max_age_s):
    """Stop files whose traffic had ended before it was told to stop."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            if name.startswith(prefix) and name.endswith(suffix) and time.time() - os.path.getmtime(path) > max_age_s:
                remove(path)
        except OSError:
            pass


def mode_stop(spec):
    """Stop the traffic of these stop files: each stream ends at its next
    request; its tally files (``remove``), read for the last time, go."""
    for path in spec["stop_files"]:
        write_atomic(path, "stop\n")
    for path in spec.get("remove") or ():
        remove(path)
    return {"stopped": len(spec["stop_files"])}


def mode_write(spec):
    """Replace one file (``path``, ``content``, ``mode``, and optionally ``user``,
    ``group`` and ``directory``: the owner and mode of its directory when it must
    be created) or several (``files``: a list of those), each atomically. The
    spec comes on stdin, so a file's content (a secret) is never on a command
    line nor in a file another user can read. A file marked ``if_dir_exists`` is
    written only where its directory exists (another package's, e.g.
    node_exporter's textfile directory: never created here)."""
    os.umask(0o077)  # whatever this process creates is private until it is given its mode
    written = []
    for one in spec.get("files") or [spec]:
        if one.get("if_dir_exists") and not os.path.isdir(os.path.dirname(one["path"])):
            continue
        content = base64.b64decode(one["content_b64"]) if "content_b64" in one else one["content"]
        try:
            write_atomic(one["path"], content, one.get("mode", "644"), one.get("user"), one.get("group"),
                         one.get("directory"))
        except OSError as error:
            raise Refused(f"writing {one['path']} failed: {error.strerror or error}; the old file is "
                          "untouched and no temporary file is left") from None
        except Refused as error:
            raise Refused(f"writing {one['path']} failed: {error}; nothing was written") from None
        remove_leftovers(one["path"])
        written.append(one["path"])
    return {"written": (written[0] if written else None) if "files" not in spec else written}


def mode_tree(spec):
    """What a directory holds: every file (sha256, owner, group, mode) and every
    directory (owner, group, mode) under ``path``, by relative path; None when
    it does not exist. Links are not followed."""
    top = spec["path"]
    if not os.path.isdir(top):
        return None
    files, dirs = {}, {}
    for root, names, filenames in os.walk(top):
        for name in names:
            full = os.path.join(root, name)
            dirs[os.path.relpath(full, top)] = path_state(full)
        for name in filenames:
            full = os.path.join(root, name)
            files[os.path.relpath(full, top)] = path_state(full, checksum=os.path.isfile(full))
    return {"files": files, "dirs": dirs}


def mode_lock(spec):
    """Create the lock file exclusively (O_EXCL: two operators cannot both win);
    taking it again with the same token refreshes nothing and succeeds."""
    path = spec["path"]
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        holder = read_json(path) or {"owner": "unknown (unreadable lock file)"}
        return {"acquired": holder.get("token") == spec["token"], "holder": holder}
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(spec["lock"], handle)
        handle.flush()
        os.fsync(handle.fileno())
    return {"acquired": True, "holder": spec["lock"]}


def mode_unlock(spec):
    holder = read_json(spec["path"])
    if holder is None:
        return {"released": True, "holder": None}
    if holder.get("token") != spec["token"] and not spec.get("force"):
        return {"released": False, "holder": holder}
    os.unlink(spec["path"])
    return {"released": True, "holder": holder}


def mode_record(spec):
    """The record completed on the host: the stage the env file holds now (its
    switch looked up in the spec's table of stages) and the recorded baseline
    P95; current.json replaced atomically, history.jsonl appended and synced."""
    directory = spec["dir"]
    switch = only(read_env_file(spec["switch_file"]), spec["switch_variables"])
    stages = [stage for known, stage in spec["stages"] if known == switch]
    baseline = read_json(spec["baseline_file"])
    record = {**spec["record"], "stage": stages[0] if stages else None,
              "baseline_p95_ms": baseline.get("p95_ms") if isinstance(baseline, dict) else None}
    # When the host came to this stage: kept from the previous record of the same stage.
    previous = read_json(os.path.join(directory, "current.json"))
    same = isinstance(previous, dict) and previous.get("stage") == record["stage"]
    record["stage_since"] = ((previous.get("stage_since") or previous.get("time")) if same else None) \
        or record.get("time")
    write_atomic(os.path.join(directory, "current.json"), json.dumps(record) + "\n")
    with open(os.path.join(directory, "history.jsonl"), "a", encoding="utf-8") as history:
        history.write(json.dumps(record) + "\n")
        history.flush()
        os.fsync(history.fileno())
    return {"recorded": True, "record": record}


MODES = {"state": mode_state, "requests": mode_requests, "preflight": mode_preflight,
         "traffic": mode_traffic, "metrics": mode_metrics, "write": mode_write, "lock": mode_lock,
         "unlock": mode_unlock, "record": mode_record, "stop": mode_stop, "tree": mode_tree}


def main(argv):
    # "probe.py MODE [SPEC]" or "-c ... camera-rollout-probe MODE [SPEC]".
    if len(argv) >= 3 and argv[-2] in MODES:
        mode, spec = argv[-2], json.loads(base64.b64decode(argv[-1]))
    elif len(argv) >= 2 and argv[-1] in MODES:
        mode, spec = argv[-1], json.loads(sys.stdin.read())
    else:
        print(f"usage: probe.py {{{'|'.join(MODES)}}} [SPEC] (or the spec on stdin)", file=sys.stderr)
        return 2
    try:
        answer = MODES[mode](spec)
    except Refused as error:
        print(f"camera-rollout-probe {mode}: {error}", file=sys.stderr)
        return 1
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

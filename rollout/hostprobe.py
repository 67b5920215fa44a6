#!/usr/bin/env python3
"""Probe the service from inside one host; sent with each command by the checks.

    python3 -c <this file, compressed> camera-rollout-probe MODE < spec.json
        ->   one JSON document on stdout

Runs on the host, with the host's own python3 and its standard library only, so
the checks need nothing but SSH: the service's port need not be reachable from
the control machine, and secrets are read here and never sent back (only "is the
database reachable: yes/no").

Modes:
  requests  call a list of endpoints in order; status, implementation, body each
  preflight what the preparation check judges: unit, env file vs process, health,
            metrics, cameras config, database and Redis reachability
  traffic   bounded smoke traffic (a count and a time limit)
  write     replace a file atomically
  lock      take the fleet's rollout lock on this host (or say who holds it)
  unlock    release it (only the holder's token, or forced)
  record    write the current stage record and append it to the history
  status    the stage in the file and in the process, health, record, lock
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

SWITCH = ("USE_DOMAIN_SERVICE", "ROLLOUT_PERCENT")
MAX_BODY = 256 * 1024


def call(port, method, path, body=None, timeout=10.0):
    """One HTTP request to the service on this host; never raises."""
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
        result["implementation"] = response.headers.get("X-Rollout-Implementation")
        result["content_type"] = response.headers.get("Content-Type")
        result["body"] = response.read(MAX_BODY).decode("utf-8", "replace")
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


def process_switch(unit):
    """The switch variables in the environment of the unit's main process."""
    pid = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                         capture_output=True, text=True).stdout.strip()
    if not pid.isdigit() or pid == "0":
        return None
    try:
        raw = open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        return None
    pairs = (item.decode("utf-8", "replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key: value for key, value in pairs if key in SWITCH}


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
    except Exception:  # a file that does not parse lists no camera
        count = 0
    return {"exists": True, "count": count}


def mode_requests(spec):
    timeout = float(spec.get("timeout", 10))
    return [call(spec["port"], r["method"], r["path"], r.get("body"), timeout) for r in spec["requests"]]


def mode_preflight(spec):
    unit, port = spec["unit"], spec["port"]
    active = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True).stdout.strip()
    file_env = read_env_file(spec["env_file"])
    secrets_env = read_env_file(spec["secrets_file"])
    secrets = secrets_env or {}
    health = call(port, "GET", spec["health_path"], timeout=5)
    metrics = call(port, "GET", spec["metrics_path"], timeout=5)
    return {
        "unit_active": active,
        "file_switch": None if file_env is None else {k: v for k, v in file_env.items() if k in SWITCH},
        "process_switch": process_switch(unit),
        "health": {"status": health["status"], "error": health["error"]},
        "metrics": {k: metrics[k] for k in ("status", "content_type", "body", "error")},
        "cameras": count_cameras(spec["cameras_file"]),
        # Names of the variables set to a value, never a value.
        "secrets_file": None if secrets_env is None else sorted(k for k, v in secrets.items() if v.strip()),
        "database": reachable(secrets.get("DATABASE_URL"), 5432),
        "redis": reachable(secrets.get("REDIS_URL"), 6379),
    }


def mode_traffic(spec):
    """Smoke traffic: cycle through the paths until count or time runs out."""
    deadline = time.monotonic() + float(spec["seconds"])
    statuses, implementations, sent = {}, {}, 0
    while sent < int(spec["count"]) and time.monotonic() < deadline:
        path = spec["paths"][sent % len(spec["paths"])]
        result = call(spec["port"], "GET", path, timeout=5)
        sent += 1
        key = str(result["status"] or result["error"].split(":")[0])
        statuses[key] = statuses.get(key, 0) + 1
        impl = result["implementation"] or "none"
        implementations[impl] = implementations.get(impl, 0) + 1
        if spec.get("pause_s"):
            time.sleep(float(spec["pause_s"]))
    return {"sent": sent, "statuses": statuses, "implementations": implementations}


def mode_write(spec):
    """Replace a file atomically: write beside it, then rename over it."""
    path = spec["path"]
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".probe-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(spec["content"])
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temp, int(spec.get("mode", "644"), 8))
    os.replace(temp, path)
    return {"written": path}


def read_json(path):
    try:
        return json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError):
        return None


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
    """current.json replaced atomically; history.jsonl appended and synced."""
    directory, record = spec["dir"], spec["record"]
    mode_write({"path": os.path.join(directory, "current.json"), "content": json.dumps(record) + "\n"})
    with open(os.path.join(directory, "history.jsonl"), "a", encoding="utf-8") as history:
        history.write(json.dumps(record) + "\n")
        history.flush()
        os.fsync(history.fileno())
    return {"recorded": True}


def mode_status(spec):
    unit = spec["unit"]
    active = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True).stdout.strip()
    file_env = read_env_file(spec["env_file"])
    health = call(spec["port"], "GET", spec["health_path"], timeout=5)
    history = []
    try:
        lines = open(os.path.join(spec["state_dir"], "history.jsonl"), encoding="utf-8").read().splitlines()
        history = [json.loads(line) for line in lines[-int(spec.get("history", 5)):] if line.strip()]
    except (OSError, ValueError):
        pass
    return {
        "unit_active": active,
        "file_switch": None if file_env is None else {k: v for k, v in file_env.items() if k in SWITCH},
        "process_switch": process_switch(unit),
        "health": health["status"],
        "current": read_json(os.path.join(spec["state_dir"], "current.json")),
        "lock": read_json(os.path.join(spec["state_dir"], "lock.json")),
        "history": history,
    }


MODES = {"requests": mode_requests, "preflight": mode_preflight, "traffic": mode_traffic,
         "write": mode_write, "lock": mode_lock, "unlock": mode_unlock, "record": mode_record,
         "status": mode_status}


def main(argv):
    # The mode is the last argument: "probe.py MODE" or "-c ... camera-rollout-probe MODE".
    if len(argv) < 2 or argv[-1] not in MODES:
        print(f"usage: probe.py {{{'|'.join(MODES)}}} < spec.json", file=sys.stderr)
        return 2
    spec = json.loads(sys.stdin.read())
    json.dump(MODES[argv[-1]](spec), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

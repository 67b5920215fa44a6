"""The reference service's backing services: a real PostgreSQL and Redis on the
control machine, listening on the bridge's gateway address only, with generated
passwords (``secrets.json``, 0600) that the hosts get as their secrets file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from rollout_sandbox.procs import cmdline, run, wait_gone, wait_port
from rollout_sandbox.settings import RUN_DIR, STATE_DIR, SUBNET, gateway, read_json, write_json

PG_PORT = 5432
REDIS_PORT = 6379


def postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else Path("/usr/lib/postgresql/missing/bin")


def _secrets() -> dict:
    path = STATE_DIR / "secrets.json"
    data = read_json(path)
    if not data.get("db_password") or not data.get("redis_password"):
        data = {
            "db_password": secrets.token_urlsafe(18),
            "redis_password": secrets.token_urlsafe(18),
        }
        write_json(path, data, mode=0o600)
    return data


def service_urls() -> dict[str, str]:
    """DATABASE_URL / REDIS_URL for the hosts (read by inventories/sandbox.py)."""
    data = _secrets()
    return {
        "database_url": f"postgresql://camera:{data['db_password']}@{gateway()}:{PG_PORT}/camera",
        "redis_url": f"redis://:{data['redis_password']}@{gateway()}:{REDIS_PORT}/0",
    }


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_dirs() -> tuple[Path, Path]:
    return RUN_DIR / "postgres", RUN_DIR / "postgres-run"


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return run(["runuser", "-u", "postgres", "--", *cmd], **kwargs)


def ensure_postgres() -> None:
    data_dir, socket_dir = _pg_dirs()
    bin_dir = postgres_bin()
    password = _secrets()["db_password"]
    if not (data_dir / "PG_VERSION").exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        shutil.chown(data_dir, "postgres", "postgres")
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "peer", "-U", "postgres"])
        with open(data_dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host camera camera {SUBNET} scram-sha-256\n")
    socket_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(socket_dir, "postgres", "postgres")
    status = _as_postgres([str(bin_dir / "pg_ctl"), "status", "-D", str(data_dir)], check=False)
    if status.returncode != 0:
        options = f"-c listen_addresses={gateway()} -p {PG_PORT} -k {socket_dir}"
        _as_postgres(
            [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data_dir),
             "-l", str(socket_dir / "postgres.log"), "-o", options]
        )
    # Role and database: the password goes over stdin, never on a command line.
    sql = (
        "SELECT 'CREATE ROLE camera LOGIN' WHERE NOT EXISTS "
        "(SELECT FROM pg_roles WHERE rolname = 'camera')\\gexec\n"
        f"ALTER ROLE camera PASSWORD '{password}';\n"
        "SELECT 'CREATE DATABASE camera OWNER camera' WHERE NOT EXISTS "
        "(SELECT FROM pg_database WHERE datname = 'camera')\\gexec\n"
    )
    _as_postgres(
        [str(bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", str(socket_dir),
         "-p", str(PG_PORT), "-d", "postgres"],
        input=sql,
    )


def stop_postgres() -> None:
    data_dir, _ = _pg_dirs()
    if (data_dir / "postmaster.pid").exists():
        _as_postgres([str(postgres_bin() / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"],
                     check=False)


# --- Redis ---------------------------------------------------------------------------------------


def _redis_pid() -> int | None:
    try:
        pid = int((RUN_DIR / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    cmd = cmdline(pid)
    return pid if cmd and "redis-server" in cmd[0] else None


def _redis_accepts(password: str) -> bool:
    """True when the running Redis takes this password (not one of another fleet)."""
    try:
        with socket.create_connection((gateway(), REDIS_PORT), timeout=2) as conn:
            conn.sendall(f"AUTH {password}\r\n".encode())
            return conn.recv(64).startswith(b"+OK")
    except OSError:
        return False


def ensure_redis() -> None:
    if _redis_pid():
        if _redis_accepts(_secrets()["redis_password"]):
            return
        stop_redis()
    data_dir = RUN_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = RUN_DIR / "redis.conf"
    # The password lives in a 0600 file, not on redis-server's command line.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            f"bind {gateway()}\nport {REDIS_PORT}\nprotected-mode yes\n"
            f"requirepass {_secrets()['redis_password']}\n"
            f"daemonize yes\npidfile {RUN_DIR / 'redis.pid'}\n"
            f"logfile {RUN_DIR / 'redis.log'}\ndir {data_dir}\nsave \"\"\nappendonly no\n"
        )
    run(["redis-server", str(config)])
    wait_port(gateway(), REDIS_PORT, 20, "redis")


def stop_redis() -> None:
    pid = _redis_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid, 20)

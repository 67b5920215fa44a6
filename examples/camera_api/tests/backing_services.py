"""Throwaway PostgreSQL and Redis servers for tests and manual runs.

Each runs from its own temp dir on a free loopback port, with a password, and is
stopped by its own pid (pg_ctl / redis pidfile), never by process name.
"""
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pg8000.native
import redis


def postgres_bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")
        time.sleep(0.1)


@contextmanager
def postgres_server(password: str, user: str = "camera", database: str = "camera"):
    """Yield a postgresql:// URL for a fresh cluster; initdb/pg_ctl run as `postgres` when we are root."""
    bindir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="camera-api-pg-"))
    if as_root:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    data, pwfile, port = tmp / "data", tmp / "superuser.pw", free_port()
    superuser_password = secrets.token_hex(16)
    pwfile.write_text(superuser_password + "\n")
    if as_root:
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)

    def run(*cmd):
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    run(f"{bindir}/initdb", "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={tmp} -c fsync=off"
    run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(tmp / "server.log"), "-o", options, "-w", "start")
    try:
        admin = pg8000.native.Connection("postgres", host="127.0.0.1", port=port,
                                         password=superuser_password, database="postgres")
        admin.run(f"CREATE ROLE {user} LOGIN PASSWORD {pg8000.native.literal(password)}")
        admin.run(f"CREATE DATABASE {database} OWNER {user}")
        admin.close()
        yield f"postgresql://{user}:{password}@127.0.0.1:{port}/{database}"
    finally:
        run(f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def redis_server(password: str):
    """Yield a redis:// URL for a daemonized redis-server without persistence."""
    tmp = Path(tempfile.mkdtemp(prefix="camera-api-redis-"))
    port, pidfile = free_port(), tmp / "redis.pid"
    conf = tmp / "redis.conf"
    conf.write_text("\n".join([
        "bind 127.0.0.1", f"port {port}", f"requirepass {password}", 'save ""', "appendonly no",
        "daemonize yes", f"pidfile {pidfile}", f"dir {tmp}", f"logfile {tmp / 'redis.log'}", ""]))
    subprocess.run([shutil.which("redis-server"), str(conf)], check=True, capture_output=True, timeout=30)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        _wait(lambda: redis.Redis.from_url(url).ping() and pidfile.exists(), "redis-server")
        yield url
    finally:
        if pidfile.exists():
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not Path(f"/proc/{pid}").exists() or _is_zombie(pid), "redis-server shutdown")
        shutil.rmtree(tmp, ignore_errors=True)


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"

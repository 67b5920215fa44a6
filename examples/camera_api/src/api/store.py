"""Shared storage: the camera catalog (YAML), PostgreSQL (alert rules) and Redis (camera state).

Both implementations read and write the same data, so the storage layout (table, key
names, value encoding) lives here; how they use it is up to each implementation.
"""
import logging
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import pg8000.native
import redis
import yaml

from .errors import ServiceError
from .settings import Settings

log = logging.getLogger(__name__)

HOSTNAME = socket.gethostname()
LOG_LIMIT = 100
DEFAULT_STATE = {"running": False, "active": True, "auto_start": False}
SCHEMA_LOCK_ID = 72_610_001  # pg_advisory_lock key serialising schema creation across workers/hosts
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS alert_rules (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    camera_id TEXT,
    metric TEXT NOT NULL,
    operator TEXT NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
RULE_COLUMNS = "id, name, camera_id, metric, operator, threshold, enabled, created_at, updated_at"
UNIQUE_VIOLATION = "23505"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat()


def state_key(camera_id: str) -> str:
    return f"camera:{camera_id}:state"


def logs_key(camera_id: str) -> str:
    return f"camera:{camera_id}:logs"


def encode_bool(value: bool) -> str:
    return "true" if value else "false"


def decode_bool(raw: str | None, default: bool) -> bool:
    return default if raw is None else raw == "true"


def is_unique_violation(exc: Exception) -> bool:
    """pg8000 reports server errors as DatabaseError(dict) with the SQLSTATE under 'C'."""
    info = exc.args[0] if exc.args else None
    return isinstance(exc, pg8000.native.DatabaseError) and isinstance(info, dict) \
        and info.get("C") == UNIQUE_VIOLATION


@dataclass(frozen=True)
class Camera:
    id: str
    name: str
    location: str
    stream_url: str


class CameraCatalog:
    """Cameras from the YAML file, reloaded whenever the file changes.

    Checking the mtime on access keeps every worker process in sync after
    POST /cameras/refresh, which only reaches one of them.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self.reload()  # a missing or broken catalog stops start-up

    def reload(self) -> dict[str, Camera]:
        with self._lock:
            mtime = os.stat(self.path).st_mtime
            with open(self.path, encoding="utf-8") as fh:
                entries = (yaml.safe_load(fh) or {}).get("cameras") or []
            self._cameras = {str(c["id"]): Camera(str(c["id"]), str(c.get("name", "")),
                                                  str(c.get("location", "")), str(c.get("stream_url", "")))
                             for c in entries}
            self._mtime = mtime
            return self._cameras

    def cameras(self) -> dict[str, Camera]:
        if self._mtime != os.stat(self.path).st_mtime:
            return self.reload()
        return self._cameras

    def get(self, camera_id: str) -> Camera | None:
        return self.cameras().get(camera_id)


class PostgresPool:
    """A small pool of pg8000 connections (pg8000 connections are not thread-safe).

    The alert_rules table is created on the first connection, under an advisory lock,
    because several workers on several hosts start at the same time.
    """

    def __init__(self, settings: Settings, size: int = 8, timeout: float = 5.0):
        self._params = settings.postgres_params()
        self._size = size
        self._timeout = timeout
        self._idle: list[pg8000.native.Connection] = []
        self._lock = threading.Lock()
        self._schema_ready = False

    def connect(self, timeout: float) -> pg8000.native.Connection:
        p = self._params
        return pg8000.native.Connection(user=p.user, password=p.password, host=p.host, port=p.port,
                                        database=p.database, timeout=timeout,
                                        application_name="camera_api")

    @contextmanager
    def connection(self):
        """Lend a pooled connection (opening one when none is idle)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect(self._timeout)
        try:
            if not self._schema_ready:
                self._ensure_schema(conn)
            yield conn
        except ServiceError:  # a 404/409 decided after a successful query: the connection is fine
            self._give_back(conn)
            raise
        except BaseException:
            conn.close()  # its state is unknown after an error: never hand it out again
            raise
        self._give_back(conn)

    def _give_back(self, conn) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def _ensure_schema(self, conn) -> None:
        conn.run("SELECT pg_advisory_lock(:key)", key=SCHEMA_LOCK_ID)
        try:
            conn.run(SCHEMA_SQL)
        finally:
            conn.run("SELECT pg_advisory_unlock(:key)", key=SCHEMA_LOCK_ID)
        self._schema_ready = True

    def ensure_schema(self) -> None:
        """Create the table now (at start-up) rather than on the first alert request."""
        with self.connection():
            pass

    def ping(self) -> bool:
        """Health probe on a fresh connection with a 1 s timeout (never blocks on the pool)."""
        try:
            conn = self.connect(timeout=1.0)
            try:
                conn.run("SELECT 1")
            finally:
                conn.close()
            return True
        except Exception as exc:  # noqa: BLE001 - any failure means "down"
            log.warning("postgres health check failed: %s", type(exc).__name__)
            return False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Store:
    """Everything the implementations need: catalog, PostgreSQL pool and Redis client."""

    def __init__(self, settings: Settings):
        self.catalog = CameraCatalog(settings.cameras_config)
        self.pg = PostgresPool(settings)
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                          socket_connect_timeout=1.0, socket_timeout=2.0)

    def redis_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except Exception as exc:  # noqa: BLE001 - any failure means "down"
            log.warning("redis health check failed: %s", type(exc).__name__)
            return False

    def close(self) -> None:
        self.pg.close()
        self.redis.close()

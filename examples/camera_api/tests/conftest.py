"""Fixtures: one real PostgreSQL and one real Redis per test session, a clean slate per test,
and a factory for apps built from any environment (settings are read only at start-up)."""
import secrets
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pg8000.native
import pytest
import redis
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `src` must import even when pytest runs from the repository root

from backing_services import postgres_bin_dir, postgres_server, redis_server  # noqa: E402
from src.api.factory import create_app  # noqa: E402
from src.api.settings import Settings  # noqa: E402

# Password of both test servers; tests assert it never appears in responses or logs.
SECRET = "s3cret-" + secrets.token_hex(8)


@pytest.fixture(scope="session")
def secret() -> str:
    return SECRET


@pytest.fixture(scope="session")
def backends():
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with postgres_server(SECRET) as database_url, redis_server(SECRET) as redis_url:
        yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


@pytest.fixture
def env(backends, tmp_path) -> dict:
    """A fresh slate: empty Redis and no alert_rules table (each app creates it at start-up)."""
    redis.Redis.from_url(backends["REDIS_URL"]).flushdb()
    url = urlsplit(backends["DATABASE_URL"])
    conn = pg8000.native.Connection(url.username, host=url.hostname, port=url.port,
                                    password=url.password, database=url.path.lstrip("/"))
    conn.run("DROP TABLE IF EXISTS alert_rules")
    conn.close()
    return {**backends, "CAMERAS_CONFIG": str(ROOT / "config" / "cameras.yaml"),
            "RUNTIME_DIRECTORY": str(tmp_path / "run")}


@pytest.fixture
def make_client(env, tmp_path):
    """make_client(**ENV_OVERRIDES) -> a started TestClient; each app gets its own metrics dir."""
    clients = []

    def make(**overrides) -> TestClient:
        runtime = {"RUNTIME_DIRECTORY": str(tmp_path / f"run-{len(clients)}")}
        client = TestClient(create_app(Settings.from_env({**env, **runtime, **overrides})))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()

"""The light hosts' stub service: the reference service's switch rule, health,
the implementation header, and started the way the product's unit starts
uvicorn (``python -m uvicorn APP --host --port --workers`` in the app directory)."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rollout_sandbox import stub_service as stub

STUB = Path(stub.__file__)


def get(url: str, method: str = "GET", body: bytes | None = None):
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_switch_from_the_environment():
    assert stub.read_switch({}) == (False, 0)
    assert stub.read_switch({"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "25"}) == (True, 25)
    assert stub.read_switch({"USE_DOMAIN_SERVICE": "false", "ROLLOUT_PERCENT": "abc"}) == (False, 0)
    assert stub.read_switch({"USE_DOMAIN_SERVICE": "1", "ROLLOUT_PERCENT": "250"}) == (True, 100)


def test_implementation_follows_the_reference_rule():
    assert stub.implementation("force_domain=true", False, 0) == "domain"
    assert stub.implementation("force_domain=false", True, 100) == "legacy"
    assert stub.implementation("", False, 50) == "legacy"
    assert stub.implementation("", True, 0) == "legacy"
    assert stub.implementation("limit=5", True, 100) == "domain"
    rng = random.Random(7)
    served = [stub.implementation("", True, 10, rng) for _ in range(2000)]
    assert 150 < served.count("domain") < 250


@pytest.fixture
def server():
    running = stub.serve("127.0.0.1", 0, {"USE_DOMAIN_SERVICE": "false", "ROLLOUT_PERCENT": "0"})
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{running.server_address[1]}"
    running.shutdown()
    running.server_close()


def test_health_api_and_unknown_paths(server):
    status, _, body = get(server + "/api/v1/monitoring/health")
    assert status == 200 and body["status"] == "ok"
    assert body["rollout"] == {"use_domain_service": False, "rollout_percent": 0}
    status, headers, body = get(server + "/api/v1/alerts/rules")
    assert status == 200 and headers["X-Rollout-Implementation"] == "legacy" == body["implementation"]
    status, headers, _ = get(server + "/api/v1/cameras/x/activate?force_domain=true", "POST", b"{}")
    assert status == 200 and headers["X-Rollout-Implementation"] == "domain"
    assert get(server + "/api/v1/monitoring/metrics")[0] == 404
    assert get(server + "/")[0] == 404


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_runs_as_the_units_uvicorn(tmp_path):
    """The unit's command line finds the stub as uvicorn.py in its working
    directory (even where a real uvicorn is installed), with the switch in its
    own environment."""
    shutil.copy(STUB, tmp_path / "uvicorn.py")
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "100"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "src.api.app:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, body = get(f"http://127.0.0.1:{port}/api/v1/monitoring/health")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "the stub did not answer within 20 s"
                time.sleep(0.1)
        assert status == 200 and body["stub"] is True and body["pid"] == process.pid
        assert get(f"http://127.0.0.1:{port}/api/v1/alerts/rules")[1]["X-Rollout-Implementation"] == "domain"
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert b"ROLLOUT_PERCENT=100" in environ and b"USE_DOMAIN_SERVICE=true" in environ
    finally:
        process.terminate()
        process.wait(timeout=10)

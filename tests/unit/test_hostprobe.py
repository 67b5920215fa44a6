"""The on-host probe (rollout/hostprobe.py) run here, on files of a temporary
directory: what it reads of a host's state and writes (record, lock), and that
no secret value ever leaves it."""

import base64
import json
import os
import subprocess
import sys
import time

import pytest

from rollout import hostprobe
from rollout.hoststate import state_spec, status_report
from rollout.probe import probe_argv, probe_shell
from rollout.stages import allowed_stages, rollout_env

SWITCH = {"enabled": "USE_DOMAIN_SERVICE", "percent": "ROLLOUT_PERCENT"}
SECRET = "s3cretPassw0rd"


@pytest.fixture
def host(tmp_path):
    """A host's files under tmp_path, and the settings that name them."""
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir(mode=0o750)
    state.mkdir()
    (etc / "rollout.env").write_text("# stage 25\nUSE_DOMAIN_SERVICE=true\nROLLOUT_PERCENT=25\nDOMAIN_ERROR_RATE=0.2\n")
    (etc / "rollout.env").chmod(0o640)
    (etc / "secrets.env").write_text(f'DATABASE_URL="postgresql://c:{SECRET}@db/c"\nREDIS_URL=\nEXTRA=1\n')
    (state / "lock.json").write_text(json.dumps({"token": "t1", "owner": "bob"}))
    (state / "current.json").write_text(json.dumps({"stage": 25}))
    (state / "baseline.json").write_text(json.dumps({"to_stage": 25, "p95_ms": 7.5}))
    (state / "history.jsonl").write_text("".join(json.dumps({"stage": s}) + "\n" for s in (0, 10, 25)))
    settings = {
        "service_name": "no-such-unit-camera-rollout-test", "bind_port": 9, "health_path": "/health",
        "state_dir": str(state), "env_dir": str(etc), "unit_file": str(tmp_path / "unit.service"),
        "rollout_env_file": str(etc / "rollout.env"), "secrets_env_file": str(etc / "secrets.env"),
        "switch_variables": SWITCH, "write_secrets": False,
    }
    return tmp_path, settings


def run_probe(mode, spec, stdin=False):
    argv = probe_argv(mode) if stdin else probe_argv(mode, spec)
    result = subprocess.run(argv, input=json.dumps(spec) if stdin else None, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_state_reads_the_whole_host_in_one_call(host):
    tmp_path, settings = host
    state = run_probe("state", state_spec(settings, history=2))
    assert state["lock"] == {"token": "t1", "owner": "bob"}
    assert state["current"] == {"stage": 25} and state["baseline"]["p95_ms"] == 7.5
    assert state["history"] == [{"stage": 10}, {"stage": 25}]
    assert state["file_switch"] == {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "25"}
    files = state["files"]
    assert files[settings["env_dir"]]["type"] == "directory" and files[settings["env_dir"]]["mode"] == 750
    env = files[settings["rollout_env_file"]]
    assert env["type"] == "file" and env["mode"] == 640 and len(env["sha256"]) == 64
    import hashlib
    assert env["sha256"] == hashlib.sha256((tmp_path / "etc" / "rollout.env").read_bytes()).hexdigest()
    assert files[settings["unit_file"]] == {"type": None}
    # The secrets file: the names it sets to a value, no checksum unless asked, never a value.
    assert files[settings["secrets_env_file"]]["keys"] == ["DATABASE_URL", "EXTRA"]
    assert "sha256" not in files[settings["secrets_env_file"]]
    assert SECRET not in json.dumps(state)
    # Nothing answers on the port: no health, and nothing is known of the unit.
    assert state["health"]["status"] is None and state["process_switch"] is None


def test_the_spec_in_the_command_or_on_stdin_reads_the_same(host):
    _, settings = host
    spec = state_spec(settings, secrets_checksum=True)
    by_argument, by_stdin = run_probe("state", spec), run_probe("state", spec, stdin=True)
    assert by_argument["files"] == by_stdin["files"]
    assert len(by_argument["files"][settings["secrets_env_file"]]["sha256"]) == 64


def test_the_shell_command_line_is_the_same_probe(host):
    """tests/hosts runs the probe through testinfra as one shell line."""
    _, settings = host
    spec = state_spec(settings)
    result = subprocess.run(["sh", "-c", probe_shell("state", spec)], capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout)["file_switch"] == {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "25"}
    assert probe_shell("state", spec).split()[-1] == base64.b64encode(
        json.dumps(spec, sort_keys=True).encode()).decode()


def test_the_running_process_switch_comes_back_and_nothing_else():
    """The one reader of /proc/PID/environ: only the switch variables leave."""
    env = {"USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "10", "DATABASE_URL": f"postgresql://{SECRET}@db"}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env={**env, "PATH": os.defpath})
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd (its own environment in /proc)
        while b"time.sleep(30)" not in open(f"/proc/{child.pid}/cmdline", "rb").read():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.01)
        assert hostprobe.process_switch(child.pid, list(SWITCH.values())) == {
            "USE_DOMAIN_SERVICE": "true", "ROLLOUT_PERCENT": "10"}
        assert hostprobe.process_switch(None, list(SWITCH.values())) is None
    finally:
        child.kill()
        child.wait()


def test_the_status_report_is_read_from_the_state(host):
    _, settings = host
    state = run_probe("state", state_spec(settings, history=5))
    state["process_switch"] = rollout_env(10)
    report = status_report(state, SWITCH)
    assert (report["file_stage"], report["process_stage"], report["health"]) == (25, 10, None)
    assert report["lock"]["owner"] == "bob" and len(report["history"]) == 3


def test_preflight_reads_the_same_state_and_only_names_of_secrets(host):
    tmp_path, settings = host
    spec = {**state_spec(settings), "secrets_file": settings["secrets_env_file"],
            "cameras_file": str(tmp_path / "cameras.yaml"), "metrics_path": "/metrics"}
    observation = run_probe("preflight", spec)
    state = run_probe("state", state_spec(settings))
    assert observation["file_switch"] == state["file_switch"]
    assert observation["process_switch"] == state["process_switch"]
    assert observation["secrets_file"] == ["DATABASE_URL", "EXTRA"]
    # The URL is read on the host for a TCP connection; only yes/no comes back.
    assert observation["database"] == {"configured": True, "reachable": False}
    assert observation["redis"] == {"configured": False, "reachable": False}
    assert SECRET not in json.dumps(observation)


def test_record_reads_the_stage_and_baseline_on_the_host(host):
    tmp_path, settings = host
    state_dir = tmp_path / "state"
    spec = {"dir": str(state_dir), "switch_file": settings["rollout_env_file"],
            "switch_variables": list(SWITCH.values()),
            "stages": [[rollout_env(stage, SWITCH), stage] for stage in allowed_stages()],
            "baseline_file": str(state_dir / "baseline.json"),
            "record": {"target_stage": 25, "operator": "me", "verdict": "pass", "command": "rollout deploy",
                       "time": "2026-11-24T01:00:00+00:00"}}
    answer = run_probe("record", spec)
    assert answer["record"] == {**spec["record"], "stage": 25, "baseline_p95_ms": 7.5,
                                "stage_since": "2026-11-24T01:00:00+00:00"}
    # A later record of the same stage keeps when the host came to it.
    later = run_probe("record", {**spec, "record": {**spec["record"], "time": "2026-11-25T01:00:00+00:00"}})
    assert later["record"]["stage_since"] == "2026-11-24T01:00:00+00:00"
    answer = later
    assert json.loads((state_dir / "current.json").read_text()) == answer["record"]
    assert json.loads((state_dir / "history.jsonl").read_text().splitlines()[-1]) == answer["record"]
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    # A file holding no stage of the plan: recorded as none.
    (tmp_path / "etc" / "rollout.env").write_text("USE_DOMAIN_SERVICE=maybe\n")
    assert run_probe("record", spec)["record"]["stage"] is None


def test_lock_is_exclusive_and_released_by_its_holder_only(host):
    tmp_path, _ = host
    path = str(tmp_path / "state" / "lock.json")
    taken = run_probe("lock", {"path": path, "token": "t2", "lock": {"token": "t2", "owner": "me"}})
    assert taken == {"acquired": False, "holder": {"token": "t1", "owner": "bob"}}
    assert run_probe("lock", {"path": path, "token": "t1", "lock": {}})["acquired"]
    assert run_probe("unlock", {"path": path, "token": "t2"})["released"] is False
    assert run_probe("unlock", {"path": path, "token": "t2", "force": True})["released"]
    assert run_probe("lock", {"path": path, "token": "t2", "lock": {"token": "t2", "owner": "me"}})["acquired"]


def test_a_bad_mode_is_refused():
    result = subprocess.run(probe_argv("nope"), input="{}", capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage" in result.stderr


def test_traffic_stops_when_its_gate_says_so_and_retries_only_server_errors(tmp_path):
    """A gate that ends early stops the traffic on the host (a closed SSH channel
    would not); a 5xx answer is sent again, a 4xx is not."""
    import http.server
    import threading

    hits = {"/flaky": 0, "/missing": 0, "/ok": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            status = 500 if self.path == "/flaky" and hits["/flaky"] < 3 else 404 if self.path == "/missing" else 200
            self.send_response(status)
            self.send_header("X-Impl", "legacy")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        flaky, missing = hostprobe.mode_requests({"port": port, "header": "X-Impl", "retries": 2, "requests": [
            {"method": "GET", "path": "/flaky"}, {"method": "GET", "path": "/missing"}]})
        assert (flaky["status"], flaky["server_errors"], missing["status"], hits["/missing"]) == (200, 2, 404, 1)

        stop_file = str(tmp_path / "traffic-abc-0.stop")
        result = {}
        spec = {"port": port, "paths": ["/ok"], "count": 100000, "seconds": 60, "rate": 200, "stop_file": stop_file}
        worker = threading.Thread(target=lambda: result.update(hostprobe.mode_traffic(spec)))
        worker.start()
        deadline = time.monotonic() + 10
        while hits["/ok"] < 5 and time.monotonic() < deadline:  # the traffic is under way
            time.sleep(0.01)
        hostprobe.mode_stop({"stop_files": [stop_file]})
        worker.join(timeout=10)
        assert not worker.is_alive() and 0 < result["sent"] < 1000
        assert not os.path.exists(stop_file)  # the traffic removed it on its way out
    finally:
        server.shutdown()


# --- write: the one way a run puts a file on a host ----------------------------------------------


def write(spec, env=None):
    """The probe's write, its spec on stdin (as operations._replace sends it)."""
    return subprocess.run(probe_argv("write"), input=json.dumps(spec), capture_output=True, text=True,
                          timeout=60, env=env)


def owner_mode(path):
    import grp
    import pwd

    info = os.stat(path)
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, oct(info.st_mode & 0o777)


@pytest.mark.skipif(os.geteuid() != 0, reason="gives files another group: needs root")
def test_write_makes_a_missing_directory_with_its_owner_and_the_file_with_its_own(tmp_path):
    etc = tmp_path / "etc" / "camera-api"
    result = write({"path": str(etc / "secrets.env"), "content": f"DATABASE_URL={SECRET}\n", "user": "root",
                    "group": "daemon", "mode": "640", "directory": {"user": "root", "group": "daemon", "mode": "750"}})
    assert result.returncode == 0, result.stderr
    assert (etc / "secrets.env").read_text() == f"DATABASE_URL={SECRET}\n"
    assert owner_mode(etc / "secrets.env") == ("root", "daemon", "0o640")
    assert owner_mode(etc) == ("root", "daemon", "0o750")
    assert owner_mode(etc.parent) == ("root", "daemon", "0o750")  # a missing parent: the same owner
    assert sorted(os.listdir(etc)) == ["secrets.env"]  # no temporary file left


def test_write_removes_what_earlier_versions_left_beside_the_file_and_in_the_temp_directory(tmp_path):
    """The upload of old versions: ``.NAME.rollout-tmp`` beside the file, and
    pyinfra's staged copy of it, ``$TMPDIR/pyinfra-<sha1 of its path>``."""
    import hashlib

    etc, temp = tmp_path / "etc", tmp_path / "tmp"
    etc.mkdir()
    temp.mkdir()
    beside = etc / ".secrets.env.rollout-tmp"
    staged = temp / f"pyinfra-{hashlib.sha1(str(beside).encode()).hexdigest()}"
    for leftover in (beside, staged):
        leftover.write_text(f"DATABASE_URL={SECRET}\n")
    result = write({"path": str(etc / "secrets.env"), "content": "A=1\n", "mode": "600"},
                   env={**os.environ, "TMPDIR": str(temp)})
    assert result.returncode == 0, result.stderr
    assert not beside.exists() and not staged.exists()
    assert sorted(os.listdir(etc)) == ["secrets.env"] and oct((etc / "secrets.env").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("spoil, expected", [
    ("directory", "writing {path} failed: Is a directory; the old file is untouched and no temporary file is left"),
    ("group", "writing {path} failed: unknown group 'no-such-group-rollout'; nothing was written"),
])
def test_a_failed_write_says_one_line_and_leaves_no_copy_of_the_content(tmp_path, spoil, expected):
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "secrets.env"
    spec = {"path": str(path), "content": f"DATABASE_URL={SECRET}\n", "mode": "640"}
    if spoil == "directory":
        path.mkdir()  # the rename over it fails after the temporary file was written
    else:
        spec["group"] = "no-such-group-rollout"
    result = write(spec)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"camera-rollout-probe write: {expected.format(path=path)}"]
    assert SECRET not in result.stdout + result.stderr
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


@pytest.mark.parametrize("owner", ["file", "directory"])
def test_an_unknown_owner_makes_no_directory_either(tmp_path, owner):
    path = tmp_path / "etc" / "camera-api" / "secrets.env"
    spec = {"path": str(path), "content": "A=1\n", "mode": "640", "directory": {"mode": "750"}}
    if owner == "file":
        spec["group"] = "no-such-group-rollout"
    else:
        spec["directory"]["group"] = "no-such-group-rollout"
    result = write(spec)
    assert result.returncode == 1 and "unknown group 'no-such-group-rollout'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_write_takes_bytes_as_base64_and_tree_reads_them_back(tmp_path):
    """The autopilot's trees (rollout.operations.installed_tree): a wheel's bytes,
    nested directories made with the owner asked for, then read by ``tree``."""
    import base64

    wheel = bytes(range(256)) * 4
    dest = tmp_path / "wheelhouse"
    result = write({"files": [{"path": str(dest / "sub" / "deep" / "a.whl"),
                               "content_b64": base64.b64encode(wheel).decode(), "mode": "644",
                               "directory": {"mode": "750"}}]})
    assert result.returncode == 0, result.stderr
    assert (dest / "sub" / "deep" / "a.whl").read_bytes() == wheel
    assert oct((dest / "sub").stat().st_mode & 0o777) == "0o750"
    tree = run_probe("tree", {"path": str(dest)})
    import hashlib

    assert tree["files"]["sub/deep/a.whl"]["sha256"] == hashlib.sha256(wheel).hexdigest()
    assert sorted(tree["dirs"]) == ["sub", "sub/deep"] and tree["dirs"]["sub"]["mode"] == 750
    assert run_probe("tree", {"path": str(tmp_path / "nowhere")}) is None

"""Every bad input is refused before any host is contacted: exit 2, one line on
stderr naming the bad value, no traceback.

The inventory's hosts point at a TCP listener on loopback that counts the
connections it gets (a pyinfra connection attempt, or any other): for each bad
input the count must stay 0. A control case shows that a good command does
reach the listener, so a 0 means something.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

from rollout.project import defaults  # noqa: E402

#: The Prometheus provider's settings with a server (each case changes one thing).
PROMETHEUS = {**defaults()["prometheus"], "url": "http://127.0.0.1:9"}


class Listener:
    """Counts TCP connections on a loopback port; closes each at once."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def listener():
    trap = Listener()
    yield trap
    trap.close()


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory) -> Path:
    """A real key (pyinfra reads it before it connects), trusted by no host."""
    key = tmp_path_factory.mktemp("keys") / "id_trap"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def write_inventory(directory: Path, port: int, key: Path, group_data: dict | None = None,
                    host_data: dict | None = None, body: str | None = None, name: str = "trap",
                    second_host: str = "trap-2") -> Path:
    """An inventory of two hosts behind the listener; ``group_data`` in
    pyinfra's ``(hosts, data)`` form, ``host_data`` on the second host only,
    named ``second_host``."""
    path = directory / f"{name}.py"
    common = {"ssh_hostname": "127.0.0.1", "ssh_port": port, "ssh_key": str(key), "ssh_user": "root",
              "ssh_connect_retries": 0}
    second = {**common, **(host_data or {})}
    hosts = f"('trap-1', {common!r}), ({second_host!r}, {second!r})"
    if body is None:
        body = f"camera_api = ([{hosts}], {group_data or {}!r})\n"
    else:  # a body of its own may place the trap hosts with {hosts}
        body = body.format(hosts=hosts) if "{hosts}" in body else body
    path.write_text(body)
    return path


def rollout(*args: str, environ: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rollout", *args], cwd=ROOT, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120, env={**os.environ, **(environ or {})})


# (id, command with ENV for the inventory, inventory: group data / host data / body, expected words)
CASES = [
    # --- options --------------------------------------------------------------------------------------
    ("stage-33", ["deploy", "ENV", "--stage", "33", "--yes"], {}, "got 33"),
    ("stage-abc", ["deploy", "ENV", "--stage", "abc", "--yes"], {}, "got 'abc'"),
    ("stage-missing", ["deploy", "ENV", "--yes"], {}, "Missing option '--stage'"),
    ("soak-negative", ["deploy", "ENV", "--stage", "10", "--yes", "--soak", "-5s"], {}, "--soak '-5s'"),
    ("soak-5x", ["deploy", "ENV", "--stage", "10", "--yes", "--soak", "5x"], {}, "--soak '5x'"),
    ("batch-soak-5x", ["deploy", "ENV", "--stage", "10", "--yes", "--batch-soak", "5x"], {}, "--batch-soak '5x'"),
    ("batches-0", ["deploy", "ENV", "--stage", "10", "--yes", "--batches", "0"], {}, "batch size '0'"),
    ("batches-abc", ["deploy", "ENV", "--stage", "10", "--yes", "--batches", "1,abc"], {}, "batch size 'abc'"),
    ("batches-150pct", ["deploy", "ENV", "--stage", "10", "--yes", "--batches", "150%"], {}, "batch size '150%'"),
    ("batches-empty", ["deploy", "ENV", "--stage", "10", "--yes", "--batches", ","], {}, "--batches ','"),
    ("canary-unknown", ["deploy", "ENV", "--stage", "10", "--yes", "--canary", "nosuch"], {}, "canary 'nosuch'"),
    ("no-yes-no-tty", ["deploy", "ENV", "--stage", "10"], {}, "not a terminal: pass --yes"),
    ("on-failure-bad", ["deploy", "ENV", "--stage", "10", "--yes", "--on-failure", "maybe"], {}, "'maybe'"),
    ("unknown-option", ["deploy", "ENV", "--stage", "10", "--nope"], {}, "No such option '--nope'"),
    ("promote-batches-0", ["promote", "ENV", "--yes", "--batches", "0"], {}, "batch size '0'"),
    ("promote-canary", ["promote", "ENV", "--yes", "--canary", "nosuch"], {}, "canary 'nosuch'"),
    ("promote-soak-5x", ["promote", "ENV", "--yes", "--soak", "5x"], {}, "--soak '5x'"),
    ("promote-gate-soak-5x", ["promote", "ENV", "--yes", "--gate-soak", "5x"], {}, "--gate-soak '5x'"),
    ("promote-no-yes", ["promote", "ENV"], {}, "not a terminal: pass --yes"),
    ("rollback-batches-0", ["rollback", "ENV", "--batches", "0"], {}, "batch size '0'"),
    ("rollback-batches-101", ["rollback", "ENV", "--batches", "101%"], {}, "batch size '101%'"),
    ("check-soak-negative", ["check", "ENV", "--soak", "-5s"], {}, "--soak '-5s'"),
    ("check-soak-5x", ["check", "ENV", "--soak", "5x"], {}, "--soak '5x'"),
    ("status-no-env", ["status"], {}, "Missing argument 'ENV'"),
    ("unknown-command", ["deplo", "ENV"], {}, "No such command 'deplo'"),
    # --- environments and inventories ---------------------------------------------------------------
    ("env-unknown", ["deploy", "nowhere", "--stage", "10", "--yes"], {}, "unknown environment 'nowhere'"),
    ("env-not-py", ["deploy", "/tmp/x.txt", "--stage", "10", "--yes"], {}, "'/tmp/x.txt' is not an inventory"),
    ("env-missing-file", ["status", "/nonexistent/prod.py"], {}, "'/nonexistent/prod.py' does not exist"),
    ("env-deploy-file", ["deploy", "deploy.py", "--stage", "10", "--yes"], {}, "'deploy.py' is a deploy file"),
    ("inventory-env-var", ["status", "ENV"],
     {"body": "import os\nhosts = [os.environ['CAMERA_API_NO_SUCH_VARIABLE']]\n"},
     "KeyError: 'CAMERA_API_NO_SUCH_VARIABLE'"),
    ("inventory-import", ["status", "ENV"], {"body": "import no_such_module\nhosts = ['a']\n"},
     "No module named 'no_such_module'"),
    ("inventory-syntax", ["status", "ENV"], {"body": "hosts = [\n"}, "failed to load: SyntaxError"),
    ("inventory-empty", ["status", "ENV"], {"body": "hosts = []\n"}, "has no hosts"),
    ("ssh-key-missing", ["status", "ENV"], {"host_data": {"ssh_key": "/nonexistent/id_deploy"}},
     "ssh_key /nonexistent/id_deploy of host trap-2 does not exist"),
    ("known-hosts-missing", ["status", "ENV"], {"host_data": {"ssh_known_hosts_file": "/nonexistent/kh"}},
     "ssh_known_hosts_file /nonexistent/kh of host trap-2 does not exist"),
    # --- group data and host data ---------------------------------------------------------------------
    ("gate-typo", ["check", "ENV"], {"group_data": {"gate": {"error_rate_pass_bellow": 0.01}}},
     "unknown gate setting(s): error_rate_pass_bellow"),
    ("gate-string", ["check", "ENV"], {"group_data": {"gate": {"min_requests": "100"}}},
     "min_requests must be a finite number, got '100'"),
    ("gate-zero", ["check", "ENV"], {"group_data": {"gate": {"abort_after": 0}}}, "must be >= 1"),
    ("soak-s-string", ["deploy", "ENV", "--stage", "10", "--yes"], {"group_data": {"soak_s": "30s"}},
     "setting soak_s (host trap-1): must be a number >= 0, got '30s'"),
    ("soak-s-negative", ["check", "ENV"], {"group_data": {"soak_s": -1}}, "soak_s (host trap-1): must be"),
    ("interval-zero", ["check", "ENV"], {"group_data": {"gate_interval_s": 0}}, "gate_interval_s (host trap-1)"),
    ("hooks-key", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"batch_hooks": {"befor": ["true"]}}}, "unknown key(s) befor"),
    ("hooks-not-list", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"batch_hooks": {"before": "lb-drain {hosts}"}}}, "before must be a list"),
    ("hooks-placeholder", ["rollback", "ENV"],
     {"group_data": {"batch_hooks": {"after": ["lb-enable {host}"]}}}, "unknown placeholder 'host'"),
    ("rollback-batches-setting", ["rollback", "ENV"], {"group_data": {"rollback_batches": "0%"}},
     "setting rollback_batches (host trap-1): batch size '0%'"),
    ("plan-short", ["status", "ENV"], {"group_data": {"stage_plan": [10, 25, 50]}}, "must end at 100"),
    ("plan-order", ["status", "ENV"], {"group_data": {"stage_plan": [25, 10, 100]}}, "strictly increasing"),
    ("app-env-switch", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"app_env": {"ROLLOUT_PERCENT": "100"}}}, "app_env may not set ROLLOUT_PERCENT"),
    ("endpoints-empty", ["deploy", "ENV", "--stage", "10", "--yes"], {"group_data": {"endpoints": []}},
     "endpoint catalog must be a non-empty list"),
    ("provider-unknown", ["check", "ENV"], {"group_data": {"metrics_provider": "graphite"}},
     "metrics_provider (host trap-1): must be one of json, prometheus, got 'graphite'"),
    ("prometheus-no-url", ["check", "ENV"], {"group_data": {"metrics_provider": "prometheus"}},
     "metrics_provider is prometheus but prometheus[\"url\"] is not set"),
    ("prometheus-url-scheme", ["check", "ENV"],
     {"group_data": {"prometheus": {**PROMETHEUS, "url": "ftp://ops:s3cret-token@prom"}}},
     "url must be an http:// or https:// URL of the server (not shown"),
    ("prometheus-query-no-host", ["check", "ENV"],
     {"group_data": {"prometheus": {**PROMETHEUS, "queries": {**PROMETHEUS["queries"],
                                                              "instance": "max(camera_api_start_time_seconds)"}}}},
     "query instance does not name {{host}}"),
    ("prometheus-query-missing", ["check", "ENV"],
     {"group_data": {"prometheus": {**PROMETHEUS, "queries": {k: v for k, v in PROMETHEUS["queries"].items()
                                                              if k != "errors"}}}},
     "lacks the query errors"),
    ("prometheus-query-variable", ["check", "ENV"],
     {"group_data": {"prometheus": {**PROMETHEUS, "queries": {**PROMETHEUS["queries"],
                                                              "errors": 'sum(x{host="{{host}}",i="{{impl}}"})'}}}},
     "query errors uses {{impl}}"),
    ("prometheus-soak-short", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"metrics_provider": "prometheus", "prometheus": PROMETHEUS, "soak_s": 10}},
     "10 s is shorter than prometheus[\"min_window_s\"]"),
    ("alert-rules-window", ["rules", "ENV"],
     {"group_data": {"alert_rules": {**defaults()["alert_rules"], "window": "a minute"}}},
     "alert_rules (host trap-1): window must be a Prometheus duration"),
    ("dashboard-port", ["dashboard", "ENV", "--port", "70000"], {}, "--port 70000: a TCP port"),
    ("dashboard-refresh", ["dashboard", "ENV", "--refresh", "0s"], {}, "--refresh '0s': at least 1s"),
    ("dashboard-rate-window", ["dashboard", "ENV", "--rate-window", "1 m"], {}, "--rate-window '1 m'"),
    ("metrics-fields", ["check", "ENV"], {"group_data": {"metrics_fields": {"latency": "x.p95"}}},
     "unknown metric(s) 'latency'"),
    ("port", ["status", "ENV"], {"host_data": {"bind_port": 70000}}, "bind_port (host trap-2)"),
    ("health-timeout", ["deploy", "ENV", "--stage", "10", "--yes"], {"group_data": {"health_timeout_s": 0}},
     "health_timeout_s (host trap-1): must be a number > 0"),
    ("smoke-flag", ["check", "ENV"], {"group_data": {"smoke_traffic": "yes"}}, "smoke_traffic (host trap-1)"),
    ("paired-flag", ["check", "ENV"], {"group_data": {"paired_traffic": "on"}}, "paired_traffic (host trap-1)"),
    ("paired-rate", ["check", "ENV"], {"group_data": {"paired_pairs_per_s": 0}}, "paired_pairs_per_s (host trap-1)"),
    ("lookback", ["check", "ENV"], {"group_data": {"gate_lookback_s": "1h"}}, "gate_lookback_s (host trap-1)"),
    ("paired-share", ["check", "ENV"], {"group_data": {"paired_share": -0.1}}, "paired_share (host trap-1)"),
    ("gate-pooled", ["check", "ENV"], {"group_data": {"gate_pooled": "no"}}, "gate_pooled (host trap-1)"),
    ("paired-write", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"endpoints": [{"name": "start", "method": "POST", "path": "/s", "expect": 200,
                                    "paired": True}]}}, ("endpoint start: paired must be true or false, and true "
                                                        "only for a GET")),
    ("paired-ignore", ["check", "ENV"],
     {"group_data": {"endpoints": [{"name": "s", "method": "GET", "path": "/s", "expect": 200,
                                    "ignore": ["updated_at"]}]}}, "endpoint s: ignore: a JSON path starts with $"),
    ("responses-tolerated", ["check", "ENV"], {"group_data": {"gate": {"responses_differ_tolerated": 1}}},
     "responses_differ_tolerated is a rate in [0, 1)"),
    ("gate-alpha", ["check", "ENV"], {"group_data": {"gate": {"alpha": 0.5}}}, "alpha is a false-alarm rate"),
    ("gate-floor", ["check", "ENV"], {"group_data": {"gate": {"error_rate_floor": 0}}}, "error_rate_floor is a rate"),
    ("consistency-values", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"consistency_checks": [{"name": "x", "write": {"method": "PUT", "path": "/a",
                                                                     "body": {"v": "{value}"}},
                                             "read": "/a", "field": "v", "values": [1, 1]}]}},
     "values must be two different values"),
    ("env-file-relative", ["status", "ENV"], {"group_data": {"rollout_env_file": "rollout.env"}},
     "rollout_env_file (host trap-1): must be an absolute path"),
    ("write-secrets-no-values", ["rollback", "ENV"], {"group_data": {"write_secrets": True}},
     "database_url, redis_url has no value for host trap-1: refusing to write the secrets file"),
    ("write-secrets-command", ["write-secrets", "ENV", "--yes"], {},
     "database_url, redis_url has no value for host trap-1"),
    ("gate-percent-typo", ["check", "ENV"], {"group_data": {"gate": {"usage_confidence": 99.9999}}},
     "usage_confidence must be between 0 and 1"),
    ("gate-rate-above-1", ["check", "ENV"], {"group_data": {"gate": {"error_rate_pass_below": 5}}},
     "error_rate_pass_below is a rate in 0..1"),
    ("gate-bands-crossed", ["check", "ENV"],
     {"group_data": {"gate": {"error_rate_pass_below": 0.2, "error_rate_abort_above": 0.1}}},
     "error_rate_pass_below must not exceed error_rate_abort_above"),
    ("gate-not-whole", ["check", "ENV"], {"group_data": {"gate": {"min_requests": 1.5}}},
     "min_requests must be a whole number, got 1.5"),
    ("gate-nan", ["check", "ENV"], {"body": "camera_api = ([{hosts}], {{'gate': {{'abort_after': float('nan')}}}})\n"},
     "abort_after must be a finite number"),
    ("health-timeout-inf", ["check", "ENV"],
     {"body": "camera_api = ([{hosts}], {{'health_timeout_s': float('inf')}})\n"},
     "health_timeout_s (host trap-1): must be a number > 0, got inf"),
    ("hooks-attribute", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"batch_hooks": {"before": ["drain {hosts.x}"]}}}, "unknown placeholder 'hosts.x'"),
    ("hooks-index", ["rollback", "ENV"],
     {"group_data": {"batch_hooks": {"after": ["enable {hosts[a]}"]}}}, "unknown placeholder 'hosts[a]'"),
    ("hooks-brace", ["rollback", "ENV"], {"group_data": {"batch_hooks": {"after": ["enable {hosts"]}}},
     "expected '}' before end of string in 'enable {hosts'"),
    ("endpoint-placeholder", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"endpoints": [{"name": "x", "method": "GET", "path": "/a/{nope}", "expect": 200}]}},
     "endpoint x: unknown placeholder {nope}"),
    ("hooks-disagree", ["status", "ENV"], {"host_data": {"batch_hooks": {"before": ["true"]}}},
     "hosts disagree on batch_hooks"),
    ("ssh-key-relative", ["status", "ENV"], {"host_data": {"ssh_key": "keys/id_deploy"}},
     "ssh_key keys/id_deploy of host trap-2 must be an absolute path"),
    ("hosts-disagree", ["deploy", "ENV", "--stage", "10", "--yes"], {"host_data": {"soak_s": 99}},
     "hosts disagree on soak_s"),
    # Issue 12: the timetable, the watch, the alert sinks.
    ("durations-missing-stage", ["watch", "ENV"], {"group_data": {"stage_durations": {10: ["1d", "2d"]}}},
     ("setting stage_durations (host trap-1): must give exactly the plan's stages [10, 25, 50, 100]: "
      "missing: [25, 50, 100]")),
    ("durations-crossed", ["promote", "ENV", "--yes"],
     {"group_data": {"stage_durations": {10: ["2d", "1d"], 25: [1, 2], 50: [1, 2], 100: [1, 2]}}},
     "stage 10: the minimum 2d is longer than the maximum 1d"),
    ("compression-zero", ["status", "ENV"], {"group_data": {"time_compression": 0}},
     "setting time_compression (host trap-1): must be a number > 0, got 0"),
    ("confirm-placeholder", ["watch", "ENV"], {"group_data": {"confirm_hooks": ["tickets --env {environment}"]}},
     "unknown placeholder(s) {environment}"),
    ("auto-promote-string", ["watch", "ENV"], {"group_data": {"auto_promote": "yes"}},
     "setting auto_promote (host trap-1): must be true or false, got 'yes'"),
    ("sink-kind", ["watch", "ENV"],
     {"group_data": {"alert_sinks": [{"name": "ops", "kind": "pager", "url_env": "ROLLOUT_X_URL"}]}},
     "sink ops"),
    ("sink-url-not-set", ["watch", "ENV"],
     {"group_data": {"alert_sinks": [{"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_NO_SUCH_URL"}]}},
     "alerts: sink ops: environment variable ROLLOUT_NO_SUCH_URL is not set"),
    ("watch-loop-bad", ["watch", "ENV", "--loop", "soon"], {}, "--loop 'soon': a duration must look like"),
    ("watch-loop-zero", ["watch", "ENV", "--loop", "0"], {}, "--loop needs an interval > 0"),
    ("batches-setting", ["deploy", "ENV", "--stage", "10", "--yes"], {"group_data": {"batches": "0,100%"}},
     "setting batches (host trap-1)"),
    ("early-blank", ["promote", "ENV", "--yes", "--early", " "], {}, "--early needs a reason on one line"),
    ("early-two-lines", ["deploy", "ENV", "--stage", "25", "--yes", "--early", "a\nb"], {},
     "--early needs a reason on one line"),
    # Issue 20: every value that reaches a shell, a unit file or an SSH config, in its grammar.
    ("host-name-shell", ["deploy", "ENV", "--stage", "10", "--yes"], {"second_host": "api-2;touch${IFS}/tmp/x"},
     "host name 'api-2;touch${IFS}/tmp/x': letters, digits"),
    ("host-name-space", ["status", "ENV"], {"second_host": "api 2"}, "host name 'api 2'"),
    ("health-path-shell", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"host_data": {"health_path": "/health$(touch /tmp/x)"}}, "setting health_path (host trap-2): must be a URL"),
    ("metrics-path-quote", ["check", "ENV"], {"group_data": {"metrics_path": "/m'etrics"}}, "setting metrics_path"),
    ("bind-host-unit-line", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"host_data": {"bind_host": "127.0.0.1\nExecStartPre=+/bin/sh -c 'touch /tmp/x'"}},
     "setting bind_host (host trap-2): must be an IP address or a host name"),
    ("app-module-unit-line", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"app_module": "src.api.app:app\nExecStartPre=+/bin/true"}},
     "setting app_module (host trap-1): must be a Python module and attribute"),
    ("app-dir-specifier", ["deploy", "ENV", "--stage", "10", "--yes"], {"group_data": {"app_dir": "/opt/%h"}},
     "setting app_dir (host trap-1): must be an absolute path of letters"),
    ("venv-dir-dotdot", ["status", "ENV"], {"group_data": {"venv_dir": "/opt/../bin"}}, "setting venv_dir"),
    ("app-env-control", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"group_data": {"app_env": {"X": "a\x1b[2J"}}}, "a newline or another control character"),
    ("ssh-hostname-config-line", ["status", "ENV"],
     {"host_data": {"ssh_hostname": "10.0.0.2\nProxyCommand touch /tmp/x"}},
     "ssh_hostname of host trap-2: '10.0.0.2\\nProxyCommand touch /tmp/x' is not a valid hostname"),
    ("ssh-user-shell", ["status", "ENV"], {"host_data": {"ssh_user": "deploy$(id)"}},
     "ssh_user of host trap-2"),
    ("secret-newline", ["write-secrets", "ENV", "--yes"],
     {"group_data": {"database_url": "postgresql://c:s3cret@db/c\nUSE_DOMAIN_SERVICE=true",
                     "redis_url": "redis://:s3cret@cache/0"}},
     "database_url holds a control character for host trap-1"),
    ("host-keys-policy", ["status", "ENV"], {"group_data": {"ssh_strict_host_key_checking": "maybe"}},
     "setting ssh_strict_host_key_checking (host trap-1): must be one of yes, accept-new, no"),
    ("hook-env-sink-url", ["watch", "ENV"],
     {"group_data": {"alert_sinks": [{"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_X_URL"}],
                     "hook_env": ["ROLLOUT_X_URL"]}},
     "setting hook_env (host trap-1): ROLLOUT_X_URL holds an alert sink's URL"),
    ("prometheus-http-credentials", ["check", "ENV"],
     {"group_data": {"prometheus": {**PROMETHEUS, "url": "http://ops:s3cret-token@prom.internal:9090"}}},
     "url holds credentials over plain http:// to another host (not shown)"),
    ("sink-plain-http", ["watch", "ENV"],
     {"group_data": {"alert_sinks": [{"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_TRAP_HTTP_URL"}]},
      "environ": {"ROLLOUT_TRAP_HTTP_URL": "http://alerts.internal/hook/s3cret"}},
     "alerts: sink ops: ROLLOUT_TRAP_HTTP_URL holds a plain http:// URL to another host (not shown): refused"),
    ("hook-timeout-zero", ["deploy", "ENV", "--stage", "10", "--yes"], {"group_data": {"batch_hook_timeout_s": 0}},
     "setting batch_hook_timeout_s (host trap-1)"),
    ("bind-host-ipv6-zone", ["deploy", "ENV", "--stage", "10", "--yes"],
     {"host_data": {"bind_host": "fe80::1%x\nExecStartPre=+/bin/true"}},
     "setting bind_host (host trap-2): must be an IP address or a host name"),
    ("ssh-hostname-ipv6-zone", ["status", "ENV"], {"host_data": {"ssh_hostname": "fe80::1%x\nProxyCommand id"}},
     "ssh_hostname of host trap-2"),
    ("host-name-dotdot", ["status", "ENV"], {"second_host": "../../etc/x"}, "no '..'"),
    ("sink-backslash-host", ["watch", "ENV"],
     {"group_data": {"alert_sinks": [{"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_TRAP_BS_URL"}]},
      "environ": {"ROLLOUT_TRAP_BS_URL": "http://s3cret.evil:8080\\@127.0.0.1/hook"}},
     "alerts: sink ops: ROLLOUT_TRAP_BS_URL does not hold an http(s) URL (not shown)"),
    ("prometheus-backslash-host", ["check", "ENV"],
     {"group_data": {"prometheus": {**PROMETHEUS, "url": "http://ops:s3cret@evil\\@127.0.0.1:9090"}}},
     "url must be an http:// or https:// URL of the server (not shown"),
    ("switch-variable-is-a-secret", ["check", "ENV"],
     {"group_data": {"secret_variables": {"USE_DOMAIN_SERVICE": "database_url"}}},
     "setting secret_variables (host trap-1): USE_DOMAIN_SERVICE is also a switch variable"),
    ("sink-url-in-hook-env", ["watch", "ENV"],
     {"group_data": {"alert_sinks": [{"name": "ops", "kind": "webhook", "url_env": "LC_HOOK"}]}},
     "setting alert_sinks (host trap-1): url_env LC_HOOK is a variable every hook inherits"),
]


@pytest.mark.parametrize("args, inventory, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_host_is_contacted(tmp_path, listener, ssh_key, args, inventory,
                                                           expected):
    inventory = dict(inventory)
    environ = inventory.pop("environ", None)
    path = write_inventory(tmp_path, listener.port, ssh_key, **inventory)
    before = listener.count
    result = rollout(*[str(path) if a == "ENV" else a for a in args], environ=environ)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert len(lines) == 1 and lines[0].startswith("rollout: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "s3cret" not in result.stdout + result.stderr  # a server URL's credentials are never shown
    assert listener.count == before, f"a host was contacted for {args}"


def test_the_trap_sees_a_command_that_does_contact_the_hosts(tmp_path, listener, ssh_key):
    """The control case: a good command reaches the listener (and fails there,
    naming the hosts it cannot reach, with exit 1, not 2)."""
    path = write_inventory(tmp_path, listener.port, ssh_key)
    before = listener.count
    result = rollout("--json", "status", str(path))
    assert listener.count > before
    assert result.returncode == 1, result.stderr
    assert "trap-1" in result.stderr and "Traceback" not in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 1


def test_rules_need_no_ssh_key_and_contact_no_host(tmp_path, listener):
    """`rollout rules ENV` only reads settings: it runs where the deploy key is not
    (a monitoring repo's CI), and the trap sees no connection."""
    path = write_inventory(tmp_path, listener.port, Path("/nonexistent/id_deploy"),
                           group_data={"gate": {**defaults()["gate"], "error_rate_abort_above": 0.02}})
    before = listener.count
    result = rollout("rules", str(path))
    assert result.returncode == 0, result.stderr
    assert ") > 0.02\n" in result.stdout and "alert above 2%" in result.stdout
    assert listener.count == before

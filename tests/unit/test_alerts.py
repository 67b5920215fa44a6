"""Alerts: the events, sinks and bodies (rollout/alerts.py, pure), and their
sending (rollout/notify.py) to a real webhook receiver over loopback
(tests/alert_receiver.py): retries, bounds, filters, and that a webhook URL,
a secret, is never said."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollout.alerts import KINDS, SEVERITIES, Event, Sink, parse_sinks, payload, text, unsent, url_problem, wants
from rollout.notify import Notifier
from rollout.project import DEFAULTS_FILE, defaults
from tests.alert_receiver import running_receiver

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "SECRET-TOKEN-123"


def event(kind="aborted", key="prod:aborted:25", summary="stage 25 failed its gate on camera-2 (errors vs legacy)",
          stage=25, **details):
    return Event(kind=kind, env="prod", key=key, summary=summary, stage=stage,
                 time="2026-11-24T10:00:00+00:00", details=details)


# --- the data (pure) ---------------------------------------------------------------------------------


def test_every_kind_has_a_title_and_a_severity():
    assert list(KINDS) == ["stage-started", "batch-passed", "promoted", "completed", "due", "held", "aborted",
                           "rolled-back", "inconclusive-past-due", "overdue", "lock-stale", "watch-failing",
                           "watch-recovered"]
    assert all(kind.title and kind.severity in SEVERITIES for kind in KINDS.values())
    assert KINDS["aborted"].severity == "critical" and KINDS["promoted"].severity == "info"


def test_an_unknown_kind_or_a_multi_line_summary_is_refused():
    with pytest.raises(ValueError, match=r"^unknown event kind 'exploded' \(known: stage-started, "):
        event(kind="exploded")
    with pytest.raises(ValueError, match=r"^event aborted: the summary must be one line$"):
        event(summary="one\ntwo")


def test_an_event_as_json_has_every_field_and_its_kind_s_title_and_severity():
    data = event(window_s=300).to_json()
    assert data == {"kind": "aborted", "title": "aborted", "severity": "critical", "env": "prod",
                    "key": "prod:aborted:25", "summary": "stage 25 failed its gate on camera-2 (errors vs legacy)",
                    "stage": 25, "time": "2026-11-24T10:00:00+00:00", "details": {"window_s": 300}}
    assert json.loads(json.dumps(data)) == data


def test_sinks_are_parsed():
    assert parse_sinks([]) == []
    sinks = parse_sinks([
        {"name": "ops", "kind": "webhook", "url_env": "ROLLOUT_ALERT_WEBHOOK_URL"},
        {"name": "chat", "kind": "slack", "url_env": "ROLLOUT_SLACK_WEBHOOK_URL", "events": ["due", "aborted", "due"]},
    ])
    assert sinks == [Sink("ops", "webhook", "ROLLOUT_ALERT_WEBHOOK_URL", None),
                     Sink("chat", "slack", "ROLLOUT_SLACK_WEBHOOK_URL", ("due", "aborted"))]


@pytest.mark.parametrize("raw, message", [
    ({"name": "ops"}, "must be a list of sinks, got {'name': 'ops'}"),
    (["ops"], "sink #1: must be a mapping with name, kind, url_env (and events), got 'ops'"),
    ([{"kind": "slack", "url_env": "X"}],
     "sink #1: name must be a plain name (letters, digits, . _ - @), got None"),
    ([{"name": "ops", "kind": "webhook", "url_env": "X", "headers": {}, "retries": 2}],
     ("sink ops: unknown key(s) headers, retries (name, kind, url_env, events, allow_http); "
      "the URL goes in the environment variable named by url_env")),
    ([{"name": "ops", "kind": "email", "url_env": "X"}], "sink ops: unknown kind 'email' (webhook, slack)"),
    ([{"name": "ops", "kind": "slack"}],
     ("sink ops: url_env must be the name of an environment variable holding the URL "
      "(like ROLLOUT_ALERT_WEBHOOK_URL), never the URL itself")),
    ([{"name": "ops", "kind": "slack", "url_env": "1BAD-NAME"}],
     ("sink ops: url_env must be the name of an environment variable holding the URL "
      "(like ROLLOUT_ALERT_WEBHOOK_URL), never the URL itself")),
    ([{"name": "ops", "kind": "slack", "url_env": "X", "events": "aborted"}],
     "sink ops: events must be a list of event kinds, got 'aborted'"),
    ([{"name": "ops", "kind": "slack", "url_env": "X", "events": []}],
     "sink ops: events is empty (leave it out to send every kind)"),
    ([{"name": "ops", "kind": "slack", "url_env": "X", "events": ["aborted", "exploded"]}],
     "sink ops: unknown event kind(s) 'exploded' (known: " + ", ".join(KINDS) + ")"),
    ([{"name": "ops", "kind": "slack", "url_env": "X"}, {"name": "ops", "kind": "webhook", "url_env": "Y"}],
     "sink ops: two sinks have this name"),
    ([{"name": "ops", "kind": "slack", "url_env": "X", "allow_http": "yes"}],
     "sink ops: allow_http must be true or false, got 'yes'"),
])
def test_a_bad_sink_is_refused_in_one_line_naming_it(raw, message):
    with pytest.raises(ValueError) as refused:
        parse_sinks(raw)
    assert str(refused.value) == message


@pytest.mark.parametrize("mistake", [
    {"url_env": f"https://hooks.slack.com/services/T0/B0/{TOKEN}"},
    {"url_env": "X", "url": f"https://hooks.example.com/{TOKEN}"},
    {"url_env": "X", "kind": f"https://hooks.example.com/{TOKEN}"},
    {"url_env": "X", "events": [f"https://hooks.example.com/{TOKEN}"]},
    {"url_env": "X", "name": f"https://hooks.example.com/{TOKEN}"},
])
def test_a_url_written_in_the_settings_by_mistake_is_refused_without_showing_it(mistake):
    with pytest.raises(ValueError) as refused:
        parse_sinks([{"name": "ops", "kind": "slack", **mistake}])
    assert TOKEN not in str(refused.value) and "hooks." not in str(refused.value)


def test_the_defaults_and_the_documented_example_are_valid_sinks():
    values = defaults()
    assert parse_sinks(values["alert_sinks"]) == []
    assert values["alert_timeout_s"] > 0 and isinstance(values["alert_retries"], int)
    lines = DEFAULTS_FILE.read_text().split("# --- Alerts ")[1].splitlines()
    example = "\n".join(line.removeprefix("#:   ") for line in lines if line.startswith("#:   "))
    namespace: dict = {}
    exec(example, namespace)
    sinks = parse_sinks(namespace["alert_sinks"])
    assert [(sink.kind, sink.url_env) for sink in sinks] == [("webhook", "ROLLOUT_ALERT_WEBHOOK_URL"),
                                                             ("slack", "ROLLOUT_SLACK_WEBHOOK_URL")]


def test_a_webhook_gets_the_event_and_slack_one_readable_line():
    webhook, slack = Sink("ops", "webhook", "A"), Sink("chat", "slack", "B")
    assert payload(webhook, event()) == event().to_json()
    assert payload(slack, event()) == {
        "text": "[prod] CRITICAL aborted: stage 25 failed its gate on camera-2 (errors vs legacy)"}
    due = event(kind="due", summary="stage 10 passed for 2h: promote with rollout promote prod")
    assert text(due) == "[prod] WARNING due for promotion: stage 10 passed for 2h: promote with rollout promote prod"
    # Slack reads <...> as a link or a mention: escaped
    assert payload(slack, event(summary="p95 <b> & 1.5 x legacy's"))["text"].endswith(
        "p95 &lt;b&gt; &amp; 1.5 x legacy's")


def test_a_sink_wants_its_kinds_and_unsent_drops_what_was_sent():
    assert wants(Sink("all", "slack", "X"), event(kind="promoted"))
    picky = Sink("picky", "slack", "X", ("aborted",))
    assert wants(picky, event()) and not wants(picky, event(kind="promoted"))
    first, again, second, third = event(key="a"), event(key="a"), event(key="b"), event(key="c")
    assert unsent([first, again, second, third], {"b"}) == [first, third]
    assert unsent([], {"a"}) == [] and unsent([third], set()) == [third]


# --- sending, to a real receiver ---------------------------------------------------------------------


class Said(list):
    """The ``say`` of a Notifier: every line kept."""

    def __call__(self, line: str) -> None:
        assert isinstance(line, str) and "\n" not in line
        self.append(line)


def notifier(sinks, environ, said, *, retries=0, timeout_s=2.0, sleeps=None):
    return Notifier(sinks, environ=environ, say=said, timeout_s=timeout_s, retries=retries, backoff_s=0.5,
                    sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_each_event_is_delivered_once_as_json(tmp_path):
    said = Said()
    with running_receiver(tmp_path) as receiver:
        alerts = notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": receiver.url}, said, retries=3)
        assert alerts.send(event(key="a")) and alerts.send(event(kind="promoted", key="b"))
        records = receiver.received()
    assert [r["body"] for r in records] == [event(key="a").to_json(), event(kind="promoted", key="b").to_json()]
    assert {(r["path"], r["content_type"]) for r in records} == {("/hook", "application/json")}
    assert said == []


def test_server_errors_are_tried_again_with_a_doubling_pause(tmp_path):
    said, sleeps = Said(), []
    with running_receiver(tmp_path, fail_first=2) as receiver:
        alerts = notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": receiver.url}, said, retries=3, sleeps=sleeps)
        assert alerts.send(event())
        assert [r["status"] for r in receiver.received()] == [500, 500, 200]
    assert sleeps == [0.5, 1.0]
    assert said == ["alert aborted to sink ops: HTTP 500 (attempt 1 of 4), trying again in 0.5s",
                    "alert aborted to sink ops: HTTP 500 (attempt 2 of 4), trying again in 1s"]


def test_a_429_is_tried_again(tmp_path):
    with running_receiver(tmp_path, fail_first=1, fail_status=429) as receiver:
        assert notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": receiver.url}, Said(), retries=1).send(event())
        assert [r["status"] for r in receiver.received()] == [429, 200]


def test_it_gives_up_after_its_retries(tmp_path):
    said = Said()
    with running_receiver(tmp_path, fail_first=100) as receiver:
        alerts = notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": receiver.url}, said, retries=2)
        assert alerts.send(event()) is False
        assert len(receiver.received()) == 3
    assert said[-1] == "alert aborted to sink ops failed: HTTP 500 (attempt 3 of 3, giving up)"


def test_a_client_error_is_not_tried_again(tmp_path):
    said = Said()
    with running_receiver(tmp_path, fail_first=100, fail_status=404) as receiver:
        alerts = notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": receiver.url}, said, retries=3)
        assert alerts.send(event()) is False
        assert len(receiver.received()) == 1
    assert said == ["alert aborted to sink ops failed: HTTP 404 (attempt 1 of 4, giving up)"]


def test_a_slow_sink_times_out_on_each_attempt(tmp_path):
    """The receiver answers after 30 s; each attempt gives up after timeout_s."""
    said = Said()
    with running_receiver(tmp_path, delay_s=30) as receiver:
        alerts = notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": receiver.url}, said, retries=1, timeout_s=0.3)
        assert alerts.send(event()) is False
        assert len(receiver.wait_for(2)) == 2  # logged on arrival; the second attempt was the last
    assert said == ["alert aborted to sink ops: timed out (attempt 1 of 2), trying again in 0.5s",
                    "alert aborted to sink ops failed: timed out (attempt 2 of 2, giving up)"]


def test_slack_gets_its_text_and_the_events_filter_is_kept(tmp_path):
    with running_receiver(tmp_path) as receiver:
        sinks = [Sink("chat", "slack", "SLACK", ("aborted", "due")), Sink("ops", "webhook", "HOOK", ("promoted",))]
        alerts = notifier(sinks, {"SLACK": receiver.url, "HOOK": receiver.url}, Said())
        assert alerts.send(event()) and alerts.send(event(kind="promoted", key="p"))
        assert alerts.send(event(kind="batch-passed", key="b"))  # nobody wants it: nothing sent
        records = receiver.received()
    assert [r["body"] for r in records] == [
        {"text": "[prod] CRITICAL aborted: stage 25 failed its gate on camera-2 (errors vs legacy)"},
        event(kind="promoted", key="p").to_json()]


def test_a_sink_without_its_variable_is_named_and_fails(tmp_path):
    said = Said()
    sinks = [Sink("ops", "webhook", "ROLLOUT_ALERT_WEBHOOK_URL"), Sink("chat", "slack", "ROLLOUT_SLACK_WEBHOOK_URL")]
    with running_receiver(tmp_path) as receiver:
        alerts = notifier(sinks, {"ROLLOUT_ALERT_WEBHOOK_URL": receiver.url, "ROLLOUT_SLACK_WEBHOOK_URL": "  "}, said)
        assert alerts.problems() == ["sink chat: environment variable ROLLOUT_SLACK_WEBHOOK_URL is not set"]
        assert alerts.send(event()) is False
        assert len(receiver.received()) == 1  # the other sink still got it
    assert said == ["alert aborted to sink chat not sent: environment variable ROLLOUT_SLACK_WEBHOOK_URL is not set"]
    assert notifier(sinks, {}, said).problems() == [
        "sink ops: environment variable ROLLOUT_ALERT_WEBHOOK_URL is not set",
        "sink chat: environment variable ROLLOUT_SLACK_WEBHOOK_URL is not set"]


def free_port() -> int:
    """A port nothing listens on (bound, then closed): a connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_url_its_host_and_path_are_never_said(tmp_path):
    said, raised = Said(), []
    port = free_port()
    with running_receiver(tmp_path, fail_first=100) as failing, running_receiver(tmp_path, delay_s=30) as slow:
        environ = {"REFUSED": f"http://127.0.0.1:{port}/hook/{TOKEN}",
                   "FAILING": f"{failing.url}/{TOKEN}", "SLOW": f"{slow.url}/{TOKEN}",
                   "GARBAGE": f"hooks.example.com/{TOKEN}"}
        sinks = [Sink(name.lower(), "slack", name) for name in environ]
        try:
            delivered = notifier(sinks, environ, said, retries=1, timeout_s=0.3).send(event())
        except Exception as error:  # noqa: BLE001 - it must not raise; if it did, its text is checked too
            raised.append(f"{type(error).__name__}: {error}")
            delivered = None
    assert delivered is False and raised == []
    assert [line.split(": ", 1)[1] for line in said if "giving up" in line] == [
        "connection refused (attempt 2 of 2, giving up)", "HTTP 500 (attempt 2 of 2, giving up)",
        "timed out (attempt 2 of 2, giving up)"]
    assert "alert aborted to sink garbage not sent: GARBAGE does not hold an http(s) URL (not shown)" in said
    everything = "\n".join(said + raised)
    for secret in (TOKEN, str(port), str(failing.port), str(slow.port), "127.0.0.1", "hooks.example.com", "/hook"):
        assert secret not in everything


def test_the_receiver_runs_as_a_process_and_stops_on_sigterm(tmp_path):
    log, port_file = tmp_path / "log.jsonl", tmp_path / "port"
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "alert_receiver.py"), "--log", str(log),
                                "--port-file", str(port_file), "--fail-first", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert re.fullmatch(r"\d+\n", port_file.read_text())
        url = f"http://127.0.0.1:{int(port_file.read_text())}/hook"
        assert notifier([Sink("ops", "webhook", "HOOK")], {"HOOK": url}, Said(), retries=1).send(event())
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(r["path"], r["status"], r["body"]["kind"]) for r in records] == [
            ("/hook", 500, "aborted"), ("/hook", 200, "aborted")]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("url, allow_http, problem", [
    ("https://hooks.example/T0/s3cret", False, None),
    ("http://127.0.0.1:9095/s3cret", False, None),
    ("http://localhost/s3cret", False, None),
    ("http://[::1]:9095/s3cret", False, None),
    ("http://alerts.internal/s3cret", True, None),
    ("http://alerts.internal/s3cret", False, ("sink ops: X holds a plain http:// URL to another host (not shown): "
                                              "refused, the URL and the alerts would cross the network unencrypted "
                                              "(use https://, or allow_http: True for this sink)")),
    ("http://10.0.0.5:8080/s3cret", False, "plain http:// URL to another host"),
    ("ftp://alerts.internal/s3cret", True, "sink ops: X does not hold an http(s) URL (not shown)"),
    ("", False, "sink ops: environment variable X is not set"),
])
def test_a_plain_http_sink_is_refused_unless_loopback_or_allowed(url, allow_http, problem):
    found = url_problem(Sink("ops", "webhook", "X", allow_http=allow_http), url)
    assert (found is None) == (problem is None) and (problem is None or problem in found)
    assert found is None or "s3cret" not in found

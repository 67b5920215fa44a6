"""The rollout's notifications as data: what happened (an ``Event``), where it
goes (a ``Sink``), and what each sink is sent.

Pure: no I/O. ``rollout/notify.py`` posts the bodies built here. A sink's URL is
a secret (a Slack or chat webhook URL lets anyone post to the channel): the
settings name only the environment variable of the control machine that holds
it, and no message here ever shows a value that looks like a URL.

Each event carries a dedup ``key`` chosen by the caller (e.g. ``prod:aborted:25:
<run id>``): a rollout checked every few minutes sends an alert once, not on
every check (``unsent``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit

SEVERITIES = ("info", "warning", "critical")


class Kind(NamedTuple):
    title: str
    severity: str


#: Every event kind, with the short title a person reads and its severity.
KINDS: dict[str, Kind] = {
    "stage-started": Kind("stage started", "info"),
    "batch-passed": Kind("batch passed", "info"),
    "promoted": Kind("promoted", "info"),
    # 100 % held for its minimum time and its gate passes: the rollout is done.
    "completed": Kind("completed", "info"),
    # The stage is due and passing, but auto-promotion is off: a person must promote.
    "due": Kind("due for promotion", "warning"),
    # A confirm hook refused a promotion.
    "held": Kind("held", "warning"),
    "aborted": Kind("aborted", "critical"),
    "rolled-back": Kind("rolled back", "warning"),
    "inconclusive-past-due": Kind("inconclusive past due", "warning"),
    "overdue": Kind("overdue", "warning"),
    "lock-stale": Kind("lock stale", "warning"),
    "watch-failing": Kind("watch failing", "critical"),
    "watch-recovered": Kind("watch recovered", "info"),
}

SINK_KINDS = ("webhook", "slack")
SINK_KEYS = ("name", "kind", "url_env", "events", "allow_http")


@dataclass(frozen=True)
class Event:
    """One thing that happened to an environment's rollout."""

    kind: str
    env: str
    key: str
    summary: str
    stage: int | None
    time: str
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r} (known: {', '.join(KINDS)})")
        if "\n" in self.summary:  # a chat line and a log line: one line each
            raise ValueError(f"event {self.kind}: the summary must be one line")

    @property
    def title(self) -> str:
        return KINDS[self.kind].title

    @property
    def severity(self) -> str:
        return KINDS[self.kind].severity

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "title": self.title, "severity": self.severity, "env": self.env,
                "key": self.key, "summary": self.summary, "stage": self.stage, "time": self.time,
                "details": dict(self.details)}


@dataclass(frozen=True)
class Sink:
    """Where alerts go. ``url_env`` is the NAME of the variable holding the URL;
    ``events`` the kinds it is sent (None: every kind); ``allow_http``: a plain
    ``http://`` URL to a host other than loopback is accepted (else refused: the
    URL, a secret, and the alerts would cross the network unencrypted)."""

    name: str
    kind: str
    url_env: str
    events: tuple[str, ...] | None = None
    allow_http: bool = False


#: The characters of a URL (RFC 3986: unreserved, reserved and ``%``). Anything
#: else, a backslash above all, is refused: ``http://evil\\@127.0.0.1/`` is a
#: loopback URL to Python's urlsplit but a request to ``evil`` to a browser's
#: (WHATWG) parser, and the check must judge the host the request goes to.
_URL = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


def web_url(url: str) -> SplitResult | None:
    """``url`` split, when it is a plain http(s) URL with a host (RFC 3986's
    characters only); None otherwise. Never shows the URL (it may be a secret)."""
    if not _URL.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return parts


def url_problem(sink: Sink, url: str | None) -> str | None:
    """Why ``sink`` may not be posted to at ``url`` (its variable's value), in
    one line that never shows the URL; None when it may."""
    url = (url or "").strip()
    if not url:
        return f"sink {sink.name}: environment variable {sink.url_env} is not set"
    parts = web_url(url)
    host = parts.hostname if parts else None
    if parts is None or host is None:
        return f"sink {sink.name}: {sink.url_env} does not hold an http(s) URL (not shown)"
    if parts.scheme == "http" and not sink.allow_http and not is_loopback(host):
        return (f"sink {sink.name}: {sink.url_env} holds a plain http:// URL to another host (not shown): refused, "
                "the URL and the alerts would cross the network unencrypted (use https://, or allow_http: True "
                "for this sink)")
    return None


def is_loopback(host: str) -> bool:
    """localhost, or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: Any) -> str:
    """A bad value for a message, unless it may be a URL (a secret)."""
    return "a URL (not shown)" if "://" in str(value) else repr(value)


def _sink(raw: Any, where: str) -> Sink:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping with name, kind, url_env (and events), "
                         f"got {_shown(raw)}")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*", name):
        raise ValueError(f"{where}: name must be a plain name (letters, digits, . _ - @), got {_shown(name)}")
    where = f"sink {name}"
    unknown = [_shown(key) if "://" in str(key) else str(key) for key in raw if key not in SINK_KEYS]
    if unknown:  # the names only: a key like "url" may hold the secret itself
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} ({', '.join(SINK_KEYS)}); "
                         "the URL goes in the environment variable named by url_env")
    if raw.get("kind") not in SINK_KINDS:
        raise ValueError(f"{where}: unknown kind {_shown(raw.get('kind'))} ({', '.join(SINK_KINDS)})")
    url_env = raw.get("url_env")
    if not isinstance(url_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", url_env):
        # never shown: a URL written here by mistake would be printed
        raise ValueError(f"{where}: url_env must be the name of an environment variable holding the URL "
                         "(like ROLLOUT_ALERT_WEBHOOK_URL), never the URL itself")
    events = raw.get("events")
    if events is not None:
        if not isinstance(events, (list, tuple)) or not all(isinstance(kind, str) for kind in events):
            raise ValueError(f"{where}: events must be a list of event kinds, got {_shown(events)}")
        if not events:
            raise ValueError(f"{where}: events is empty (leave it out to send every kind)")
        unknown = [kind for kind in events if kind not in KINDS]
        if unknown:
            raise ValueError(f"{where}: unknown event kind(s) {', '.join(map(_shown, unknown))} "
                             f"(known: {', '.join(KINDS)})")
        events = tuple(dict.fromkeys(events))
    allow_http = raw.get("allow_http", False)
    if not isinstance(allow_http, bool):
        raise ValueError(f"{where}: allow_http must be true or false, got {_shown(allow_http)}")
    return Sink(name, raw["kind"], url_env, events, allow_http)


def parse_sinks(raw: Any) -> list[Sink]:
    """The checked ``alert_sinks`` setting; a bad one raises ValueError, one line
    naming the sink (by name, else by position) and the problem."""
    if not isinstance(raw, (list, tuple)):
        raise ValueError(f"must be a list of sinks, got {_shown(raw)}")
    sinks: list[Sink] = []
    for position, entry in enumerate(raw, 1):
        sink = _sink(entry, f"sink #{position}")
        if any(other.name == sink.name for other in sinks):
            raise ValueError(f"sink {sink.name}: two sinks have this name")
        sinks.append(sink)
    return sinks


def wants(sink: Sink, event: Event) -> bool:
    return sink.events is None or event.kind in sink.events


def unsent(events: Iterable[Event], sent_keys: Iterable[str]) -> list[Event]:
    """The events not sent yet, in order, each key once."""
    seen = set(sent_keys)
    fresh = []
    for event in events:
        if event.key not in seen:
            seen.add(event.key)
            fresh.append(event)
    return fresh


def _slack_escaped(text: str) -> str:
    """Slack reads <...> as links and mentions; its three escapes."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def text(event: Event) -> str:
    """One line for a person: ``[prod] CRITICAL aborted: stage 25 failed ...``."""
    return f"[{event.env}] {event.severity.upper()} {event.title}: {event.summary}"


def payload(sink: Sink, event: Event) -> dict[str, Any]:
    """The JSON body a sink is sent."""
    if sink.kind == "slack":
        return {"text": _slack_escaped(text(event))}
    return event.to_json()

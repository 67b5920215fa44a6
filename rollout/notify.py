"""Alerts sent: the bodies of rollout/alerts.py posted to each sink's webhook.

Thin on purpose. An alert must never stop a rollout, so ``send`` never raises
for a network problem: it says what failed and returns False. Each attempt is
bounded (``timeout_s`` to connect and ``timeout_s`` between bytes of the
answer); a connection error, a timeout, a 5xx or a 429 is tried again after a
doubling pause, any other answer is final.

A webhook URL is a secret: it is read from the control machine's environment
(``Sink.url_env``) at send time and never said, not even its host. A failure is
said as a class of problem ("HTTP 500", "timed out", "connection refused"),
never with the text of a requests exception, which holds the URL.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping

import requests

from rollout.alerts import Event, Sink, payload, url_problem, wants


def _refused(error: BaseException) -> bool:
    """Whether a ConnectionRefusedError sits anywhere in the chain requests and
    urllib3 wrap around it (``args``, ``reason``, ``__cause__``, ``__context__``)."""
    seen, pending = set(), [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        linked = [*getattr(current, "args", ()), getattr(current, "reason", None),
                  current.__cause__, current.__context__]
        pending += [item for item in linked if isinstance(item, BaseException)]
    return False


def _cause(error: Exception) -> tuple[str, bool]:
    """What went wrong, as a class of problem, and whether to try again."""
    if isinstance(error, requests.Timeout):
        return "timed out", True
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS failed", False
    if isinstance(error, requests.ConnectionError):
        return ("connection refused" if _refused(error) else "connection failed"), True
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema)):
        return "the URL is not a usable http(s) URL", False
    return f"request failed ({type(error).__name__})", False


class Notifier:
    """Posts events to the sinks that want them.

    ``timeout_s`` and ``retries`` come from the settings (group_data/all.py:
    alert_timeout_s, alert_retries); ``backoff_s`` is the first pause between
    attempts, doubled after each; ``sleep`` is injectable for tests."""

    def __init__(self, sinks: Iterable[Sink], *, timeout_s: float, retries: int,
                 environ: Mapping[str, str] | None = None, say: Callable[[str], None] = print,
                 backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sinks = list(sinks)
        self.environ = os.environ if environ is None else environ
        self.say = say
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep

    def _url(self, sink: Sink) -> str:
        return (self.environ.get(sink.url_env) or "").strip()

    def problems(self) -> list[str]:
        """One line per sink that will not be posted to: its variable unset or
        blank, not an http(s) URL, or plain http:// to another host without
        ``allow_http`` (names only, never a URL)."""
        return [problem for sink in self.sinks if (problem := url_problem(sink, self._url(sink)))]

    def send(self, event: Event) -> bool:
        """Post ``event`` to every sink that wants it; True when each accepted it
        (also when none wants it)."""
        delivered = True
        for sink in self.sinks:
            if wants(sink, event):
                delivered = self._deliver(sink, event) and delivered
        return delivered

    def _deliver(self, sink: Sink, event: Event) -> bool:
        where = f"alert {event.kind} to sink {sink.name}"
        url = self._url(sink)
        problem = url_problem(sink, url)
        if problem:
            self.say(f"{where} not sent: {problem.removeprefix(f'sink {sink.name}: ')}")
            return False
        body = json.dumps(payload(sink, event)).encode()
        attempts, pause = 1 + max(0, self.retries), self.backoff_s
        for attempt in range(1, attempts + 1):
            cause, again = self._post(url, body)
            if cause is None:
                return True
            if not again or attempt == attempts:
                self.say(f"{where} failed: {cause} (attempt {attempt} of {attempts}, giving up)")
                return False
            self.say(f"{where}: {cause} (attempt {attempt} of {attempts}), trying again in {pause:g}s")
            self.sleep(pause)
            pause *= 2
        return False  # not reached: the last attempt returns above

    def _post(self, url: str, body: bytes) -> tuple[str | None, bool]:
        """One attempt: (None, _) when accepted, else (cause, whether to try again)."""
        try:
            with requests.post(url, data=body, headers={"Content-Type": "application/json"},
                               timeout=(self.timeout_s, self.timeout_s), allow_redirects=False) as response:
                status = response.status_code
        except Exception as error:  # noqa: BLE001 - its text holds the URL: only its class is said
            return _cause(error)
        if 200 <= status < 300:
            return None, False
        return f"HTTP {status}", status >= 500 or status == 429

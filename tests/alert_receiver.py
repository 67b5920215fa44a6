"""A webhook receiver for the alert tests: stdlib only, on 127.0.0.1.

As a process (for a test that runs the CLI, or by hand)::

    python tests/alert_receiver.py --log FILE [--port 0] [--port-file FILE]
                                   [--fail-first N] [--fail-status 500] [--delay-s X]

It writes its port to --port-file once it listens (a temporary file, then
os.replace: a reader never sees half a number), appends each POST to --log as
one JSON line ``{"path", "body", "content_type", "status", "time"}`` (flushed
per line), answers --fail-status to the first N requests and 200 after, after
sleeping --delay-s (for timeouts). SIGTERM or SIGINT stop it cleanly (exit 0).

In a test, ``running_receiver(tmp_path, **options)`` runs the same server in a
thread and gives its ``url`` and what it ``received()``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import signal
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path


class Receiver:
    """The server and its log; ``start`` it in a thread or ``serve`` in the foreground."""

    def __init__(self, log: str | os.PathLike, port: int = 0, fail_first: int = 0,
                 fail_status: int = 500, delay_s: float = 0.0) -> None:
        self.log = Path(log)
        self.fail_first, self.fail_status, self.delay_s = fail_first, fail_status, delay_s
        self.count = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                status = receiver._record(self.path, body, self.headers.get("Content-Type"))
                receiver.stopping.wait(receiver.delay_s)  # woken by stop(): no hang on shutdown
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up (a timeout test)
                    pass

            def log_message(self, *args) -> None:
                pass

        return Handler

    def _record(self, path: str, body, content_type: str | None) -> int:
        """Logged on arrival, before any delay: a request the client gave up on still counts."""
        with self.lock:
            self.count += 1
            status = self.fail_status if self.count <= self.fail_first else 200
            line = {"path": path, "body": body, "content_type": content_type, "status": status,
                    "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
            with self.log.open("a") as log:
                log.write(json.dumps(line) + "\n")
                log.flush()
        return status

    def received(self) -> list[dict]:
        """Every request logged so far, in order."""
        with self.lock:
            if not self.log.exists():
                return []
            return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict]:
        """The requests, once there are at least ``count`` (or the deadline passed)."""
        deadline = time.monotonic() + timeout_s
        while len(records := self.received()) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return records

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextlib.contextmanager
def running_receiver(tmp_path: str | os.PathLike, **options):
    """A receiver in a thread of this process, logging to a new file of ``tmp_path``
    (so that two receivers of one test keep apart)."""
    handle, log = tempfile.mkstemp(prefix="alerts-received-", suffix=".jsonl", dir=tmp_path)
    os.close(handle)
    receiver = Receiver(log, **options).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def write_port(path: str, port: int) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        file.write(f"{port}\n")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="JSON lines file, one line per POST")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--port-file", help="written with the port once listening")
    parser.add_argument("--fail-first", type=int, default=0, help="answer --fail-status to the first N")
    parser.add_argument("--fail-status", type=int, default=500)
    parser.add_argument("--delay-s", type=float, default=0.0, help="sleep before answering")
    options = parser.parse_args(argv)
    receiver = Receiver(options.log, options.port, options.fail_first, options.fail_status, options.delay_s)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    receiver.start()
    if options.port_file:
        write_port(options.port_file, receiver.port)
    while not stop.wait(0.5):  # a timed wait: the signal handler runs between waits
        pass
    receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The sandbox's alert receiver: Alertmanager's webhook target. Each POSTed
body (Alertmanager's JSON notification) becomes one line of the log file,
appended and flushed whole, so a reader never sees half a line.

    python -m rollout_sandbox.alert_log --listen ADDRESS:PORT --log FILE

Listens on the address it is given (the fleet's bridge gateway); GET /ready
answers 200 (the sandbox's readiness check).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(address: str, port: int, log_path: str) -> None:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ready" else 404)
            self.end_headers()

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                line = json.dumps(json.loads(body), sort_keys=True) + "\n"
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            with lock:
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer((address, port), Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="rollout_sandbox.alert_log")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    address, port = args.listen.rsplit(":", 1)
    serve(address, int(port), args.log)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A stub of the reference service for light sandbox hosts: the standard
library only, one small process, no database.

Installed by ``install_stub.py`` as ``<app_dir>/uvicorn.py``. The product's unit
runs ``<venv_dir>/bin/python -m uvicorn APP --host H --port P --workers N`` in
``<app_dir>``; ``python -m`` puts the working directory first on ``sys.path``,
so this file answers instead of uvicorn: same unit, user, paths, port and env
files as the reference service.

It does what the product's deploy (``checks=false``), ``rollout status`` and
``rollout rollback`` need of a service:

- ``GET /api/v1/monitoring/health`` answers 200 with the switch it runs;
- every other ``/api/v1/...`` request answers 200 with ``X-Rollout-Implementation``
  chosen like the reference service: ``?force_domain=true|false`` wins, else
  ``domain`` for ``ROLLOUT_PERCENT`` % of requests when ``USE_DOMAIN_SERVICE`` is on;
- ``USE_DOMAIN_SERVICE`` and ``ROLLOUT_PERCENT`` are read from its environment
  at start-up (the unit's env files), so ``/proc/<MainPID>/environ`` holds them.

No metrics, no cameras: the gate, the preparation check and the endpoint
verification are not for light hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

HEALTH_PATH = "/api/v1/monitoring/health"
API_PREFIX = "/api/v1/"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def read_switch(environ) -> tuple[bool, int]:
    """USE_DOMAIN_SERVICE and ROLLOUT_PERCENT (0..100) from an environment."""
    use = environ.get("USE_DOMAIN_SERVICE", "false").strip().lower() in TRUE
    try:
        percent = int(environ.get("ROLLOUT_PERCENT", "0"))
    except ValueError:
        percent = 0
    return use, max(0, min(100, percent))


def implementation(query: str, use_domain: bool, percent: int, rng=random) -> str:
    """``domain`` or ``legacy`` for one request (the reference service's rule)."""
    forced = (parse_qs(query).get("force_domain") or [""])[-1].strip().lower()
    if forced in TRUE:
        return "domain"
    if forced in FALSE:
        return "legacy"
    if not use_domain or percent <= 0:
        return "legacy"
    return "domain" if percent >= 100 or rng.random() * 100 < percent else "legacy"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "camera-api-stub"
    switch: tuple[bool, int] = (False, 0)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        url = urlsplit(self.path)
        use_domain, percent = self.switch
        headers = {}
        if url.path == HEALTH_PATH:
            status, body = 200, {"status": "ok", "stub": True, "pid": os.getpid(),
                                 "rollout": {"use_domain_service": use_domain, "rollout_percent": percent}}
        elif url.path.startswith(API_PREFIX) and not url.path.startswith("/api/v1/monitoring/"):
            served = implementation(url.query, use_domain, percent)
            status, body = 200, {"stub": True, "implementation": served}
            headers["X-Rollout-Implementation"] = served
        else:
            status, body = 404, {"detail": "Not Found (stub service)"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: no access log
        pass


def serve(host: str, port: int, environ=os.environ) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` with the switch of ``environ`` (not started)."""
    handler = type("StubHandler", (Handler,), {"switch": read_switch(environ)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str]) -> int:
    # uvicorn's command line, as the unit gives it; the app and the workers do not matter here.
    parser = argparse.ArgumentParser(prog="uvicorn (camera-api stub)")
    parser.add_argument("app", nargs="?")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    options, _ = parser.parse_known_args(argv)
    server = serve(options.host, options.port)
    use_domain, percent = cast("type[Handler]", server.RequestHandlerClass).switch
    print(f"camera-api stub on {options.host}:{options.port}: USE_DOMAIN_SERVICE={str(use_domain).lower()} "
          f"ROLLOUT_PERCENT={percent}", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

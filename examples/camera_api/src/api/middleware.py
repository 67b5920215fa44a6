"""Rollout middleware: picks the implementation for each rollout request, stamps it on the
response as X-Rollout-Implementation and records host-wide metrics.

It wraps the app (rather than a dependency doing the choice) so that every response of a
rollout endpoint carries the header, including 404/422 and unhandled 500 errors.
"""
import logging
import time
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse

from .metrics import Metrics
from .settings import Settings
from .utils.rollout import should_use_domain

log = logging.getLogger(__name__)

HEADER = "X-Rollout-Implementation"
ROLLOUT_PREFIX = "/api/v1/"
MONITORING_PREFIX = "/api/v1/monitoring/"
# The spellings pydantic accepts for a bool query parameter, so the route validation agrees.
TRUE_FLAGS = {"1", "true", "t", "yes", "y", "on"}
FALSE_FLAGS = {"0", "false", "f", "no", "n", "off"}


def is_rollout_path(path: str) -> bool:
    return path.startswith(ROLLOUT_PREFIX) and not path.startswith(MONITORING_PREFIX)


def force_domain_flag(query_string: bytes) -> bool | None:
    values = parse_qs(query_string.decode("latin-1")).get("force_domain")
    flag = values[-1].strip().lower() if values else ""
    return True if flag in TRUE_FLAGS else False if flag in FALSE_FLAGS else None


class RolloutMiddleware:
    def __init__(self, app, settings: Settings, metrics: Metrics, prometheus=None):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.prometheus = prometheus

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_rollout_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        forced = force_domain_flag(scope.get("query_string", b""))
        use_domain = should_use_domain(forced, self.settings.use_domain_service, self.settings.rollout_percent)
        implementation = "domain" if use_domain else "legacy"
        scope.setdefault("state", {})["implementation"] = implementation
        status = 0
        started = time.perf_counter()

        async def send_with_header(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(HEADER, implementation)
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        except Exception:
            log.exception("unhandled error in %s implementation for %s %s",
                          implementation, scope["method"], scope["path"])
            if status:  # the response had already started; nothing sane left to send
                raise
            await JSONResponse({"detail": "internal server error"}, status_code=500)(
                scope, receive, send_with_header)
        finally:
            elapsed = time.perf_counter() - started
            if self.prometheus is not None:  # a write to this worker's mmap file: no thread needed
                self.prometheus.record(implementation, status or 500, elapsed, forced is not None)
            await run_in_threadpool(self.metrics.record, implementation, status or 500,
                                    elapsed * 1000, forced is not None)

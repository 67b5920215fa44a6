"""Health and metrics: outside the rollout (no header, not counted)."""
import os
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ..store import HOSTNAME

router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"])


@router.get("/health")
def health(request: Request):
    """200 when PostgreSQL and Redis both answer within about a second, else 503 "degraded"."""
    store, settings = request.app.state.store, request.app.state.settings
    database, redis_ok = store.pg.ping(), store.redis_ok()
    up = database and redis_ok
    return JSONResponse(status_code=200 if up else 503, content={
        "status": "ok" if up else "degraded",
        "database": database,
        "redis": redis_ok,
        "rollout": {"use_domain_service": settings.use_domain_service,
                    "rollout_percent": settings.rollout_percent},
        "pid": os.getpid(),
        "hostname": HOSTNAME,
    })


@router.get("/metrics")
def metrics(request: Request):
    """Counters and latency percentiles for all workers of this service instance.
    ``METRICS_FAULT`` (drills only) makes it hang, fail or answer HTML."""
    settings = request.app.state.settings
    if settings.metrics_fault == "hang":
        time.sleep(20)  # longer than any reader waits; bounded so a restart is not held up
    if settings.metrics_fault == "500":
        return JSONResponse(status_code=500, content={"detail": "metrics store unavailable"})
    if settings.metrics_fault == "html":
        return HTMLResponse("<html><body><h1>Metrics</h1></body></html>")
    return request.app.state.metrics.snapshot(settings.use_domain_service, settings.rollout_percent)

"""Application factory: one app per Settings, so tests can build apps with any configuration."""
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from .errors import ServiceError
from .faults import Faults, FaultSwitch
from .metrics import Metrics
from .middleware import RolloutMiddleware
from .prom import PrometheusMetrics
from .routes import alerts, cameras, monitoring
from .services.domain import DomainImplementation
from .services.legacy import LegacyImplementation
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    store = Store(settings)
    metrics = Metrics(settings.runtime_directory)
    prometheus = PrometheusMetrics(settings.runtime_directory, settings.use_domain_service,
                                   settings.rollout_percent)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        try:
            await run_in_threadpool(store.pg.ensure_schema)
        except Exception as exc:  # noqa: BLE001 - the DB may come up later; first use retries
            log.warning("alert_rules schema not ensured at start-up (%s); will retry on first use",
                        type(exc).__name__)
        yield
        store.close()
        metrics.close()

    app = FastAPI(title="Camera API (reference service)", lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    faults = FaultSwitch(Faults.from_settings(settings), settings.faults_file)  # shared: one FAULTS_FILE
    app.state.faults = faults
    app.state.implementations = {"legacy": LegacyImplementation(store, faults),
                                 "domain": DomainImplementation(store, faults)}
    app.state.prometheus = prometheus
    app.add_middleware(RolloutMiddleware, settings=settings, metrics=metrics, prometheus=prometheus)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics():
        body, content_type = await run_in_threadpool(prometheus.exposition)
        return Response(body, media_type=content_type)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    for module in (alerts, cameras, monitoring):
        app.include_router(module.router)
    return app

"""The domain implementation: aggregates that guard their own invariants, repositories
that load and save them, and services that orchestrate a use case.

It must answer with exactly the legacy response shape; the domain fault knobs
(DOMAIN_ERROR_RATE, DOMAIN_EXTRA_LATENCY_MS, DOMAIN_BROKEN_SHAPE, DOMAIN_WRITE_FAULT; see
faults.py) act only here so a rollout can be rehearsed against a misbehaving new
implementation.
"""
import functools
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from ..errors import Conflict, InvalidInput, NotFound
from ..faults import Faults, FaultSwitch, maybe_fail
from ..schemas import ACTION_MESSAGES
from ..store import (
    DEFAULT_STATE,
    HOSTNAME,
    LOG_LIMIT,
    RULE_COLUMNS,
    Camera,
    Store,
    decode_bool,
    encode_bool,
    is_unique_violation,
    logs_key,
    state_key,
    utcnow,
)

OPERATORS = {">", "<", ">=", "<=", "=="}
#: DOMAIN_WRITE_FAULT's unit bug: thresholds stored in seconds where the column holds minutes.
WRONG_UNIT_FACTOR = 60.0


# --- alert rules ---
@dataclass
class AlertRule:
    """Aggregate: an alert rule that is valid whenever it exists."""

    name: str
    metric: str
    operator: str
    threshold: float
    camera_id: str | None = None
    enabled: bool = True
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self):
        self._validate()

    def change(self, changes: dict) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self._validate()

    def _validate(self) -> None:
        if not self.name.strip() or not self.metric.strip():
            raise InvalidInput("alert rule name and metric must not be blank")
        if self.operator not in OPERATORS:
            raise InvalidInput(f"unsupported operator: {self.operator}")
        self.threshold = float(self.threshold)
        if not math.isfinite(self.threshold):
            raise InvalidInput("threshold must be a finite number")

    def to_response(self) -> dict:
        return {"id": self.id, "name": self.name, "camera_id": self.camera_id, "metric": self.metric,
                "operator": self.operator, "threshold": self.threshold, "enabled": self.enabled,
                "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


class AlertRuleRepository:
    """Maps AlertRule aggregates to the alert_rules table over one connection.

    threshold_scale other than 1 is DOMAIN_WRITE_FAULT: thresholds are written times the
    scale and read back divided by it, so only the other implementation sees the damage.
    """

    def __init__(self, conn, threshold_scale: float = 1.0):
        self.conn = conn
        self.threshold_scale = threshold_scale

    def _many(self, sql: str, **params) -> list[AlertRule]:
        rules = []
        for row in self.conn.run(sql, **params):
            values = dict(zip(RULE_COLUMNS.split(", "), row))
            values["threshold"] = values["threshold"] / self.threshold_scale
            rules.append(AlertRule(**values))
        return rules

    def all(self) -> list[AlertRule]:
        return self._many(f"SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id")

    def get(self, rule_id: int) -> AlertRule | None:
        found = self._many(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = :id", id=rule_id)
        return found[0] if found else None

    def by_name(self, name: str) -> AlertRule | None:
        found = self._many(f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE name = :name", name=name)
        return found[0] if found else None

    def add(self, rule: AlertRule) -> AlertRule:
        return self._many(
            "INSERT INTO alert_rules (name, camera_id, metric, operator, threshold, enabled) "
            f"VALUES (:name, :camera_id, :metric, :operator, :threshold, :enabled) RETURNING {RULE_COLUMNS}",
            name=rule.name, camera_id=rule.camera_id, metric=rule.metric, operator=rule.operator,
            threshold=rule.threshold * self.threshold_scale, enabled=rule.enabled)[0]

    def save(self, rule: AlertRule) -> AlertRule:
        return self._many(
            "UPDATE alert_rules SET name = :name, camera_id = :camera_id, metric = :metric, "
            "operator = :operator, threshold = :threshold, enabled = :enabled, updated_at = now() "
            f"WHERE id = :id RETURNING {RULE_COLUMNS}",
            id=rule.id, name=rule.name, camera_id=rule.camera_id, metric=rule.metric,
            operator=rule.operator, threshold=rule.threshold * self.threshold_scale, enabled=rule.enabled)[0]


class AlertRuleDomainService:
    def __init__(self, store: Store, threshold_scale: float = 1.0):
        self.store = store
        self.threshold_scale = threshold_scale

    def _repository(self, conn) -> AlertRuleRepository:
        return AlertRuleRepository(conn, self.threshold_scale)

    def list(self) -> list[AlertRule]:
        with self.store.pg.connection() as conn:
            return self._repository(conn).all()

    def create(self, data: dict) -> AlertRule:
        rule = AlertRule(**data)
        with self.store.pg.connection() as conn:
            repo = self._repository(conn)
            if repo.by_name(rule.name):
                raise Conflict(f"alert rule already exists: {rule.name}")
            return self._unique(repo.add, rule)

    def update(self, rule_id: int, changes: dict) -> AlertRule:
        with self.store.pg.connection() as conn:
            repo = self._repository(conn)
            rule = repo.get(rule_id)
            if rule is None:
                raise NotFound(f"alert rule not found: {rule_id}")
            rule.change(changes)
            holder = repo.by_name(rule.name)
            if holder and holder.id != rule.id:
                raise Conflict(f"alert rule already exists: {rule.name}")
            return self._unique(repo.save, rule)

    @staticmethod
    def _unique(write, rule: AlertRule) -> AlertRule:
        """A concurrent writer can still take the name between our check and our write."""
        try:
            return write(rule)
        except Exception as exc:
            if is_unique_violation(exc):
                raise Conflict(f"alert rule already exists: {rule.name}") from None
            raise


# --- cameras ---
@dataclass
class CameraAggregate:
    """Aggregate: a catalog camera plus its run state; enforces "no running while deactivated"."""

    camera: Camera
    running: bool = False
    active: bool = True
    auto_start: bool = False
    updated_at: str | None = None

    def start(self) -> None:
        if not self.active:
            raise Conflict(f"camera {self.camera.id} is deactivated; activate it before starting")
        self.running = True

    def stop(self) -> None:
        self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False
        self.stop()

    def enable_auto_start(self) -> None:
        self.auto_start = True

    def disable_auto_start(self) -> None:
        self.auto_start = False

    def state(self) -> dict:
        return {"running": self.running, "active": self.active, "auto_start": self.auto_start}


@dataclass
class LogEntry:
    timestamp: str
    action: str
    host: str = HOSTNAME
    implementation: str = "domain"


class CameraRepository:
    """Loads and saves CameraAggregates in Redis; saving also appends the log entry."""

    def __init__(self, redis_client):
        self.redis = redis_client

    @staticmethod
    def from_hash(camera: Camera, raw: dict) -> CameraAggregate:
        flags = {k: decode_bool(raw.get(k), default) for k, default in DEFAULT_STATE.items()}
        return CameraAggregate(camera, updated_at=raw.get("updated_at"), **flags)

    def load_many(self, cameras: list[Camera]) -> list[CameraAggregate]:
        pipe = self.redis.pipeline(transaction=False)
        for camera in cameras:
            pipe.hgetall(state_key(camera.id))
        return [self.from_hash(c, raw) for c, raw in zip(cameras, pipe.execute())]

    def apply(self, camera: Camera, action: str) -> CameraAggregate:
        """Run one aggregate command atomically (WATCH/MULTI, retried if the state changed meanwhile)."""
        key = state_key(camera.id)

        def attempt(pipe) -> CameraAggregate:
            aggregate = self.from_hash(camera, pipe.hgetall(key))
            getattr(aggregate, action)()
            aggregate.updated_at = utcnow()
            pipe.multi()
            pipe.hset(key, mapping={**{k: encode_bool(v) for k, v in aggregate.state().items()},
                                    "updated_at": aggregate.updated_at})
            pipe.lpush(logs_key(camera.id), json.dumps(asdict(LogEntry(aggregate.updated_at, action))))
            pipe.ltrim(logs_key(camera.id), 0, LOG_LIMIT - 1)
            return aggregate

        return self.redis.transaction(attempt, key, value_from_callable=True)

    def logs(self, camera_id: str, limit: int) -> list[LogEntry]:
        return [LogEntry(**json.loads(e)) for e in self.redis.lrange(logs_key(camera_id), 0, limit - 1)]

    def ensure(self, cameras: list[Camera]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for camera in cameras:
            for name, default in DEFAULT_STATE.items():
                pipe.hsetnx(state_key(camera.id), name, encode_bool(default))
        pipe.execute()


class CameraDomainService:
    def __init__(self, store: Store):
        self.catalog = store.catalog
        self.repo = CameraRepository(store.redis)

    def camera(self, camera_id: str) -> Camera:
        camera = self.catalog.get(camera_id)
        if camera is None:
            raise NotFound(f"camera not found: {camera_id}")
        return camera

    def get(self, camera_id: str) -> CameraAggregate:
        return self.repo.load_many([self.camera(camera_id)])[0]

    def perform(self, camera_id: str, action: str) -> CameraAggregate:
        return self.repo.apply(self.camera(camera_id), action)

    def status(self, camera_ids: list[str]) -> tuple[list[CameraAggregate], list[str]]:
        cameras = self.catalog.cameras()
        known = [cameras[c] for c in camera_ids if c in cameras]
        return self.repo.load_many(known), [c for c in camera_ids if c not in cameras]

    def logs(self, camera_id: str, limit: int) -> list[LogEntry]:
        return self.repo.logs(self.camera(camera_id).id, limit)

    def refresh(self) -> list[Camera]:
        cameras = list(self.catalog.reload().values())
        self.repo.ensure(cameras)
        return cameras


# --- the implementation the API routes call ---
def _domain_call(method):
    """Every domain call goes through the fault knobs first; the method gets the knobs
    resolved for this call (FAULTS_FILE may change them between two calls)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        faults = self.faults.current()
        if faults.domain_extra_latency_ms:
            time.sleep(faults.domain_extra_latency_ms / 1000)
        maybe_fail(self.faults.rng, faults.domain_error_rate,
                   "domain service failure (injected by DOMAIN_ERROR_RATE)")
        return method(self, faults, *args, **kwargs)

    return wrapper


class DomainImplementation:
    name = "domain"

    def __init__(self, store: Store, faults: FaultSwitch):
        self.faults = faults
        self.cameras = CameraDomainService(store)
        self._alerts = AlertRuleDomainService(store)
        self._alerts_with_unit_bug = AlertRuleDomainService(store, threshold_scale=WRONG_UNIT_FACTOR)

    def alerts(self, faults: Faults) -> AlertRuleDomainService:
        return self._alerts_with_unit_bug if faults.domain_write_fault else self._alerts

    def _wrong(self, faults: Faults) -> bool:
        """DOMAIN_WRONG_DATA_RATE: this answer carries a wrong value (status 200,
        the right shape): a bug only a comparison of the two answers finds."""
        return faults.domain_wrong_data_rate > 0 and self.faults.rng.random() < faults.domain_wrong_data_rate

    def _rule(self, rule: AlertRule, faults: Faults) -> dict:
        body = rule.to_response()
        if faults.domain_broken_shape:
            del body["enabled"]
        if self._wrong(faults):
            body["threshold"] = body["threshold"] * WRONG_UNIT_FACTOR
        return body

    def _state(self, aggregate: CameraAggregate, faults: Faults) -> dict:
        state = aggregate.state()
        if faults.domain_broken_shape:
            del state["auto_start"]
        if self._wrong(faults):
            state["running"] = not state["running"]
        return state

    def _status(self, aggregate: CameraAggregate, faults: Faults) -> dict:
        camera = aggregate.camera
        return {"camera_id": camera.id, "name": camera.name, "location": camera.location,
                "state": self._state(aggregate, faults), "updated_at": aggregate.updated_at}

    @_domain_call
    def list_rules(self, faults: Faults) -> dict:
        rules = [self._rule(r, faults) for r in self.alerts(faults).list()]
        return {"rules": rules, "total": len(rules)}

    @_domain_call
    def create_rule(self, faults: Faults, data: dict) -> dict:
        return self._rule(self.alerts(faults).create(data), faults)

    @_domain_call
    def update_rule(self, faults: Faults, rule_id: int, changes: dict) -> dict:
        return self._rule(self.alerts(faults).update(rule_id, changes), faults)

    @_domain_call
    def camera_action(self, faults: Faults, camera_id: str, action: str) -> dict:
        aggregate = self.cameras.perform(camera_id, action)
        return {"camera_id": camera_id, "action": action, "success": True,
                "state": self._state(aggregate, faults), "message": ACTION_MESSAGES[action]}

    @_domain_call
    def camera_status(self, faults: Faults, camera_id: str) -> dict:
        return self._status(self.cameras.get(camera_id), faults)

    @_domain_call
    def batch_status(self, faults: Faults, camera_ids: list[str]) -> dict:
        found, missing = self.cameras.status(camera_ids)
        return {"results": [self._status(a, faults) for a in found], "missing": missing, "total": len(found)}

    @_domain_call
    def camera_logs(self, faults: Faults, camera_id: str, limit: int) -> dict:
        logs = [asdict(e) for e in self.cameras.logs(camera_id, limit)]
        return {"camera_id": camera_id, "logs": logs, "count": len(logs)}

    @_domain_call
    def refresh(self, faults: Faults) -> dict:
        cameras = self.cameras.refresh()
        return {"refreshed": len(cameras), "cameras": [c.id for c in cameras]}

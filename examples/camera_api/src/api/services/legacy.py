"""The legacy implementation: direct SQL and Redis calls, dicts in and dicts out.

Kept as it was before the migration so the rollout compares against real legacy
behaviour (for example, camera state is read and written without a transaction). Its one
fault knob, LEGACY_ERROR_RATE, models the background error rate a real service has, so
a rollout's comparison is not against a perfect baseline.
"""
import functools
import json

from ..errors import Conflict, NotFound
from ..faults import FaultSwitch, maybe_fail
from ..schemas import ACTION_MESSAGES
from ..store import (
    DEFAULT_STATE,
    HOSTNAME,
    LOG_LIMIT,
    RULE_COLUMNS,
    Store,
    decode_bool,
    encode_bool,
    is_unique_violation,
    logs_key,
    state_key,
    utcnow,
)

RULE_FIELDS = ("name", "camera_id", "metric", "operator", "threshold", "enabled")


def _rule_row(row) -> dict:
    rule = dict(zip(RULE_COLUMNS.split(", "), row))
    rule["threshold"] = float(rule["threshold"])
    rule["created_at"] = rule["created_at"].isoformat()
    rule["updated_at"] = rule["updated_at"].isoformat()
    return rule


def _legacy_call(method):
    """Every public legacy call may fail first (LEGACY_ERROR_RATE, resolved per call)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        maybe_fail(self.faults.rng, self.faults.current().legacy_error_rate,
                   "legacy service failure (injected by LEGACY_ERROR_RATE)")
        return method(self, *args, **kwargs)

    return wrapper


class LegacyImplementation:
    name = "legacy"

    def __init__(self, store: Store, faults: FaultSwitch):
        self.store = store
        self.faults = faults

    # --- alert rules (PostgreSQL) ---
    @_legacy_call
    def list_rules(self) -> dict:
        with self.store.pg.connection() as conn:
            rows = conn.run(f"SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id")
        rules = [_rule_row(r) for r in rows]
        return {"rules": rules, "total": len(rules)}

    @_legacy_call
    def create_rule(self, data: dict) -> dict:
        with self.store.pg.connection() as conn:
            rows = conn.run(
                "INSERT INTO alert_rules (name, camera_id, metric, operator, threshold, enabled) "
                "VALUES (:name, :camera_id, :metric, :operator, :threshold, :enabled) "
                f"ON CONFLICT (name) DO NOTHING RETURNING {RULE_COLUMNS}",
                **{f: data[f] for f in RULE_FIELDS})
        if not rows:
            raise Conflict(f"alert rule already exists: {data['name']}")
        return _rule_row(rows[0])

    @_legacy_call
    def update_rule(self, rule_id: int, changes: dict) -> dict:
        columns = [f for f in RULE_FIELDS if f in changes]
        assignments = "".join(f"{c} = :{c}, " for c in columns)
        with self.store.pg.connection() as conn:
            try:
                rows = conn.run(f"UPDATE alert_rules SET {assignments}updated_at = now() "
                                f"WHERE id = :id RETURNING {RULE_COLUMNS}",
                                id=rule_id, **{c: changes[c] for c in columns})
            except Exception as exc:
                if is_unique_violation(exc):
                    raise Conflict(f"alert rule already exists: {changes['name']}") from None
                raise
        if not rows:
            raise NotFound(f"alert rule not found: {rule_id}")
        return _rule_row(rows[0])

    # --- cameras (catalog + Redis) ---
    def _camera(self, camera_id: str):
        camera = self.store.catalog.get(camera_id)
        if camera is None:
            raise NotFound(f"camera not found: {camera_id}")
        return camera

    def _state(self, camera_id: str) -> tuple[dict, str | None]:
        raw = self.store.redis.hgetall(state_key(camera_id))
        state = {k: decode_bool(raw.get(k), default) for k, default in DEFAULT_STATE.items()}
        return state, raw.get("updated_at")

    @_legacy_call
    def camera_action(self, camera_id: str, action: str) -> dict:
        self._camera(camera_id)
        state, _ = self._state(camera_id)
        if action in ("start", "restart"):
            if not state["active"]:
                raise Conflict(f"camera {camera_id} is deactivated; activate it before starting")
            state["running"] = True
        elif action == "stop":
            state["running"] = False
        elif action == "activate":
            state["active"] = True
        elif action == "deactivate":
            state["active"] = False
            state["running"] = False
        else:
            state["auto_start"] = action == "enable_auto_start"
        now = utcnow()
        r = self.store.redis
        r.hset(state_key(camera_id), mapping={**{k: encode_bool(v) for k, v in state.items()},
                                               "updated_at": now})
        r.lpush(logs_key(camera_id), json.dumps({"timestamp": now, "action": action,
                                                 "host": HOSTNAME, "implementation": self.name}))
        r.ltrim(logs_key(camera_id), 0, LOG_LIMIT - 1)
        return {"camera_id": camera_id, "action": action, "success": True, "state": state,
                "message": ACTION_MESSAGES[action]}

    @_legacy_call
    def camera_status(self, camera_id: str) -> dict:
        return self._status(camera_id)

    def _status(self, camera_id: str) -> dict:
        camera = self._camera(camera_id)
        state, updated_at = self._state(camera_id)
        return {"camera_id": camera.id, "name": camera.name, "location": camera.location,
                "state": state, "updated_at": updated_at}

    @_legacy_call
    def batch_status(self, camera_ids: list[str]) -> dict:
        cameras = self.store.catalog.cameras()
        results = [self._status(c) for c in camera_ids if c in cameras]  # one fault draw per call
        missing = [c for c in camera_ids if c not in cameras]
        return {"results": results, "missing": missing, "total": len(results)}

    @_legacy_call
    def camera_logs(self, camera_id: str, limit: int) -> dict:
        self._camera(camera_id)
        logs = [json.loads(e) for e in self.store.redis.lrange(logs_key(camera_id), 0, limit - 1)]
        return {"camera_id": camera_id, "logs": logs, "count": len(logs)}

    @_legacy_call
    def refresh(self) -> dict:
        cameras = self.store.catalog.reload()
        for camera_id in cameras:
            for field, default in DEFAULT_STATE.items():
                self.store.redis.hsetnx(state_key(camera_id), field, encode_bool(default))
        return {"refreshed": len(cameras), "cameras": list(cameras)}

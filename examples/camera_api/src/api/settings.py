"""Service settings, read once from the environment at start-up.

A bad value raises SettingsError so the process refuses to start: a typo in the
rollout switch must fail loudly instead of silently serving the wrong code path.
Error messages name the variable but never echo connection URLs (they hold secrets).
"""
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

TRUE_VALUES = {"true", "1", "yes"}
#: Fault knob of /api/v1/monitoring/metrics for the rollout's drills: never
#: answer, answer 500, or answer an HTML page instead of JSON.
METRICS_FAULTS = {"", "hang", "500", "html"}
#: Bounds of the fault knobs, shared with FAULTS_FILE's validation (faults.py).
RATE_RANGE = (0.0, 1.0)
EXTRA_LATENCY_RANGE_MS = (0, 60_000)


class SettingsError(ValueError):
    """Raised for a missing or invalid environment variable."""


@dataclass(frozen=True)
class PostgresParams:
    """Connection parameters parsed from DATABASE_URL (kept out of repr: holds the password)."""

    user: str
    password: str = field(repr=False)
    host: str
    port: int
    database: str


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    use_domain_service: bool = False
    rollout_percent: int = 0
    cameras_config: str = "config/cameras.yaml"
    domain_error_rate: float = 0.0
    domain_extra_latency_ms: int = 0
    domain_broken_shape: bool = False
    domain_write_fault: bool = False
    domain_wrong_data_rate: float = 0.0
    legacy_error_rate: float = 0.0
    faults_file: str | None = None
    runtime_directory: str | None = None
    metrics_fault: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Build settings from an environment mapping (os.environ by default)."""
        settings = cls(
            database_url=_required(env, "DATABASE_URL"),
            redis_url=_required(env, "REDIS_URL"),
            use_domain_service=env.get("USE_DOMAIN_SERVICE", "false").strip().lower() in TRUE_VALUES,
            rollout_percent=_number(env, "ROLLOUT_PERCENT", int, 0, 0, 100),
            cameras_config=env.get("CAMERAS_CONFIG") or "config/cameras.yaml",
            domain_error_rate=_number(env, "DOMAIN_ERROR_RATE", float, 0.0, *RATE_RANGE),
            domain_extra_latency_ms=_number(env, "DOMAIN_EXTRA_LATENCY_MS", int, 0, *EXTRA_LATENCY_RANGE_MS),
            domain_broken_shape=env.get("DOMAIN_BROKEN_SHAPE", "false").strip().lower() in TRUE_VALUES,
            domain_write_fault=env.get("DOMAIN_WRITE_FAULT", "false").strip().lower() in TRUE_VALUES,
            domain_wrong_data_rate=_number(env, "DOMAIN_WRONG_DATA_RATE", float, 0.0, *RATE_RANGE),
            legacy_error_rate=_number(env, "LEGACY_ERROR_RATE", float, 0.0, *RATE_RANGE),
            faults_file=env.get("FAULTS_FILE", "").strip() or None,
            runtime_directory=env.get("RUNTIME_DIRECTORY") or None,
            metrics_fault=env.get("METRICS_FAULT", "").strip().lower(),
        )
        if settings.metrics_fault not in METRICS_FAULTS:
            raise SettingsError(f"METRICS_FAULT must be one of {', '.join(sorted(METRICS_FAULTS))} or empty, "
                                f"got {settings.metrics_fault!r}")
        settings.postgres_params()  # validate the URLs now, not on the first request
        if urlsplit(settings.redis_url).scheme not in ("redis", "rediss"):
            raise SettingsError("REDIS_URL must be a redis:// or rediss:// URL")
        return settings

    def postgres_params(self) -> PostgresParams:
        """Parse DATABASE_URL (postgresql://user:pass@host:port/db) for pg8000."""
        try:
            url = urlsplit(self.database_url)
            port = url.port or 5432
        except ValueError:
            url = None
        if url is None or url.scheme not in ("postgresql", "postgres") or not url.hostname \
                or not url.username or not url.path.strip("/"):
            raise SettingsError("DATABASE_URL must look like postgresql://user:pass@host:port/db")
        return PostgresParams(
            user=unquote(url.username),
            password=unquote(url.password or ""),
            host=url.hostname,
            port=port,
            database=unquote(url.path.lstrip("/")),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


def _number(env: Mapping[str, str], name: str, kind: type, default, low, high):
    """Parse an int/float variable in [low, high]; the offending value is echoed (it is no secret)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a {kind.__name__} between {low} and {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {raw!r}")
    return value

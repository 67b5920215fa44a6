"""Fault knobs for drills and tests: how the domain and legacy implementations misbehave.

The environment gives the start-up values (settings.py). FAULTS_FILE, when set, overrides
them at run time, so a fault can begin long after a restart without resetting the
metrics. Each worker process reads the file on its own: it stats the file at most once
per CHECK_INTERVAL_S and re-reads it only when it changed. A missing file means the
environment's values; an invalid one is logged once (per version of the file) and
ignored, so a typo in a drill never takes the service down.
"""
import json
import logging
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, fields, replace

from .errors import InjectedFault
from .settings import EXTRA_LATENCY_RANGE_MS, RATE_RANGE, Settings

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Faults:
    """The knobs in force for one call (resolved per call by FaultSwitch.current)."""

    domain_error_rate: float = 0.0
    domain_extra_latency_ms: int = 0
    domain_broken_shape: bool = False
    domain_write_fault: bool = False
    domain_wrong_data_rate: float = 0.0
    legacy_error_rate: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "Faults":
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})


def _in_range(name: str, value, low, high, kinds: tuple[type, ...], kind_name: str):
    # bool is an int subclass: `true` must not pass as a rate of 1
    if isinstance(value, bool) or not isinstance(value, kinds) or not (
            math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be {kind_name} between {low} and {high}, got {value!r}")
    return value


def _rate(name: str, value) -> float:
    return float(_in_range(name, value, *RATE_RANGE, (int, float), "a number"))


def _latency_ms(name: str, value) -> int:
    return _in_range(name, value, *EXTRA_LATENCY_RANGE_MS, (int,), "an integer")


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


#: FAULTS_FILE's keys (one per Faults field) and their validators.
FILE_KEYS = {
    "domain_error_rate": _rate,
    "domain_extra_latency_ms": _latency_ms,
    "domain_broken_shape": _flag,
    "domain_write_fault": _flag,
    "domain_wrong_data_rate": _rate,
    "legacy_error_rate": _rate,
}


def parse_overrides(text: str) -> dict:
    """The overrides of a FAULTS_FILE text; ValueError (one line) when it is not valid."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(FILE_KEYS)}")
    return {key: FILE_KEYS[key](key, value) for key, value in data.items()}


def maybe_fail(rng: random.Random, rate: float, message: str) -> None:
    """Fail `rate` of the calls with a 500 (random() < 1.0 always, so rate 1.0 fails all)."""
    if rng.random() < rate:
        raise InjectedFault(message)


class FaultSwitch:
    """The fault knobs shared by both implementations of one worker process."""

    def __init__(self, env_faults: Faults, path: str | None = None, clock=time.monotonic):
        self.env_faults = env_faults
        self.path = path
        self.rng = random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._faults = env_faults
        self._seen_version = None  # the file's (mtime, size, inode) last read; None: absent
        self._next_check = clock()  # the first call checks the file

    def current(self) -> Faults:
        if self.path is not None and self._clock() >= self._next_check:
            self._check()
        return self._faults

    def _check(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next_check:  # another thread checked while we waited for the lock
                return
            self._next_check = now + CHECK_INTERVAL_S
            version = self._file_version()
            if version != self._seen_version:
                self._seen_version = version
                self._faults = self._load() if version is not None else self._back_to_env()

    def _file_version(self):
        # size and inode too: an in-place rewrite within one mtime tick, or a rename over
        # the file, must still count as a change
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return ("unreadable", exc.errno)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _load(self) -> Faults:
        try:
            with open(self.path, encoding="utf-8") as fh:
                overrides = parse_overrides(fh.read())
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            log.warning("FAULTS_FILE %s ignored, the environment's fault values apply: %s", self.path, reason)
            return self.env_faults
        faults = replace(self.env_faults, **overrides)
        log.info("FAULTS_FILE %s applied: %s", self.path, json.dumps(asdict(faults), sort_keys=True))
        return faults

    def _back_to_env(self) -> Faults:
        if self._faults != self.env_faults:
            log.info("FAULTS_FILE %s is absent: the environment's fault values apply", self.path)
        return self.env_faults

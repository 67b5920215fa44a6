"""Every input a rollout takes, checked in one place before any host is contacted.

Pure. Two kinds of input:

- **settings**: the host data of an inventory and its group data (every key of
  ``group_data/all.py``). ``check_settings`` is called by the CLI for every host
  as soon as the inventory is loaded, and by each pyinfra entry file (deploy.py,
  tasks/*.py) before it plans an operation;
- **options**: what an operator types on the command line (durations, batch
  plans, the canary, ``--yes``). ``check_options`` is called by the CLI before
  its first pyinfra run.

A bad input raises ``InputError``: one line that names the setting or option and
the bad value (never a secret's value), and the CLI exits 2.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rollout.alert_rules import check as check_alert_rules, check_names as check_metric_names
from rollout.alerts import is_loopback, parse_sinks, web_url
from rollout.batches import (
    BatchError,
    hook_commands,
    parse_batches,
    parse_duration,
    plan_batches,
    unknown_placeholders,
)
from rollout.catalog import CatalogError, load_catalog
from rollout.consistency import ConsistencyError, check_spec
from rollout.gate import Thresholds
from rollout.hooks import MINIMAL_ENV
from rollout.metrics import METRICS
from rollout.promql import PROMETHEUS, PROVIDERS, check_queries
from rollout.render import check_app_env, reserved_variables
from rollout.stages import StageError, validate_plan
from rollout.timetable import durations_from


class InputError(ValueError):
    """Refused before any host is contacted (exit 2); the message is one line."""


# --- settings (host data and group data) ---------------------------------------------------------


def _number(minimum: float, integral: bool = False, above: bool = False) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        kind = "a whole number" if integral else "a number"
        bound = f"> {minimum:g}" if above else f">= {minimum:g}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (integral and not isinstance(value, int)) \
                or (value <= minimum if above else value < minimum):
            raise ValueError(f"must be {kind} {bound}, got {value!r}")
    return check


def _flag(value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")


def _name(value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*", value):
        raise ValueError(f"must be a plain name (letters, digits, . _ - @), got {value!r}")


# The grammars of the values that reach a shell or a unit file (each is also
# quoted where it is used): a value outside its grammar is refused at load.

#: A path of the host: ``/`` then components of letters, digits and ``. _ + @ -``
#: (no space, quote, ``$``, ``%`` (a systemd specifier), backslash or control
#: character; no ``.`` or ``..`` component).
_PATH = re.compile(r"(/(?!\.\.?(?:/|$))[A-Za-z0-9._+@-]+)+")
#: A Python module and attribute, as uvicorn takes them: ``src.api.app:app``.
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                     r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
#: A DNS name (RFC 1123 labels).
_DNS_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
#: A URL path (and query) of the service: RFC 3986's characters without those a
#: shell reads inside double quotes or at all (``$ ( ) ' "``, backslash,
#: backquote), no space, no control character.
_URL_PATH = re.compile(r"/[A-Za-z0-9._~!*+,;=:@%/&?-]*")
#: An inventory's host name: pyinfra's connector prefix (``@local``, ``@fake/h``)
#: allowed, then letters, digits and ``. _ : / @ -``.
_HOST_NAME = re.compile(r"@?[A-Za-z0-9_][A-Za-z0-9_.:/@-]{0,252}")
#: A login name (POSIX's portable characters).
_LOGIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")


def control_characters(text: str) -> bool:
    """Whether ``text`` holds a control character (a newline would start a new
    line of a unit or env file)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def is_host_path(value: Any) -> bool:
    """A path of the host in the grammar above (safe in a unit file and a shell)."""
    return isinstance(value, str) and bool(_PATH.fullmatch(value))


def _absolute_path(value: Any) -> None:
    if not is_host_path(value):
        raise ValueError(f"must be an absolute path of letters, digits and . _ + @ - "
                         f"(no space, quote, $, % or control character), got {value!r}")


def _url_path(value: Any) -> None:
    if not isinstance(value, str) or not _URL_PATH.fullmatch(value):
        raise ValueError(f"must be a URL path starting with / (no space, quote, $, parenthesis, backquote "
                         f"or control character), got {value!r}")


def _app_module(value: Any) -> None:
    if not isinstance(value, str) or not _MODULE.fullmatch(value):
        raise ValueError(f"must be a Python module and attribute like src.api.app:app, got {value!r}")


def is_address(value: Any) -> bool:
    """An IP address or a DNS name. No IPv6 zone (``fe80::1%eth0``): Python
    accepts any text after the ``%``, a newline included, and the address
    reaches a unit file and SSH configs."""
    if not isinstance(value, str) or "%" in value or control_characters(value) \
            or any(c.isspace() for c in value):
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(_DNS_NAME.fullmatch(value))


def _bind_host(value: Any) -> None:
    if not is_address(value):
        raise ValueError(f"must be an IP address or a host name, got {value!r}")


#: ssh_strict_host_key_checking: "yes", or a weakening named on purpose.
HOST_KEY_POLICIES = ("yes", "accept-new", "no")


def _host_key_policy(value: Any) -> None:
    if value not in HOST_KEY_POLICIES:
        raise ValueError(f"must be one of {', '.join(HOST_KEY_POLICIES)}, got {value!r}")




def _port(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"must be a TCP port 1..65535, got {value!r}")


def _stage_plan(value: Any) -> None:
    plan: Any = value if isinstance(value, (list, tuple)) else None  # None: refused by validate_plan
    try:
        validate_plan(plan)
    except StageError as error:
        raise ValueError(str(error)) from None


def _gate(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of gate settings, got {value!r}")
    Thresholds.from_data(value)


def _metrics_fields(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of metric names to dotted paths, got {value!r}")
    unknown = sorted(set(value) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(METRICS)})")
    for key, path in value.items():
        if not isinstance(path, str) or not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", path):
            raise ValueError(f"{key} must be a dotted path like stats.p95, got {path!r}")


def _metrics_field_defaults(value: Any) -> None:
    _metrics_fields(value)
    missing = [name for name in METRICS if name not in value]
    if missing:
        raise ValueError(f"lacks the path of {', '.join(missing)}")


def _metrics_provider(value: Any) -> None:
    if value not in PROVIDERS:
        raise ValueError(f"must be one of {', '.join(PROVIDERS)}, got {value!r}")


def _prometheus(value: Any) -> None:
    """The provider's server and queries; the URL is never echoed (it may hold
    credentials)."""
    if not isinstance(value, dict):
        raise ValueError("must be a mapping with url, timeout_s, min_window_s and queries")
    unknown = sorted(set(value) - {"url", "timeout_s", "min_window_s", "queries"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: url, timeout_s, min_window_s, queries)")
    url = value.get("url")
    if url is not None:
        parts = web_url(url) if isinstance(url, str) else None
        if parts is None or parts.hostname is None:
            raise ValueError("url must be an http:// or https:// URL of the server "
                             "(not shown: it may hold credentials)")
        if parts.scheme == "http" and (parts.username or parts.password) and not is_loopback(parts.hostname):
            raise ValueError("url holds credentials over plain http:// to another host (not shown): they would cross "
                             "the network unencrypted; use https://")
    for key in ("timeout_s", "min_window_s"):
        try:
            _number(0, above=True)(value.get(key))
        except ValueError as error:
            raise ValueError(f"{key} {error}") from None
    check_queries(value.get("queries"))


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _switch_variables(value: Any) -> None:
    if not isinstance(value, dict) or set(value) != {"enabled", "percent"}:
        raise ValueError(f"must map 'enabled' and 'percent' to the app's variable names, got {value!r}")
    if _env_name(value["enabled"]) == _env_name(value["percent"]):
        raise ValueError(f"enabled and percent must be two variables, got {value!r}")


def _header(value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise ValueError(f"must be an HTTP header name, got {value!r}")


def _query_parameter(value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ValueError(f"must be a URL query parameter name, got {value!r}")


def _endpoints(value: Any) -> None:
    try:
        load_catalog(value)
    except CatalogError as error:
        raise ValueError(str(error)) from None


def _batch_hooks(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping with 'before' and/or 'after' lists, got {value!r}")
    try:
        for when in ("before", "after"):
            hook_commands(value, when, [], 0, 0)
    except BatchError as error:
        raise ValueError(str(error).removeprefix("batch_hooks").lstrip(": .")) from None


def _batches(value: Any) -> None:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"must be a batch plan like '50%' or '1,25%,100%', got {value!r}")
    try:
        parse_batches(str(value))
    except BatchError as error:
        raise ValueError(str(error)) from None


def _canary(value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"must be a host name of the inventory, got {value!r}")


def _secret_variables(value: Any) -> None:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"must map env variable names to host-data keys, got {value!r}")
    for variable, key in value.items():
        if not (isinstance(variable, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]*", variable)
                and isinstance(key, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", key)):
            raise ValueError(f"entry {variable!r}: {key!r} must map an env variable to a host-data key")


def _require_str(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")


def _consistency_checks(value: Any) -> None:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of checks, got {value!r}")
    names = [check.get("name") if isinstance(check, dict) else None for check in value]
    if len(set(map(str, names))) != len(names):
        raise ValueError("two checks have the same name")
    for check in value:
        try:
            check_spec(check)
        except ConsistencyError as error:
            raise ValueError(str(error)) from None


def _lookback(value: Any) -> None:
    if value is not None:
        _number(0, above=True)(value)


def _app_env(value: Any) -> None:
    check_app_env(value, reserved=frozenset())  # the reserved names: a check across settings, below


def _stage_durations(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"must map each stage of the plan to [minimum, maximum], got {value!r}")
    # Against the plan and time_compression: a check across settings, below.


def _confirm_hooks(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() and "\n" not in c for c in value):
        raise ValueError(f"must be a list of one-line commands, got {value!r}")
    for command in value:
        unknown = unknown_placeholders(command, ("env", "stage", "next_stage"))
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + f + '}' for f in unknown)} in "
                             f"{command!r} (known: {{env}}, {{stage}}, {{next_stage}})")


def _duration_setting(value: Any) -> None:
    try:
        parse_duration(value)
    except BatchError:
        raise ValueError(f"must be seconds or a duration like 30s, 5m, 2h, got {value!r}") from None


def _alert_sinks(value: Any) -> None:
    parse_sinks(value)


def _share(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"must be a share of the host's real requests in (0, 1], got {value!r}")


def _hook_env(value: Any) -> None:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of environment variable names, got {value!r}")
    for name in value:
        _env_name(name)


#: Every setting of group_data/all.py a run reads, with its check. Unset (None)
#: means "not given" and is refused for every key but those in OPTIONAL.
SETTINGS: dict[str, Callable[[Any], None]] = {
    "ssh_strict_host_key_checking": _host_key_policy,
    "service_name": _name, "service_user": _name, "service_group": _name,
    "app_dir": _absolute_path, "venv_dir": _absolute_path, "app_module": _app_module,
    "bind_host": _bind_host, "bind_port": _port, "workers": _number(1, integral=True),
    "switch_variables": _switch_variables, "implementation_header": _header,
    "force_domain_parameter": _query_parameter, "metrics_field_defaults": _metrics_field_defaults,
    "env_dir": _absolute_path, "rollout_env_file": _absolute_path, "secrets_env_file": _absolute_path,
    "unit_file": _absolute_path, "state_dir": _absolute_path,
    "stage_plan": _stage_plan, "app_env": _app_env,
    "secret_variables": _secret_variables, "write_secrets": _flag,
    "health_path": _url_path, "metrics_path": _url_path, "health_timeout_s": _number(0, above=True),
    "checks": _flag, "rollback_on_abort": _flag, "verify_read_only": _flag,
    "verification_camera": _name, "verification_rule_name": _name, "endpoints": _endpoints,
    "unforced_requests": _number(1, integral=True), "legacy_proof_requests": _number(1, integral=True),
    "gate": _gate, "metrics_fields": _metrics_fields,
    "soak_s": _number(0), "gate_interval_s": _number(0, above=True),
    "smoke_traffic": _flag, "smoke_requests_per_s": _number(0, above=True),
    "paired_traffic": _flag, "paired_pairs_per_s": _number(0, above=True), "paired_share": _share,
    "paired_max_pairs": _number(1, integral=True), "gate_lookback_s": _lookback, "gate_pooled": _flag,
    "gate_cursors_kept": _number(1, integral=True), "consistency_checks": _consistency_checks,
    "verify_retries": _number(0, integral=True),
    "canary": _canary, "batch_hooks": _batch_hooks, "rollback_batches": _batches,
    "batch_hook_timeout_s": _number(0, above=True), "hook_env": _hook_env,
    "batches": _batches, "batch_soak_s": _number(0),
    "stage_durations": _stage_durations, "time_compression": _number(0, above=True),
    "auto_promote": _flag, "watch_soak_s": _number(0), "confirm_hooks": _confirm_hooks,
    "confirm_hook_timeout_s": _number(0, above=True), "lock_stale_after_s": _number(0, above=True),
    "watch_failing_after": _number(1, integral=True),
    "alert_sinks": _alert_sinks, "alert_timeout_s": _number(0, above=True),
    "alert_retries": _number(0, integral=True),
    "metrics_provider": _metrics_provider, "prometheus": _prometheus, "rollout_textfile_dir": _absolute_path,
    "alert_rules": check_alert_rules, "prometheus_metric_names": check_metric_names,
}

#: Settings that may be unset (None).
OPTIONAL = frozenset({"canary", "batch_hooks", "gate_lookback_s", "rollout_textfile_dir", "paired_share"})


def settings_of(get: Callable[[str], Any]) -> dict[str, Any]:
    """The settings a run reads, from a host-data getter (``host.data.get``).
    Secrets are not among them: see ``missing_secrets``."""
    return {key: get(key) for key in SETTINGS}


def check_settings(settings: Mapping[str, Any], host: str | None = None) -> None:
    """Refuse the first bad setting with one line naming it (and the host)."""
    where = f" (host {host})" if host else ""
    for key, check in SETTINGS.items():
        value = settings.get(key)
        if value is None:
            if key in OPTIONAL:
                continue
            raise InputError(f"setting {key}{where} is not set (group_data/all.py sets every default)")
        try:
            check(value)
        except Exception as error:  # noqa: BLE001 - a checker's own surprise is still this setting's fault
            raise InputError(f"setting {key}{where}: {' '.join(str(error).split())}") from None
    try:  # across settings, each checked on its own above
        check_app_env(settings["app_env"], reserved_variables(settings["switch_variables"],
                                                              settings["secret_variables"]))
    except ValueError as error:
        raise InputError(f"setting app_env{where}: {error}") from None
    if settings["metrics_provider"] == PROMETHEUS:
        prometheus = settings["prometheus"]
        if not prometheus.get("url"):
            raise InputError(f"setting prometheus{where}: metrics_provider is prometheus "
                             "but prometheus[\"url\"] is not set")
        if float(settings["soak_s"]) < float(prometheus["min_window_s"]):
            raise InputError(f"setting soak_s{where}: {settings['soak_s']} s is shorter than "
                             f"prometheus[\"min_window_s\"] ({prometheus['min_window_s']} s): "
                             "the gate could never read")
    try:
        durations_from(settings.get)
    except ValueError as error:
        raise InputError(f"setting stage_durations{where}: {error}") from None
    shared = set(settings["switch_variables"].values()) & set(settings["secret_variables"])
    if shared:  # the stage would be written into the secrets file, or a secret into the stage's
        raise InputError(f"setting secret_variables{where}: {sorted(shared)[0]} is also a switch variable")
    url_envs = {sink.url_env for sink in parse_sinks(settings["alert_sinks"])}
    urls = url_envs & set(settings["hook_env"])
    if urls:
        raise InputError(f"setting hook_env{where}: {sorted(urls)[0]} holds an alert sink's URL (a secret): "
                         "no hook may get it")
    inherited = sorted(name for name in url_envs if name in MINIMAL_ENV or name.startswith("LC_"))
    if inherited:
        raise InputError(f"setting alert_sinks{where}: url_env {inherited[0]} is a variable every hook "
                         "inherits: name the URL's own variable")


def check_connection(host: str, data: Callable[[str], Any]) -> None:
    """The host's name and how it is reached (``data``: its host data getter),
    before any connection: each of these reaches a shell (a batch hook's
    ``{hosts}``) or an SSH config file (``rollout verify``'s), so each must fit
    its grammar: a host name, an address, a login name, a port, a path."""
    if not isinstance(host, str) or not _HOST_NAME.fullmatch(host) or ".." in host:
        raise InputError(f"host name {host!r}: letters, digits and . _ : / @ - only, no '..' (it reaches batch "
                         "hooks, SSH configs and report file names)")

    def plain_path(value: Any) -> bool:
        return isinstance(value, str) and bool(value) and not control_characters(value) \
            and not any(c.isspace() or c in "\"'" for c in value)

    checks: dict[str, Callable[[Any], bool]] = {
        "ssh_hostname": is_address,
        "ssh_user": lambda v: isinstance(v, str) and bool(_LOGIN.fullmatch(v)),
        "ssh_port": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536,
        "ssh_key": plain_path,
        "ssh_known_hosts_file": plain_path,
    }
    for key, fits in checks.items():
        value = data(key)
        if value is not None and not fits(value):
            raise InputError(f"{key} of host {host}: {value!r} is not a valid {key.removeprefix('ssh_')}")


def _has_value(value: Any) -> bool:
    """A secret counts as given when it is a non-blank string (a pyinfra
    HiddenValue is unmasked only to look at its length, never printed)."""
    if hasattr(value, "unmask"):
        value = value.unmask()
    return isinstance(value, str) and bool(value.strip())


def missing_secrets(secret_variables: Mapping[str, str], get: Callable[[str], Any]) -> list[str]:
    """The host-data keys of the secrets that have no value (names only)."""
    return [key for key in secret_variables.values() if not _has_value(get(key))]


def bad_secrets(secret_variables: Mapping[str, str], get: Callable[[str], Any]) -> list[str]:
    """The host-data keys of the secrets whose value holds a control character
    (a newline would start another variable of the env file); names only."""
    def unmasked(value: Any) -> Any:
        return value.unmask() if hasattr(value, "unmask") else value

    return [key for key in secret_variables.values()
            if isinstance(unmasked(get(key)), str) and control_characters(unmasked(get(key)))]


def check_secrets_for_writing(secret_variables: Mapping[str, str], get: Callable[[str], Any],
                              host: str | None = None) -> None:
    """``write_secrets`` is on: every secret must have a value that fits an env
    file, or nothing is written."""
    refuse_missing_secrets(missing_secrets(secret_variables, get), host)
    bad = bad_secrets(secret_variables, get)
    if bad:
        where = f" for host {host}" if host else ""
        raise InputError(f"{', '.join(bad)} holds a control character{where} (a newline would start another "
                         "variable): refusing to write the secrets file (the value is not shown)")


def refuse_missing_secrets(missing: list[str], host: str | None = None) -> None:
    if missing:
        where = f" for host {host}" if host else ""
        raise InputError(f"{', '.join(missing)} has no value{where}: refusing to write the secrets file "
                         "(give every secret to write it; a stage change or rollback never needs them)")


# --- options (the command line) --------------------------------------------------------------------


def duration(option: str, text: str | int | float) -> float:
    """A command-line duration (``30s``, ``5m``, ``2h``, ``1d``, plain seconds)."""
    try:
        return parse_duration(text)
    except BatchError:
        raise InputError(f"{option} {text!r}: a duration must look like 30s, 5m, 2h or 1d") from None


@dataclass(frozen=True)
class DashboardOptions:
    """The checked options of ``rollout dashboard``."""

    port: int
    refresh_s: float
    range_s: float
    rate_window: str


def check_dashboard(port: int, refresh: str, range_: str, rate_window: str) -> DashboardOptions:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        raise InputError(f"--port {port!r}: a TCP port 1..65535 (0: any free one)")
    refresh_s, range_s = duration("--refresh", refresh), duration("--range", range_)
    if refresh_s < 1:
        raise InputError(f"--refresh {refresh!r}: at least 1s (every browser polls at that pace)")
    if range_s < 60:
        raise InputError(f"--range {range_!r}: at least 1m")
    if not re.fullmatch(r"[1-9][0-9]*[smh]", rate_window):
        raise InputError(f"--rate-window {rate_window!r}: a Prometheus duration like 30s or 1m")
    return DashboardOptions(port, refresh_s, range_s, rate_window)


@dataclass(frozen=True)
class RolloutOptions:
    """The checked options of a stage change (deploy, promote)."""

    batches: list[list[str]]
    soak_s: float
    batch_soak_s: float


def check_options(hosts: list[str], *, batches_spec: str, canary: str | None, soak: str | None,
                  batch_soak: str | None, default_soak_s: float, default_batch_soak_s: float) -> RolloutOptions:
    """Batch plan, canary and gate windows of a stage change, against the fleet
    (``soak``/``batch_soak`` not given: the group data's)."""
    try:
        batches = plan_batches(hosts, batches_spec, canary)
    except BatchError as error:
        raise InputError(f"--batches {batches_spec!r}: {error}" if "batch size" in str(error)
                         or "empty" in str(error) else str(error)) from None
    soak_s = duration("--soak", soak) if soak is not None else float(default_soak_s)
    batch_soak_s = duration("--batch-soak", batch_soak) if batch_soak is not None else float(default_batch_soak_s)
    return RolloutOptions(batches, soak_s, batch_soak_s)


def check_early(reason: str | None) -> None:
    """``--early REASON``: a reason on one line (every host's history keeps it)."""
    if reason is not None and (not reason.strip() or "\n" in reason or "\r" in reason):
        raise InputError("--early needs a reason on one line (it is kept in the hosts' history)")


def check_batches(hosts: list[str], spec: str, option: str = "--batches") -> list[list[str]]:
    try:
        return plan_batches(hosts, spec)
    except BatchError as error:
        raise InputError(f"{option} {spec!r}: {error}") from None

"""The operator's front door: ``rollout``. Wiring and output only: the inputs are
checked by rollout/inputs.py, the steps decided by rollout/orchestrate.py, the
hosts reached by the pyinfra runner of rollout/fleet.py.

    rollout deploy prod --stage 10        stage in host batches, checked batch by batch
    rollout promote prod                  gate on what the fleet served, then the next stage
    rollout rollback prod                 stage 0 on every host at once, then proof of legacy
    rollout status prod                   one row per host; drift flagged
    rollout verify prod --junit-xml F     preflight + endpoint verification + testinfra checks
    rollout check prod                    the gate alone (rolls back on abort)
    rollout unlock prod [--force]         release (or break) the rollout lock
    rollout watch prod [--loop 1m]        one tick of the controller: judge, roll back, promote when
                                          due, alert (the autopilot's timer runs it every minute)

Exit codes: 0 done, 1 a host or a check failed, 2 usage error (refused before
any host is touched), 3 rolled back.
"""

from __future__ import annotations

import functools
import getpass
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rollout.alerts import Event, parse_sinks
from rollout.batches import BatchError
from rollout.controller import (
    PENDING_KEPT,
    Alerts,
    LocalState,
    Tick,
    WatchSettings,
    default_state_dir,
    tick_failed,
    tick_succeeded,
    wait_between,
)
from rollout.fleet import Fleet, PyinfraRunner, load_fleet
from rollout.inputs import (
    InputError,
    RolloutOptions,
    check_batches,
    check_dashboard,
    check_early,
    check_options,
    duration,
)
from rollout.orchestrate import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_ROLLED_BACK,
    EXIT_USAGE,
    Orchestrator,
    StageChange,
    Stop,
    drift,
    fleet_stage,
)
from rollout.pool import waiting_for
from rollout.project import DEPLOY_ROOT, find_project, write_starter
from rollout.stages import StageError, check_move, parse_stage
from rollout.timetable import (
    clock,
    durations_from,
    format_timetable,
    histories,
    human,
    time_left,
    timetable,
    utcnow,
)
from rollout.watch import fleet_verdict, gate_on, lock_holders

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_ROLLED_BACK"]


def notifier_of(fleet: Fleet, say, sinks=None):
    """The alert sinks' sender (``sinks``: already parsed). Imported here: requests
    (and with it ssl) must not be imported before pyinfra's CLI has patched them
    for gevent."""
    from rollout.notify import Notifier

    sinks = parse_sinks(fleet.setting("alert_sinks")) if sinks is None else sinks
    return Notifier(sinks, environ=os.environ, say=say,
                    timeout_s=float(fleet.setting("alert_timeout_s")), retries=int(fleet.setting("alert_retries")))


class Context:
    """What every command shares: output mode, operator, the JSON result."""

    def __init__(self, as_json: bool, verbose: bool, project: str | None):
        self.as_json = as_json
        self.verbose = verbose
        self.project = project
        self.result: dict[str, Any] = {}
        self.operator = f"{getpass.getuser()}@{socket.gethostname()}"
        self.token = f"{self.operator}:{uuid.uuid4().hex[:12]}"

    def say(self, message: str = "") -> None:
        click.echo(message, err=self.as_json)

    def fleet(self, env: str, connecting: bool = True) -> Fleet:
        """The inventory ENV of the project, loaded and every setting checked."""
        return load_fleet(env, find_project(self.project), connecting)

    def runner(self, fleet: Fleet, token: str | None = None) -> PyinfraRunner:
        return PyinfraRunner(fleet, self.say, self.operator, token or self.token, self.verbose)

    def orchestrator(self, fleet: Fleet, runner: PyinfraRunner, rollback_spec: str | None = None,
                     alerts: Alerts | None = None) -> Orchestrator:
        rollback_batches = check_batches(fleet.hosts, rollback_spec or fleet.setting("rollback_batches"))
        return Orchestrator(runner, fleet.setting("batch_hooks"), rollback_batches,
                            lock_hint=fleet.inventory.stem, result=self.result,
                            alert=alerts if alerts is not None else self.alerts(fleet))

    def alerts(self, fleet: Fleet, base: str | None = None) -> Alerts:
        """The fleet's alert sinks (group data ``alert_sinks``; their URLs from this
        machine's environment, never printed). A sink without its URL is named
        once and skipped: a rollback is never held up by an alert."""
        sinks = parse_sinks(fleet.setting("alert_sinks"))
        send = None
        if sinks:
            notifier = notifier_of(fleet, self.say, sinks)
            for problem in notifier.problems():
                self.say(f"alerts: {problem}: not sent there")
            send = lambda event: notifier.send(Event(**event))  # noqa: E731
        return Alerts(fleet.inventory.stem, send, self.say, base=base or self.token.rsplit(":", 1)[-1])


def command(function):
    """Run a command body with the shared error handling and JSON output.
    ``--json`` and ``-v`` are taken after the command as well as before it."""

    @click.option("--json", "json_here", is_flag=True, help="Print one JSON document on stdout.")
    @click.option("-v", "--verbose", "verbose_here", is_flag=True, help="Stream pyinfra's own output.")
    @click.pass_obj
    @functools.wraps(function)
    def wrapper(ctx: Context, *args, json_here: bool, verbose_here: bool, **kwargs):
        ctx.as_json = ctx.as_json or json_here
        ctx.verbose = ctx.verbose or verbose_here
        code = EXIT_OK
        try:
            function(ctx, *args, **kwargs)
        except (InputError, StageError, BatchError) as error:
            code = EXIT_USAGE
            ctx.result["error"] = str(error)
            click.echo(f"rollout: {error}", err=True)
        except Stop as error:
            code = error.code
            ctx.result["error"] = str(error)
            click.echo(f"rollout: {error}", err=True)
        ctx.result["exit_code"] = code
        if ctx.as_json:
            click.echo(json.dumps(ctx.result, indent=2, sort_keys=True, default=str))
        sys.exit(code)

    return wrapper


class RolloutGroup(click.Group):
    """Click's own usage errors (an unknown option, a missing argument) as one
    line and exit 2, like every other refused input."""

    # Narrower than click's main on purpose: standalone_mode is always off here.
    def main(self, args=None, prog_name=None, **extra):  # type: ignore[override]
        try:
            return super().main(args, prog_name or "rollout", standalone_mode=False, **extra)
        except click.UsageError as error:
            click.echo(f"rollout: {' '.join(error.format_message().split())}", err=True)
            sys.exit(EXIT_USAGE)
        except click.Abort:
            click.echo("rollout: aborted", err=True)
            sys.exit(EXIT_FAILED)


@click.group(cls=RolloutGroup)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (progress goes to stderr).")
@click.option("-v", "--verbose", is_flag=True, help="Stream pyinfra's own output.")
@click.option("--project", type=click.Path(file_okay=False), envvar="ROLLOUT_PROJECT",
              help="Your project (inventories/, group_data/); default: the current directory if it has "
                   "inventories/, else the tool's checkout.")
@click.pass_context
def main(click_ctx: click.Context, as_json: bool, verbose: bool, project: str | None) -> None:
    """Staged canary rollout of the camera API on systemd hosts."""
    click_ctx.obj = Context(as_json, verbose, project)


# --- fleet state ---------------------------------------------------------------------------------


def read_status(ctx: Context, runner: PyinfraRunner, strict: bool = True) -> dict[str, dict]:
    """Every host's status report; an unreachable host is named and stops us
    (``strict``), or is named and left out (the report after a failed rollout,
    which must not hide the failure's own message)."""
    statuses = runner.status()
    missing = [h for h, s in statuses.items() if s is None]
    if missing and strict:
        raise Stop(EXIT_FAILED, f"cannot read the state of host(s) {', '.join(missing)} (unreachable?)")
    if missing:
        ctx.say(f"status: cannot read {', '.join(missing)} (unreachable?)")
    return {h: s for h, s in statuses.items() if s is not None}


def print_status(ctx: Context, statuses: dict[str, dict]) -> None:
    ctx.say(f"{'host':<28} {'file':>5} {'process':>8} {'health':>7}  last change")
    for host, status in sorted(statuses.items()):
        current = status.get("current") or {}
        change = (f"{current.get('time', '?')} {current.get('operator', '?')}: stage "
                  f"{current.get('stage')} ({current.get('verdict')})") if current else "-"
        marker = "  <- drift" if status["file_stage"] != status["process_stage"] else ""
        ctx.say(f"{host:<28} {status['file_stage']!s:>5} {status['process_stage']!s:>8} "
                f"{status.get('health')!s:>7}  {change}{marker}")
    for holder in lock_holders(statuses):  # one line per lock (token), whatever time each host took it
        ctx.say(f"lock held by {holder.get('owner')} since {holder.get('time')} ({holder.get('command')})")
    for flag in drift(statuses):
        ctx.say(f"DRIFT {flag}")


# --- commands ----------------------------------------------------------------------------------------


def rollout_options(fleet: Fleet, options: dict[str, Any]) -> RolloutOptions:
    """A stage change's options, checked against the fleet before any host is
    contacted: batch plan, canary, gate windows, and --yes without a terminal."""
    checked = check_options(fleet.hosts, batches_spec=options["batches_spec"] or fleet.setting("batches"),
                            canary=options["canary"] or fleet.setting("canary"), soak=options["soak"],
                            batch_soak=options["batch_soak"], default_soak_s=fleet.setting("soak_s"),
                            default_batch_soak_s=fleet.setting("batch_soak_s"))
    check_early(options["early"])
    if not options["yes"] and not options["dry"] and not sys.stdin.isatty():
        raise InputError("not a terminal: pass --yes to apply")
    return checked


def refuse_early(ctx: Context, fleet: Fleet, runner: PyinfraRunner, statuses: dict[str, dict], current: int | None,
                 target: int, early: str | None) -> None:
    """Leaving a stage forward before its minimum observation time: refused
    (exit 2) with the time left, unless ``--early REASON``, which every host's
    record of the change keeps, with the operator."""
    if not current or target <= current:
        return
    left, due = time_left(histories(statuses), current, durations_from(fleet.setting), utcnow())
    if left <= 0:
        return
    when = f"in {human(left)} (due {clock(due)})" if due else "never: no record says when the whole fleet reached it"
    if early is None:
        raise InputError(f"stage {current} is not due yet: its minimum observation time ends {when}; "
                         f"pass --early REASON to leave it now (kept in the history)")
    runner.extra_data["override"] = {"early": human(left) if due else "unknown", "reason": early.strip(),
                                     "operator": ctx.operator}
    ctx.say(f"leaving stage {current} early ({when}): {early.strip()}")


def deploy_stage(ctx: Context, fleet: Fleet, runner: PyinfraRunner, statuses: dict[str, dict], stage: int,
                 checked: RolloutOptions, options: dict[str, Any], command_line: str) -> None:
    """A stage in batches: shown under --dry, asked for without --yes, then
    applied by the orchestration; the fleet's status is shown at the end."""
    batches = checked.batches
    ctx.result.update({"stage": stage, "plan": batches})
    ctx.say(f"plan: stage {stage} in {len(batches)} batch(es): "
            + " | ".join(", ".join(b) for b in batches))
    if options["dry"]:
        ok, lines = runner.dry_run(stage)
        for line in lines:
            ctx.say(line)
        if not ok:
            raise Stop(EXIT_FAILED, "the dry run failed")
        ctx.say("dry run: nothing was changed")
        return
    if not options["yes"]:
        click.confirm(f"apply stage {stage} to {len(fleet.hosts)} host(s)?", abort=True, err=True)
    change = StageChange(stage, batches, checked.soak_s, checked.batch_soak_s, options["smoke"],
                         options["on_failure"], command_line, from_stage=fleet_stage(statuses))
    try:
        ctx.orchestrator(fleet, runner).deploy(change, {h: s["file_stage"] for h, s in statuses.items()})
    finally:
        final = read_status(ctx, runner, strict=False)
        ctx.result["status"] = final
        print_status(ctx, final)


_deploy_options = [
    click.option("--batches", "batches_spec",
                 help="Batch sizes: hosts or percent of the fleet; the last repeats (default: group data "
                      "batches, 1,25%,100%)."),
    click.option("--canary", help="The first batch's host (default: group data `canary`, else the first by name)."),
    click.option("--soak", help="Gate window after the last batch (30s, 10m, 2h; default: group data soak_s)."),
    click.option("--batch-soak", help="Gate window after each earlier batch (an abort ends it early; "
                                      "default: group data batch_soak_s, 60s)."),
    click.option("--early", metavar="REASON",
                 help="Leave the current stage before its minimum observation time (stage_durations); "
                      "REASON is kept in every host's history with the operator."),
    click.option("--smoke-traffic/--no-smoke-traffic", "smoke", default=None,
                 help="Drive bounded synthetic traffic (smoke and paired) during the gate "
                      "(default: group data smoke_traffic, paired_traffic)."),
    click.option("--on-failure", type=click.Choice(["previous", "rollback", "stop"]), default="previous",
                 show_default=True, help="Touched hosts after a failed batch: back to their previous "
                 "stage, to stage 0, or left as they are."),
    click.option("--dry", is_flag=True, help="Show the env changes per host (no secrets); change nothing."),
    click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
]


def deploy_options(function):
    for option in reversed(_deploy_options):
        function = option(function)
    return function


@main.command()
@click.argument("env")
@click.option("--stage", required=True, help="Stage to apply: 0 or a stage of the plan.")
@click.option("--allow-skip", is_flag=True, help="Allow skipping stages of the plan.")
@deploy_options
@command
def deploy(ctx: Context, env: str, stage: str, allow_skip: bool, **options) -> None:
    """Apply a stage to ENV in host batches, each checked before the next."""
    fleet = ctx.fleet(env)
    plan = fleet.setting("stage_plan")
    target = parse_stage(stage, plan)
    checked = rollout_options(fleet, options)
    runner = ctx.runner(fleet)
    statuses = read_status(ctx, runner)
    current = fleet_stage(statuses)
    check_move(current, target, plan, allow_skip)
    refuse_early(ctx, fleet, runner, statuses, current, target, options["early"])
    ctx.result["from_stage"] = current
    deploy_stage(ctx, fleet, runner, statuses, target, checked, options, f"rollout deploy {env} --stage {target}")


@main.command()
@click.argument("env")
@click.option("--gate-soak", default="60s", show_default=True,
              help="Gate window on the current stage before promoting, on top of what was served since the "
                   "previous passing check (0: one read; an abort ends it early).")
@deploy_options
@command
def promote(ctx: Context, env: str, gate_soak: str, **options) -> None:
    """Judge what ENV served on its stage since the previous passing check; on pass apply the next stage."""
    fleet = ctx.fleet(env)
    plan = fleet.setting("stage_plan")
    checked = rollout_options(fleet, options)
    gate_soak_s = duration("--gate-soak", gate_soak)
    runner = ctx.runner(fleet)
    statuses = read_status(ctx, runner)
    orchestrator = ctx.orchestrator(fleet, runner)
    current, following = orchestrator.promotion(statuses, plan)
    refuse_early(ctx, fleet, runner, statuses, current, following, options["early"])
    command_line = f"rollout promote {env}"
    if not options["dry"]:
        orchestrator.gate_before_promote(current, following, gate_soak_s, options["smoke"], command_line)
    deploy_stage(ctx, fleet, runner, statuses, following, checked, options, command_line)


@main.command()
@click.argument("env")
@click.option("--break-lock", is_flag=True, help="Roll back even if another operator holds the lock.")
@click.option("--batches", "batches_spec", help="Batch sizes, as for deploy (default: group data "
              "rollback_batches, 100%: every host at once).")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; a rollback never asks.")
@command
def rollback(ctx: Context, env: str, break_lock: bool, batches_spec: str | None, yes: bool) -> None:
    """Stage 0 on every host of ENV (at once by default), then prove legacy answers everything.
    Never asks for confirmation: it is the way back."""
    fleet = ctx.fleet(env)
    runner = ctx.runner(fleet)
    orchestrator = ctx.orchestrator(fleet, runner, batches_spec)  # a bad plan is refused here
    if break_lock:
        runner.lock("release", force=True)
    if orchestrator.roll_back(f"rollout rollback {env}") != EXIT_OK:
        raise Stop(EXIT_FAILED, "rollback did not complete")


@main.command()
@click.argument("env")
@command
def status(ctx: Context, env: str) -> None:
    """One row per host: stage in the file and in the process, health, last change."""
    fleet = ctx.fleet(env)
    statuses = read_status(ctx, ctx.runner(fleet))
    weak = fleet.weak_host_keys()
    ctx.result.update({"hosts": statuses, "drift": drift(statuses), "weak_host_keys": weak})
    print_status(ctx, statuses)
    for policy, hosts in sorted(weak.items()):
        ctx.say(f"HOST KEYS not checked strictly: ssh_strict_host_key_checking={policy} on {', '.join(hosts)} "
                "(a new or changed host key is trusted; \"yes\" refuses it)")
    print_timetable(ctx, fleet, statuses)


@main.command()
@click.argument("env", required=False)
@command
def rules(ctx: Context, env: str | None) -> None:
    """Print the seed's alert rules for Prometheus, from ENV's gate thresholds
    (without ENV: the defaults, monitoring/rules.yml). No host is contacted."""
    from rollout.alert_rules import render
    from rollout.project import defaults

    settings: Callable[[str], Any] = ctx.fleet(env, connecting=False).setting if env else defaults().get
    text = render(settings("gate"), settings("alert_rules"), settings("prometheus_metric_names"))
    ctx.result["rules"] = text
    if not ctx.as_json:
        click.echo(text, nl=False)


@main.command()
@click.argument("env")
@click.option("--port", default=8765, show_default=True, type=int, help="Port on 127.0.0.1 (0: any free one).")
@click.option("--refresh", default="10s", show_default=True, help="How often the page and its data refresh.")
@click.option("--range", "range_", default="1h", show_default=True, help="How far back the charts reach.")
@click.option("--rate-window", default="1m", show_default=True,
              help="The rate window of the charts (at least two scrape intervals).")
@command
def dashboard(ctx: Context, env: str, port: int, refresh: str, range_: str, rate_window: str) -> None:
    """Serve a local web page (127.0.0.1 only, no login: reach it through an SSH
    tunnel) with the error rate, response time and domain usage per host and
    implementation, the stage changes and each host's gate verdict; from
    Prometheus when prometheus["url"] is set, else from the hosts' records."""
    options = check_dashboard(port, refresh, range_, rate_window)
    fleet = ctx.fleet(env)
    from rollout import dashboard as board  # requests: imported after pyinfra's patching, as notify

    url = (fleet.setting("prometheus") or {}).get("url")
    source: board.PrometheusSource | board.RecordsSource
    if url:
        source = board.PrometheusSource(url, fleet.setting("prometheus_metric_names"), options.range_s,
                                        options.rate_window,
                                        float(fleet.setting("prometheus")["timeout_s"]), hosts=list(fleet.hosts))
    else:
        runner = ctx.runner(fleet)
        source = board.RecordsSource(lambda: {h: s for h, s in runner.status().items() if s is not None})
    ctx.say(f"dashboard of {env}: {'Prometheus' if url else 'the hosts records'}; Ctrl-C stops it")
    board.serve(board.Cache(source, options.refresh_s), env, options.port, options.refresh_s,
                ready=lambda where: ctx.say(f"serving on {where} (loopback only)"))


def print_timetable(ctx: Context, fleet: Fleet, statuses: dict[str, dict]) -> None:
    """Every stage of the plan: since when the whole fleet is on it, the
    verdict so far (the hosts' last gates), when it is due and overdue."""
    now = utcnow()
    current = fleet_stage(statuses)  # drifted: the highest stage a file holds (a promotion under way)
    rows = timetable(histories(statuses), current, fleet.setting("stage_plan"), durations_from(fleet.setting))
    verdicts = {current: fleet_verdict(statuses, current)} if current else {}
    ctx.say("")
    for line in format_timetable(rows, verdicts, now):
        ctx.say(line)
    waiting = waiting_for(gate_on(s, current).get("reason", "") for s in statuses.values()) if current else ""
    if waiting and current is not None and verdicts.get(current) == "inconclusive":
        ctx.say(f"stage {current} waits for evidence: {waiting}")
        ctx.result["waiting"] = waiting
    ctx.result["timetable"] = [
        {"stage": r.stage, "state": r.state, "since": r.since and r.since.isoformat(),
         "due": r.due and r.due.isoformat(), "overdue": r.overdue and r.overdue.isoformat(),
         "due_in_s": r.due and round((r.due - now).total_seconds(), 1),
         "verdict": verdicts.get(r.stage)} for r in rows]


@main.command()
@click.argument("env")
@click.option("--junit-xml", type=click.Path(dir_okay=False), help="Write a JUnit XML report (for CI).")
@click.option("--read-only", is_flag=True, help="GET endpoints only: nothing written on the hosts.")
@command
def verify(ctx: Context, env: str, junit_xml: str | None, read_only: bool) -> None:
    """Preflight, endpoint verification and the testinfra host checks of ENV."""
    missing = [name for name in ("pytest", "testinfra") if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(f"rollout verify runs the host checks with pytest and pytest-testinfra; "
                         f"not installed: {', '.join(missing)} (pip install pytest pytest-testinfra)")
    fleet = ctx.fleet(env)
    pytest_args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:warnings", "-q",
                   str(DEPLOY_ROOT / "tests" / "hosts"), "--inventory", str(fleet.inventory),
                   "--checks", "preflight,verify"]
    if read_only:
        pytest_args.append("--read-only")
    if junit_xml:
        junit_xml = os.path.abspath(junit_xml)  # pytest runs in the deploy root
        pytest_args += ["--junit-xml", junit_xml]
    result = subprocess.run(pytest_args, cwd=DEPLOY_ROOT, text=True, capture_output=True,
                            env={**os.environ, "ROLLOUT_PROJECT": str(fleet.project)})
    ctx.say(result.stdout.strip())
    ctx.result.update({"returncode": result.returncode, "junit_xml": junit_xml})
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
        raise Stop(EXIT_FAILED, f"verification failed (pytest exited {result.returncode}: {detail})")


@main.command()
@click.argument("env")
@click.option("--soak", default="0", show_default=True, help="Observe this long (0: one read).")
@click.option("--no-rollback", is_flag=True, help="Report an abort; do not roll back.")
@click.option("--smoke-traffic/--no-smoke-traffic", "smoke", default=None,
              help="Synthetic traffic (smoke and paired) during the gate (default: group data).")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; check never asks.")
@command
def check(ctx: Context, env: str, soak: str, no_rollback: bool, smoke: bool | None, yes: bool) -> None:
    """The metrics gate alone on ENV's current metrics (for a scheduled job).
    A host that fails its gate rolls every host back; an unreachable host is
    named (exit 1) and rolls nothing back."""
    fleet = ctx.fleet(env)
    soak_s = duration("--soak", soak)
    orchestrator = ctx.orchestrator(fleet, ctx.runner(fleet))
    verdicts = orchestrator.gate(soak_s, smoke)
    ctx.say("gate: " + ", ".join(f"{h} {v}" for h, v in verdicts.items()))
    orchestrator.act_on_gate(verdicts, f"rollout check {env} (gate failed)", "the fleet", roll_back=not no_rollback)


@main.command()
@click.argument("env")
@click.option("--loop", "interval", metavar="INTERVAL",
              help="Run a tick every INTERVAL (30s, 1m) in the foreground until stopped (SIGTERM, Ctrl-C).")
@click.option("--start", is_flag=True,
              help="The first tick starts the plan's first stage when the fleet is on stage 0 (a later "
                   "rollback to 0 is never restarted).")
@click.option("--soak", help="Gate window of a tick (default: group data watch_soak_s; 0: one read).")
@click.option("--state-dir", type=click.Path(file_okay=False), envvar="ROLLOUT_STATE_DIR",
              help="This machine's watch state: tick lock, failed ticks, alerts sent and undelivered, "
                   "the promotion a tick started (only that one is resumed) "
                   "(default: $XDG_STATE_HOME/rollout or ~/.local/state/rollout).")
@command
def watch(ctx: Context, env: str, interval: str | None, start: bool, soak: str | None,
          state_dir: str | None) -> None:
    """One tick of the controller on ENV (safe every minute from cron, a timer or CI):
    judge the window since the previous passing check, roll back on an abort,
    promote a stage that is due and passing (auto_promote), alert once on what
    a person must know. Exit 0 (also "nothing to do" and "locked by another"),
    1 a failure, 3 rolled back."""
    fleet = ctx.fleet(env)
    interval_s = duration("--loop", interval) if interval is not None else None
    if interval_s is not None and interval_s <= 0:
        raise InputError("--loop needs an interval > 0")
    settings = WatchSettings.of(env, fleet.setting, duration("--soak", soak) if soak is not None else None)
    notifier_problems = notifier_of(fleet, ctx.say).problems()
    if notifier_problems:
        raise InputError(f"alerts: {notifier_problems[0]} (the watch must be able to alert)")
    local = LocalState(Path(state_dir) if state_dir else default_state_dir(), fleet.inventory.stem)
    ctx.result["ticks"] = []
    if interval_s is None:
        code = run_tick(ctx, fleet, settings, local, start, lambda: False)
        if code != EXIT_OK:
            raise Stop(code, ctx.result["ticks"][-1].get("error") or "the tick failed")
        return
    stopping = stop_on_signals()
    first = True
    while not stopping():
        began = time.monotonic()
        run_tick(ctx, fleet, settings, local, start and first, stopping)
        first = False
        wait_between(interval_s, stopping, began)
    ctx.say("watch: stopped")


#: Ticks a ``--loop`` keeps for its ``--json`` document (the newest).
TICKS_KEPT = 100


def stop_on_signals():
    """SIGTERM and SIGINT end the loop after the tick under way (a tick killed
    half-way is safe too: the next one resumes)."""
    asked: list[int] = []

    def ask(signum, frame):
        if asked:  # a second signal: stop now
            raise KeyboardInterrupt
        asked.append(signum)
        click.echo("watch: stopping after this tick", err=True)

    signal.signal(signal.SIGTERM, ask)
    signal.signal(signal.SIGINT, ask)
    return lambda: bool(asked)


def run_tick(ctx: Context, fleet: Fleet, settings: WatchSettings, local: LocalState, start: bool,
             stopping) -> int:
    """One tick with its bookkeeping: this machine's tick lock, the alerts still
    to deliver (kept here as soon as a sink refuses one), the failed-tick count."""
    began = time.monotonic()
    record: dict[str, Any] = {"time": utcnow().isoformat(timespec="seconds")}
    ctx.result["ticks"] = [*ctx.result["ticks"][-(TICKS_KEPT - 1):], record]  # a loop runs for days
    if not local.try_lock():
        ctx.say(f"watch: another tick of {settings.env} runs on this machine (pid {local.holder()}): "
                "this one does nothing")
        record.update(action="none: another tick runs", exit_code=EXIT_OK)
        return EXIT_OK
    try:
        state = local.load()
        token = f"{ctx.operator}:{uuid.uuid4().hex[:12]}"
        runner = ctx.runner(fleet, token)
        runner.own_session = True  # a signal for the loop must not cut the tick's pyinfra runs
        alerts = ctx.alerts(fleet)
        alerts.keep_pending = lambda pending: local.save({**state, "pending": pending[-PENDING_KEPT:]})
        alerts.retry_pending(state.get("pending") or [], utcnow())
        tick = Tick(settings, runner, ctx.orchestrator(fleet, runner, alerts=alerts), alerts, ctx.operator,
                    fleet.project, start, local=str(local.directory.resolve()), stopping=stopping, state=local)
        ctx.say(f"watch {settings.env}: tick at {record['time']}")
        try:
            code = tick.run()
        except Stop as stop:
            code = stop.code
            record["error"] = str(stop)
            ctx.say(f"watch: {stop}")
        except Exception as error:  # noqa: BLE001 - a tick must count and report its own failure, whatever it is
            code = EXIT_FAILED
            record["error"] = f"{type(error).__name__}: {' '.join(str(error).split())}"
            ctx.say(f"watch: the tick broke: {record['error']}")
        if code == EXIT_FAILED and not tick.summary.get("held"):  # a hold is the watch working
            state = tick_failed(state, settings.failing_after, alerts, record.get("error", "failed"))
        else:
            state = tick_succeeded(state, alerts)
        state["pending"] = alerts.pending[-PENDING_KEPT:]
        local.save(state)
        tick.keep_alerts_after()  # watch failing / recovered: on the hosts too, when they answer
        record.update(tick.summary, exit_code=code, seconds=round(time.monotonic() - began, 1),
                      alerts=list(alerts.new))
        ctx.say(f"watch: tick done in {record['seconds']:.0f}s: {record.get('action', '-')} (exit {code})")
        return code
    finally:
        local.unlock()


@main.command()
@click.argument("env")
@click.option("--force", is_flag=True, help="Break another operator's lock (a stale one).")
@click.option("--yes", "-y", is_flag=True, help="Accepted for scripts; unlock never asks.")
@command
def unlock(ctx: Context, env: str, force: bool, yes: bool) -> None:
    """Release the rollout lock on ENV (--force breaks another operator's)."""
    fleet = ctx.fleet(env)
    run = ctx.runner(fleet).lock("release", force=force)
    if run.unreachable:
        raise Stop(EXIT_FAILED, f"cannot reach {', '.join(run.unreachable)}: its lock (if any) is unchanged; "
                                "unlock again once it answers")
    if run.holders:
        raise Stop(EXIT_FAILED, f"the lock is held by another rollout: {run.holders[0]} "
                                "(use --force to break a stale one)")
    if not run.ok:
        raise Stop(EXIT_FAILED, "could not release the lock on some host (see above)")


@main.command("write-secrets")
@click.argument("env")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@command
def write_secrets(ctx: Context, env: str, yes: bool) -> None:
    """Write (or rotate) the secrets env file on every host of ENV from the
    inventory's values; refused unless every host has every value. The only
    command that writes it; restarts the service where the file changed."""
    fleet = ctx.fleet(env)
    fleet.refuse_unwritable_secrets()
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("not a terminal: pass --yes to write the secrets")
        click.confirm(f"write the secrets file on {len(fleet.hosts)} host(s)?", abort=True, err=True)
    runner = ctx.runner(fleet)
    run = runner.run(["tasks/secrets.py"], "write-secrets", data={"command": f"rollout write-secrets {env}"})
    if run.returncode != 0:
        raise Stop(EXIT_FAILED, "writing the secrets failed on some host (see above)")
    ctx.say(f"secrets file written where it differed ({', '.join(fleet.hosts)}); contents never shown")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@command
def init(ctx: Context, directory: str) -> None:
    """Write a starting project for a new service in DIRECTORY: an inventory
    to fill in and every default, documented and commented out."""
    try:
        written = write_starter(Path(directory))
    except FileExistsError as error:
        raise InputError(str(error)) from None
    for path in written:
        ctx.say(f"wrote {path}")
    ctx.say(f"next: edit {written[0]}, then `rollout --project {directory} status prod`")
    ctx.result["written"] = [str(p) for p in written]

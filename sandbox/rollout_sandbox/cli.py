"""The sandbox's front door: ``rollout-sandbox`` (also ``python -m rollout_sandbox``).

    rollout-sandbox up [--hosts N] [--lb] [--no-install]   boot the fleet, install the reference service
    rollout-sandbox up --hosts 100 --light                 light hosts: a stub service, no database
    rollout-sandbox status                                 where every host stands
    rollout-sandbox lb drain|enable HOST...|status|stop    its load balancer (nginx on loopback)
    rollout-sandbox power-off|power-on HOST                cut and restore a host's power (drills)
    rollout-sandbox ssh-login deploy|root                  reach the hosts as a sudoer, root's login refused
    rollout-sandbox down                                   stop exactly what it started

Exit codes: 0 done, 1 a step failed, 2 usage error.
"""

from __future__ import annotations

import sys

import click

from rollout_sandbox import fleet, lb as lb_mod, monitoring
from rollout_sandbox.settings import SandboxError, max_hosts

EXIT_FAILED, EXIT_USAGE = 1, 2
PROG = "rollout-sandbox"


@click.group()
def main() -> None:
    """The sandbox fleet of camera-rollout (real systemd hosts under systemd-nspawn)."""


def _call(action, *args, failed: str = "", **kwargs):
    """Run a sandbox action; its error becomes one line and exit 1."""
    try:
        return action(*args, **kwargs)
    except SandboxError as error:
        click.echo(f"{PROG}: {failed}{error}", err=True)
        sys.exit(EXIT_FAILED)


@main.command("up")
@click.option("--hosts", "count", default=3, show_default=True, type=click.IntRange(1),
              help=f"Number of hosts to boot (at most {fleet.MAX_FULL_HOSTS}, more with --light).")
@click.option("--no-install", is_flag=True, help="Boot the hosts only; skip the reference service.")
@click.option("--lb", is_flag=True, help="Also nginx on 127.0.0.1:8080 in front of the hosts; its hosts "
              "join group sandbox_lb, whose batch hooks drain each batch (group_data/sandbox_lb.py). "
              "Without it, a running balancer is stopped.")
@click.option("--light", is_flag=True, help="Light hosts: the same base image (an overlay, not a copy) "
              "with a stub service (python3's standard library) under the service's unit instead of the "
              "reference service, and no PostgreSQL or Redis. Enough for deploy.py with checks=false, "
              "rollout status and rollout rollback; for control-plane benchmarks on many hosts.")
def up(count: int, no_install: bool, lb: bool, light: bool) -> None:
    """Boot the fleet (idempotent) and install the reference service at stage 0."""
    limit = max_hosts() if light else min(fleet.MAX_FULL_HOSTS, max_hosts())
    if count > limit:
        raise click.BadParameter(f"{count} is more than {limit} {'light' if light else 'full'} hosts"
                                 + ("" if light else " (--light for more)"), param_hint="'--hosts'")
    hosts = _call(fleet.up, count, install=not no_install, lb=lb, light=light, failed="sandbox up failed: ")
    for host in hosts:
        click.echo(f"{host.name}\t{host.address}\tnspawn pid {host.pid}")


@main.command("down")
def down() -> None:
    """Stop exactly the hosts this sandbox started and remove its bridge."""
    _call(fleet.down, failed="sandbox down failed: ")


@main.group("lb")
def lb() -> None:
    """The sandbox's load balancer (nginx on loopback): drain and enable hosts."""


def _lb_change(drain: tuple[str, ...] = (), enable: tuple[str, ...] = ()) -> None:
    try:
        drained = lb_mod.change(list(drain), list(enable))
    except lb_mod.LbError as error:
        click.echo(f"{PROG}: {error}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"load balancer: drained {', '.join(sorted(drained)) or 'none'}")


@lb.command("drain")
@click.argument("hosts", nargs=-1, required=True)
def lb_drain(hosts: tuple[str, ...]) -> None:
    """Take HOSTS out of the pool; returns once no request can reach them."""
    _lb_change(drain=hosts)


@lb.command("enable")
@click.argument("hosts", nargs=-1, required=True)
def lb_enable(hosts: tuple[str, ...]) -> None:
    """Put HOSTS back into the pool."""
    _lb_change(enable=hosts)


@lb.command("status")
def lb_status() -> None:
    """Whether nginx runs, its address, the hosts and the drained ones."""
    state = lb_mod.status()
    click.echo(f"load balancer {'running' if state['running'] else 'NOT running'} on {state['address']}: "
               f"hosts {', '.join(state['hosts']) or '-'}; drained {', '.join(state['drained']) or 'none'}")
    if not state["running"]:
        sys.exit(EXIT_FAILED)


@lb.command("stop")
def lb_stop() -> None:
    """Stop the load balancer (by its own pid)."""
    click.echo("load balancer stopped" if lb_mod.stop() else "load balancer was not running")


@main.command("ssh-login")
@click.argument("user", type=click.Choice(["root", fleet.SUDO_USER]))
def ssh_login(user: str) -> None:
    """Reach the fleet as USER: root, or the non-root sudoer with root's login
    refused by every host (a production fleet's shape)."""
    _call(fleet.ssh_login, user, failed="ssh-login failed: ")


@main.command("power-off")
@click.argument("host")
def power_off(host: str) -> None:
    """Cut HOST's power (fault drills): every process of the host dies at once."""
    _call(fleet.power_off, host)


@main.command("power-on")
@click.argument("host")
def power_on(host: str) -> None:
    """Boot a powered-off HOST again from its own disk."""
    _call(fleet.power_on, host)


@main.command("status")
@click.option("--requests", "count", default=100, show_default=True, type=click.IntRange(0, 10000),
              help="Unforced requests per host to sample the implementation mix.")
def status(count: int) -> None:
    """Where every sandbox host stands: env file, running process, health, mix."""
    rows = fleet.status(count)
    if not rows:
        click.echo(f"{PROG}: no sandbox fleet is up ({PROG} up)", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"{'host':<10} {'address':<14} {'file':>5} {'process':>8} {'health':>7}  unforced requests")
    for row in rows:
        mix = ", ".join(f"{name} {n}" for name, n in sorted(row["mix"].items())) or "-"
        click.echo(f"{row['host']:<10} {row['address']:<14} {row['file_stage']!s:>5} "
                   f"{row['process_stage']!s:>8} {row['health']!s:>7}  {mix}")
    where = fleet.load_fleet().get("monitoring") or {}
    if where:
        alive = monitoring.running()
        click.echo(f"prometheus {where['prometheus_url']} ({'running' if alive['prometheus'] else 'NOT running'}), "
                   f"alertmanager {where['alertmanager_url']} "
                   f"({'running' if alive['alertmanager'] else 'NOT running'}), "
                   f"alerts in {where['alert_log']}")
    if any(r["file_stage"] != r["process_stage"] or r["health"] != 200 for r in rows):
        sys.exit(EXIT_FAILED)

"""The operator's front door: ``rollout``.

Exit codes: 0 done, 1 a host or check failed, 2 usage error (bad input, refused
before any host is touched), 3 rolled back.
"""

from __future__ import annotations

import sys

import click

from rollout import sandbox as sandbox_mod


@click.group()
def main() -> None:
    """Staged canary rollout of the camera API on systemd hosts."""


@main.group()
def sandbox() -> None:
    """The built-in sandbox fleet (real systemd hosts under systemd-nspawn)."""


@sandbox.command("up")
@click.option("--hosts", "count", default=3, show_default=True, type=click.IntRange(1, 50),
              help="Number of hosts to boot.")
@click.option("--no-install", is_flag=True, help="Boot the hosts only; skip the reference service.")
def sandbox_up(count: int, no_install: bool) -> None:
    """Boot the fleet (idempotent) and install the reference service at stage 0."""
    try:
        hosts = sandbox_mod.up(count, install=not no_install)
    except sandbox_mod.SandboxError as error:
        click.echo(f"rollout: sandbox up failed: {error}", err=True)
        sys.exit(1)
    for host in hosts:
        click.echo(f"{host.name}\t{host.address}\tnspawn pid {host.pid}")


@sandbox.command("down")
def sandbox_down() -> None:
    """Stop exactly the hosts this sandbox started and remove its bridge."""
    try:
        sandbox_mod.down()
    except sandbox_mod.SandboxError as error:
        click.echo(f"rollout: sandbox down failed: {error}", err=True)
        sys.exit(1)


@sandbox.command("status")
@click.option("--requests", "count", default=100, show_default=True, type=click.IntRange(0, 10000),
              help="Unforced requests per host to sample the implementation mix.")
def sandbox_status(count: int) -> None:
    """Where every sandbox host stands: env file, running process, health, mix."""
    rows = sandbox_mod.status(count)
    if not rows:
        click.echo("rollout: no sandbox fleet is up (rollout sandbox up)", err=True)
        sys.exit(1)
    header = f"{'host':<10} {'address':<14} {'file':>5} {'process':>8} {'health':>7}  unforced requests"
    click.echo(header)
    for row in rows:
        mix = ", ".join(f"{name} {n}" for name, n in sorted(row["mix"].items())) or "-"
        click.echo(
            f"{row['host']:<10} {row['address']:<14} {str(row['file_stage']):>5} "
            f"{str(row['process_stage']):>8} {str(row['health']):>7}  {mix}"
        )
    if any(r["file_stage"] != r["process_stage"] or r["health"] != 200 for r in rows):
        sys.exit(1)

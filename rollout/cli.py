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

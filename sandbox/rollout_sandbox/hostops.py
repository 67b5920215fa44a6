"""pyinfra steps the sandbox's deploy files share (``install_app.py`` for the
reference service, ``install_stub.py`` for light hosts): the service's user and
directory, and the restart after the app changed."""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from rollout.operations import restart_unit


def service_user() -> None:
    """The service's system group and user, and its app directory."""
    data = host.data
    server.group(name=f"Group {data.service_group}", group=data.service_group, system=True)
    server.user(
        name=f"User {data.service_user}",
        user=data.service_user,
        group=data.service_group,
        system=True,
        home=data.app_dir,
        create_home=False,
        shell="/usr/sbin/nologin",
    )
    files.directory(name=f"App directory {data.app_dir}", path=data.app_dir, mode=755)


def restart_if_changed(changes, what: str) -> None:
    """Restart the service when one of ``changes`` changed the host and its unit
    exists already. A new host has no unit yet: the product's deploy.py writes
    it and starts the service."""
    data = host.data
    if host.get_fact(File, path=data.unit_file):
        unit = f"{data.service_name}.service"
        restart_unit(name=f"Restart {unit} ({what} changed)", unit=unit, _if=any_changed(*changes))

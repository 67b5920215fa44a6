"""Install the stub service on light sandbox hosts (``rollout-sandbox up --light``):
a pyinfra deploy file of the sandbox, run before the product's ``deploy.py``
puts the hosts at stage 0:

    pyinfra inventories/sandbox.py <this file>

The stub (``stub_service.py``) is a standard-library HTTP server that the
product's own unit starts in place of uvicorn: ``<venv_dir>/bin/python`` is the
host's python3 and ``<app_dir>/uvicorn.py`` is the stub, so the unit, its user,
paths and env files are those of the reference service. When the stub changed
on a host whose unit exists, the service is restarted here.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from rollout_sandbox.hostops import restart_if_changed, service_user

STUB = Path(__file__).resolve().with_name("stub_service.py")


@deploy("Install the stub service")
def install_stub() -> None:
    data = host.data
    service_user()
    files.directory(name=f"Directory {data.venv_dir}/bin", path=f"{data.venv_dir}/bin", mode=755)
    python = files.link(
        name=f"{data.venv_dir}/bin/python is the host's python3",
        path=f"{data.venv_dir}/bin/python",
        target="/usr/bin/python3",
    )
    stub = files.put(
        name=f"Stub service as {data.app_dir}/uvicorn.py",
        src=str(STUB),
        dest=f"{data.app_dir}/uvicorn.py",
        mode=644,
    )
    restart_if_changed((python, stub), "the stub")


install_stub()

"""Install the reference service (examples/camera_api) on a host.

Used by the sandbox (``deploy.py --data install_app=true``); a real fleet gets
its app from its own release process. Hosts have no package index, so the
dependencies come from a wheelhouse built on the control machine
(``rollout sandbox up`` builds it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, pip, server

from rollout.operations import pip_install_offline

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_SOURCE = PROJECT_ROOT / "examples" / "camera_api"


@deploy("Install the reference service")
def install_app():
    """Install user, code, config and venv; return the operations whose change
    needs a restart of the service."""
    data = host.data
    wheelhouse = PROJECT_ROOT / data.wheelhouse_dir
    if not wheelhouse.is_dir():
        from pyinfra.api.exceptions import PyinfraError

        raise PyinfraError(f"no wheelhouse at {wheelhouse}: run `rollout sandbox up` first")

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

    remote_wheelhouse = f"{data.app_dir}/wheelhouse"
    remote_requirements = f"{data.app_dir}/requirements.txt"
    files.sync(name="Wheelhouse", src=str(wheelhouse), dest=remote_wheelhouse, delete=True)
    files.put(
        name="requirements.txt",
        src=str(APP_SOURCE / "requirements.txt"),
        dest=remote_requirements,
    )
    pip.venv(name=f"venv {data.venv_dir}", path=data.venv_dir, python="python3")
    fingerprint = hashlib.sha256(
        (APP_SOURCE / "requirements.txt").read_bytes()
        + "\n".join(sorted(p.name for p in wheelhouse.glob("*.whl"))).encode()
    ).hexdigest()
    dependencies = pip_install_offline(
        name="Install dependencies from the wheelhouse",
        venv=data.venv_dir,
        wheelhouse=remote_wheelhouse,
        requirements=remote_requirements,
        fingerprint=fingerprint,
    )
    code = files.sync(
        name="App code (src/)",
        src=str(APP_SOURCE / "src"),
        dest=f"{data.app_dir}/src",
        delete=True,
        exclude=["*.pyc"],
        exclude_dir=["__pycache__"],
    )
    config = files.put(
        name="Cameras config",
        src=str(APP_SOURCE / "config" / "cameras.yaml"),
        dest=f"{data.app_dir}/config/cameras.yaml",
        create_remote_dir=True,
        mode=644,
    )
    return (dependencies, code, config)

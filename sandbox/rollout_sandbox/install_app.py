"""Install the reference service (examples/camera_api) on the sandbox hosts: a
pyinfra deploy file of the sandbox, run by ``rollout-sandbox up`` before the
product's ``deploy.py`` puts the hosts at stage 0:

    pyinfra inventories/sandbox.py <this file>

A real fleet gets its app from its own release process. The hosts have no
package index, so the dependencies come from a wheelhouse built on the control
machine (host data ``wheelhouse_dir``, set by ``inventories/sandbox.py``). When
the app changed on a host whose unit exists, the service is restarted here; a
new host gets its unit, and its first start, from ``deploy.py``.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, pip

from rollout_sandbox.hostops import restart_if_changed, service_user
from rollout_sandbox.settings import APP_SOURCE


@operation()
def pip_install_offline(venv: str, wheelhouse: str, requirements: str, fingerprint: str):
    """
    Install ``requirements`` into ``venv`` from a wheelhouse on the host (no index).
    Idempotent by a marker holding ``fingerprint`` (of the requirements and the
    wheels), written only after pip succeeded, so a failed install is retried by
    the next run instead of being hidden behind an unchanged upload.

    + venv: the virtualenv directory
    + wheelhouse: directory of wheels on the host
    + requirements: requirements file on the host
    + fingerprint: identifies what should be installed
    """
    marker = f"{venv}/.rollout-installed"
    if (host.get_fact(FileContents, path=marker) or [None])[0] == fingerprint:
        host.noop(f"dependencies in {venv} are up to date")
        return
    yield StringCommand(
        f"{shlex.quote(venv)}/bin/pip install --quiet --no-index --find-links "
        f"{shlex.quote(wheelhouse)} -r {shlex.quote(requirements)} "
        f"&& echo {shlex.quote(fingerprint)} > {shlex.quote(marker)}"
    )


@deploy("Install the reference service")
def install_app() -> None:
    data = host.data
    wheelhouse = Path(data.get("wheelhouse_dir") or "")
    if not data.get("wheelhouse_dir") or not wheelhouse.is_dir():
        raise PyinfraError(f"no wheelhouse at {data.get('wheelhouse_dir')}: run `rollout-sandbox up` first")

    service_user()
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
    restart_if_changed((dependencies, code, config), "the app")


install_app()

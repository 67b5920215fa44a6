"""Where things are: the deploy files that travel with the tool, the defaults,
and the operator's own project.

- **The deploy root** holds what the tool runs on hosts: ``deploy.py``,
  ``tasks/``, ``templates/`` and ``group_data/all.py`` (every default). In a
  checkout it is the checkout; in an installed wheel it is the
  ``rollout_deploy`` directory the wheel ships beside the package.
- **The defaults** are ``group_data/all.py`` of the deploy root: pyinfra loads it
  for every host, and the code reads it here (``DEFAULTS``) instead of repeating
  a value.
- **The project** is the operator's: ``inventories/`` and ``group_data/``
  (overrides of the defaults, per key) for their own service. It is
  ``--project DIR`` (or ``ROLLOUT_PROJECT``), else the current directory when it
  has an ``inventories/`` folder, else the checkout. ``rollout init DIR`` writes
  a starting one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any


def _deploy_root() -> Path:
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "deploy.py").is_file() and (checkout / "tasks").is_dir():
        return checkout
    spec = importlib.util.find_spec("rollout_deploy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the rollout deploy files are missing: reinstall camera-rollout")
    return Path(next(iter(spec.submodule_search_locations)))


DEPLOY_ROOT = _deploy_root()
DEFAULTS_FILE = DEPLOY_ROOT / "group_data" / "all.py"
TEMPLATES_DIR = DEPLOY_ROOT / "templates"


@functools.cache
def defaults() -> dict[str, Any]:
    """Every default, as ``group_data/all.py`` sets it (its public names)."""
    namespace: dict[str, Any] = {"__file__": str(DEFAULTS_FILE)}
    exec(compile(DEFAULTS_FILE.read_text(), str(DEFAULTS_FILE), "exec"), namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("_") and not callable(v)
            and type(v).__name__ != "module"}


def find_project(explicit: str | os.PathLike | None = None) -> Path:
    """The operator's project directory (see the module docstring)."""
    chosen = explicit or os.environ.get("ROLLOUT_PROJECT")
    if chosen:
        return Path(chosen).expanduser().resolve()
    here = Path.cwd()
    if (here / "inventories").is_dir():
        return here.resolve()
    return DEPLOY_ROOT


STARTER_README = """\
# {name}: a camera-rollout project

Written by `rollout init`. This directory holds what is yours; the tool brings
its deploy files and every default (`{defaults}`).

- `inventories/prod.py`: your hosts, the SSH user and key, and where the secrets
  come from (the environment, never git). Add one file per environment.
- `group_data/prod.py`: what differs from the defaults for the hosts of
  `inventories/prod.py` (group `prod`), key by key: every default is listed there,
  commented out, with its documentation. `group_data/all.py` would apply to every
  environment.

    cd {path}
    rollout status prod                      # where every host stands
    CAMERA_API_DATABASE_URL=... CAMERA_API_REDIS_URL=... \\
        rollout write-secrets prod --yes     # once per host and rotation: the secrets file
    rollout deploy prod --stage 10 --dry     # what would change, changing nothing
    rollout deploy prod --stage 10           # canary, a quarter, the rest: each checked

Or from anywhere: `rollout --project {path} status prod`.
"""


def write_starter(directory: Path) -> list[Path]:
    """A starting project for a new service in ``directory`` (refused when it
    already holds one): the example inventory and every default, commented."""
    inventories, group_data = directory / "inventories", directory / "group_data"
    targets = [inventories / "prod.py", group_data / "prod.py", directory / "README.md"]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist(s): nothing written")
    example = (DEPLOY_ROOT / "inventories" / "prod.py").read_text()
    overrides = "".join(f"# {line}" if line.strip() else line
                        for line in DEFAULTS_FILE.read_text().splitlines(keepends=True))
    header = ('"""Overrides for the hosts of inventories/prod.py (group ``prod``).\n\n'
              "Every default of the tool follows, commented out, with its documentation: uncomment\n"
              'and change what differs for your service. A key set here replaces the default."""\n\n')
    inventories.mkdir(parents=True, exist_ok=True)
    group_data.mkdir(parents=True, exist_ok=True)
    targets[0].write_text(example)
    targets[1].write_text(header + overrides)
    targets[2].write_text(STARTER_README.format(name=directory.resolve().name, path=directory.resolve(),
                                                defaults=DEFAULTS_FILE))
    return targets

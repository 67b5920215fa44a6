"""What the hosts are made from, built once and cached: the Debian base image
(mmdebstrap) every host's root file system comes from, and the wheelhouse of
the reference service for the hosts' Python (the hosts have no package index).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path

from rollout_sandbox.procs import run
from rollout_sandbox.settings import APP_SOURCE, CACHE_DIR, STATE_DIR, log

SUITE = "bookworm"
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,"
    "iproute2,curl,sudo,procps,prometheus-node-exporter"
)


@contextlib.contextmanager
def _cache_lock():
    """The cache to ourselves while we look into it and build: two fleets booting
    at once (the test suite's two lanes) build each thing once, and neither
    replaces what the other is reading."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_image() -> Path:
    """The cached root file system all hosts are made from (built once, ~20-40 s)."""
    with _cache_lock():
        return _base_image()


def _base_image() -> Path:
    key = hashlib.sha256(f"{SUITE}|{PACKAGES}|v2".encode()).hexdigest()[:12]
    image = CACHE_DIR / f"base-{SUITE}-{key}"
    if (image / "etc" / "os-release").exists():
        return image
    building = CACHE_DIR / f".building-{key}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    log(f"building base image {image.name} with mmdebstrap (cached afterwards)")
    hooks = [
        'chroot "$1" systemctl enable systemd-networkd ssh',
        'rm -f "$1"/etc/ssh/ssh_host_*',
        # Each host gets its own machine id at first boot.
        'truncate -s 0 "$1"/etc/machine-id',
    ]
    cmd = ["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}"]
    for hook in hooks:
        cmd.append(f"--customize-hook={hook}")
    run([*cmd, SUITE, str(building)])
    os.replace(building, image)
    return image


#: pip judges dependency markers by the Python it runs on, not by --python-version:
#: redis needs async-timeout on Python < 3.11.3 (Debian 12 ships 3.11.2), which a
#: control machine with a newer 3.11 would leave out. Fetched explicitly.
HOST_ONLY_WHEELS = ("async-timeout>=4.0.3",)


def wheelhouse(image: Path) -> Path:
    """Wheels of the reference service for the hosts' Python version (read from
    the base image)."""
    with _cache_lock():
        return _wheelhouse(image)


def _wheelhouse(image: Path) -> Path:
    requirements = APP_SOURCE / "requirements.txt"
    version = run(["chroot", str(image), "python3", "-c",
                   "import platform; print(platform.python_version())"]).stdout.strip()
    key = hashlib.sha256(
        requirements.read_bytes() + version.encode() + repr(HOST_ONLY_WHEELS).encode()
    ).hexdigest()[:12]
    target = CACHE_DIR / f"wheelhouse-{key}"
    if not (target / ".complete").exists():
        log(f"building the wheelhouse of the reference service for Python {version}")
        building = CACHE_DIR / f".wheelhouse-{key}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
             "--python-version", version, "--dest", str(building), "-r", str(requirements),
             *HOST_ONLY_WHEELS])
        (building / ".complete").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(building, target)
    return target


#: What goes into the product's wheel (pyproject.toml's packages and package data).
_PRODUCT_FILES = ("pyproject.toml", "deploy.py", "group_data/all.py", "inventories/prod.py", "rollout/**/*.py",
                  "rollout/static/*", "tasks/*.py", "templates/*.j2", "tests/hosts/*.py")


def product_wheelhouse() -> Path:
    """The wheelhouse of the product (its own wheel and every dependency's) for
    the autopilot's control host, built by the product's ``scripts/wheelhouse.sh``
    with this Python, in ``<sandbox dir>/autopilot-wheelhouse``; built again only
    when a file of the wheel changed (the sandbox hosts run the same Python
    minor version and an older glibc than this machine: Debian 12)."""
    from rollout.project import DEPLOY_ROOT

    digest = hashlib.sha256(sys.version.encode())
    for pattern in _PRODUCT_FILES:
        for path in sorted(DEPLOY_ROOT.glob(pattern)):
            digest.update(str(path.relative_to(DEPLOY_ROOT)).encode() + b"\0" + path.read_bytes())
    key = digest.hexdigest()
    target = STATE_DIR / "autopilot-wheelhouse"
    if (target / ".key").is_file() and (target / ".key").read_text() == key:
        return target
    log("building the product's wheelhouse for the autopilot (scripts/wheelhouse.sh)")
    building = STATE_DIR / f".autopilot-wheelhouse-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    run(["bash", str(DEPLOY_ROOT / "scripts" / "wheelhouse.sh"), str(building)],
        env={**os.environ, "PYTHON": sys.executable})
    (building / ".key").write_text(key)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(building, target)
    return target

"""The sandbox fleet: real Debian hosts, each booting systemd as PID 1 under
systemd-nspawn, on a private bridge, with sshd and their own address; plus a
real PostgreSQL and Redis on the control machine, listening on the bridge only.

Where things live:
- ``.sandbox/`` in the checkout (git-ignored): SSH key, known_hosts, ssh_config,
  ``fleet.json`` (what ``inventories/sandbox.py`` reads), ``secrets.json`` (0600),
  the wheelhouse link.
- ``/var/lib/rollout-sandbox/<bridge>/``: the hosts' root file systems, the
  PostgreSQL and Redis data, logs, and ``owner.json`` naming the checkout whose
  fleet holds the bridge (so a fleet left by a crashed run, or by another
  checkout, is found and stopped by its recorded process ids).
- ``/var/cache/rollout-sandbox/``: the cached base image and wheelhouse.

Every process is stopped by its own recorded id, checked against its command
line first; nothing is killed by pattern.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rollout import lb as lb_mod

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP_SOURCE = PROJECT_ROOT / "examples" / "camera_api"

BRIDGE = os.environ.get("ROLLOUT_SANDBOX_BRIDGE", "rollout-br0")
SUBNET = ipaddress.ip_network(os.environ.get("ROLLOUT_SANDBOX_SUBNET", "10.231.7.0/24"))
STATE_DIR = Path(os.environ.get("ROLLOUT_SANDBOX_DIR", PROJECT_ROOT / ".sandbox"))
RUN_DIR = Path("/var/lib/rollout-sandbox") / BRIDGE
CACHE_DIR = Path(os.environ.get("ROLLOUT_SANDBOX_CACHE", "/var/cache/rollout-sandbox"))

SUITE = "bookworm"
PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,python3,python3-venv,"
    "iproute2,curl,sudo,procps"
)
HOST_PREFIX = "camera-"
PG_PORT = 5432
REDIS_PORT = 6379
BOOT_TIMEOUT_S = 90
REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "redis-server": "redis-server",
    "runuser": "util-linux",
}


class SandboxError(RuntimeError):
    """A sandbox step that cannot go on; the message is one line for the operator."""


def log(message: str) -> None:
    print(f"[sandbox] {message}", flush=True)


def gateway() -> str:
    return str(SUBNET.network_address + 1)


def host_address(index: int) -> str:
    return str(SUBNET.network_address + 10 + index)


def host_name(index: int) -> str:
    return f"{HOST_PREFIX}{index}"


def _run(cmd: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SandboxError(f"{' '.join(cmd[:3])} failed: {detail[-1] if detail else result.returncode}")
    return result


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.chmod(temp, mode)
    os.replace(temp, path)


# --- preconditions ----------------------------------------------------------------


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (systemd-nspawn, a bridge): run it as root")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise SandboxError(f"missing Debian packages: apt-get install {' '.join(missing)}")
    if not _postgres_bin().is_dir():
        raise SandboxError("missing Debian package: apt-get install postgresql")


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return versions[-1] if versions else Path("/usr/lib/postgresql/missing/bin")


# --- processes, by their own id ---------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (empty when it is gone)."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _is_our_nspawn(pid: int | None, machine: str) -> bool:
    """True when ``pid`` is still the systemd-nspawn that runs ``machine``."""
    if not pid:
        return False
    cmd = _cmdline(pid)
    return bool(cmd) and cmd[0].endswith("systemd-nspawn") and machine in cmd


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        try:
            # Reap it if it is our child; otherwise it disappears on its own.
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()


def _stop_nspawns(machines: list[tuple[int, str]]) -> None:
    """Power off hosts in parallel: SIGTERM makes systemd-nspawn ask the host's
    systemd to shut down cleanly; SIGKILL only for one that hangs."""
    ours = [(pid, name) for pid, name in machines if _is_our_nspawn(pid, name)]
    for pid, name in ours:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for pid, name in ours:
        if not _wait_gone(pid, max(0.0, deadline - time.monotonic())):
            log(f"{name} did not power off within 30 s, killing nspawn pid {pid}")
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)


# --- base image, key, bridge --------------------------------------------------------------


def base_image() -> Path:
    """The cached root file system all hosts are copied from (built once, ~20-40 s)."""
    key = hashlib.sha256(f"{SUITE}|{PACKAGES}|v2".encode()).hexdigest()[:12]
    image = CACHE_DIR / f"base-{SUITE}-{key}"
    if (image / "etc" / "os-release").exists():
        return image
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
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
    _run([*cmd, SUITE, str(building)])
    os.replace(building, image)
    return image


def ensure_ssh_key() -> Path:
    key = STATE_DIR / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(key.parent, 0o700)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rollout-sandbox", "-f", str(key)])
    return key


def ensure_bridge() -> None:
    address = f"{gateway()}/{SUBNET.prefixlen}"
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    shown = _run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout
    if address not in shown:
        _run(["ip", "addr", "add", address, "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def remove_bridge() -> None:
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        _run(["ip", "link", "delete", BRIDGE])


# --- PostgreSQL and Redis on the bridge address ------------------------------------------------


def _secrets() -> dict:
    path = STATE_DIR / "secrets.json"
    data = _read_json(path)
    if not data.get("db_password") or not data.get("redis_password"):
        data = {
            "db_password": secrets.token_urlsafe(18),
            "redis_password": secrets.token_urlsafe(18),
        }
        _write_json(path, data, mode=0o600)
    return data


def service_urls() -> dict[str, str]:
    """DATABASE_URL / REDIS_URL for the hosts (read by inventories/sandbox.py)."""
    data = _secrets()
    return {
        "database_url": f"postgresql://camera:{data['db_password']}@{gateway()}:{PG_PORT}/camera",
        "redis_url": f"redis://:{data['redis_password']}@{gateway()}:{REDIS_PORT}/0",
    }


def _pg_dirs() -> tuple[Path, Path]:
    return RUN_DIR / "postgres", RUN_DIR / "postgres-run"


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return _run(["runuser", "-u", "postgres", "--", *cmd], **kwargs)


def ensure_postgres() -> None:
    data_dir, socket_dir = _pg_dirs()
    bin_dir = _postgres_bin()
    password = _secrets()["db_password"]
    if not (data_dir / "PG_VERSION").exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        shutil.chown(data_dir, "postgres", "postgres")
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data_dir), "-A", "peer", "-U", "postgres"])
        with open(data_dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host camera camera {SUBNET} scram-sha-256\n")
    socket_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(socket_dir, "postgres", "postgres")
    status = _as_postgres([str(bin_dir / "pg_ctl"), "status", "-D", str(data_dir)], check=False)
    if status.returncode != 0:
        options = f"-c listen_addresses={gateway()} -p {PG_PORT} -k {socket_dir}"
        _as_postgres(
            [str(bin_dir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data_dir),
             "-l", str(socket_dir / "postgres.log"), "-o", options]
        )
    # Role and database: the password goes over stdin, never on a command line.
    sql = (
        "SELECT 'CREATE ROLE camera LOGIN' WHERE NOT EXISTS "
        "(SELECT FROM pg_roles WHERE rolname = 'camera')\\gexec\n"
        f"ALTER ROLE camera PASSWORD '{password}';\n"
        "SELECT 'CREATE DATABASE camera OWNER camera' WHERE NOT EXISTS "
        "(SELECT FROM pg_database WHERE datname = 'camera')\\gexec\n"
    )
    _as_postgres(
        [str(bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", str(socket_dir),
         "-p", str(PG_PORT), "-d", "postgres"],
        input=sql,
    )


def stop_postgres() -> None:
    data_dir, _ = _pg_dirs()
    if (data_dir / "postmaster.pid").exists():
        _as_postgres([str(_postgres_bin() / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"],
                     check=False)


def _redis_pid() -> int | None:
    try:
        pid = int((RUN_DIR / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    cmd = _cmdline(pid)
    return pid if cmd and "redis-server" in cmd[0] else None


def _redis_accepts(password: str) -> bool:
    """True when the running Redis takes this password (not one of another fleet)."""
    try:
        with socket.create_connection((gateway(), REDIS_PORT), timeout=2) as conn:
            conn.sendall(f"AUTH {password}\r\n".encode())
            return conn.recv(64).startswith(b"+OK")
    except OSError:
        return False


def ensure_redis() -> None:
    if _redis_pid():
        if _redis_accepts(_secrets()["redis_password"]):
            return
        stop_redis()
    data_dir = RUN_DIR / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = RUN_DIR / "redis.conf"
    # The password lives in a 0600 file, not on redis-server's command line.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            f"bind {gateway()}\nport {REDIS_PORT}\nprotected-mode yes\n"
            f"requirepass {_secrets()['redis_password']}\n"
            f"daemonize yes\npidfile {RUN_DIR / 'redis.pid'}\n"
            f"logfile {RUN_DIR / 'redis.log'}\ndir {data_dir}\nsave \"\"\nappendonly no\n"
        )
    _run(["redis-server", str(config)])
    _wait_port(gateway(), REDIS_PORT, 20, "redis")


def stop_redis() -> None:
    pid = _redis_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid, 20)


# --- hosts ---------------------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    address: str
    pid: int | None = None

    @property
    def rootfs(self) -> Path:
        return RUN_DIR / "hosts" / self.name


def _wait_port(address: str, port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise SandboxError(f"{what} at {address}:{port} did not answer within {timeout_s:.0f} s")
            time.sleep(0.1)


def _prepare_rootfs(host: Host, image: Path, public_key: str) -> str:
    """Copy the base image for one host and give it its address, key and host keys.
    Returns the host's SSH host key line for known_hosts."""
    shutil.rmtree(host.rootfs, ignore_errors=True)
    host.rootfs.parent.mkdir(parents=True, exist_ok=True)
    _run(["cp", "-a", str(image), str(host.rootfs)])
    network = host.rootfs / "etc/systemd/network/10-host0.network"
    network.parent.mkdir(parents=True, exist_ok=True)
    # Sorts before nspawn's 80-container-host0.network, which would win otherwise.
    network.write_text(
        f"[Match]\nName=host0\n\n[Network]\nAddress={host.address}/{SUBNET.prefixlen}\n"
        f"Gateway={gateway()}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    ssh_dir = host.rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    (host.rootfs / "etc/hostname").write_text(f"{host.name}\n")
    hosts_file = host.rootfs / "etc/hosts"
    hosts_file.write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n")
    # /proc/sys is read-only in a container: systemd-sysctl would fail every boot.
    mask = host.rootfs / "etc/systemd/system/systemd-sysctl.service"
    mask.unlink(missing_ok=True)
    mask.symlink_to("/dev/null")
    _run(["ssh-keygen", "-A", "-f", str(host.rootfs)])
    key = (host.rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    return f"{host.address} {key[0]} {key[1]}\n"


def _boot(host: Host) -> int:
    logfile = open(RUN_DIR / f"{host.name}.log", "ab")
    process = subprocess.Popen(
        ["systemd-nspawn", "-q", "-D", str(host.rootfs), "--boot", "--register=no",
         "--keep-unit", "-M", host.name, f"--network-bridge={BRIDGE}", "--console=passive"],
        stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    logfile.close()
    return process.pid


def _ssh(host: Host, command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-F", str(STATE_DIR / "ssh_config"), host.name, command],
        text=True, capture_output=True, timeout=timeout,
    )


def _wait_booted(host: Host) -> None:
    _wait_port(host.address, 22, BOOT_TIMEOUT_S, f"sshd of {host.name}")
    try:
        result = _ssh(host, "systemctl is-system-running --wait", timeout=BOOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SandboxError(f"{host.name} did not finish booting within {BOOT_TIMEOUT_S} s") from None
    state = result.stdout.strip()
    if state == "degraded":
        # Hosts booting side by side sometimes lose a cgroup race (exit 219/CGROUP)
        # in an early oneshot unit; starting it again settles it.
        failed = _ssh(host, "systemctl --failed --no-legend --plain | cut -d' ' -f1", timeout=20)
        units = failed.stdout.split()
        log(f"{host.name} booted degraded ({', '.join(units)}); starting those units again")
        _ssh(host, "systemctl reset-failed; systemctl start " + " ".join(units), timeout=60)
        state = _ssh(host, "systemctl is-system-running", timeout=20).stdout.strip()
    if state != "running":
        failed = _ssh(host, "systemctl --failed --no-legend --plain | cut -d' ' -f1", timeout=20)
        raise SandboxError(f"{host.name} is {state or 'not reachable'}; failed units: {failed.stdout.split()}")


def _host_alive(host: Host) -> bool:
    return _is_our_nspawn(host.pid, host.name) and (
        _run(["ssh-keygen", "-F", host.address, "-f", str(STATE_DIR / "known_hosts")], check=False).returncode == 0
    )


def _write_ssh_files(hosts: list[Host], key: Path) -> None:
    lines = []
    for host in hosts:
        lines += [
            f"Host {host.name}",
            f"  HostName {host.address}",
            "  User root",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {STATE_DIR / 'known_hosts'}",
            "  StrictHostKeyChecking yes",
            "  ConnectTimeout 5",
            # One connection per host, reused by testinfra and status probes.
            "  ControlMaster auto",
            f"  ControlPath {STATE_DIR / 'cm-%C'}",
            "  ControlPersist 60s",
            "",
        ]
    (STATE_DIR / "ssh_config").write_text("\n".join(lines))


# --- the fleet record --------------------------------------------------------------------------


def load_fleet() -> dict:
    """What ``inventories/sandbox.py`` reads: hosts, their addresses, SSH files."""
    return _read_json(STATE_DIR / "fleet.json")


def _owner() -> dict:
    return _read_json(RUN_DIR / "owner.json")


def _record(hosts: list[Host], key: Path, wheelhouse: Path | None) -> None:
    fleet = {
        "bridge": BRIDGE,
        "gateway": gateway(),
        "ssh_key": str(key),
        "known_hosts": str(STATE_DIR / "known_hosts"),
        "ssh_config": str(STATE_DIR / "ssh_config"),
        "wheelhouse": str(wheelhouse) if wheelhouse else None,
        "hosts": [{"name": h.name, "address": h.address, "pid": h.pid} for h in hosts],
    }
    _write_json(STATE_DIR / "fleet.json", fleet)
    _write_json(RUN_DIR / "owner.json", {"state_dir": str(STATE_DIR), "hosts": fleet["hosts"]})


# --- wheelhouse -----------------------------------------------------------------------------------


#: pip judges dependency markers by the Python it runs on, not by --python-version:
#: redis needs async-timeout on Python < 3.11.3 (Debian 12 ships 3.11.2), which a
#: control machine with a newer 3.11 would leave out. Fetched explicitly.
HOST_ONLY_WHEELS = ("async-timeout>=4.0.3",)


def wheelhouse(image: Path) -> Path:
    """Wheels of the reference service for the hosts' Python version (read from
    the base image)."""
    requirements = APP_SOURCE / "requirements.txt"
    version = _run(["chroot", str(image), "python3", "-c",
                    "import platform; print(platform.python_version())"]).stdout.strip()
    key = hashlib.sha256(
        requirements.read_bytes() + version.encode() + repr(HOST_ONLY_WHEELS).encode()
    ).hexdigest()[:12]
    target = CACHE_DIR / f"wheelhouse-{key}"
    if not (target / ".complete").exists():
        log(f"building the wheelhouse of the reference service for Python {version}")
        building = CACHE_DIR / f".wheelhouse-{key}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
              "--python-version", version, "--dest", str(building), "-r", str(requirements),
              *HOST_ONLY_WHEELS])
        (building / ".complete").write_text("")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(building, target)
    return target


# --- up / down --------------------------------------------------------------------------------------


def up(count: int = 3, install: bool = True, lb: bool = False) -> list[Host]:
    """Boot ``count`` hosts (keeping the ones already running), start PostgreSQL and
    Redis, and install the reference service at stage 0. ``lb``: also nginx on
    the control machine's loopback in front of them (re-pointed when it already
    runs); without it, a running one is stopped."""
    if count < 1:
        raise SandboxError("--hosts must be at least 1")
    check_prerequisites()
    started = time.monotonic()
    owner = _owner()
    if owner and owner.get("state_dir") != str(STATE_DIR):
        # Its hosts, PostgreSQL and Redis hold that checkout's passwords: stop them all.
        log(f"bridge {BRIDGE} is held by the fleet of {owner.get('state_dir')}: stopping it first")
        _stop_hosts([Host(h["name"], h["address"], h.get("pid")) for h in owner.get("hosts", [])])
        lb_mod.stop()
        stop_redis()
        stop_postgres()
        owner = {}
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)

    image = base_image()
    key = ensure_ssh_key()
    public_key = Path(f"{key}.pub").read_text()
    ensure_bridge()
    ensure_postgres()
    ensure_redis()

    recorded = {h["name"]: h for h in owner.get("hosts", [])}
    wanted = [Host(host_name(i), host_address(i)) for i in range(1, count + 1)]
    extra = [Host(n, h["address"], h.get("pid")) for n, h in recorded.items()
             if n not in {w.name for w in wanted}]
    _stop_hosts(extra)

    known_hosts = STATE_DIR / "known_hosts"
    known = {}
    if known_hosts.exists():
        for line in known_hosts.read_text().splitlines():
            if line.strip():
                known[line.split()[0]] = line + "\n"
    _write_ssh_files(wanted, key)
    to_boot = []
    for host in wanted:
        host.pid = recorded.get(host.name, {}).get("pid")
        if host.pid and _host_alive(host):
            log(f"{host.name} ({host.address}) already running, pid {host.pid}")
            continue
        if host.pid:
            _stop_nspawns([(host.pid, host.name)])
        known[host.address] = _prepare_rootfs(host, image, public_key)
        to_boot.append(host)
    known_hosts.write_text("".join(known[h.address] for h in wanted if h.address in known))
    for host in to_boot:
        host.pid = _boot(host)
        log(f"{host.name} ({host.address}) booting, nspawn pid {host.pid}")
    _record(wanted, key, None)
    for host in to_boot:
        _wait_booted(host)
    log(f"{len(wanted)} host(s) up in {time.monotonic() - started:.1f} s")

    wheels = wheelhouse(image)
    _record(wanted, key, wheels)
    if install:
        install_reference_service()
    if not lb:
        if lb_mod.stop():  # `up` makes the fleet it is asked for: no --lb, no balancer
            log("load balancer (nginx) stopped")
    else:
        if not shutil.which("nginx"):
            raise SandboxError("--lb needs nginx on the control machine (scripts/setup.sh installs it)")
        try:
            address = lb_mod.start([{"name": h.name, "address": h.address} for h in wanted])
        except lb_mod.LbError as error:
            raise SandboxError(str(error)) from None
        log(f"load balancer (nginx) on {address} in front of {len(wanted)} host(s)")
    return wanted


def install_reference_service() -> None:
    """Install the reference service on the fleet and put it at stage 0."""
    log("installing the reference service at stage 0 (pyinfra); a left-over rollout lock is cleared")
    # `up` is a reset: a lock left by a run that died (e.g. a drill) must not block it.
    subprocess.run([sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py", "tasks/lock.py",
                    "--data", "lock_action=release", "--data", "break_lock=true"],
                   cwd=PROJECT_ROOT, capture_output=True)
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", "inventories/sandbox.py", "deploy.py",
         "--data", "stage=0", "--data", "install_app=true", "--data", "checks=false",
         "--data", "write_secrets=true"],
        cwd=PROJECT_ROOT,
    )
    if result.returncode != 0:
        raise SandboxError("installing the reference service failed (pyinfra output above)")


def _stop_hosts(hosts: list[Host]) -> None:
    for host in hosts:
        if _is_our_nspawn(host.pid, host.name):
            log(f"stopping {host.name} (nspawn pid {host.pid})")
    _stop_nspawns([(h.pid, h.name) for h in hosts if h.pid])
    for host in hosts:
        shutil.rmtree(host.rootfs, ignore_errors=True)


def down() -> None:
    """Stop exactly the recorded hosts, Redis and PostgreSQL; remove the bridge."""
    check_prerequisites()
    owner = _owner()
    hosts = [Host(h["name"], h["address"], h.get("pid")) for h in owner.get("hosts", [])]
    if not hosts:
        hosts = [Host(h["name"], h["address"], h.get("pid")) for h in load_fleet().get("hosts", [])]
    if lb_mod.stop():
        log("load balancer (nginx) stopped")
    _stop_hosts(hosts)
    stop_redis()
    stop_postgres()
    remove_bridge()
    for path in (RUN_DIR / "owner.json", STATE_DIR / "fleet.json"):
        path.unlink(missing_ok=True)
    log(f"fleet stopped ({len(hosts)} host(s)), bridge {BRIDGE} removed")


# --- power (fault drills) ---------------------------------------------------------------------------


def _fleet_host(name: str) -> Host:
    owner = _owner()
    if owner.get("state_dir") == str(STATE_DIR):
        for entry in owner.get("hosts", []):
            if entry["name"] == name:
                return Host(entry["name"], entry["address"], entry.get("pid"))
    raise SandboxError(f"{name} is not a host of this sandbox fleet")


def power_off(name: str) -> None:
    """Cut a host's power: SIGKILL its init (PID 1 of the host's PID namespace),
    which takes every process of the host with it at once; no shutdown runs."""
    host = _fleet_host(name)
    if not _is_our_nspawn(host.pid, host.name):
        raise SandboxError(f"{name} is not running")
    children = _children(host.pid)
    if not children:
        raise SandboxError(f"{name}: no init process under nspawn pid {host.pid}")
    os.kill(children[0], signal.SIGKILL)
    if not _wait_gone(host.pid, 30):
        raise SandboxError(f"{name}: nspawn pid {host.pid} still there 30 s after its init was killed")
    log(f"{name} powered off (init pid {children[0]} killed)")


def power_on(name: str) -> None:
    """Boot a powered-off host again from its own disk (nothing reinstalled)."""
    host = _fleet_host(name)
    if _is_our_nspawn(host.pid, host.name):
        raise SandboxError(f"{name} is already running (nspawn pid {host.pid})")
    host.pid = _boot(host)
    fleet = load_fleet()
    hosts = [host if entry["name"] == name else Host(entry["name"], entry["address"], entry.get("pid"))
             for entry in fleet["hosts"]]
    _record(hosts, Path(fleet["ssh_key"]), Path(fleet["wheelhouse"]) if fleet.get("wheelhouse") else None)
    _wait_booted(host)
    log(f"{name} powered on (nspawn pid {host.pid})")


# --- status -----------------------------------------------------------------------------------------

#: Reads only the two switch variables, on the host, so no secret leaves it.
_SWITCH_PROBE = (
    "grep -E '^(USE_DOMAIN_SERVICE|ROLLOUT_PERCENT)=' /etc/camera-api/rollout.env 2>/dev/null; echo --; "
    "tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value camera-api.service)/environ 2>/dev/null"
    " | grep -E '^(USE_DOMAIN_SERVICE|ROLLOUT_PERCENT)='"
)


def status(requests_per_host: int = 100) -> list[dict]:
    """One row per sandbox host: stage in the env file, stage in the running
    process, health, and which implementation served ``requests_per_host``
    unforced requests."""
    import requests

    from rollout.stages import stage_from_env

    if _owner().get("state_dir") != str(STATE_DIR):
        return []  # no fleet, or the bridge now belongs to another checkout's fleet
    rows = []
    for entry in load_fleet().get("hosts", []):
        host = Host(entry["name"], entry["address"], entry.get("pid"))
        probe = _ssh(host, _SWITCH_PROBE, timeout=20).stdout.split("--")
        file_env, proc_env = (
            dict(line.split("=", 1) for line in part.split() if "=" in line)
            for part in (probe + ["", ""])[:2]
        )
        row = {"host": host.name, "address": host.address,
               "file_stage": stage_from_env(file_env), "process_stage": stage_from_env(proc_env)}
        base = f"http://{host.address}:8000"
        try:
            row["health"] = requests.get(f"{base}/api/v1/monitoring/health", timeout=5).status_code
            mix = {"domain": 0, "legacy": 0}
            with requests.Session() as session:
                for _ in range(requests_per_host):
                    served = session.get(f"{base}/api/v1/alerts/rules", timeout=5)
                    impl = served.headers.get("X-Rollout-Implementation", "none")
                    mix[impl] = mix.get(impl, 0) + 1
            row["mix"] = mix
        except requests.RequestException as error:
            row["health"] = f"unreachable ({type(error).__name__})"
            row["mix"] = {}
        rows.append(row)
    return rows

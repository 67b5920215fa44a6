"""The sandbox fleet: real Debian hosts, each booting systemd as PID 1 under
systemd-nspawn, on a private bridge, with sshd and their own address; the
reference service's PostgreSQL and Redis beside them (``services.py``), its
load balancer in front of them on request (``lb.py``).

Light hosts (``up(light=True)``) boot the same base image through an overlay
(nothing copied: the image's files, and their pages in memory, are shared) and
run a stub service instead of the reference service (``stub_service.py``), with
no PostgreSQL or Redis: cheap enough for a control-plane benchmark on 100 hosts.

The fleet is recorded twice: ``fleet.json`` in the project's ``.sandbox/`` (what
``inventories/sandbox.py`` reads) and ``owner.json`` in the bridge's run
directory, naming the checkout whose fleet holds the bridge, so a fleet left by
a crashed run, or by another checkout, is found and stopped by its recorded
process ids (see ``settings.py`` for where everything lives).

Every process is stopped by its own recorded id, checked against its command
line first; nothing is killed by pattern.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rollout.project import DEPLOY_ROOT
from rollout_sandbox import lb as lb_mod, monitoring
from rollout_sandbox.image import base_image, wheelhouse
from rollout_sandbox.procs import children, cmdline, run, wait_gone, wait_port
from rollout_sandbox.services import (
    ensure_postgres,
    ensure_redis,
    postgres_bin,
    stop_postgres,
    stop_redis,
)
from rollout_sandbox.settings import (
    BRIDGE,
    PROJECT_ROOT,
    RUN_DIR,
    STATE_DIR,
    SUBNET,
    SandboxError,
    gateway,
    host_address,
    host_name,
    log,
    max_hosts,
    read_json,
    write_json,
)

BOOT_TIMEOUT_S = 90
#: Hosts booting at once: each waits at most BOOT_TIMEOUT_S, and 2 cores do not
#: boot 100 systemd hosts together in that time.
BOOT_WINDOW = int(os.environ.get("ROLLOUT_SANDBOX_BOOT_WINDOW", "16"))
#: Full hosts each run the reference service (about 160 MB); light hosts are for more.
MAX_FULL_HOSTS = 50
#: Every host's systemd, journald, networkd, logind and dbus hold inotify
#: instances of the control machine's root (8 measured per host), and the kernel
#: allows 128 per user by default.
INOTIFY_PER_HOST = 12
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "redis-server": "redis-server",
    "runuser": "util-linux",
}


# --- preconditions ----------------------------------------------------------------


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (systemd-nspawn, a bridge): run it as root")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise SandboxError(f"missing Debian packages: apt-get install {' '.join(missing)}")
    if not postgres_bin().is_dir():
        raise SandboxError("missing Debian package: apt-get install postgresql")


# --- hosts, by their nspawn process ------------------------------------------------------


def _is_our_nspawn(pid: int | None, machine: str) -> bool:
    """True when ``pid`` is still the systemd-nspawn that runs ``machine``."""
    if not pid:
        return False
    cmd = cmdline(pid)
    return bool(cmd) and cmd[0].endswith("systemd-nspawn") and machine in cmd


def _stop_nspawns(machines: list[tuple[int, str]]) -> None:
    """Power off hosts in parallel: SIGTERM makes systemd-nspawn ask the host's
    systemd to shut down cleanly; SIGKILL only for one that hangs."""
    ours = [(pid, name) for pid, name in machines if _is_our_nspawn(pid, name)]
    for pid, _name in ours:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for pid, name in ours:
        if not wait_gone(pid, max(0.0, deadline - time.monotonic())):
            log(f"{name} did not power off within 30 s, killing nspawn pid {pid}")
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 10)


# --- key and bridge -----------------------------------------------------------------------


def ensure_ssh_key() -> Path:
    key = STATE_DIR / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(key.parent, 0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rollout-sandbox", "-f", str(key)])
    return key


def ensure_bridge() -> None:
    address = f"{gateway()}/{SUBNET.prefixlen}"
    if run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    shown = run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout
    if address not in shown:
        run(["ip", "addr", "add", address, "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def remove_bridge() -> None:
    if run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        run(["ip", "link", "delete", BRIDGE])


def ensure_inotify(count: int) -> None:
    """Room for ``count`` more hosts' inotify instances (a host that runs out
    boots degraded: "Failed to allocate directory watch: Too many open files")."""
    try:
        current = int(INOTIFY_LIMIT.read_text())
    except (OSError, ValueError):
        return
    needed = 128 + INOTIFY_PER_HOST * count
    if current < needed:
        INOTIFY_LIMIT.write_text(f"{needed}\n")
        log(f"fs.inotify.max_user_instances raised from {current} to {needed} for {count} host(s)")


# --- hosts ---------------------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    address: str
    pid: int | None = None
    light: bool = False

    @classmethod
    def of(cls, entry: dict) -> Host:
        """A host from its entry in fleet.json or owner.json."""
        return cls(entry["name"], entry["address"], entry.get("pid"), bool(entry.get("light")))

    @property
    def rootfs(self) -> Path:
        return RUN_DIR / "hosts" / self.name

    @property
    def layers(self) -> Path:
        """A light host's overlay: its own changes (upper) and overlayfs's work directory."""
        return RUN_DIR / "layers" / self.name


def _release_rootfs(host: Host) -> None:
    """Remove a host's root file system (unmounting a light host's overlay first)."""
    if os.path.ismount(host.rootfs):
        if run(["umount", str(host.rootfs)], check=False).returncode != 0:
            run(["umount", "--lazy", str(host.rootfs)])
    shutil.rmtree(host.rootfs, ignore_errors=True)
    shutil.rmtree(host.layers, ignore_errors=True)


def _prepare_rootfs(host: Host, image: Path, public_key: str) -> str:
    """Make one host's root file system from the base image (a copy; an overlay
    for a light host) and give it its address, key and host keys.
    Returns the host's SSH host key line for known_hosts."""
    _release_rootfs(host)
    host.rootfs.parent.mkdir(parents=True, exist_ok=True)
    if host.light:
        upper, work = host.layers / "upper", host.layers / "work"
        for directory in (upper, work, host.rootfs):
            directory.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={image},upperdir={upper},workdir={work}",
             str(host.rootfs)])
    else:
        run(["cp", "-a", str(image), str(host.rootfs)])
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
    _add_sudo_user(host, public_key)
    (host.rootfs / "etc/hostname").write_text(f"{host.name}\n")
    hosts_file = host.rootfs / "etc/hosts"
    hosts_file.write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n")
    # /proc/sys is read-only in a container: systemd-sysctl would fail every boot.
    mask = host.rootfs / "etc/systemd/system/systemd-sysctl.service"
    mask.unlink(missing_ok=True)
    mask.symlink_to("/dev/null")
    if host.light:
        # One host key, ed25519 (the one known_hosts holds): -A would also make an
        # RSA key, about a second of CPU per host.
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}",
             "-f", str(host.rootfs / "etc/ssh/ssh_host_ed25519_key")])
    else:
        run(["ssh-keygen", "-A", "-f", str(host.rootfs)])
    key = (host.rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    return f"{host.address} {key[0]} {key[1]}\n"


#: The hosts' non-root SSH user: a sudoer without a password, as a production
#: fleet's deploy user is (inventories/prod.py); root's login can be refused
#: (``ssh_login``) so that every change goes through ``sudo``.
SUDO_USER = "deploy"
#: The sshd drop-in that refuses root's login while the fleet is reached as SUDO_USER.
ROOT_LOGIN_FILE = "/etc/ssh/sshd_config.d/10-rollout-sandbox-root-login.conf"


def _add_sudo_user(host: Host, public_key: str) -> None:
    """SUDO_USER on the host's disk (before it boots): a login shell, the fleet's
    key, and ``sudo`` without a password."""
    run(["chroot", str(host.rootfs), "useradd", "--create-home", "--shell", "/bin/bash", SUDO_USER])
    home = host.rootfs / "home" / SUDO_USER
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    (home / ".ssh" / "authorized_keys").write_text(public_key)
    os.chmod(home / ".ssh" / "authorized_keys", 0o600)
    run(["chroot", str(host.rootfs), "chown", "-R", f"{SUDO_USER}:{SUDO_USER}", f"/home/{SUDO_USER}/.ssh"])
    sudoers = host.rootfs / "etc" / "sudoers.d" / SUDO_USER
    sudoers.write_text(f"{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    os.chmod(sudoers, 0o440)


def _veth(host: Host) -> str:
    """The host-side end of the host's network link, as systemd-nspawn names it
    (``vb-`` + machine name, cut to the kernel's 15 characters)."""
    return f"vb-{host.name}"[:15]


def _clear_stale_veth(host: Host) -> None:
    """A host's previous link can outlive its nspawn by a moment (the kernel
    tears a network namespace down asynchronously) -- longer under load; a boot
    then fails at once with "Failed to add new veth interfaces: File exists".
    Only called for a host with no nspawn of ours running, so the link is
    nobody's: wait for it to go, then remove it."""
    link = _veth(host)
    deadline = time.monotonic() + 10
    while run(["ip", "link", "show", link], check=False).returncode == 0:
        if time.monotonic() >= deadline:
            log(f"{host.name}: removing the stale link {link} its previous boot left")
            run(["ip", "link", "delete", link], check=False)
            return
        time.sleep(0.2)


def _boot(host: Host) -> int:
    _clear_stale_veth(host)
    logfile = open(RUN_DIR / f"{host.name}.log", "ab")
    process = subprocess.Popen(
        ["systemd-nspawn", "-q", "-D", str(host.rootfs), "--boot", "--register=no",
         "--keep-unit", "-M", host.name, f"--network-bridge={BRIDGE}", "--console=passive"],
        stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    logfile.close()
    return process.pid


def ssh_user() -> str:
    """Who the fleet is reached as: root, or SUDO_USER (``ssh_login``)."""
    return load_fleet().get("ssh_user") or "root"


def _ssh(host: Host, command: str, timeout: float) -> subprocess.CompletedProcess:
    """``command`` on the host as root: directly, or through ``sudo`` when the
    fleet is reached as SUDO_USER."""
    if ssh_user() != "root":
        command = f"sudo -n sh -c {shlex.quote(command)}"
    return subprocess.run(
        ["ssh", "-F", str(STATE_DIR / "ssh_config"), host.name, command],
        text=True, capture_output=True, timeout=timeout,
    )


def _console_tail(host: Host, lines: int = 5) -> str:
    text = (RUN_DIR / f"{host.name}.log").read_bytes().decode(errors="replace")
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def _wait_booted(host: Host) -> None:
    def nspawn_gone() -> None:
        if host.pid is not None and not _is_our_nspawn(host.pid, host.name):
            raise SandboxError(f"{host.name}: systemd-nspawn (pid {host.pid}) exited while booting; "
                               f"its console's last lines: {_console_tail(host)}")

    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:  # short waits, so a host whose nspawn died is reported at once, not after the timeout
        nspawn_gone()
        try:
            wait_port(host.address, 22, min(2.0, max(0.1, deadline - time.monotonic())), f"sshd of {host.name}")
            break
        except SandboxError:
            if time.monotonic() >= deadline:
                nspawn_gone()
                raise
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        try:
            result = _ssh(host, "systemctl is-system-running --wait",
                          timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{host.name} did not finish booting within {BOOT_TIMEOUT_S} s") from None
        # 255: ssh itself failed (e.g. a busy host's sshd late with its banner): try again.
        if result.returncode != 255 or time.monotonic() >= deadline:
            break
        time.sleep(1)
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
        run(["ssh-keygen", "-F", host.address, "-f", str(STATE_DIR / "known_hosts")], check=False).returncode == 0
    )


def _write_ssh_files(hosts: list[Host], key: Path, user: str = "root") -> None:
    lines = []
    for host in hosts:
        lines += [
            f"Host {host.name}",
            f"  HostName {host.address}",
            f"  User {user}",
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
    return read_json(STATE_DIR / "fleet.json")


def _owner() -> dict:
    return read_json(RUN_DIR / "owner.json")


def _record(hosts: list[Host], key: Path, wheels: Path | None, monitoring: dict | None = None,
            user: str | None = None) -> None:
    fleet = {
        "ssh_user": user or load_fleet().get("ssh_user") or "root",
        "bridge": BRIDGE,
        "gateway": gateway(),
        "ssh_key": str(key),
        "known_hosts": str(STATE_DIR / "known_hosts"),
        "ssh_config": str(STATE_DIR / "ssh_config"),
        "wheelhouse": str(wheels) if wheels else None,
        "hosts": [{"name": h.name, "address": h.address, "pid": h.pid, "light": h.light} for h in hosts],
        "monitoring": monitoring if monitoring is not None else load_fleet().get("monitoring"),
    }
    write_json(STATE_DIR / "fleet.json", fleet)
    write_json(RUN_DIR / "owner.json", {"state_dir": str(STATE_DIR), "hosts": fleet["hosts"]})


# --- up / down --------------------------------------------------------------------------------------


def up(count: int = 3, install: bool = True, lb: bool = False, light: bool = False) -> list[Host]:
    """Boot ``count`` hosts (keeping the ones already running), start PostgreSQL and
    Redis, and install the reference service at stage 0. ``lb``: also nginx on
    the control machine's loopback in front of them (re-pointed when it already
    runs); without it, a running one is stopped. ``light``: light hosts with the
    stub service, and no PostgreSQL or Redis (stopped if they run)."""
    if count < 1:
        raise SandboxError("--hosts must be at least 1")
    if count > max_hosts():
        raise SandboxError(f"--hosts {count}: subnet {SUBNET} holds at most {max_hosts()} hosts")
    if count > MAX_FULL_HOSTS and not light:
        raise SandboxError(f"--hosts {count}: at most {MAX_FULL_HOSTS} full hosts (--light for more)")
    check_prerequisites()
    started = time.monotonic()
    owner = _owner()
    if owner and owner.get("state_dir") != str(STATE_DIR):
        # Its hosts, PostgreSQL and Redis hold that checkout's passwords: stop them all.
        log(f"bridge {BRIDGE} is held by the fleet of {owner.get('state_dir')}: stopping it first")
        _stop_hosts([Host.of(h) for h in owner.get("hosts", [])])
        lb_mod.stop()
        monitoring.stop()
        stop_redis()
        stop_postgres()
        owner = {}
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)

    image = base_image()
    key = ensure_ssh_key()
    public_key = Path(f"{key}.pub").read_text()
    ensure_bridge()
    if light:
        stop_redis()  # `up` makes the fleet it is asked for: the stub needs neither
        stop_postgres()
    else:
        ensure_postgres()
        ensure_redis()
    ensure_inotify(count)

    recorded = {h["name"]: h for h in owner.get("hosts", [])}
    wanted = [Host(host_name(i), host_address(i), light=light) for i in range(1, count + 1)]
    extra = [Host.of(h) for n, h in recorded.items() if n not in {w.name for w in wanted}]
    _stop_hosts(extra)

    known_hosts = STATE_DIR / "known_hosts"
    known = {}
    if known_hosts.exists():
        for line in known_hosts.read_text().splitlines():
            if line.strip():
                known[line.split()[0]] = line + "\n"
    if ssh_user() != "root":  # `up` is a reset: the fleet is reached as root again
        try:
            ssh_login("root")
        except SandboxError as error:  # a host that is not running gets a fresh disk below
            log(f"root's login not restored everywhere ({error}): hosts that do not answer are made again")
    _write_ssh_files(wanted, key)
    to_boot = []
    for host in wanted:
        entry = recorded.get(host.name, {})
        host.pid = entry.get("pid")
        if host.pid and bool(entry.get("light")) == light and _host_alive(host):
            log(f"{host.name} ({host.address}) already running, pid {host.pid}")
            continue
        if host.pid:
            _stop_nspawns([(host.pid, host.name)])
        known[host.address] = _prepare_rootfs(host, image, public_key)
        to_boot.append(host)
    known_hosts.write_text("".join(known[h.address] for h in wanted if h.address in known))
    _boot_all(to_boot, wanted, key)
    log(f"{len(wanted)} {'light ' if light else ''}host(s) up in {time.monotonic() - started:.1f} s")

    wheels = None if light else wheelhouse(image)
    _record(wanted, key, wheels)
    if install:
        install_service(light)
    if light:
        monitoring.stop()
        _record(wanted, key, wheels, monitoring={})
    else:
        where = monitoring.start([{"name": h.name, "address": h.address} for h in wanted])
        _record(wanted, key, wheels, monitoring=where)
        log(f"Prometheus on {where['prometheus_url']}, Alertmanager on {where['alertmanager_url']}, "
            f"alerts logged to {where['alert_log']}")
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


def _boot_all(to_boot: list[Host], wanted: list[Host], key: Path) -> None:
    """Boot ``to_boot`` with at most BOOT_WINDOW of them booting at once, in order;
    every host is recorded as soon as its nspawn runs, so ``down`` finds it."""
    queue = list(to_boot)
    booting: list[Host] = []
    while queue or booting:
        if queue and len(booting) < BOOT_WINDOW:
            while queue and len(booting) < BOOT_WINDOW:
                host = queue.pop(0)
                host.pid = _boot(host)
                booting.append(host)
                log(f"{host.name} ({host.address}) booting, nspawn pid {host.pid}")
            _record(wanted, key, None)
        _wait_booted(booting.pop(0))


def _pyinfra(deploy_file: Path, *data: str, **kwargs) -> subprocess.CompletedProcess:
    """pyinfra on the sandbox inventory, run as the product runs it: from its
    deploy root (deploy.py, tasks/, the defaults in group_data/all.py), the
    project's group_data/ (sandbox.py, sandbox_lb.py) loaded after the defaults."""
    def name(path: Path) -> str:  # relative where it can be: the hosts record the command
        return os.path.relpath(path, DEPLOY_ROOT) if path.is_relative_to(DEPLOY_ROOT) else str(path)

    command = [sys.executable, "-m", "pyinfra", "-y", name(PROJECT_ROOT / "inventories" / "sandbox.py"),
               name(deploy_file), *data]
    if PROJECT_ROOT.resolve() != DEPLOY_ROOT.resolve():
        command += ["--group-data", str(PROJECT_ROOT / "group_data")]
    return subprocess.run(command, cwd=DEPLOY_ROOT, **kwargs)


def install_service(light: bool = False) -> None:
    """Install the reference service (this package's deploy file install_app.py;
    the stub service, install_stub.py, on light hosts) and put it at stage 0 (the
    product's deploy.py)."""
    what = "the stub service" if light else "the reference service"
    log(f"installing {what} at stage 0 (pyinfra); a left-over rollout lock is cleared")
    # `up` is a reset: a lock left by a run that died (e.g. a drill) must not block it.
    _pyinfra(DEPLOY_ROOT / "tasks" / "lock.py", "--data", "lock_action=release", "--data", "break_lock=true",
             capture_output=True)
    install = Path(__file__).with_name("install_stub.py" if light else "install_app.py")
    if _pyinfra(install).returncode != 0:
        raise SandboxError(f"installing {what} failed (pyinfra output above)")
    result = _pyinfra(DEPLOY_ROOT / "deploy.py", "--data", "stage=0", "--data", "checks=false",
                      "--data", "write_secrets=true")
    if result.returncode != 0:
        raise SandboxError(f"putting {what} at stage 0 failed (pyinfra output above)")


def _stop_hosts(hosts: list[Host]) -> None:
    for host in hosts:
        if _is_our_nspawn(host.pid, host.name):
            log(f"stopping {host.name} (nspawn pid {host.pid})")
    _stop_nspawns([(h.pid, h.name) for h in hosts if h.pid])
    for host in hosts:
        _release_rootfs(host)


def down() -> None:
    """Stop exactly the recorded hosts, Redis and PostgreSQL; remove the bridge."""
    check_prerequisites()
    owner = _owner()
    hosts = [Host.of(h) for h in owner.get("hosts", [])]
    if not hosts:
        hosts = [Host.of(h) for h in load_fleet().get("hosts", [])]
    if lb_mod.stop():
        log("load balancer (nginx) stopped")
    stopped = monitoring.stop()
    if stopped:
        log(f"monitoring stopped: {', '.join(stopped)}")
    _stop_hosts(hosts)
    for leftover in sorted((RUN_DIR / "hosts").glob("*")):
        if os.path.ismount(leftover):  # a light host's overlay left by an `up` that died
            _release_rootfs(Host(leftover.name, ""))
    stop_redis()
    stop_postgres()
    remove_bridge()
    for path in (RUN_DIR / "owner.json", STATE_DIR / "fleet.json"):
        path.unlink(missing_ok=True)
    log(f"fleet stopped ({len(hosts)} host(s)), bridge {BRIDGE} removed")


# --- how the fleet is reached ---------------------------------------------------------------------


def ssh_login(user: str) -> None:
    """Reach the fleet as ``user``: ``root``, or SUDO_USER with root's login
    refused by every host's sshd (a production fleet's shape: every change goes
    through ``sudo``). The SSH config, ``fleet.json`` (and so
    ``inventories/sandbox.py``: ``ssh_user``, ``_sudo``) follow; connections
    kept open for the other user are closed, so none outlives the change."""
    if user not in ("root", SUDO_USER):
        raise SandboxError(f"ssh login {user!r}: root or {SUDO_USER}")
    fleet = load_fleet()
    if not fleet.get("hosts"):
        raise SandboxError("no sandbox fleet is up (rollout-sandbox up)")
    hosts = [Host.of(h) for h in fleet["hosts"]]
    change = (f"rm -f {ROOT_LOGIN_FILE}" if user == "root"
              else f"echo 'PermitRootLogin no' > {ROOT_LOGIN_FILE}") + " && systemctl reload ssh"
    for host in hosts:
        result = _ssh(host, change, timeout=30)
        if result.returncode != 0:
            raise SandboxError(f"{host.name}: {result.stderr.strip() or 'sshd not reloaded'}")
    for host in hosts:  # the master connections (ControlPersist) of the old user
        subprocess.run(["ssh", "-F", str(STATE_DIR / "ssh_config"), "-O", "exit", host.name],
                       capture_output=True, timeout=30)
    _write_ssh_files(hosts, Path(fleet["ssh_key"]), user)
    _record(hosts, Path(fleet["ssh_key"]), Path(fleet["wheelhouse"]) if fleet.get("wheelhouse") else None,
            user=user)
    log(f"the fleet is reached as {user}" + ("" if user == "root" else " (sudo); root's login is refused"))


# --- power (fault drills) ---------------------------------------------------------------------------


def _fleet_host(name: str) -> Host:
    owner = _owner()
    if owner.get("state_dir") == str(STATE_DIR):
        for entry in owner.get("hosts", []):
            if entry["name"] == name:
                return Host.of(entry)
    raise SandboxError(f"{name} is not a host of this sandbox fleet")


def power_off(name: str) -> None:
    """Cut a host's power: SIGKILL its init (PID 1 of the host's PID namespace),
    which takes every process of the host with it at once; no shutdown runs."""
    host = _fleet_host(name)
    if host.pid is None or not _is_our_nspawn(host.pid, host.name):
        raise SandboxError(f"{name} is not running")
    init = children(host.pid)
    if not init:
        raise SandboxError(f"{name}: no init process under nspawn pid {host.pid}")
    os.kill(init[0], signal.SIGKILL)
    if not wait_gone(host.pid, 30):
        raise SandboxError(f"{name}: nspawn pid {host.pid} still there 30 s after its init was killed")
    log(f"{name} powered off (init pid {init[0]} killed)")


def power_on(name: str) -> None:
    """Boot a powered-off host again from its own disk (nothing reinstalled)."""
    host = _fleet_host(name)
    if _is_our_nspawn(host.pid, host.name):
        raise SandboxError(f"{name} is already running (nspawn pid {host.pid})")
    host.pid = _boot(host)
    fleet = load_fleet()
    hosts = [host if entry["name"] == name else Host.of(entry) for entry in fleet["hosts"]]
    _record(hosts, Path(fleet["ssh_key"]), Path(fleet["wheelhouse"]) if fleet.get("wheelhouse") else None)
    _wait_booted(host)
    log(f"{name} powered on (nspawn pid {host.pid})")


# --- status -----------------------------------------------------------------------------------------

def status(requests_per_host: int = 100) -> list[dict]:
    """One row per sandbox host: stage in the env file, stage in the running
    process, health, and which implementation served ``requests_per_host``
    unforced requests."""
    import requests

    from rollout.hoststate import state_spec, status_report
    from rollout.probe import ProbeError, parse_answer, probe_shell
    from rollout.project import defaults

    if _owner().get("state_dir") != str(STATE_DIR):
        return []  # no fleet, or the bridge now belongs to another checkout's fleet
    settings = defaults()  # the service's contract: paths, switch, port, header
    rows = []
    for entry in load_fleet().get("hosts", []):
        host = Host.of(entry)
        # The product's one reader of a host's state (file and running process).
        try:
            known = parse_answer("state", _ssh(host, probe_shell("state", state_spec(settings)), timeout=20).stdout)
            report = status_report(known, settings["switch_variables"])
        except (ProbeError, KeyError, TypeError):
            report = {"file_stage": None, "process_stage": None}
        row = {"host": host.name, "address": host.address,
               "file_stage": report["file_stage"], "process_stage": report["process_stage"]}
        base = f"http://{host.address}:{settings['bind_port']}"
        try:
            row["health"] = requests.get(f"{base}{settings['health_path']}", timeout=5).status_code
            mix = {"domain": 0, "legacy": 0}
            with requests.Session() as session:
                for _ in range(requests_per_host):
                    served = session.get(f"{base}/api/v1/alerts/rules", timeout=5)
                    impl = served.headers.get(settings["implementation_header"], "none")
                    mix[impl] = mix.get(impl, 0) + 1
            row["mix"] = mix
        except requests.RequestException as error:
            row["health"] = f"unreachable ({type(error).__name__})"
            row["mix"] = {}
        rows.append(row)
    return rows

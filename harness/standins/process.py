"""The `process` runtime: engine binaries started as child processes on 127.0.0.1.

Servers are started in a new session (``start_new_session``) so that they outlive the CLI that
started them and do not receive the terminal's Ctrl-C directly: the owner (a context manager or
``standin down``) decides the shutdown order.  A process is identified by its pid *and* its kernel
start time, so a stale state file never makes us signal an unrelated process that reused a pid.

PostgreSQL and MariaDB refuse to run as root; :func:`service_user` gives the uid/gid of the system
account (``postgres``, ``mysql``) that the Debian packages create, and :func:`make_owned_dir`
creates directories that account owns and can reach.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from harness.standins.base import BinaryMissing, PortInUse, StandinError

LOOPBACK = "127.0.0.1"


def find_binary(name: str, search_dirs: Sequence[str], package: str) -> str:
    """Absolute path of an engine binary, or BinaryMissing naming the Debian package to install."""
    for d in search_dirs:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise BinaryMissing(f"{name} not found (looked in {', '.join(search_dirs) or 'PATH'} and PATH): "
                        f"install it with 'apt-get install {package}'")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def check_port_free(port: int) -> None:
    """Raise PortInUse if something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            raise PortInUse(f"port {port} on {LOOPBACK} is already in use ({e.strerror})") from None


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def service_user(name: str) -> tuple[int, int]:
    """(uid, gid) of a system account; StandinError naming the package that creates it if missing."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        pkg = {"postgres": "postgresql-15", "mysql": "mariadb-server"}.get(name, name)
        raise BinaryMissing(f"system user {name!r} does not exist: install 'apt-get install {pkg}'") from None
    return pw.pw_uid, pw.pw_gid


def make_base_dir(prefix: str, owner: str | None) -> str:
    """A fresh temporary directory, reachable (0755) and owned by ``owner`` when given."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    if owner and os.geteuid() == 0:
        uid, gid = service_user(owner)
        os.chown(path, uid, gid)
    return path


def make_owned_dir(path: str, owner: str | None, mode: int = 0o700) -> str:
    """Create ``path`` (parents included) owned by ``owner`` with ``mode``; returns the path."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner and os.geteuid() == 0:
        uid, gid = service_user(owner)
        os.chown(path, uid, gid)
    return path


def _demote(owner: str | None) -> dict:
    """subprocess keyword arguments that run the child as ``owner`` when we are root."""
    if owner and os.geteuid() == 0:
        uid, gid = service_user(owner)
        return {"user": uid, "group": gid, "extra_groups": []}
    return {}


def run(argv: Sequence[str], *, owner: str | None = None, timeout: float = 120.0,
        env: dict[str, str] | None = None, input: str | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion as ``owner``; StandinError with its output if it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              env=env, input=input, cwd=cwd or "/", **_demote(owner))
    except subprocess.TimeoutExpired as e:
        raise StandinError(f"{argv[0]} did not finish within {timeout:.0f}s") from e
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-4000:]
        raise StandinError(f"{' '.join(argv)} exited with {proc.returncode}:\n{out}")
    return proc


def spawn(argv: Sequence[str], *, log_path: str, owner: str | None = None,
          env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start a long-running server detached from us; returns (pid, kernel start time).

    Output goes to ``log_path`` (created owned by ``owner``); the child gets its own session so it
    survives our exit and our Ctrl-C.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if owner and os.geteuid() == 0:
            uid, gid = service_user(owner)
            os.fchown(fd, uid, gid)
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                env=env, cwd="/", start_new_session=True, **_demote(owner))
    finally:
        os.close(fd)
    # Popen objects reap on deletion only if still referenced; we track the pid ourselves and
    # reap with waitpid in pid_alive(), so drop the object's claim to avoid ResourceWarnings.
    proc.returncode = 0
    return proc.pid, start_time(proc.pid) or 0


def start_time(pid: int) -> int | None:
    """The kernel start time (clock ticks since boot) of ``pid``, or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None, pid_start: int | None = None) -> bool:
    """True if ``pid`` runs and (when given) started at ``pid_start``; zombies count as dead."""
    if not pid:
        return False
    _reap(pid)
    state = _state(pid)
    if state == "Z":
        # It died between the reap above and this look: collect it now, or (if it is our child)
        # it lingers as a zombie that other programs' "is it alive?" checks still see.
        _reap(pid)
        return False
    if state is None:
        return False
    return not (pid_start and start_time(pid) != pid_start)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pid: int | None, pid_start: int | None = None, *, sig: int = signal.SIGTERM,
              timeout: float = 15.0) -> None:
    """Send ``sig`` and wait for exit; SIGKILL the process group if it is still there after timeout."""
    if not pid_alive(pid, pid_start):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_until(lambda: not pid_alive(pid, pid_start), timeout):
        return
    kill(pid, pid_start)


def kill(pid: int | None, pid_start: int | None = None, timeout: float = 10.0) -> None:
    """SIGKILL a server and its process group (its own session), and wait until it is gone."""
    if not pid_alive(pid, pid_start):
        return
    assert pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_until(lambda: not pid_alive(pid, pid_start), timeout):
        raise StandinError(f"process {pid} survived SIGKILL for {timeout:.0f}s")


def log_tail(path: str, lines: int = 30) -> str:
    """The last lines of a log file, for error messages; empty if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def remove_tree(path: str | None) -> None:
    """Delete a data directory; never fails on a missing path."""
    if path:
        shutil.rmtree(path, ignore_errors=True)


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's soft descriptor limit toward ``wanted`` (children inherit it); returns it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft

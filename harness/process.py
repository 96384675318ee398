"""The harness's process toolkit: start, identify, signal, wait for and reap local processes.

Database servers, the reference proxy, PgBouncer and the failover supervisor all run as child
processes on 127.0.0.1.  Long-running ones are started in a new session (``start_new_session``) so
that they outlive the command that started them and do not receive the terminal's Ctrl-C directly:
their owner decides the shutdown order.  A process is identified by its pid *and* its kernel start
time, so a stale state file never makes us signal an unrelated process that reused a pid.

PostgreSQL, MariaDB and PgBouncer refuse to run as root; :func:`service_user` gives the uid/gid of
the system account (``postgres``, ``mysql``) that the Debian packages create, and
:func:`make_owned_dir` creates directories that account owns and can reach.

Failures raise :class:`ProcessError` subclasses; callers that speak to a user in other terms (a
stand-in that "could not start") translate them.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from harness.errors import HarnessError

LOOPBACK = "127.0.0.1"

#: Every scratch directory the harness creates starts with this, and so do the command lines of the
#: servers it runs from them: enough to recognise our own processes among the machine's.
SCRATCH_PREFIX = "aurora-harness-"


class ProcessError(HarnessError):
    """Root of the process toolkit's errors."""


class ExecutableMissing(ProcessError):
    """A program or the system account it runs as is not installed; the message names the package."""


class PortTaken(ProcessError):
    """A TCP port that should be free already has a listener."""


class CommandFailed(ProcessError):
    """A command run to completion exited non-zero or overran its time; the message has its output."""


class ProcessSurvived(ProcessError):
    """A process outlived SIGKILL for longer than we waited."""


def find_binary(name: str, search_dirs: Sequence[str], package: str) -> str:
    """Absolute path of a program, or ExecutableMissing naming the Debian package to install."""
    for d in search_dirs:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise ExecutableMissing(f"{name} not found (looked in {', '.join(search_dirs) or 'PATH'} and PATH): "
                            f"install it with 'apt-get install {package}'")


LISTENING_PORTS_LOW = 10000
"""The lowest port :func:`free_port` hands out (above the well-known and most registered services)."""

PORT_SLICE_ENV = "AURORA_HARNESS_PORT_SLICE"
"""``K/N`` (0 <= K < N): :func:`free_port` draws only from the K-th of N equal slices of its range.

Checking a drawn port by binding it proves it free only at that moment; its server binds it seconds
later.  Two processes drawing independently can meet in between, and the deque of recent ports only
protects one process from itself.  Processes that run side by side (the workers of a parallel test
run) each get their own K, and the servers, proxies and commands they start inherit it through the
environment: their draws can never meet."""

_port_draws = random.Random()
_recent_ports: collections.deque[int] = collections.deque(maxlen=1024)
"""Ports handed out lately: a caller may bind its port seconds after asking, so a port is not handed
out twice in a row of calls (one proxy asks for its endpoints' and admin ports together)."""


def ephemeral_port_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default when it cannot be read)."""
    try:
        with open(path) as f:
            low, high = (int(part) for part in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def port_slice(low: int, high: int, spec: str | None = None) -> tuple[int, int]:
    """The part of the ports ``low..high`` (inclusive) that ``spec`` (``K/N``, default
    ``$AURORA_HARNESS_PORT_SLICE``) gives this process: the K-th of N equal, disjoint slices; the
    whole range when no slice is set.  ProcessError when the setting is malformed."""
    spec = os.environ.get(PORT_SLICE_ENV, "") if spec is None else spec
    if not spec.strip():
        return low, high
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise ProcessError(f"{PORT_SLICE_ENV} must be K/N with 0 <= K < N (e.g. 0/4), not {spec!r}")
    size = (high - low + 1) // count
    return low + index * size, low + (index + 1) * size - 1


def free_port(draw: Callable[[int, int], int] | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, below the kernel's ephemeral range.

    A server is told its port seconds before it binds it (a MariaDB data directory is copied first).
    A port from the ephemeral range - what binding port 0 hands out - can meanwhile become the local
    end of any outgoing connection on the machine, and under a load of client connections it does:
    the server then fails with "address already in use".  Ports below that range are never handed
    out that way, so they are drawn there, at random (``draw``, injected for tests), and checked.
    A port handed out by one of the last calls is not handed out again, since it may not be bound yet,
    and processes running side by side draw from disjoint slices (:data:`PORT_SLICE_ENV`).
    Falls back to the kernel's choice when the range below is too small or crowded."""
    draw = draw or _port_draws.randint
    low, high = port_slice(LISTENING_PORTS_LOW, ephemeral_port_range()[0] - 1)
    if high > low:
        for _ in range(64):
            port = draw(low, high)
            if port in _recent_ports:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((LOOPBACK, port))
                except OSError:
                    continue
            _recent_ports.append(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    _recent_ports.append(port)
    return port


def check_port_free(port: int) -> None:
    """Raise PortTaken if something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError as e:
            raise PortTaken(f"port {port} on {LOOPBACK} is already in use ({e.strerror})") from None


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def service_user(name: str) -> tuple[int, int]:
    """(uid, gid) of a system account; ExecutableMissing naming the package that creates it if not."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        pkg = {"postgres": "postgresql-15", "mysql": "mariadb-server"}.get(name, name)
        raise ExecutableMissing(f"system user {name!r} does not exist: install 'apt-get install {pkg}'") from None
    return pw.pw_uid, pw.pw_gid


def make_base_dir(prefix: str, owner: str | None) -> str:
    """A fresh temporary directory, reachable (0755) and owned by ``owner`` when given."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    if owner and os.geteuid() == 0:
        uid, gid = service_user(owner)
        os.chown(path, uid, gid)
    return path


def write_private(path: str, text: str, owner: str | None = None, *, mode: int = 0o600,
                  replace: bool = False) -> str:
    """Write a file that only its owner may read (0600 unless ``mode`` says otherwise: it may hold a
    password), handed to ``owner`` when given; returns ``path``.

    Atomic: the text goes to a temporary file created 0600 beside ``path``, which then takes its
    name, so nobody ever reads a half-written file or, for the moment between creating and
    restricting it, a readable one.  Refuses to overwrite (FileExistsError) unless ``replace``."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode != 0o600:
            os.chmod(tmp, mode)
        if owner and os.geteuid() == 0:
            os.chown(tmp, *service_user(owner))
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def make_owned_dir(path: str, owner: str | None, mode: int = 0o700) -> str:
    """Create ``path`` (parents included) owned by ``owner`` with ``mode``; returns the path."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if owner and os.geteuid() == 0:
        uid, gid = service_user(owner)
        os.chown(path, uid, gid)
    return path


def demote(owner: str | None) -> dict:
    """subprocess keyword arguments that run the child as ``owner`` when we are root."""
    if owner and os.geteuid() == 0:
        uid, gid = service_user(owner)
        return {"user": uid, "group": gid, "extra_groups": []}
    return {}


def run(argv: Sequence[str], *, owner: str | None = None, timeout: float = 120.0,
        env: dict[str, str] | None = None, input: str | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion as ``owner``; CommandFailed with its output if it fails."""
    try:
        proc = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=timeout,
                              env=env, input=input, cwd=cwd or "/", **demote(owner))
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(f"{argv[0]} did not finish within {timeout:.0f}s") from e
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-4000:]
        raise CommandFailed(f"{' '.join(argv)} exited with {proc.returncode}:\n{out}")
    return proc


def spawn(argv: Sequence[str], *, log_path: str, owner: str | None = None,
          env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start a long-running process detached from us; returns (pid, kernel start time).

    Output goes to ``log_path`` (created owned by ``owner``); the child gets its own session so it
    survives our exit and our Ctrl-C.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if owner and os.geteuid() == 0:
            uid, gid = service_user(owner)
            os.fchown(fd, uid, gid)
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                env=env, cwd="/", start_new_session=True, **demote(owner))
    finally:
        os.close(fd)
    # Popen objects reap on deletion only if still referenced; we track the pid ourselves and
    # reap with waitpid in pid_alive(), so drop the object's claim to avoid ResourceWarnings.
    proc.returncode = 0
    return proc.pid, start_time(proc.pid) or 0


def run_in_own_group(argv: Sequence[str], log_path: str, *, owner: str | None = None,
                     timeout: float) -> int | None:
    """Run a command that starts children of its own in a new process group as ``owner``, output to
    ``log_path``; returns its exit status, or None if it overran ``timeout`` (the whole group is
    killed then, and also when we are interrupted, which re-raises)."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a bootstrap may echo passwords
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                                **demote(owner))
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return None
    except BaseException:
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


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
        raise ProcessSurvived(f"process {pid} survived SIGKILL for {timeout:.0f}s")


def signal_group(pid: int | None, pid_start: int | None, sig: int) -> bool:
    """Send ``sig`` to a running process's group (its own session) and to itself; False if it is gone.

    SIGSTOP / SIGCONT this way freeze and thaw a server with every worker it forked.
    """
    if not pid_alive(pid, pid_start):
        return False
    assert pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return True


def pid_from_file(pid_file: str, command_mark: str) -> int | None:
    """The pid written on the first line of ``pid_file`` if that process runs and one of its
    arguments is ``command_mark`` or ends with ``=command_mark`` (so it is the server we mean)."""
    try:
        with open(pid_file, encoding="ascii") as f:
            pid = int(f.readline().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except (OSError, ValueError):
        return None
    if not any(a == command_mark or a.endswith(f"={command_mark}") for a in args):
        return None
    return pid if pid_alive(pid) else None


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

"""On-disk state: where definitions, runtime files and images live, atomic JSON and locks.

Layout (``embed``: everything under ``root``)::

    <config>/domains/<name>.json    persistent definition (+ snapshot metadata)
    <config>/pools/<name>.json      extra storage pools {"type": "dir", "path": ...}
    <config>/.lock                  flock: define/undefine
    <data>/images/                  the ``default`` pool
    <data>/save/<name>.save         managed save image (like libvirt's /var/lib/libvirt/qemu/save)
    <run>/<name>/qemu.pid           pidfile written by QEMU (removed by QEMU on a clean exit)
    <run>/<name>/qmp.sock           QMP socket (short fallback under /tmp when the path is too long)
    <run>/<name>/run.json           runtime facts: hot-plug ports, block-job records, intents
    <run>/<name>/console.log        serial console
    <run>/<name>.lock               flock: one QMP conversation per domain at a time

Every lock is waited for at most the connection's timeout (:attr:`StateDirs.lock_timeout`), then
OperationTimeoutError names what is locked and the holder's pid (from ``/proc/locks``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from virtabs.spi import (
    ConnectError,
    Deadline,
    InvalidArgumentError,
    OperationFailedError,
    OperationTimeoutError,
    VirtabsError,
    quote,
)

__all__ = ["DomainLock", "StateDirs", "file_lock", "lock_holder", "read_json", "write_json_atomic"]


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: temp file, fsync, rename, fsync of the directory.

    A failure (a full disk, an I/O error) leaves the old file as it was and raises OperationFailedError naming
    ``path``.
    """
    directory = os.path.dirname(path)
    tmp: str | None = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)  # the rename itself survives a crash
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system that cannot sync a directory
                raise
        finally:
            os.close(dfd)
    except OSError as exc:
        raise OperationFailedError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def read_json(path: str) -> Any:
    """Read a JSON file; ``None`` when it does not exist."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def private_dir(path: str, *, create: bool, error: type[VirtabsError] = OperationFailedError) -> None:
    """Check (and with ``create``, make, mode 0700) a directory in a shared place such as ``/tmp``.

    Refused (``error``, naming it) when it is not a real directory owned by the caller, or is writable by
    group or others: another user who made it first could plant sockets there (a fake QMP server).
    A directory that does not exist is fine when not creating.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise error(
            f"refusing the shared directory {path}: it must be a directory owned by uid {os.getuid()} and not "
            f"writable by group or others (found {'a directory' if stat.S_ISDIR(st.st_mode) else 'no directory'}, "
            f"uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); remove it or set XDG_RUNTIME_DIR"
        )


class StateDirs:
    """Directories of one connection, from the URI path and parameters."""

    def __init__(self, config: str, data: str, run: str) -> None:
        self.config = config
        self.data = data
        self.run = run
        self.domains = os.path.join(config, "domains")
        self.pools = os.path.join(config, "pools")
        self.images = os.path.join(data, "images")
        self.shared_base: str | None = None
        """The runtime base made under the temporary directory (no ``XDG_RUNTIME_DIR``): checked before use."""
        self.lock_timeout: float | None = None
        """How long a lock of this root is waited for (the connection's timeout; None: no bound)."""

    @classmethod
    def for_uri(cls, path: str, params: dict[str, str]) -> StateDirs:
        """``/embed?root=DIR``, ``/session`` (XDG) or ``/system``."""
        mode = path.strip("/") or "session"
        if mode == "embed":
            root = params.get("root")
            if not root:
                raise InvalidArgumentError("qemu:///embed needs ?root=DIR")
            root = os.path.abspath(root)
            return cls(root, root, os.path.join(root, "run"))
        if mode == "session":
            home = os.path.expanduser("~")
            config = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "virtabs", "qemu")
            data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
            data = os.path.join(data_home, "virtabs", "qemu")
            xdg_run = os.environ.get("XDG_RUNTIME_DIR")
            if xdg_run:
                return cls(config, data, os.path.join(xdg_run, "virtabs", "qemu"))
            shared = os.path.join(tempfile.gettempdir(), f"virtabs-{os.getuid()}")
            dirs = cls(config, data, os.path.join(shared, "virtabs", "qemu"))
            dirs.shared_base = shared
            return dirs
        if mode == "system":
            return cls("/var/lib/virtabs/qemu", "/var/lib/virtabs/qemu", "/run/virtabs/qemu")
        raise InvalidArgumentError(f"unknown qemu URI path {quote(path)}: use /session, /system or /embed?root=DIR")

    def check_shared(self, *, create: bool) -> None:
        """Refuse (ConnectError) a runtime base under the temporary directory that another user could control."""
        if self.shared_base is not None:
            private_dir(self.shared_base, create=create, error=ConnectError)

    def ensure(self) -> None:
        """Create the directories (private: mode 0700 where we create them)."""
        self.check_shared(create=True)
        for d in (self.domains, self.pools, self.images, self.run):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def domain_file(self, name: str) -> str:
        """The definition file of ``name``."""
        return os.path.join(self.domains, f"{name}.json")

    def managed_save(self, name: str) -> str:
        """The managed save image of ``name`` (a saved-state file; the next start resumes it)."""
        return os.path.join(self.data, "save", f"{name}.save")

    def run_dir(self, name: str) -> str:
        """The runtime directory of ``name``."""
        return os.path.join(self.run, name)

    def pidfile(self, name: str) -> str:
        """QEMU's pidfile for ``name``."""
        return os.path.join(self.run_dir(name), "qemu.pid")

    def runfile(self, name: str) -> str:
        """Runtime facts of ``name``."""
        return os.path.join(self.run_dir(name), "run.json")

    def console_log(self, name: str) -> str:
        """Serial console log of ``name``."""
        return os.path.join(self.run_dir(name), "console.log")

    def qmp_socket(self, name: str) -> str:
        """The QMP socket path of ``name`` (< 108 bytes, deterministic for every process)."""
        path = os.path.join(self.run_dir(name), "qmp.sock")
        if len(os.fsencode(path)) < 100:
            return path
        digest = hashlib.sha256(os.fsencode(self.run)).hexdigest()[:16]
        directory = os.path.join(tempfile.gettempdir(), f"vtq-{digest}")
        private_dir(directory, create=False)  # never talk to a socket someone else could have planted
        return os.path.join(directory, f"{name}.sock")

    def socket_dir(self, name: str) -> str:
        """Make the directory of ``name``'s QMP socket (the fallback under the temporary directory: 0700,
        checked); the socket's path."""
        sock = self.qmp_socket(name)
        directory = os.path.dirname(sock)
        if directory == self.run_dir(name):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        else:
            private_dir(directory, create=True)
        return sock

    def lockfile(self, name: str) -> str:
        """The per-domain lock file."""
        return os.path.join(self.run, f"{name}.lock")


def lock_holder(fd: int) -> int | None:
    """The pid holding the flock on the file open as ``fd``, from ``/proc/locks``; None when unknown (no
    ``/proc/locks``, or a holder in another pid namespace). Nothing is written into lock files: a read-only
    connection takes locks too."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError, ValueError), open("/proc/locks") as fh:
        for line in fh:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters are "1: -> FLOCK ...".
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == dev and int(fields[4]) > 0:
                return int(fields[4])
    return None


def _flock(fd: int, path: str, deadline: Deadline, what: str) -> None:
    """Take the exclusive flock on ``fd`` before ``deadline`` (LOCK_NB retried with short sleeps, so SIGINT
    interrupts the wait); OperationTimeoutError naming the holder otherwise."""
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            pass
        if deadline.expired:
            holder = lock_holder(fd)
            by = f"process {holder}" if holder is not None else "another process"
            raise OperationTimeoutError(
                f"{what} is locked by {by} (lock file {path}); not released within {deadline.seconds:g}s"
            )
        deadline.sleep(delay)
        delay = min(delay * 2, 0.05)


_lock_budget = threading.local()


@contextlib.contextmanager
def lock_waits_at_most(seconds: float) -> Iterator[None]:
    """Within the block, this thread waits at most ``seconds`` for any domain lock, whatever the lock's own
    timeout. The event poller reads with 0: a domain another process holds (a long save or snapshot there)
    is skipped for one round instead of holding up the events of every other domain."""
    previous = getattr(_lock_budget, "seconds", None)
    _lock_budget.seconds = seconds
    try:
        yield
    finally:
        _lock_budget.seconds = previous


class DomainLock:
    """Per-domain mutual exclusion across threads (an RLock) and processes (flock).

    Reentrant within a thread: the flock is taken by the outermost acquire only. Waiting is bounded by
    ``timeout`` seconds (None: no bound), after which OperationTimeoutError names ``what`` and the pid of
    the holder where known. SIGINT interrupts the wait.
    """

    def __init__(self, path: str, timeout: float | None = None, what: str | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.what = what or f"domain {quote(os.path.basename(path).removesuffix('.lock'))}"
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the duration of the ``with`` block."""
        timeout: float | None = self.timeout
        budget: float | None = getattr(_lock_budget, "seconds", None)
        if budget is not None:
            timeout = budget if timeout is None else min(timeout, budget)
        deadline = Deadline(timeout)
        left = deadline.remaining()
        if not self._rlock.acquire(timeout=-1 if left is None else left):
            raise OperationTimeoutError(
                f"{self.what} is locked by another thread of this process (pid {os.getpid()}); not released "
                f"within {timeout:g}s"
            )
        try:
            if self._depth == 0 and not os.path.isdir(os.path.dirname(self.path)):
                # No runtime directory: nothing of this root ever ran and a read-only connection (the only
                # one that does not create it at connect) must not create it: nothing to exclude.
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._depth == 0:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    _flock(fd, self.path, deadline, self.what)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                    os.close(self._fd)
                    self._fd = None
        finally:
            self._rlock.release()


@contextlib.contextmanager
def file_lock(path: str, timeout: float | None = None, what: str | None = None) -> Iterator[None]:
    """An exclusive flock on ``path`` for the ``with`` block, waited for at most ``timeout`` seconds (None: no
    bound; OperationTimeoutError naming ``what`` and the holder's pid where known)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _flock(fd, path, Deadline(timeout), what or f"the lock {path}")
        yield
    finally:
        os.close(fd)

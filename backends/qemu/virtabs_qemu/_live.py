"""Live state from QEMU's own event stream: one leased QMP monitor per domain and process.

Every domain starts with its main QMP socket plus :data:`~virtabs_qemu._cmdline.LEASE_SOCKETS`
extra monitors (``lease-<i>.sock`` next to it, as private). A process leases one by taking a
non-blocking flock on its lock file (``lease-<i>.lock``), connects once, negotiates, asks
``query-status`` and ``query-jobs`` once and keeps the connection: QEMU then writes every event
(STOP, RESUME, SHUTDOWN, GUEST_PANICKED, JOB_STATUS_CHANGE, BLOCK_JOB_* ...) to it.

A read answers from that view, never from a stale one: it first asks the kernel, with a
zero-timeout ``poll`` (one system call), whether QEMU wrote anything. QEMU writes an event to
every monitor *before* it replies to the command that caused it, so whatever happened before the
read began is already in the socket. If anything is there, the read asks ``query-status`` (and
``query-jobs`` after a job event) on the same connection, which also reads every event in front
of the reply. End of file (QEMU exited or was killed) drops the lease and the caller takes the
slow path, which reports what is left (shut off or crashed). A domain that was stopped and started
again is a new QEMU with new sockets: the old connection ended with it, so the old view is never
used for the new process.

Statuses that QEMU can leave without any event (``inmigrate``, ``postmigrate`` ...) are asked
again at every read, on the leased connection. A lease is released when the connection closes,
and by the kernel when the process dies (flock). No lease free, a domain started before leases
existed (no lease sockets), or a full table of leases: the caller falls back to a fresh session.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import socket
import struct
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from virtabs.spi import ConnectError, DomainState, OperationTimeoutError, VirtabsError, quote

from ._cmdline import LEASE_SOCKETS, lease_lock, lease_socket
from ._process import Processes
from ._qmp import QMPClient, QMPError
from ._session import Sessions, state_of
from ._store import DefinitionStore

__all__ = ["JOB_EVENTS", "Lease", "LiveView"]

JOB_EVENTS = frozenset(
    {
        "JOB_STATUS_CHANGE",
        "BLOCK_JOB_READY",
        "BLOCK_JOB_COMPLETED",
        "BLOCK_JOB_CANCELLED",
        "BLOCK_JOB_ERROR",
        "BLOCK_JOB_PENDING",
    }
)
"""Events after which the leased view asks ``query-jobs`` again."""

STEADY = frozenset(
    {
        "running",
        "paused",
        "prelaunch",
        "suspended",
        "shutdown",
        "guest-panicked",
        "io-error",
        "watchdog",
        "internal-error",
    }
)
"""Statuses QEMU leaves only with an event on every monitor (STOP, RESUME, RESET, WAKEUP, SHUTDOWN ...)
while it sends MIGRATION events (the lease turns them on): a stopped QEMU enters ``finish-migrate`` without
STOP. Any other status is asked again at every read."""

STEADY_WITHOUT_MIGRATION_EVENTS = frozenset({"running"})
"""What is trusted when MIGRATION events could not be turned on: leaving ``running`` always sends STOP."""

MAX_LEASES = 32
"""Leases one connection holds at most (two file descriptors each); more domains take the slow path."""

_SYNC_ROUNDS = 8
_ASK_ID = "vl"
_REQUESTS: dict[str, bytes] = {}
_FAILURES = (VirtabsError, QMPError, OSError, ValueError, TypeError, KeyError)
"""What a lease's conversation can raise when QEMU is gone or its monitor misbehaves: drop the lease."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")

_views: weakref.WeakSet[LiveView] = weakref.WeakSet()


def _forget_in_child() -> None:
    """After ``fork``: the child must not read the parent's leased sockets (it would steal their events)
    nor unlock the parent's leases; it closes its copies of the descriptors only."""
    for view in list(_views):
        view.forget()


os.register_at_fork(after_in_child=_forget_in_child)


class LeaseClient(QMPClient):
    """A QMP connection that stays open and can tell, without blocking, whether QEMU wrote anything."""

    def __init__(self, path: str, timeout: float, what: str) -> None:
        super().__init__(path, timeout=timeout, what=what)
        self._poll = select.poll()

    def connect(self) -> LeaseClient:
        """Connect and negotiate; afterwards :meth:`pending` works."""
        super().connect()
        assert self._sock is not None
        self._sock.settimeout(self.timeout)
        self._poll.register(self._sock.fileno(), select.POLLIN)
        return self

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """:meth:`QMPClient.execute`, leaving the socket with the connection's timeout for :meth:`ask`."""
        try:
            return super().execute(command, arguments, timeout)
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)

    def ask(self, command: str) -> Any:
        """``command`` (no arguments) on this dedicated connection, leaner than :meth:`execute`: the request
        bytes are made once per command and the socket keeps the timeout :meth:`connect` gave it (each
        wait for bytes is bounded by it). Events in front of the reply are kept in :attr:`events`; a
        refusal raises :class:`QMPError`, a closed connection ConnectError."""
        sock = self._sock
        if sock is None:
            raise ConnectError(f"{self.what}: QMP connection is closed")
        request = _REQUESTS.get(command)
        if request is None:
            request = _REQUESTS[command] = json.dumps({"execute": command, "id": _ASK_ID}).encode() + b"\n"
        try:
            sock.sendall(request)
            return self._reply(command, _ASK_ID, None)
        except (TimeoutError, OperationTimeoutError):
            self.close()
            raise OperationTimeoutError(f"{self.what}: QMP command {quote(command)} got no reply in time") from None
        except OSError as exc:
            self.close()
            raise ConnectError(f"{self.what}: QMP connection lost while sending {quote(command)}: {exc}") from None

    def pending(self) -> bool:
        """True when QEMU wrote something not read yet, closed the connection, or it failed (one ``poll``)."""
        return bool(self._buf) or bool(self._poll.poll(0))

    @property
    def is_open(self) -> bool:
        """False once the connection was closed (by us, or after QEMU closed it)."""
        return self._sock is not None

    def peer_pid(self) -> int | None:
        """The pid QEMU's socket was created by (``SO_PEERCRED``), or None."""
        if self._sock is None:
            return None
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
        return int(struct.unpack("3i", raw)[0])

    def forget(self) -> None:
        """Close this process's descriptor only (after fork: the parent keeps its connection)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                os.close(self._sock.detach())
            self._sock = None


class Lease:
    """One leased monitor of one running QEMU and what it says now."""

    def __init__(self, name: str, index: int, lock_fd: int, client: LeaseClient, pid: int) -> None:
        self.name = name
        self.index = index
        self.lock_fd = lock_fd
        self.client = client
        self.pid = pid
        """The QEMU this connection belongs to (valid while the connection is open)."""
        self.status = "unknown"
        self.state = DomainState.NOSTATE
        self.jobs: dict[str, str] = {}
        """QEMU's jobs: id -> status (``query-jobs``, asked again after every job event)."""
        self.steady = STEADY_WITHOUT_MIGRATION_EVENTS
        self._stat_fd = -1
        self.mutex = threading.RLock()
        """Reentrant: settling a job on the lease emits events, and a subscriber may read again."""

    def cpu_time_ns(self) -> int | None:
        """User + system CPU time of this QEMU (one ``pread`` of /proc/PID/stat, kept open), or None when
        it cannot be read (the caller reads it the usual way)."""
        try:
            if self._stat_fd < 0:
                self._stat_fd = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            fields = os.pread(self._stat_fd, 4096, 0).rsplit(b")", 1)[-1].split()
            return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _CLK_TCK
        except (OSError, ValueError, IndexError):
            return None

    def close_stat(self) -> None:
        """Close the /proc file of :meth:`cpu_time_ns`."""
        if self._stat_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._stat_fd)
            self._stat_fd = -1

    def set_status(self, reply: Any) -> None:
        """Take a ``query-status`` reply."""
        self.state, self.status = state_of(reply)


class LiveView:
    """The leases of one connection, by domain name.

    ``dispatch`` gets the QMP events a lease read (the event room emits BLOCK_JOB_READY from them).
    """

    def __init__(
        self,
        store: DefinitionStore,
        processes: Processes,
        timeout: float,
        dispatch: Callable[[str, list[dict[str, Any]]], None],
    ) -> None:
        self.store = store
        self.processes = processes
        self.timeout = timeout
        self.dispatch = dispatch
        self._leases: dict[str, Lease] = {}
        self._refused: dict[str, int] = {}
        """Domain -> the QEMU pid whose lease monitor failed to set up (it is not asked again)."""
        self._guard = threading.Lock()
        self._closed = False
        _views.add(self)

    # --- reading ------------------------------------------------------------------------------

    def lease(self, name: str) -> Lease | None:
        """The domain's lease, brought up to date, or None: take the slow path (no lease free, no lease
        sockets, QEMU gone or not answering)."""
        lease = self._leases.get(name)
        if lease is None:
            return self._acquire(name)
        events: list[dict[str, Any]] = []
        with lease.mutex:
            if not lease.client.is_open:  # closed by a failed command: the next read leases again
                self._drop(lease)
                return None
            if lease.client.pending() or lease.status not in lease.steady:
                try:
                    events = self._sync(lease, jobs_too=False)
                except _FAILURES:
                    self._drop(lease)
                    return None
        if events:
            self.dispatch(name, events)
        return lease

    def state(self, name: str) -> tuple[DomainState, str, Lease] | None:
        """State and QEMU's word for it, from the lease (None: take the slow path)."""
        lease = self.lease(name)
        if lease is None:
            return None
        return lease.state, lease.status, lease

    def query(self, lease: Lease, command: str) -> Any:
        """Run a read-only ``command`` on the lease. None when QEMU sent an event meanwhile (the caller takes
        the slow path, which sees what changed) or the connection failed."""
        events: list[dict[str, Any]] = []
        reply: Any = None
        with lease.mutex:
            if not lease.client.is_open:
                return None
            try:
                reply = lease.client.ask(command)
                events = lease.client.take_events()
                if events:
                    reply = None
                    events = self._sync(lease, jobs_too=True, events=events)
            except _FAILURES:
                self._drop(lease)
                reply = None
        if events:
            self.dispatch(lease.name, events)
        return reply

    @contextlib.contextmanager
    def conversation(self, lease: Lease, sessions: Sessions) -> Iterator[QMPClient]:
        """The leased connection for work that needs the domain lock (settling concluded jobs): no new
        connection. Errors leave as a session's would (:meth:`Sessions.translated`); afterwards the view is
        brought up to date with what QEMU sent meanwhile (a lease that fails doing so is dropped)."""
        name = lease.name
        events: list[dict[str, Any]] = []
        try:
            with self.store.lock(name).hold(), lease.mutex:
                client = lease.client
                try:
                    with sessions.translated(name):
                        if not client.is_open:
                            raise ConnectError(f"domain {quote(name)}: the leased QMP connection is closed")
                        yield client
                finally:
                    events = client.take_events()
                    try:
                        if not client.is_open:
                            raise ConnectError(f"domain {quote(name)}: the leased QMP connection is closed")
                        events = self._sync(lease, jobs_too=True, events=events)
                    except _FAILURES:
                        self._drop(lease)
        finally:
            if events:
                self.dispatch(name, events)

    # --- leasing ------------------------------------------------------------------------------

    def _acquire(self, name: str) -> Lease | None:
        if self._closed or len(self._leases) >= MAX_LEASES:
            return None
        try:
            sock = self.store.dirs.qmp_socket(name)
        except VirtabsError:
            return None
        if not os.path.exists(lease_socket(sock, 0)):  # not running, or started before leases existed
            return None
        with self.store.lock(name).hold():  # not in the middle of another process's start
            if name in self._leases:
                return self.lease(name)
            pid = self.processes.pid(name)
            if pid is None or self._refused.get(name) == pid:
                return None
            for index in range(LEASE_SOCKETS):
                path = lease_socket(sock, index)
                try:
                    fd = os.open(lease_lock(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                except OSError:
                    return None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                return self._connect(name, index, fd, path, pid)
        return None

    def _connect(self, name: str, index: int, fd: int, path: str, pid: int) -> Lease | None:
        client = LeaseClient(path, timeout=self.timeout, what=f"domain {quote(name)}")
        lease = Lease(name, index, fd, client, pid)
        try:
            client.connect()
            peer = client.peer_pid()
            if peer is not None and peer != pid:  # not the QEMU of the pidfile
                raise OSError(f"lease socket {path} belongs to process {peer}, not to QEMU {pid}")
            try:
                client.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
                lease.steady = STEADY
            except QMPError:
                pass  # during a migration: only "running" is trusted, anything else is asked at every read
            with lease.mutex:
                events = self._sync(lease, jobs_too=True)
        except _FAILURES:
            self._release(lease)
            self._refused[name] = pid  # not again for this QEMU: a broken monitor costs one try, not one per read
            return None
        with self._guard:
            self._leases[name] = lease
        if events:
            self.dispatch(name, events)
        return lease

    def _sync(self, lease: Lease, jobs_too: bool, events: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Ask ``query-status`` (and ``query-jobs`` after job events) on the lease until no event came in
        between; the events read meanwhile (for ``dispatch``, once the caller has let go of ``lease.mutex``,
        which it holds now)."""
        q = lease.client
        seen = list(events or [])
        jobs_too = jobs_too or any(e.get("event") in JOB_EVENTS for e in seen)
        for _ in range(_SYNC_ROUNDS):
            status = q.ask("query-status")
            new = q.take_events()
            seen += new
            if jobs_too or any(e.get("event") in JOB_EVENTS for e in new):
                lease.jobs = {str(j["id"]): str(j.get("status", "")) for j in q.ask("query-jobs")}
                later = q.take_events()
                if later:  # the status may have moved on: ask both again
                    seen += later
                    jobs_too = True
                    continue
            lease.set_status(status)
            break
        else:
            raise OSError(f"domain {quote(lease.name)}: QEMU's events kept coming while reading its state")
        return seen

    # --- releasing ----------------------------------------------------------------------------

    def _drop(self, lease: Lease) -> None:
        with self._guard:
            if self._leases.get(lease.name) is lease:
                del self._leases[lease.name]
        self._release(lease)

    @staticmethod
    def _release(lease: Lease) -> None:
        lease.client.close()
        lease.close_stat()
        if lease.lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(lease.lock_fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(lease.lock_fd)
            lease.lock_fd = -1

    def close(self) -> None:
        """Release every lease (QEMU accepts the next process on each monitor). Idempotent."""
        self._closed = True
        with self._guard:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            with lease.mutex:
                self._release(lease)

    def forget(self) -> None:
        """In a forked child: close the copies of the descriptors, keep the parent's leases and locks."""
        with self._guard:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            lease.client.forget()
            lease.close_stat()
            with contextlib.suppress(OSError):
                os.close(lease.lock_fd)
            lease.lock_fd = -1

"""Bounded libvirt calls: every call to a peer honours the connection's timeout and Ctrl-C.

libvirt-python calls block in C (with the GIL released) until the peer answers; a peer that
never answers would hold the calling thread forever, and SIGINT would not be seen until the call
returned. So every call on a connection that has a peer runs on a worker thread while the
caller waits on an :class:`threading.Event` with the connection's deadline (a wait that SIGINT
interrupts in the main thread):

* the deadline passes: :class:`~virtabs.spi.OperationTimeoutError` naming the call and the
  object, and the connection is **abandoned**: libvirt is asked to close it (in the background,
  since closing waits for the peer too) and every later call raises
  :class:`~virtabs.spi.ConnectError` saying why. The call's outcome on the host is unknown.
* Ctrl-C (``KeyboardInterrupt``) while waiting: the same abandonment, then the interrupt goes on
  with a note saying the connection is closed.

A worker stuck in C stays blocked until libvirt gives up on the peer (the driver enables libvirt's
keepalive, which closes a connection whose peer stays silent) or the process exits: workers are
daemon threads, so a hung peer never blocks interpreter exit.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from virtabs.spi import ConnectError, Deadline, OperationTimeoutError

__all__ = ["Calls", "Guarded", "block_signals"]


class _Job:
    __slots__ = ("args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Worker:
    """A daemon thread running one job at a time; back on the idle list after each job."""

    def __init__(self, pool: Calls) -> None:
        self.inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pool = pool
        threading.Thread(target=self._run, name="virtabs-libvirt-call", daemon=True).start()

    def _run(self) -> None:
        block_signals()
        while True:
            job = self.inbox.get()
            if job is None:  # the connection was abandoned while this worker was idle
                return
            try:
                job.result = job.fn(*job.args)
            except BaseException as exc:  # handed to the caller's thread, which re-raises it
                job.error = exc
            job.done.set()
            del job
            if not self._pool._finished(self):
                return


class Calls:
    """Runs one connection's libvirt calls on worker threads, each bounded by ``timeout`` seconds.

    ``peer`` names the libvirt URI in messages. When a call times out or is interrupted the
    connection is abandoned: later calls raise ConnectError, and the close set with
    :meth:`on_abandon` runs once no call is in flight any more (libvirt forbids closing a
    connection another thread is using: the close waits for the stuck call to end, which libvirt's
    keepalive or the peer's own death brings).
    """

    def __init__(self, timeout: float | None, peer: str) -> None:
        self.timeout = timeout
        self.peer = peer
        self._lock = threading.Lock()
        self._idle_workers: list[_Worker] = []
        self._in_flight = 0
        self._close: Callable[[], None] | None = None
        self.broken: str | None = None
        """Why the connection was abandoned (None while usable)."""

    def on_abandon(self, close: Callable[[], None]) -> None:
        """What abandoning the connection does once no call is in flight (close the native connection)."""
        self._close = close

    def _take_close(self) -> Callable[[], None] | None:
        """The close to run now (lock held): abandoned, nothing in flight, not yet taken."""
        if self.broken is None or self._in_flight:
            return None
        close, self._close = self._close, None
        return close

    def _finished(self, worker: _Worker) -> bool:
        """A worker's job ended: back to the idle list, or (abandoned) end it, closing if it was the last."""
        with self._lock:
            self._in_flight -= 1
            if self.broken is None:
                self._idle_workers.append(worker)
                return True
            close = self._take_close()
        if close is not None:
            _quietly(close)()
        return False

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self.broken is not None:
                raise ConnectError(self.broken)
            worker = self._idle_workers.pop() if self._idle_workers else None
            self._in_flight += 1
        (worker or _Worker(self)).inbox.put(job)

    def run(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        timeout: float | None = None,
        orphan: Callable[[Any], None] | None = None,
    ) -> Any:
        """``fn(*args)`` on a worker; ``what`` names the call and its object for the timeout error.

        ``timeout`` overrides the connection's for this call (the connect uses its own default);
        ``orphan`` receives the result of a call that was given up on, if it ever ends (to close a
        connection that opened too late).
        """
        limit = self.timeout if timeout is None else timeout
        job = _Job(fn, args)
        self._submit(job)
        try:
            finished = _wait(job.done, limit)
        except BaseException as exc:  # KeyboardInterrupt (Ctrl-C) while waiting in the main thread
            _adopt(job, orphan)
            self.abandon(f"{what} was interrupted before libvirt at {self.peer} answered")
            if not job.done.is_set():
                exc.add_note(
                    f"virtabs-libvirt: {what} was interrupted while libvirt at {self.peer} had not answered; "
                    "its outcome is unknown and the connection is closed"
                )
            raise
        if not finished:
            _adopt(job, orphan)
            why = f"libvirt at {self.peer} did not answer {what} within {limit:g}s"
            self.abandon(why)
            raise OperationTimeoutError(f"{why}; its outcome is unknown and the connection is closed")
        if job.error is not None:
            raise job.error
        return job.result

    def shutdown(self) -> None:
        """The connection was closed normally: idle workers end; later calls raise ConnectError."""
        with self._lock:
            self._close = None
            if self.broken is None:
                self.broken = f"the libvirt connection to {self.peer} is closed"
            idle, self._idle_workers = self._idle_workers, []
        for worker in idle:
            worker.inbox.put(None)

    def abandon(self, why: str) -> None:
        """Mark the connection unusable; it is closed (in the background) once no call is in flight."""
        with self._lock:
            if self.broken is not None:
                return
            self.broken = f"the libvirt connection to {self.peer} is closed: {why}; open a new connection"
            idle, self._idle_workers = self._idle_workers, []
            close = self._take_close()
        for worker in idle:
            worker.inbox.put(None)
        if close is not None:
            threading.Thread(target=_quietly(close), name="virtabs-libvirt-close", daemon=True).start()


_SLICE = 0.25
"""Longest single wait: the Python-level signal handler (Ctrl-C) runs between slices even when the
kernel delivered SIGINT to another thread than the waiting one."""


def _wait(done: threading.Event, limit: float | None) -> bool:
    """Wait for ``done`` up to ``limit`` seconds (None: forever), in slices; True once set."""
    deadline = Deadline(limit)
    while not done.wait(deadline.remaining(_SLICE)):
        if deadline.expired:
            return False
    return True


def block_signals() -> None:
    """Keep SIGINT and SIGTERM away from the calling (worker) thread: they belong to the main thread."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _adopt(job: _Job, orphan: Callable[[Any], None] | None) -> None:
    """Hand the result of an abandoned call to ``orphan`` once (if ever) it arrives."""
    if orphan is None:
        return

    def wait() -> None:
        job.done.wait()
        if job.error is None:
            with contextlib.suppress(Exception):
                orphan(job.result)

    threading.Thread(target=wait, name="virtabs-libvirt-orphan", daemon=True).start()


def _quietly(fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(Exception):
            fn()

    return run


def _describe(obj: Any) -> str:
    """What a libvirt object is, from data libvirt-python holds locally (no call to the peer)."""
    kind = type(obj).__name__
    names = {
        "virDomain": ("domain", "name"),
        "virStoragePool": ("pool", "name"),
        "virStorageVol": ("volume", "name"),
        "virDomainSnapshot": ("snapshot", "getName"),
        "virNetwork": ("network", "name"),
    }
    if kind in names:
        label, getter = names[kind]
        with contextlib.suppress(Exception):
            return f"{label} '{getattr(obj, getter)()}'"
    return "the connection" if kind == "virConnect" else kind


def _wrap(value: Any, calls: Calls) -> Any:
    if type(value).__module__ == "libvirt" and type(value).__name__.startswith("vir"):
        return Guarded(value, calls)
    if isinstance(value, list) and value and type(value[0]).__module__ == "libvirt":
        return [_wrap(v, calls) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    return value._obj if isinstance(value, Guarded) else value


_LOCAL = frozenset({"name", "UUIDString", "UUID", "getName", "key"})
"""Getters libvirt answers from the object itself (virDomainGetName, virDomainGetUUIDString,
virDomainSnapshotGetName, virStorageVolGetKey ...), never from the peer."""


class Guarded:
    """A libvirt object whose method calls go through :class:`Calls`.

    Objects a call returns (domains, pools, volumes, snapshots, lists of them) are guarded too;
    guarded arguments are unwrapped before libvirt sees them.
    """

    __slots__ = ("_calls", "_obj")

    def __init__(self, obj: Any, calls: Calls) -> None:
        self._obj = obj
        self._calls = calls

    @property
    def native(self) -> Any:
        """The libvirt-python object itself."""
        return self._obj

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self._obj, name)
        if name in _LOCAL:
            return method  # answered from what libvirt-python holds: no call to the peer
        calls = self._calls

        def call(*args: Any) -> Any:
            what = f"{name}() on {_describe(self._obj)}"
            return _wrap(calls.run(what, method, *(_unwrap(a) for a in args)), calls)

        return call

    def __repr__(self) -> str:
        return f"<guarded {_describe(self._obj)} of {self._calls.peer}>"

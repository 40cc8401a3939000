"""QMP sessions: one locked conversation with a domain's QEMU, and QEMU's refusals as virtabs errors.

A session holds the domain lock (threads and processes: one conversation per domain at a time),
opens a fresh QMP connection, and afterwards hands the events QEMU sent meanwhile to the event
room. Every :class:`~virtabs_qemu._qmp.QMPError` that leaves a session is translated by
:data:`QMP_ERRORS`; where only QEMU can refuse atomically (a second job on a busy node, a job
that is not ready to complete, an image another process has locked) the refusal becomes the same
error class the core's rule would have raised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from virtabs.spi import (
    BlockCopyActiveError,
    ConnectError,
    DomainState,
    ErrorMap,
    InvalidArgumentError,
    OperationFailedError,
    OperationInvalidError,
    VirtabsError,
    quote,
)

from ._process import Processes
from ._qmp import QMPClient, QMPError
from ._store import DefinitionStore

__all__ = ["QMP_ERRORS", "Sessions", "device_node", "image_chain", "node_for_path", "state_of"]

EventHandler = Callable[[str, list[dict[str, Any]]], None]


def _says(*fragments: str, also: str = "") -> Callable[[BaseException], bool]:
    """A QMPError whose reason contains one of ``fragments`` (and ``also``, when given)."""

    def match(exc: BaseException) -> bool:
        if not isinstance(exc, QMPError):
            return False
        desc = exc.desc.lower()
        return any(f.lower() in desc for f in fragments) and also.lower() in desc

    return match


def _describe(exc: BaseException) -> str:
    if isinstance(exc, QMPError):
        return f"{exc.command}: {exc.desc}" if exc.command else exc.desc
    return str(exc)


QMP_ERRORS = ErrorMap(
    [
        # A second job on a disk: the job id (vtb-<disk>) is taken, the node is in a job, or a job's
        # filter node sits above the disk's format node (which then is no longer a root node).
        (_says("already in use", "is busy", "in use by block job", "need a root block node"), BlockCopyActiveError),
        # job-complete of a job that is not ready (the core checked readiness; QEMU has the last word).
        (_says("cannot be completed", "cannot accept command verb 'complete'"), BlockCopyActiveError),
        (_says("job", also="not found"), OperationInvalidError),
        (_says('failed to get "write" lock', 'failed to get "consistent read" lock'), OperationInvalidError),
        (lambda e: isinstance(e, QMPError) and e.qmp_class == "DeviceNotFound", OperationInvalidError),
    ],
    default=OperationFailedError,
    describe=_describe,
)
"""QEMU's refusals → virtabs errors (anything else QEMU refuses: OperationFailedError)."""

_RUNNING = {"running": DomainState.RUNNING, "debug": DomainState.RUNNING}
_PAUSED = {
    "paused",
    "prelaunch",
    "inmigrate",
    "postmigrate",
    "finish-migrate",
    "restore-vm",
    "save-vm",
    "suspended",
    "watchdog",
    "colo",
    "internal-error",
    "io-error",
}


def state_of(status: dict[str, Any]) -> tuple[DomainState, str]:
    """The public state and QEMU's own word for it, from a ``query-status`` reply (TypeError when the
    reply is not the object with a string ``status`` QEMU sends: the session reports a malformed reply)."""
    native = status.get("status", "unknown")
    if not isinstance(native, str):
        raise TypeError(f"query-status gave status {quote(native)}, not a string")
    if native in _RUNNING:
        return DomainState.RUNNING, native
    if native in _PAUSED:
        return DomainState.PAUSED, native
    if native == "shutdown":
        return DomainState.SHUTDOWN, native
    if native == "guest-panicked":
        return DomainState.CRASHED, native
    return DomainState.NOSTATE, native


class Sessions:
    """Opens QMP sessions with the domains of one state root."""

    def __init__(self, store: DefinitionStore, processes: Processes, timeout: float) -> None:
        self.store = store
        self.processes = processes
        self.timeout = timeout
        self.on_events: EventHandler = lambda _name, _events: None
        """Called after every session with the QMP events it received (set by the event room)."""

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[QMPClient]:
        """Hold the domain lock and a fresh QMP connection; QMP refusals leave as virtabs errors.

        No QEMU to talk to is OperationInvalidError "is not running" (the socket is the native fact).
        """
        what = f"domain {quote(name)}"
        with self.store.lock(name).hold():
            client = QMPClient(self.store.dirs.qmp_socket(name), timeout=self.timeout, what=what)
            try:
                client.connect()
            except (ConnectError, QMPError):
                if self._gone(name):
                    raise OperationInvalidError(f"domain {quote(name)} is not running") from None
                raise
            try:
                with self.translated(name):
                    yield client
            finally:
                events = client.take_events()
                client.close()
                self.on_events(name, events)

    @contextlib.contextmanager
    def translated(self, name: str) -> Iterator[None]:
        """What leaves a conversation with ``name``'s QEMU as virtabs errors: QMP refusals by
        :data:`QMP_ERRORS`, replies of the wrong shape as OperationFailedError, a connection QEMU closed
        because it exited as OperationInvalidError "is not running"."""
        what = f"domain {quote(name)}"
        try:
            with QMP_ERRORS(what):
                yield
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            if isinstance(exc, VirtabsError):  # InvalidArgumentError is a ValueError too
                raise
            # A reply of the wrong shape (a broken or impostor monitor): never a raw exception.
            raise OperationFailedError(
                f"{what}: QEMU's monitor gave a reply of an unexpected shape ({type(exc).__name__}: {exc})"
            ) from None
        except ConnectError:
            if self._gone(name):  # QEMU exited during the conversation (a guest power-off)
                raise OperationInvalidError(f"domain {quote(name)} is not running (QEMU exited)") from None
            raise

    def _gone(self, name: str) -> bool:
        """After a lost or refused QMP connection: True when QEMU has gone (or goes within 2 s)."""
        pid = self.processes.pid(name)
        return pid is None or self.processes.wait_gone(pid, 2.0)

    def state(self, name: str) -> tuple[DomainState, str]:
        """The domain's state from ``query-status`` (shut off or crashed without a QEMU)."""
        with self.store.lock(name).hold():
            if self.processes.pid(name) is not None:
                try:
                    with self.open(name) as q:
                        return state_of(q.execute("query-status"))
                except OperationInvalidError:
                    pass
            return self.down_state(name)

    def down_state(self, name: str) -> tuple[DomainState, str]:
        """The state of a domain without a QEMU: crashed (a pidfile left behind) or shut off."""
        return (DomainState.CRASHED, "crashed") if self.processes.crashed(name) else (DomainState.SHUTOFF, "shutoff")

    def quit(self, name: str) -> None:
        """Ask QEMU to exit now (best effort, short timeout: the caller kills it otherwise)."""
        client = QMPClient(self.store.dirs.qmp_socket(name), timeout=2.0, what=f"domain {quote(name)}")
        with contextlib.suppress(VirtabsError, QMPError, OSError), client:
            client.execute("quit")


def device_node(q: QMPClient, target: str) -> dict[str, Any] | None:
    """The ``inserted`` entry (top node, image chain) of the device whose qdev id is ``target`` (query-block)."""
    for entry in q.execute("query-block"):
        qdev = str(entry.get("qdev", ""))
        if qdev in (target, f"/machine/peripheral/{target}") or qdev.startswith(f"/machine/peripheral/{target}/"):
            inserted = entry.get("inserted")
            return dict(inserted) if isinstance(inserted, dict) else None
    return None


def image_chain(inserted: dict[str, Any]) -> list[tuple[str, str]]:
    """``(path, format)`` of every layer QEMU has open for a device, top first (from query-block's image)."""
    layers = []
    image = inserted.get("image")
    while isinstance(image, dict):
        layers.append((str(image.get("filename", "")), str(image.get("format", ""))))
        image = image.get("backing-image")
    return layers


def node_for_path(q: QMPClient, path: str) -> str:
    """The format node whose image is ``path`` (query-named-block-nodes)."""
    want = os.path.realpath(path)
    for node in q.execute("query-named-block-nodes", {"flat": True}):
        if node.get("drv") in ("file", "host_device"):
            continue
        if os.path.realpath(str(node.get("file", ""))) == want:
            return str(node["node-name"])
    raise InvalidArgumentError(f"image {path} is not part of the disk's open backing chain")

"""``virtabs-remote``: the helper ssh starts on a remote host for the life of one channel.

It speaks the protocol of :mod:`virtabs.remote._protocol` on its stdin/stdout. Everything variable
arrives over the channel (the handshake, then ``open`` with the local URI, read-only and timeout),
never on its command line. Each session is a connection opened through the public API
(:func:`virtabs.open`), and every call passes that connection's gate again: the client's checks are
repeated here, so a peer that speaks the protocol directly skips no rule, and a read-only session is
read-only here. Only rows of the operation table (and the calls of :data:`CLIENT_CALLS`) are served:
a method name is looked up in the table, never in the driver object.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import threading
from typing import Any, BinaryIO

from .. import _rules
from .._capabilities import Capability
from .._connection import Connection, Subscription
from .._errors import InvalidArgumentError, NotSupportedError, OperationInvalidError, VirtabsError
from .._models import DomainRef, DomainSpec, Event, MigrationRequest, MigrationTicket
from .._uri import parse_uri
from ..spi import OPERATIONS
from ._protocol import (
    CLIENT_CALLS,
    PROTOCOL_VERSION,
    FrameTooLarge,
    ProtocolError,
    encode_value,
    error_to_wire,
    method_schema,
    read_frame,
    table_methods,
    write_frame,
)

__all__ = ["Helper", "main"]

log = logging.getLogger("virtabs.remote")

WORKERS = 8
"""Calls served at once on one channel (more wait their turn; replies may come back out of order)."""
HANDOFF_AFTER = 0.002
"""Seconds a call may run on the reading thread before another worker takes over reading (see
:meth:`Helper._loop`): a quick call costs no thread hand-off, a slow one holds up the next for at most
about twice this long."""
IDLE_TICKS = 50
"""Checks without a call running after which the hand-off watcher sleeps until the next call."""


def _version() -> str:
    import virtabs

    return str(virtabs.__version__)


class _Session:
    """One connection opened by the client over this channel."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.subscription: Subscription | None = None
        self.prepared: dict[str, tuple[MigrationTicket, MigrationRequest]] = {}
        """Migrations this session prepared and has not finished, by destination domain name: discarded
        when the session ends without finishing them (the client died mid-migration)."""
        self.performing: dict[str, tuple[DomainRef, MigrationRequest]] = {}
        """Source domains whose perform runs now, by name: aborted when the session ends (no finish can
        follow); one that completes all the same resumes its guest (confirm, unsuccessful)."""
        self.closed = False
        """Set once the session ended; a perform still running then closes the connection when it ends."""
        self.lock = threading.Lock()


class Helper:
    """Serves one channel: ``rfile`` carries the client's frames, ``wfile`` the helper's."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, *, workers: int = WORKERS) -> None:
        self._rfile = rfile
        self._wfile = wfile
        self._write_lock = threading.Lock()
        self._sessions: dict[int, _Session] = {}
        self._sessions_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._workers = workers
        self._read_lock = threading.Lock()
        self._role_guard = threading.Lock()
        self._inline: object | None = None
        self._busy = threading.Event()
        self._finished = threading.Event()
        self._status = 0
        self._broken = False

    # --- writing ------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if self._broken:
            return
        try:
            with self._write_lock:
                write_frame(self._wfile, message)
        except (OSError, ValueError):
            self._broken = True  # the client is gone: the read loop sees EOF next

    def _send_error(self, request_id: Any, exc: BaseException) -> None:
        reply_id = request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None
        self._send({"type": "reply", "id": reply_id, "error": error_to_wire(exc)})

    # --- the loop -----------------------------------------------------------------------------

    def serve(self) -> int:
        """Run until the client closes the channel; the exit status (0: clean end, 2: protocol refused)."""
        try:
            if not self._handshake():
                return 2
            return self._loop()
        finally:
            self._close_sessions()

    def _handshake(self) -> bool:
        try:
            hello = read_frame(self._rfile)
        except ProtocolError as exc:
            self._send({"type": "error", "error": error_to_wire(exc)})
            return False
        if hello is None:
            return False
        versions = hello.get("versions")
        if hello.get("type") != "hello" or not isinstance(versions, list):
            err = ProtocolError("the first message must be a hello with the protocol versions the client speaks")
            self._send({"type": "error", "error": error_to_wire(err)})
            return False
        if PROTOCOL_VERSION not in versions:
            spoken = ", ".join(str(v) for v in versions) or "none"
            err = ProtocolError(
                f"protocol version mismatch: the client (virtabs {str(hello.get('client', '?'))[:40]}) speaks "
                f"version {spoken}, this helper (virtabs {_version()}) speaks version {PROTOCOL_VERSION}; "
                "install the same virtabs release on both hosts"
            )
            self._send({"type": "error", "error": error_to_wire(err)})
            return False
        self._send(
            {
                "type": "welcome",
                "version": PROTOCOL_VERSION,
                "server": _version(),
                "methods": [*table_methods(), *CLIENT_CALLS],
            }
        )
        return True

    def _loop(self) -> int:
        """Leader/followers without a hand-off per call: the worker holding the read lock (the leader)
        reads a frame and serves it itself, keeping the lock, then reads the next one; a quick call thus
        costs no thread switch (measured: one switch per call took about 40 % of the helper's throughput).
        When a call is still running after :data:`HANDOFF_AFTER` seconds, the watcher releases the read
        lock on the leader's behalf, so a follower reads the calls that come meanwhile: several calls stay
        in flight on one channel, and a slow one never holds up the others for long."""
        for index in range(self._workers):
            threading.Thread(target=self._work, name=f"virtabs-remote-{index}", daemon=True).start()
        threading.Thread(target=self._watch_handoff, name="virtabs-remote-handoff", daemon=True).start()
        self._finished.wait()
        self._busy.set()  # the watcher sees the end
        return self._status

    def _finish(self, status: int) -> None:
        self._status = status
        self._finished.set()

    def _work(self) -> None:
        while not self._finished.is_set():
            self._read_lock.acquire()
            leading = True
            while leading:
                if self._finished.is_set():
                    self._read_lock.release()  # the followers waiting for it see the end too
                    return
                message = self._next_message()
                if message is None:
                    continue
                if message["type"] != "call":
                    self._serve_other(message)
                    continue
                token = object()
                self._inline = token  # before looking at _busy: see _watch_handoff
                if not self._busy.is_set():
                    self._busy.set()
                self._serve_call(message)
                with self._role_guard:
                    leading = self._inline is token  # else the watcher handed the read lock on
                    if leading:
                        self._inline = None

    def _next_message(self) -> dict[str, Any] | None:
        """The next frame (call with the read lock held); None after a refused frame or at the end."""
        try:
            message = read_frame(self._rfile)
        except FrameTooLarge as exc:
            self._send({"type": "error", "error": error_to_wire(exc)})
            self._finish(2)  # the rest of the stream cannot be framed again
            return None
        except ProtocolError as exc:
            self._send({"type": "error", "error": error_to_wire(exc)})
            return None
        except (OSError, ValueError):
            self._finish(0)
            return None
        if message is None:
            self._finish(0)
        return message

    def _serve_other(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping":
            self._send({"type": "pong", "id": message.get("id")})
        elif kind != "pong":
            self._send_error(message.get("id"), ProtocolError(f"unknown message type {kind[:40]!r}"))

    def _watch_handoff(self) -> None:
        """Release the read lock for a follower when the leader's call outlives :data:`HANDOFF_AFTER`.

        Polls only while calls come (every HANDOFF_AFTER seconds), and sleeps on ``_busy`` otherwise.
        The leader sets ``_inline`` before it looks at ``_busy``; this thread clears ``_busy`` before it
        looks at ``_inline`` again, so a call that starts meanwhile is always watched.
        """
        seen: object | None = None
        idle = 0
        while not self._finished.is_set():
            self._busy.wait()
            if self._finished.wait(HANDOFF_AFTER):
                return
            with self._role_guard:
                current = self._inline
                if current is not None and current is seen:
                    self._inline = None
                    self._read_lock.release()
                    current = None
            seen = current
            idle = 0 if current is not None else idle + 1
            if idle >= IDLE_TICKS:
                self._busy.clear()
                if self._inline is not None:
                    self._busy.set()
                idle = 0

    # --- calls ----------------------------------------------------------------------------------

    def _serve_call(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        try:
            if not isinstance(request_id, int) or isinstance(request_id, bool):
                raise ProtocolError("a call needs an integer 'id'")
            result = self._call(message.get("method"), message.get("session"), message.get("args", {}))
        except BaseException as exc:  # every failure goes back to the client as a typed error
            if not isinstance(exc, VirtabsError):
                log.debug("remote call failed", exc_info=True)
            self._send_error(request_id, exc)
            return
        self._send({"type": "reply", "id": request_id, "result": result})

    def _call(self, method: Any, session_id: Any, args: Any) -> Any:
        if not isinstance(method, str):
            raise ProtocolError("a call needs a string 'method'")
        if not isinstance(args, dict):
            raise ProtocolError(f"{method[:40]}: 'args' must be an object")
        if method == "open":
            return self._open(args)
        session = self._session(session_id)
        if method == "close":
            self._close(session_id)
            return None
        if method == "events.start":
            if session.subscription is None:
                sid = session_id
                session.subscription = session.conn.subscribe(lambda event: self._push_event(sid, event))
            return None
        if method == "events.stop":
            if session.subscription is not None:
                session.subscription.close()
                session.subscription = None
            return None
        if method not in OPERATIONS:
            raise NotSupportedError(
                f"unknown method {method[:60]!r}: this helper (virtabs {_version()}) serves the rows of its "
                "operation table only"
            )
        schema = method_schema(method)
        kwargs = schema.decode_args(args)
        if method == "migrate_perform":
            value = self._perform(session, kwargs)
        else:
            value = _dispatch(session.conn, method, kwargs)
        if method == "migrate_prepare" and isinstance(value, MigrationTicket) and not kwargs["request"].offline:
            session.prepared[value.domain.name] = (value, kwargs["request"])
        elif method == "migrate_finish" and isinstance(kwargs.get("ticket"), MigrationTicket):
            session.prepared.pop(kwargs["ticket"].domain.name, None)
        return encode_value(value, schema.result, method)

    def _perform(self, session: _Session, kwargs: dict[str, Any]) -> Any:
        """``migrate_perform``, known to :meth:`_close` while it runs. One that completes after its session
        ended resumes the guest here: its reply reaches no one, so no finish runs and the destination (its
        helper, or the dead client's guard) is discarded."""
        dom, request = kwargs["dom"], kwargs["request"]
        with session.lock:
            if session.closed:
                raise OperationInvalidError("the session is closed")
            session.performing[dom.name] = (dom, request)
        try:
            value = _dispatch(session.conn, "migrate_perform", kwargs)
        finally:
            with session.lock:
                session.performing.pop(dom.name, None)
                orphaned, last = session.closed, session.closed and not session.performing
        if orphaned:
            log.warning("the migration of domain %r completed after its client went away: resuming it", dom.name)
            with contextlib.suppress(Exception):
                session.conn._gate.driver.migrate_confirm(dom, request, False)
        if last:
            with contextlib.suppress(VirtabsError):
                session.conn.close()
        return value

    def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        import virtabs

        uri = args.get("uri")
        readonly = args.get("readonly", False)
        timeout = args.get("timeout")
        if not isinstance(uri, str) or not isinstance(readonly, bool):
            raise ProtocolError("open needs 'uri' (text) and 'readonly' (true or false)")
        if timeout is not None and (not isinstance(timeout, int | float) or isinstance(timeout, bool)):
            raise ProtocolError("open: 'timeout' must be a number or null")
        parsed = parse_uri(uri)
        if parsed.host or parsed.transport:
            raise InvalidArgumentError(
                f"the remote helper opens local URIs only (driver:///path), not {parsed.scheme}://{parsed.host or ''}"
            )
        conn = virtabs.open(uri, readonly=readonly, timeout=timeout)
        caps = conn.capabilities
        with self._sessions_lock:
            session_id = next(self._ids)
            self._sessions[session_id] = _Session(conn)
        return {
            "session": session_id,
            "driver": conn.driver_name,
            "capabilities": sorted(c.value for c in caps.supported),
            "notes": {c.value: text for c, text in caps.notes.items()},
            "dropped": {c.value: text for c, text in caps.dropped.items()},
        }

    def _session(self, session_id: Any) -> _Session:
        with self._sessions_lock:
            session = self._sessions.get(session_id) if isinstance(session_id, int) else None
        if session is None:
            raise OperationInvalidError(f"no open session {str(session_id)[:20]} on this channel")
        return session

    def _close(self, session_id: int) -> None:
        with self._sessions_lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            for ticket, request in session.prepared.values():
                # The client never came back with finish: its half-made destination must not stay.
                log.warning("discarding the unfinished migration of domain %r", ticket.domain.name)
                with contextlib.suppress(Exception):
                    session.conn._gate.driver.migrate_finish(ticket, request, False)
            with session.lock:
                session.closed = True
                performing = list(session.performing.values())
            for dom, _request in performing:
                # No finish can follow: stop it (it rolls back); the last perform to end closes the connection.
                log.warning("aborting the migration of domain %r: its client went away", dom.name)
                with contextlib.suppress(Exception):
                    session.conn._gate.driver.migrate_abort(dom)
            if performing:
                return
            with contextlib.suppress(VirtabsError):
                session.conn.close()

    def _close_sessions(self) -> None:
        with self._sessions_lock:
            ids = list(self._sessions)
        for session_id in ids:
            self._close(session_id)

    def _push_event(self, session_id: int, event: Event) -> None:
        try:
            data = encode_value(event, Event, "event")
        except ProtocolError:
            log.warning("an event could not be encoded: %r", event)
            return
        self._send({"type": "event", "session": session_id, "event": data})


def _dispatch(conn: Connection, method: str, kwargs: dict[str, Any]) -> Any:
    """Call SPI ``method`` through ``conn``'s gate: the row's rules, plus the argument rules the public
    layer applies before the gate (which a client speaking the protocol directly would otherwise skip)."""
    gate = conn._gate
    op = OPERATIONS[method]
    what = f"remote {method}"
    dom = kwargs.get("dom")
    dom = dom if isinstance(dom, DomainRef) else None
    disk = kwargs.get("disk", kwargs.get("target"))
    disk = disk if isinstance(disk, str) else None
    extra: list[Capability] = []
    _check_arguments(method, kwargs, what)
    if method == "block_copy" and dom is not None and disk is not None:
        request = kwargs["request"]
        _rules.check_copy_kind(request, what)
        extra = _rules.copy_capabilities(request)
        gate.check(op, what, extra=extra)
        _rules.check_copy_destination(request, what)
        with gate.translate(what):
            disks = gate.driver.disks(dom)
        info = _rules.find_disk(disks, disk, what, dom.name)
        kwargs["request"] = _rules.settle_copy_request(request, info, what)
    elif not op.needs_status and method != "block_job_abort":
        return gate.read(op, lambda: what, getattr(gate.driver, method), **kwargs)
    with gate(op, what, dom=dom, disk=disk, extra=extra) as call:
        if method == "block_job_abort" and kwargs.get("pivot"):
            gate.require((Capability.BLOCK_COPY_PIVOT, Capability.BLOCK_COMMIT), what)
            if call.job is not None:
                gate.require(_rules.pivot_capability(call.job, what), what)
                _rules.check_ready_for_pivot(call.job, what)
        return getattr(call.driver, method)(**kwargs)


def _check_arguments(method: str, kwargs: dict[str, Any], what: str) -> None:
    """The public layer's argument rules for paths and names, applied again on this host."""
    path = kwargs.get("path")
    if isinstance(path, str):
        _rules.require_host_path(path, f"{what} path")
    spec = kwargs.get("spec")
    if isinstance(spec, DomainSpec):
        for disk in spec.disks:
            _rules.require_host_path(disk.path, f"path of disk {disk.target!r}")
    if method in ("create_snapshot",):
        _rules.require_name(kwargs.get("name"), "snapshot name")
    if method == "create_volume":
        _rules.require_volume_name(kwargs.get("name"), new=True)


def main(argv: list[str] | None = None) -> int:
    """The ``virtabs-remote`` entry point: serve the protocol on stdin/stdout until EOF.

    It takes no arguments (ssh joins arguments into a shell string on this side; everything variable
    comes over the channel instead). Anything the process prints by mistake goes to stderr, so it can
    never corrupt the stream.
    """
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        print(f"virtabs-remote {_version()} (protocol version {PROTOCOL_VERSION})")
        return 0
    if args:
        print(
            "usage: virtabs-remote (no arguments: ssh starts it and the client speaks the virtabs remote "
            "protocol on its stdin and stdout; see docs/remote.md)",
            file=sys.stderr,
        )
        return 2
    rfile = os.fdopen(os.dup(0), "rb")
    wfile = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol stream
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="virtabs-remote: %(message)s")
    status = Helper(rfile, wfile, workers=WORKERS).serve()
    sys.stderr.flush()
    os._exit(status)  # calls still running in workers must not hold the process after EOF

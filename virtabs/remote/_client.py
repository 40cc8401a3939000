"""The client side: ``DRIVER+ssh://[user@]host[:port]/PATH?...`` as a driver that speaks to ``virtabs-remote``.

A :class:`Channel` is one ssh child process (a session on the command transport's master connection)
running the helper; every connection of this process to the same ssh endpoint shares it, each as a
session of its own (so two connections to one remote ``test:///node.json`` see one node, as two local
connections do). :class:`RemoteDriver` forwards every row of the operation table as one call; its
methods are generated from :data:`virtabs.spi.OPERATIONS` when this module is imported, so a new row
needs no edit here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from .._capabilities import Capabilities, Capability
from .._errors import (
    ConnectError,
    DriverUnavailableError,
    InvalidArgumentError,
    OperationTimeoutError,
    VirtabsError,
    quote,
)
from .._models import Event
from .._uri import URI
from ..spi import OPERATIONS, CommandTransport, ConnectOptions, Deadline, Driver
from ._protocol import (
    NOTHING_YET,
    PROTOCOL_VERSION,
    FrameReader,
    ProtocolError,
    decode_value,
    encode_frame,
    error_from_wire,
    method_schema,
)

__all__ = [
    "CLIENT_PARAMS",
    "DEFAULT_HELPER",
    "SSH_PARAMS",
    "Channel",
    "RemoteDriver",
    "remote_driver_class",
    "start_limit",
]

log = logging.getLogger("virtabs.remote")

DEFAULT_HELPER = "virtabs-remote"
"""The helper's command on the remote host (found on the PATH sshd gives the session)."""

SSH_PARAMS = frozenset({"keyfile", "known_hosts", "no_verify", "helper"})
"""URI parameters the client's ssh uses (connections that agree on them share one channel)."""
CLIENT_PARAMS = SSH_PARAMS | {"start_timeout"}
"""URI parameters the client takes for itself; every other parameter goes to the remote URI."""

MULTIPLEXED = False
"""Whether the channel is a session on the command transport's master connection (True) or an ssh
connection of its own (False, the default: a channel lives as long as its ssh process, so a master would
add a process and a round trip to every set-up and an ``ssh -O exit`` to every close, and share nothing)."""
DEFAULT_CALL_TIMEOUT = 300.0
"""How long a call waits for its reply when the connection has no timeout."""
KEEPALIVE_INTERVAL = 5.0
"""Seconds of silence from the helper before the client pings it."""
KEEPALIVE_COUNT = 3
"""Unanswered intervals after which the channel is declared dead (as libvirt's keepalive_count)."""
TUNNEL_DRIVERS = frozenset({"qemu"})
"""Drivers whose migration streams are unix sockets (or TCP addresses) the client can forward over ssh
(:mod:`virtabs.remote._tunnel`): a remote connection of one of them declares ``domain.migrate.tunnelled``."""
SSH_CONNECT_TIMEOUT = 30.0
"""ssh's ``ConnectTimeout`` (seconds) when the connection has no timeout."""
_STDERR_KEEP = 4000
_STDERR_DRAIN_SECONDS = 2.0
"""How long a failed start waits for the last bytes ssh wrote to stderr after it exited."""
_CALLER_READS = 0.05
"""Seconds: a caller waits this long at most per read attempt; the background reader steps back for this
long after a call, so that callers read their own replies."""


def remote_uri(uri: URI) -> str:
    """The local URI the helper opens: ``uri`` without transport, user, host, port and ssh parameters."""
    params = {k: v for k, v in uri.params.items() if k not in CLIENT_PARAMS}
    query = urllib.parse.urlencode(params, safe="/")
    return f"{uri.driver}://{uri.path}" + (f"?{query}" if query else "")


def start_limit(uri: URI, timeout: float | None) -> float:
    """Seconds a connection's set-up may take: ssh's connection and authentication, the helper's start, the
    handshake and the remote open, one deadline for them all.

    ``?start_timeout=SECONDS`` when the URI gives it (a far side whose first start compiles every module can
    take a minute while its calls stay quick), else the connection's ``timeout`` (which bounds every call;
    the set-up is one), else :data:`DEFAULT_CALL_TIMEOUT`, as long as any call waits without a timeout.
    """
    raw = uri.param("start_timeout")
    if raw is None:
        return DEFAULT_CALL_TIMEOUT if timeout is None else timeout
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise InvalidArgumentError(f"start_timeout={quote(raw)}: a number of seconds greater than 0")
    return seconds


@attrs.frozen
class SentCall:
    """A call sent on a channel, whose reply :meth:`Channel.finish_call` waits for."""

    request_id: int
    method: str
    pending: _Pending


class _Pending:
    """A call waiting for its reply. ``wake`` is set when the reply came (``done``) and also when the
    caller should take over reading the stream (the previous reader left with calls still waiting)."""

    __slots__ = ("done", "error", "result", "wake")

    def __init__(self) -> None:
        self.done = False
        self.wake = threading.Event()
        self.result: Any = None
        self.error: VirtabsError | None = None

    def finish(self) -> None:
        """The reply (or the channel's death) arrived: wake the caller."""
        self.done = True
        self.wake.set()


class Channel:
    """One ssh child running the helper: framed calls with ids, events, keepalive, and death detection.

    After the channel died (ssh or the helper exited, the keepalive went unanswered, a frame was
    malformed) every pending call raises :class:`ConnectError` at once and every later call fails fast.
    """

    def __init__(self, uri: URI, connect_timeout: float) -> None:
        """``connect_timeout`` is ssh's ``ConnectTimeout``; :meth:`start` takes the set-up's deadline."""
        self.helper = uri.param("helper") or DEFAULT_HELPER
        ssh_uri = URI(
            driver=uri.driver,
            transport="ssh",
            user=uri.user,
            host=uri.host,
            port=uri.port,
            path="/",
            params={k: v for k, v in uri.params.items() if k in ("keyfile", "known_hosts", "no_verify")},
        )
        self.ssh_uri = ssh_uri
        """The ssh endpoint (user, host, port, ssh parameters): a migration's stream forward uses it too."""
        self.transport = CommandTransport(ssh_uri, connect_timeout=connect_timeout)
        self.where = self.transport.where
        self.connect_timeout = connect_timeout
        self.users = 0
        self.server_version = "?"
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._sinks: dict[int, Callable[[Event], None]] = {}
        self._dead: ConnectError | None = None
        self._last_heard = time.monotonic()
        self._last_call = 0.0
        self._read_lock = threading.Lock()
        self._reader: FrameReader | None = None
        self._stderr = bytearray()
        self._welcome: dict[str, Any] | None = None
        self._refusal: VirtabsError | None = None
        self._welcomed = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- start and stop ----------------------------------------------------------------------

    def start(self, deadline: Deadline, first: tuple[str, dict[str, Any]] | None = None) -> SentCall | None:
        """Start ssh and the helper, and negotiate the protocol version before ``deadline``.

        ``first`` (method, args): a call without a session sent right behind the hello, before the welcome
        comes (the helper reads it once it has answered the hello): the connection's ``open`` then costs no
        round trip of its own. Its handle is returned, for :meth:`finish_call`; None when it could not be
        sent (the channel is usable all the same: call it again)."""
        self._proc = self.transport.open_channel([self.helper], multiplexed=MULTIPLEXED)
        assert self._proc.stdout is not None
        self._reader = FrameReader(self._proc.stdout.fileno())
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="virtabs-remote-stderr", daemon=True)
        self._stderr_thread.start()
        threading.Thread(target=self._read_loop, name="virtabs-remote-reader", daemon=True).start()
        import virtabs

        self._write({"type": "hello", "versions": [PROTOCOL_VERSION], "client": str(virtabs.__version__)})
        sent: SentCall | None = None
        if first is not None:
            with contextlib.suppress(ConnectError):  # ssh or the helper gone already: told below, with the cause
                sent = self.send_call(None, *first)
        if not self._welcomed.wait(deadline.remaining()):
            self._drop(sent)
            self._die("no answer to the handshake")
            self.close()
            raise ConnectError(
                f"the virtabs remote helper on {self.where} did not answer within {deadline.seconds:g} s (the "
                "connection's timeout, or ?start_timeout=SECONDS for the set-up alone; without either "
                f"{DEFAULT_CALL_TIMEOUT:g} s)"
            )
        if self._welcome is None:
            self._drop(sent)
            error = self._start_failure()
            self.close()
            raise error
        self.server_version = str(self._welcome.get("server", "?"))
        threading.Thread(target=self._keepalive_loop, name="virtabs-remote-keepalive", daemon=True).start()
        return sent

    def _start_failure(self) -> VirtabsError:
        """Why the helper did not welcome us: its refusal, the helper missing, or ssh's own failure."""
        if self._refusal is not None:
            return self._refusal
        assert self._proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(self.connect_timeout)
        if self._stderr_thread is not None and self._proc.returncode is not None:
            # ssh has exited: its stderr ends once the drain has read the last bytes (bounded: a process ssh
            # left behind could hold the pipe). A bare yield lost "Host key verification failed" under load.
            self._stderr_thread.join(_STDERR_DRAIN_SECONDS)
        stderr = self._stderr_text()
        rc = self._proc.returncode
        if rc == 255:
            return self.transport.ssh_failure(stderr, "starting the virtabs remote helper")
        if rc in (126, 127) or "not found" in stderr:
            return DriverUnavailableError(
                f"the virtabs remote helper {self.helper!r} is not installed on {self.where} "
                f"(the remote shell said: {stderr.strip()[:300] or f'exit status {rc}'}); install virtabs there "
                "(pip install virtabs, with the driver's backend, e.g. pip install -e backends/qemu), which "
                "provides the virtabs-remote command, or name its path with ?helper=/path/to/virtabs-remote"
            )
        return ConnectError(
            f"the virtabs remote helper {self.helper!r} on {self.where} ended before the handshake "
            f"(exit status {rc}): {stderr.strip()[:500] or 'no message'}"
        )

    def close(self) -> None:
        """End the channel: close the helper's stdin (it exits on EOF), then end ssh; stop the master."""
        self._stop.set()
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._die("the connection was closed")
        self.transport.close()

    @property
    def alive(self) -> bool:
        """False once the channel died or was closed."""
        return self._dead is None

    # --- calls ---------------------------------------------------------------------------------

    def call(self, session: int | None, method: str, args: dict[str, Any], timeout: float | None) -> Any:
        """Send one call and wait for its reply's result (raises the error it carries)."""
        return self.finish_call(self.send_call(session, method, args), timeout)

    def send_call(self, session: int | None, method: str, args: dict[str, Any]) -> SentCall:
        """Send one call whose reply :meth:`finish_call` waits for."""
        if self._dead is not None:
            raise ConnectError(f"{self._dead.message}; open a new connection")
        sent = SentCall(next(self._ids), method, _Pending())
        with self._lock:
            self._pending[sent.request_id] = sent.pending
        try:
            self._write({"type": "call", "id": sent.request_id, "session": session, "method": method, "args": args})
        except BaseException:
            self._drop(sent)
            raise
        return sent

    def finish_call(self, sent: SentCall, timeout: float | None) -> Any:
        """Wait for the reply to ``sent`` and return its result (raises the error it carries)."""
        try:
            limit = DEFAULT_CALL_TIMEOUT if timeout is None else timeout
            self._wait(sent.pending, sent.method, limit)
        finally:
            self._drop(sent)
        if sent.pending.error is not None:
            raise sent.pending.error
        return sent.pending.result

    def _drop(self, sent: SentCall | None) -> None:
        """Forget a call: its reply, if one comes, is dropped."""
        if sent is not None:
            with self._lock:
                self._pending.pop(sent.request_id, None)

    def send(self, session: int | None, method: str, args: dict[str, Any]) -> None:
        """Send one call without waiting for its reply (dropped when it comes): for a call whose answer
        changes nothing for the caller, such as closing a session, which then costs no round trip."""
        if self._dead is not None:
            raise ConnectError(f"{self._dead.message}; open a new connection")
        self._write({"type": "call", "id": next(self._ids), "session": session, "method": method, "args": args})

    def _wait(self, pending: _Pending, method: str, limit: float) -> None:
        """Wait for ``pending``: read the stream ourselves when nobody else is, else wait to be told
        (that the reply came, or that the reader left and it is our turn to read)."""
        deadline = time.monotonic() + limit
        while not pending.done:
            if self._dead is not None:
                raise ConnectError(self._dead.message)
            self._last_call = time.monotonic()
            remaining = deadline - self._last_call
            if remaining <= 0:
                if self._dead is not None:
                    raise ConnectError(self._dead.message)
                raise OperationTimeoutError(f"{method} on {self.where} got no reply within {limit:g} s")
            if self._read_lock.acquire(blocking=False):
                try:
                    while not pending.done and self._dead is None and time.monotonic() < deadline:
                        self._pump(min(deadline - time.monotonic(), _CALLER_READS))
                finally:
                    self._read_lock.release()
                    self._hand_over_reading(pending)
            else:
                pending.wake.wait(min(remaining, _CALLER_READS))
                pending.wake.clear()

    def _hand_over_reading(self, leaving: _Pending) -> None:
        """The reader is leaving: wake one call still waiting, so that it reads its own reply at once
        (without this it would sit in the stream until that caller's next look, up to _CALLER_READS)."""
        with self._lock:
            for other in self._pending.values():
                if other is not leaving and not other.done:
                    other.wake.set()
                    return

    def subscribe(self, session: int, sink: Callable[[Event], None]) -> None:
        """Route the events of ``session`` to ``sink``."""
        with self._lock:
            self._sinks[session] = sink

    def unsubscribe(self, session: int) -> None:
        """Stop routing the events of ``session``."""
        with self._lock:
            self._sinks.pop(session, None)

    def _write(self, message: dict[str, Any]) -> None:
        frame = encode_frame(message)
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            with self._write_lock:
                proc.stdin.write(frame)
                proc.stdin.flush()
        except (OSError, ValueError) as exc:
            self._die(f"writing to the helper failed ({exc.__class__.__name__})")
            raise ConnectError(self._dead.message if self._dead else f"the channel to {self.where} is closed") from None

    # --- background threads ----------------------------------------------------------------------

    def _read_loop(self) -> None:
        """The background reader: takes the stream when no call was made lately (events, pongs, the end).

        While calls are being made, each caller reads its own reply (:meth:`_pump`), which saves a thread
        switch per call; this thread steps back so that it does not hold the read lock between them.
        """
        while self._dead is None:
            if time.monotonic() - self._last_call < _CALLER_READS:
                self._stop.wait(_CALLER_READS)
                continue
            if self._read_lock.acquire(timeout=_CALLER_READS):
                try:
                    self._pump(_CALLER_READS)
                finally:
                    self._read_lock.release()
        self._welcomed.set()

    def _pump(self, timeout: float) -> None:
        """Read and dispatch at most one message (call with the read lock held)."""
        if self._dead is not None or self._reader is None:
            return
        try:
            message = self._reader.next(timeout)
        except ProtocolError as exc:
            self._die(f"the helper broke the protocol: {exc.message}")
            self._welcomed.set()
            return
        except (OSError, ValueError) as exc:
            self._die(f"reading from the helper failed ({exc.__class__.__name__})")
            self._welcomed.set()
            return
        if message is NOTHING_YET:
            return
        if message is None:
            self._die("the helper closed the channel")
            self._welcomed.set()
            return
        self._last_heard = time.monotonic()
        self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "reply":
            with self._lock:
                pending = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if pending is None:
                if "error" in message and message.get("id") is None:
                    log.warning("the helper on %s reported: %s", self.where, message["error"])
                return
            if "error" in message:
                pending.error = error_from_wire(message["error"], "")
            else:
                pending.result = message.get("result")
            pending.finish()
        elif kind == "event":
            with self._lock:
                sink = self._sinks.get(message.get("session"))  # type: ignore[arg-type]
            if sink is not None:
                try:
                    event = decode_value(message.get("event"), Event, "event")
                except ProtocolError as exc:
                    log.warning("an event from %s was dropped: %s", self.where, exc.message)
                    return
                sink(event)
        elif kind == "welcome":
            if message.get("version") != PROTOCOL_VERSION:
                self._refusal = ProtocolError(
                    f"protocol version mismatch: this client speaks version {PROTOCOL_VERSION}, the helper on "
                    f"{self.where} answered with version {message.get('version')!r}"
                )
            else:
                self._welcome = message
            self._welcomed.set()
        elif kind == "error":
            error = error_from_wire(message.get("error"), f"from the helper on {self.where}")
            if not self._welcomed.is_set():
                self._refusal = error
                self._welcomed.set()
            else:
                log.warning("%s", error.message)
        elif kind == "ping":
            self._write({"type": "pong", "id": message.get("id")})
        elif kind == "pong":
            pass
        else:
            log.warning("unknown message type %r from the helper on %s", kind[:40], self.where)

    def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stream = self._proc.stderr
        for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
            self._stderr += chunk
            del self._stderr[:-_STDERR_KEEP]

    def _stderr_text(self) -> str:
        return bytes(self._stderr).decode("utf-8", "replace")

    def _keepalive_loop(self) -> None:
        pings = itertools.count(1)
        while not self._stop.wait(KEEPALIVE_INTERVAL / 2):
            if self._dead is not None:
                return
            silent = time.monotonic() - self._last_heard
            if silent > KEEPALIVE_INTERVAL * KEEPALIVE_COUNT:
                self._die(f"no answer to keepalive for {silent:.0f} s")
                if self._proc is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self._proc.pid, signal.SIGKILL)
                return
            if silent > KEEPALIVE_INTERVAL:
                with contextlib.suppress(ConnectError):
                    self._write({"type": "ping", "id": next(pings)})

    def _die(self, reason: str) -> None:
        with self._lock:
            if self._dead is None:
                detail = self._stderr_text().strip()[-300:]
                text = f"connection to the virtabs remote helper on {self.where} lost: {reason}"
                self._dead = ConnectError(text + (f" ({detail})" if detail else ""))
            pending = list(self._pending.values())
        for item in pending:
            item.error = ConnectError(self._dead.message)
            item.finish()


_CHANNELS: dict[tuple[Any, ...], Channel] = {}
_CHANNELS_LOCK = threading.Lock()


def _channel_key(uri: URI) -> tuple[Any, ...]:
    return (uri.user, uri.host, uri.port, *(uri.param(k) for k in sorted(SSH_PARAMS)))


_STARTING: dict[tuple[Any, ...], threading.Lock] = {}
"""One lock per ssh endpoint, held while its channel starts: only connections to the same endpoint wait
for that start; a silent host never holds up a channel to another one (an inventory of many hosts)."""


def acquire_channel(
    uri: URI, connect_timeout: float, deadline: Deadline, first: tuple[str, dict[str, Any]] | None = None
) -> tuple[Channel, SentCall | None]:
    """The live channel to ``uri``'s ssh endpoint (started before ``deadline`` when there is none), with one
    more user; and when this started it, ``first`` sent behind the hello (see :meth:`Channel.start`), else
    None: ``first`` was not sent."""
    key = _channel_key(uri)
    with _CHANNELS_LOCK:
        starting = _STARTING.setdefault(key, threading.Lock())
    if not starting.acquire(timeout=deadline.remaining(DEFAULT_CALL_TIMEOUT) or 0.0):
        raise ConnectError(
            f"the channel to {uri.host or 'localhost'} is still being set up by another connection after "
            f"{deadline.seconds:g} s"
        )
    try:
        with _CHANNELS_LOCK:
            channel = _CHANNELS.get(key)
            if channel is not None and channel.alive:
                channel.users += 1
                return channel, None
        channel = Channel(uri, connect_timeout)
        sent = channel.start(deadline, first)  # ssh and the handshake, outside the registry's lock
        with _CHANNELS_LOCK:
            _CHANNELS[key] = channel
            channel.users += 1
        return channel, sent
    finally:
        starting.release()


def release_channel(channel: Channel) -> None:
    """One user fewer; the last one closes the channel (the helper exits on EOF)."""
    with _CHANNELS_LOCK:
        channel.users -= 1
        if channel.users > 0:
            return
        for key, value in list(_CHANNELS.items()):
            if value is channel:
                del _CHANNELS[key]
    channel.close()


class RemoteDriver(Driver):
    """A driver on another host, reached over ssh through the ``virtabs-remote`` helper.

    Every row of the operation table is one call on the channel; the helper's connection passes
    its own gate again. Capabilities are the remote connection's.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = "any local driver on a remote host, over ssh and the virtabs-remote helper"
    capabilities: ClassVar[Capabilities] = Capabilities.all()
    uri_examples: ClassVar[tuple[str, ...]] = ("qemu+ssh://root@host/system", "test+ssh://host/srv/lab.json")
    install_hint: ClassVar[str] = "install virtabs (which provides virtabs-remote) on the remote host"

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if not uri.host:
            raise ConnectError(f"{uri.scheme}:// needs a host: {uri.scheme}://[user@]host[:port]/path")
        self._timeout = options.timeout
        connect_timeout = options.timeout if options.timeout is not None else SSH_CONNECT_TIMEOUT
        deadline = Deadline(start_limit(uri, options.timeout))
        open_args = {"uri": remote_uri(uri), "readonly": options.readonly, "timeout": options.timeout}
        self._channel, sent = acquire_channel(uri, connect_timeout, deadline, ("open", open_args))
        try:
            if sent is None:  # a channel already up (or the open could not go with the hello)
                opened = self._channel.call(None, "open", open_args, deadline.remaining())
            else:
                opened = self._channel.finish_call(sent, deadline.remaining())
            self._session = int(opened["session"])
            self._capabilities = _capabilities_from_wire(opened, self._channel.where)
        except BaseException:
            release_channel(self._channel)
            raise
        self._closed = False

    @property
    def where(self) -> str:
        """``[user@]host[:port]`` of the channel."""
        return self._channel.where

    @property
    def channel(self) -> Channel:
        """The channel this connection is a session of (shared by every connection to the endpoint)."""
        return self._channel

    def connection_capabilities(self) -> Capabilities:
        """What the remote connection declares (refined there, per host)."""
        return self._capabilities

    def close(self) -> None:
        """Close the remote session; the last session of a channel ends ssh and the helper.

        The close is sent without waiting for its reply (its errors were never reported): the helper
        serves it before the end of the stream that closing the channel's last session brings."""
        if self._closed:
            return
        self._closed = True
        self._channel.unsubscribe(self._session)
        try:
            if self._channel.alive:
                with contextlib.suppress(ConnectError):
                    self._channel.send(self._session, "close", {})
        finally:
            release_channel(self._channel)

    def start_events(self) -> None:
        """Ask the helper to push the session's events."""
        self._channel.subscribe(self._session, self.emit)
        self._channel.call(self._session, "events.start", {}, self._timeout)

    def stop_events(self) -> None:
        """Ask the helper to stop pushing events."""
        self._channel.unsubscribe(self._session)
        if self._channel.alive:
            self._channel.call(self._session, "events.stop", {}, self._timeout)

    def _remote(self, method: str, args: tuple[Any, ...]) -> Any:
        schema = method_schema(method)
        data = self._channel.call(self._session, method, schema.encode_args(args), self._timeout)
        return decode_value(data, schema.result, method)


def _capabilities_from_wire(opened: dict[str, Any], where: str) -> Capabilities:
    """The remote connection's capabilities; what it lacks of this class's declaration (every capability)
    is dropped with the remote side's reason, or "not declared by the DRIVER driver on HOST"."""
    known = {c.value for c in Capability}

    def names(values: Any) -> list[str]:
        return [v for v in values if isinstance(v, str) and v in known] if isinstance(values, list) else []

    def notes(values: Any) -> dict[str, str]:
        if not isinstance(values, dict):
            return {}
        return {k: str(v) for k, v in values.items() if k in known}

    supported = frozenset(names(opened.get("capabilities")))
    given_notes = {k: v for k, v in notes(opened.get("notes")).items() if k in supported}
    driver = str(opened.get("driver", "remote"))[:40]
    tunnelled = Capability.DOMAIN_MIGRATE_TUNNELLED.value
    if driver in TUNNEL_DRIVERS and Capability.DOMAIN_MIGRATE_LIVE.value in supported:
        supported |= {tunnelled}
        given_notes[tunnelled] = f"the memory and disk streams go through an ssh forward to {where}"
    dropped = {k: v for k, v in notes(opened.get("dropped")).items() if k not in supported}
    for cap in Capability:
        if cap.value not in supported and cap.value not in dropped:
            dropped[cap.value] = f"not declared by the {driver} driver on {where}"
    return Capabilities(supported, given_notes, dropped)


def _forwarder(method: str) -> Callable[..., Any]:
    base = getattr(Driver, method)
    signature = inspect.signature(base)

    @functools.wraps(base)
    def forward(self: RemoteDriver, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            args = tuple(bound.arguments.values())[1:]
        return self._remote(method, args)

    forward.__doc__ = f"{base.__doc__ or method} (one call to the remote helper)"
    return forward


for _method in OPERATIONS:
    setattr(RemoteDriver, _method, _forwarder(_method))


@functools.cache
def remote_driver_class(driver: str) -> type[RemoteDriver]:
    """The remote driver class for URIs ``driver+ssh://``: a :class:`RemoteDriver` named ``driver``."""
    return type(
        f"Remote{driver.capitalize()}Driver",
        (RemoteDriver,),
        {"name": driver, "__doc__": f"The {driver} driver of a remote host, over ssh (virtabs-remote)."},
    )

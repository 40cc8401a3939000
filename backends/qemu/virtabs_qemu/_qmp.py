"""A minimal, dependency-free QMP client (JSON lines over a unix socket).

One :class:`QMPClient` is one connection: it reads the greeting, negotiates
capabilities and then runs commands one at a time. Every read has a
deadline; running out of time raises :class:`OperationTimeoutError`. Events
that arrive while waiting for a reply are kept in :attr:`QMPClient.events`
(in arrival order) for the caller to dispatch.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from virtabs.spi import ConnectError, OperationFailedError, OperationTimeoutError, quote

__all__ = ["MAX_LINE", "QMPClient", "QMPError"]

MAX_LINE = 16 * 1024 * 1024
"""The longest QMP message accepted (QEMU's largest replies, query-qmp-schema, are well under 1 MiB)."""


class QMPError(Exception):
    """QEMU answered a command with an error: the native exception of this client.

    ``command`` is the command QEMU refused, ``desc`` its reason and ``qmp_class`` QEMU's error
    class. The driver turns it into a virtabs error by a table (``_session.QMP_ERRORS``).
    """

    def __init__(self, message: str, qmp_class: str = "GenericError", command: str = "", desc: str = "") -> None:
        super().__init__(message)
        self.qmp_class = qmp_class
        self.command = command
        self.desc = desc or message


class QMPClient:
    """A connection to one QEMU monitor socket.

    ``what`` names the domain in error messages. Use as a context manager.
    """

    def __init__(self, path: str, timeout: float = 30.0, what: str = "") -> None:
        self.path = path
        self.timeout = timeout
        self.what = what or path
        self.events: list[dict[str, Any]] = []
        self.greeting: dict[str, Any] = {}
        self._buf = bytearray()
        self._id = 0
        self._sock: socket.socket | None = None

    # --- connection ---------------------------------------------------------

    def connect(self) -> QMPClient:
        """Connect, read the greeting and negotiate capabilities."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except FileNotFoundError:
            sock.close()
            raise ConnectError(f"{self.what}: QMP socket {self.path} does not exist (is QEMU running?)") from None
        except OSError as exc:
            sock.close()
            raise ConnectError(f"{self.what}: cannot connect to QMP socket {self.path}: {exc}") from None
        self._sock = sock
        try:
            # Pipelined: QEMU reads the negotiation only after its greeting, so send it right away.
            self._id += 1
            sock.sendall(json.dumps({"execute": "qmp_capabilities", "id": f"v{self._id}"}).encode() + b"\n")
            deadline = time.monotonic() + self.timeout
            while True:
                msg = self._read(deadline)
                if "QMP" in msg:
                    self.greeting = msg
                    break
            while True:
                msg = self._read(deadline)
                if "event" in msg:
                    self.events.append(msg)
                    continue
                if "error" in msg:
                    desc = _error_fields(msg["error"])[1]
                    raise QMPError(f"{self.what}: qmp_capabilities: {desc}", command="qmp_capabilities", desc=desc)
                break
        except TimeoutError:
            self.close()
            raise OperationTimeoutError(f"{self.what}: QMP negotiation timed out") from None
        except OSError as exc:
            self.close()
            raise ConnectError(f"{self.what}: QMP negotiation failed: {exc}") from None
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the socket (QEMU accepts the next client)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> QMPClient:
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands -------------------------------------------------------------

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """Run ``command`` and return its ``return`` value; an error reply raises :class:`QMPError`."""
        if self._sock is None:
            raise ConnectError(f"{self.what}: QMP connection is closed")
        self._id += 1
        req_id = f"v{self._id}"
        msg: dict[str, Any] = {"execute": command, "id": req_id}
        if arguments:
            msg["arguments"] = arguments
        data = json.dumps(msg).encode() + b"\n"
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            self._sock.settimeout(max(0.001, deadline - time.monotonic()))
            self._sock.sendall(data)
        except TimeoutError:
            self.close()
            raise OperationTimeoutError(f"{self.what}: QMP command {quote(command)} timed out while sending") from None
        except OSError as exc:
            self.close()
            raise ConnectError(f"{self.what}: QMP connection lost while sending {quote(command)}: {exc}") from None
        try:
            return self._reply(command, req_id, deadline)
        except OperationTimeoutError:
            self.close()
            raise OperationTimeoutError(
                f"{self.what}: QMP command {quote(command)} got no reply within "
                f"{self.timeout if timeout is None else timeout:g}s"
            ) from None

    def _reply(self, command: str, req_id: str, deadline: float | None) -> Any:
        """The ``return`` of the reply to request ``req_id``; events in front of it are kept in :attr:`events`,
        an error reply raises :class:`QMPError`."""
        while True:
            reply = self._read(deadline)
            if "event" in reply:
                self.events.append(reply)
                continue
            if reply.get("id") not in (req_id, None):
                continue
            if "error" in reply:
                qmp_class, desc = _error_fields(reply["error"])
                raise QMPError(f"{self.what}: {command}: {desc}", qmp_class, command=command, desc=desc)
            return reply.get("return")

    def hmp(self, command_line: str, timeout: float | None = None) -> str:
        """Run a human-monitor command; a non-empty output is returned (callers decide if it is an error)."""
        out = self.execute("human-monitor-command", {"command-line": command_line}, timeout=timeout)
        return str(out or "")

    def wait_event(self, names: set[str], timeout: float, match: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Wait up to ``timeout`` seconds for an event named in ``names`` (already-seen events count)."""
        deadline = time.monotonic() + timeout

        def matches(ev: dict[str, Any]) -> bool:
            if ev.get("event") not in names:
                return False
            data = ev.get("data", {})
            return all(data.get(k) == v for k, v in (match or {}).items())

        for ev in self.events:
            if matches(ev):
                return ev
        while time.monotonic() < deadline:
            try:
                msg = self._read(deadline)
            except OperationTimeoutError:
                return None
            if "event" in msg:
                self.events.append(msg)
                if matches(msg):
                    return msg
        return None

    def take_events(self) -> list[dict[str, Any]]:
        """The events collected so far (and forget them)."""
        events, self.events = self.events, []
        return events

    # --- reading --------------------------------------------------------------

    def _read(self, deadline: float | None) -> dict[str, Any]:
        """One message. Linear in its size (only new bytes are searched for the newline); a line over
        :data:`MAX_LINE` is refused as soon as that many bytes arrived, without reading the rest.
        ``deadline`` None: each wait for bytes is bounded by the socket's own timeout instead."""
        assert self._sock is not None
        searched = 0
        while (end := self._buf.find(b"\n", searched)) < 0:
            searched = len(self._buf)
            if searched > MAX_LINE:
                self.close()
                raise OperationFailedError(f"{self.what}: QMP message over {MAX_LINE} bytes refused")
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise OperationTimeoutError(f"{self.what}: QMP read timed out")
                self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise OperationTimeoutError(f"{self.what}: QMP read timed out") from None
            except OSError as exc:
                self.close()
                raise ConnectError(f"{self.what}: QMP connection lost: {exc}") from None
            if not chunk:
                self.close()
                raise ConnectError(f"{self.what}: QEMU closed the QMP connection")
            self._buf += chunk
        if end > MAX_LINE:
            self.close()
            raise OperationFailedError(f"{self.what}: QMP message over {MAX_LINE} bytes refused")
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # bad UTF-8 or JSON; absurd nesting
            self.close()  # the stream can no longer be trusted to be in step
            raise OperationFailedError(f"{self.what}: QEMU sent invalid JSON on QMP: {quote(line[:200])}") from None
        if not isinstance(msg, dict):
            self.close()
            raise OperationFailedError(f"{self.what}: QEMU sent a non-object on QMP: {quote(line[:200])}")
        return msg


def _error_fields(err: object) -> tuple[str, str]:
    """``(class, desc)`` of a QMP error object, whatever shape a broken peer gave it."""
    if isinstance(err, dict):
        return str(err.get("class", "GenericError")), str(err.get("desc", err))[:1000]
    return "GenericError", str(err)[:1000]

"""WinRM transport: where to connect, how to authenticate, and running one PowerShell script.

``hyperv://host[:port]/?transport=http|https&auth=ntlm|kerberos|credssp|basic&no_verify=1&cafile=PATH``

* HTTPS on 5986 with the server certificate verified is the default; ``transport=http`` uses 5985.
* NTLM is the default authentication. Over HTTP, NTLM, Kerberos and CredSSP seal every message
  (MS-WSMV message encryption, pywinrm's ``message_encryption='auto'``); Basic never does, so Basic over
  HTTP is refused unless ``allow_unencrypted=1`` says the host really is configured for it.
* ``no_verify=1`` turns certificate verification off; ``cafile=`` trusts a specific CA bundle.

A connection keeps WinRM shells open and reuses them (one command at a time per shell; more threads open
more shells), so one script costs three round trips (Command, Receive, Signal) instead of pywinrm
``run_ps``'s five. pywinrm is imported here, and this module is imported by the driver's ``__init__``
only.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import requests
import winrm.exceptions as wex
from virtabs.spi import describe_tls_failure
from winrm.protocol import Protocol

__all__ = ["Endpoint", "TransportFailure", "WinRMClient"]

AUTHS = ("ntlm", "kerberos", "credssp", "basic")
SHELL_NOT_FOUND = 2150858843
OPERATION_TIMEOUT = 2150858793
ACCESS_DENIED = 5


class TransportFailure(Exception):
    """WinRM failed before PowerShell could answer. ``kind``: ``auth``, ``connect``, ``timeout`` or ``usage``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Endpoint:
    """Everything pywinrm needs except the credentials."""

    host: str
    port: int
    https: bool
    auth: str
    verify: bool
    cafile: str | None

    @property
    def url(self) -> str:
        """``http(s)://host:port/wsman``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}/wsman"

    @property
    def pywinrm_transport(self) -> str:
        """pywinrm's name for the authentication (``ssl`` is Basic over HTTPS)."""
        if self.auth == "basic":
            return "ssl" if self.https else "basic"
        return self.auth

    @classmethod
    def from_uri(cls, host: str | None, port: int | None, params: dict[str, str]) -> Endpoint:
        """Read the URI's host, port and parameters; TransportFailure("usage") when they make no sense."""
        if not host:
            raise TransportFailure("usage", "a hyperv:// URI needs the Hyper-V host: hyperv://HOST/")
        known = {"transport", "auth", "no_verify", "cafile", "allow_unencrypted"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise TransportFailure("usage", f"unknown hyperv URI parameter(s): {', '.join(unknown)}")
        transport = params.get("transport", "https").lower()
        if transport not in ("http", "https"):
            raise TransportFailure("usage", f"transport must be http or https, got {transport!r}")
        https = transport == "https"
        auth = params.get("auth", "ntlm").lower()
        if auth not in AUTHS:
            raise TransportFailure("usage", f"auth must be one of {', '.join(AUTHS)}, got {auth!r}")
        if auth == "basic" and not https and not _flag(params, "allow_unencrypted"):
            raise TransportFailure(
                "usage",
                "Basic authentication over plain HTTP sends the password unencrypted: use transport=https, "
                "another auth, or allow_unencrypted=1 if the host is configured with AllowUnencrypted=true",
            )
        return cls(
            host=host,
            port=port or (5986 if https else 5985),
            https=https,
            auth=auth,
            verify=not _flag(params, "no_verify"),
            cafile=params.get("cafile") or None,
        )


@dataclass
class _Channel:
    protocol: Protocol
    shell: str


class WinRMClient:
    """Runs command lines on the host through a small pool of open WinRM shells (thread-safe)."""

    def __init__(self, endpoint: Endpoint, username: str, password: str, timeout: float | None) -> None:
        self.endpoint = endpoint
        self._username = username
        self._password = password
        self.read_timeout = max(5.0, float(timeout)) if timeout else 60.0
        self.operation_timeout = max(2, min(20, int(self.read_timeout * 0.6)))
        self._idle: list[_Channel] = []
        self._lock = threading.Lock()
        self._closed = False
        self.commands = 0

    def __repr__(self) -> str:
        return f"WinRMClient({self.endpoint.url}, auth={self.endpoint.auth})"

    # --- channels -----------------------------------------------------------------------------------

    def _protocol(self) -> Protocol:
        ep = self.endpoint
        kw: dict[str, Any] = {
            "endpoint": ep.url,
            "transport": ep.pywinrm_transport,
            "username": self._username,
            "password": self._password,
            "server_cert_validation": "validate" if ep.verify else "ignore",
            "read_timeout_sec": self.read_timeout,
            "operation_timeout_sec": self.operation_timeout,
            "message_encryption": "auto",
            # None: requests' own trust store (and its REQUESTS_CA_BUNDLE), without pywinrm's legacy path
            "ca_trust_path": ep.cafile,
        }
        return Protocol(**kw)

    def _open(self) -> _Channel:
        protocol = self._protocol()
        shell = self._call(lambda: protocol.open_shell(codepage=65001))
        return _Channel(protocol, shell)

    def _acquire(self) -> _Channel:
        with self._lock:
            if self._closed:
                raise TransportFailure("connect", f"the connection to {self.endpoint.host} is closed")
            if self._idle:
                return self._idle.pop()
        return self._open()

    def _release(self, ch: _Channel) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(ch)
                return
        self._discard(ch)

    def _discard(self, ch: _Channel) -> None:
        try:
            ch.protocol.close_shell(ch.shell)
        except Exception:  # closing a broken shell is best effort
            try:
                ch.protocol.transport.close_session()
            except Exception:
                return

    def close(self) -> None:
        """Close every idle shell; channels in use close when their command returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for ch in idle:
            self._discard(ch)

    # --- running ------------------------------------------------------------------------------------

    def run(self, command_line: str) -> tuple[bytes, bytes, int]:
        """Run ``command_line`` in a shell; ``(stdout, stderr, exit code)``. TransportFailure on WinRM errors."""
        ch = self._acquire()
        try:
            try:
                cid = self._call(lambda: ch.protocol.run_command(ch.shell, command_line))
            except TransportFailure as exc:
                if getattr(exc, "shell_gone", False):  # the host dropped the shell (idle timeout): reopen once
                    self._discard(ch)
                    ch = self._open()
                    cid = self._call(lambda: ch.protocol.run_command(ch.shell, command_line))
                else:
                    raise
            out, err, code = self._call(lambda: ch.protocol.get_command_output(ch.shell, cid))
            self._call(lambda: ch.protocol.cleanup_command(ch.shell, cid))
        except BaseException:
            self._discard(ch)
            raise
        with self._lock:
            self.commands += 1
        self._release(ch)
        return out, err, code

    def start(self, command_line: str) -> RunningCommand:
        """Start ``command_line`` in a shell of its own and return without waiting (long jobs)."""
        ch = self._open()
        try:
            cid = self._call(lambda: ch.protocol.run_command(ch.shell, command_line))
        except BaseException:
            self._discard(ch)
            raise
        return RunningCommand(self, ch, cid)

    def _call(self, fn: Any) -> Any:
        host = self.endpoint.host
        try:
            return fn()
        except wex.InvalidCredentialsError:
            raise TransportFailure("auth", f"WinRM at {host} rejected the credentials (HTTP 401)") from None
        except wex.WinRMOperationTimeoutError:
            raise TransportFailure("timeout", f"WinRM at {host}: the operation timed out") from None
        except wex.WSManFaultError as exc:
            code = exc.wsman_fault_code
            reason = (exc.reason or "").strip()
            if code == OPERATION_TIMEOUT:
                raise TransportFailure("timeout", f"WinRM at {host}: {reason}") from None
            if code == ACCESS_DENIED:
                raise TransportFailure("auth", f"WinRM at {host}: access denied: {reason}") from None
            failure = TransportFailure("connect", f"WinRM at {host} answered a fault ({code}): {reason}")
            failure.shell_gone = code == SHELL_NOT_FOUND  # type: ignore[attr-defined]
            raise failure from None
        except wex.WinRMTransportError as exc:
            raise TransportFailure("connect", f"WinRM at {host}: HTTP {exc.code} from the server") from None
        except requests.exceptions.SSLError as exc:
            where = f"{host}:{self.endpoint.port}"
            tls = describe_tls_failure(exc, where) or f"TLS to {where} failed"
            raise TransportFailure(
                "connect", f"WinRM: {tls}; pass cafile= or, for a lab host only, no_verify=1"
            ) from None
        except requests.exceptions.Timeout:
            raise TransportFailure("timeout", f"WinRM at {host}: no answer within {self.read_timeout:g} s") from None
        except requests.exceptions.ConnectionError:
            raise TransportFailure("connect", f"cannot reach WinRM at {self.endpoint.url}") from None
        except wex.WinRMError as exc:
            raise TransportFailure("connect", f"WinRM at {host}: {type(exc).__name__}") from None
        except AssertionError:  # pywinrm asserts RelatesTo == MessageID
            raise TransportFailure("connect", f"WinRM at {host} answered out of order (RelatesTo mismatch)") from None


class RunningCommand:
    """A command started with :meth:`WinRMClient.start`: wait for it, or terminate it (WS-Man Signal)."""

    def __init__(self, client: WinRMClient, ch: _Channel, cid: str) -> None:
        self._client = client
        self._ch = ch
        self._cid = cid
        self._lock = threading.Lock()
        self._done = False

    def wait(self) -> tuple[bytes, bytes, int]:
        """Block until the command ends (Receive loop); the shell is closed afterwards."""
        try:
            out, err, code = self._client._call(lambda: self._ch.protocol.get_command_output(self._ch.shell, self._cid))
        finally:
            self._finish()
        return out, err, code

    def terminate(self) -> None:
        """Signal terminate to the command (powershell.exe is stopped).

        Sent on a connection of its own: the waiting thread's connection is busy with a Receive. The
        shell is closed by :meth:`wait` when the command's end arrives there.
        """
        with self._lock:
            if self._done:
                return
        other = self._client._protocol()
        try:
            self._client._call(lambda: other.cleanup_command(self._ch.shell, self._cid))
        except TransportFailure:
            pass
        finally:
            with contextlib.suppress(Exception):  # best effort
                other.transport.close_session()

    def _finish(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._client._discard(self._ch)

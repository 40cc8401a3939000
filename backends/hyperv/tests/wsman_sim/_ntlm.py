"""NTLM for the simulator: the acceptor side (pyspnego) and MS-WSMV 2.2.9.1.1 message sealing.

Windows answers an unauthenticated POST with ``401 WWW-Authenticate: Negotiate``; the client sends the
NTLM NEGOTIATE token, the server the CHALLENGE, the client the AUTHENTICATE token (all on one kept-alive
connection), and from then on every SOAP body travels sealed in a ``multipart/encrypted`` MIME body::

    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/HTTP-SPNEGO-session-encrypted\\r\\n
    \\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<n>\\r\\n
    --Encrypted Boundary\\r\\n
    \\tContent-Type: application/octet-stream\\r\\n
    <uint32 LE signature length><16-byte signature><sealed bytes>--Encrypted Boundary--\\r\\n

pyspnego's NTLM acceptor reads accounts from the file named by ``NTLM_USER_FILE``
(``DOMAIN:user:password`` lines); the simulator writes one into its temporary directory.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

__all__ = ["NtlmAcceptor", "unwrap_message", "wrap_message"]

BOUNDARY = b"--Encrypted Boundary"
PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"


class NtlmAcceptor:
    """Makes one pyspnego NTLM server context per connection, for one account."""

    def __init__(self, username: str, password: str, directory: Path | None = None) -> None:
        import tempfile

        d = directory or Path(tempfile.mkdtemp(prefix="wsman-sim-ntlm-"))
        self.user_file = d / "ntlm-users"
        self.user_file.write_text(f":{username}:{password}\nSIM:{username}:{password}\n")
        self.user_file.chmod(0o600)

    def new_context(self) -> Any:
        import spnego

        os.environ["NTLM_USER_FILE"] = str(self.user_file)
        return spnego.server(protocol="ntlm", service="http", hostname="127.0.0.1")


def unwrap_message(ctx: Any, body: bytes) -> bytes:
    """The SOAP bytes inside a sealed multipart body (verifies the signature and the declared length)."""
    parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
    header, payload = parts[0], parts[1]
    length = int(header.split(b"Length=")[1].strip())
    if payload.endswith(BOUNDARY + b"--\r\n"):
        payload = payload[: -len(BOUNDARY + b"--\r\n")]
    data = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
    sig_len = struct.unpack("<i", data[:4])[0]
    signature, sealed = data[4 : 4 + sig_len], data[4 + sig_len :]
    plain: bytes = ctx.unwrap(signature + sealed).data
    if len(plain) != length:
        raise ValueError("sealed message length does not match OriginalContent")
    return plain


def wrap_message(ctx: Any, message: bytes) -> tuple[bytes, str]:
    """Seal ``message``; the body and its Content-Type."""
    res = ctx.wrap(message, encrypt=True).data
    signature, sealed = res[:16], res[16:]
    body = (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(message)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<i", len(signature))
        + signature
        + sealed
        + BOUNDARY
        + b"--\r\n"
    )
    return body, f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'

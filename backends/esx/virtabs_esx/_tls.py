"""The SSL context every HTTPS connection of the driver uses (no pyVmomi here).

pyVmomi quietly turns certificate verification off for some hosts unless it is handed an explicit
context, so the driver always builds one:

* default: the system trust store (or ``?cafile=``) with host name checking;
* ``?thumbprint=AA:BB:...`` (SHA-256 of the server certificate): trust exactly that certificate instead
  of a CA (self-signed ESXi hosts); every handshake of the connection is checked against it;
* ``?no_verify=1``: no verification at all, warned about once per process.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import threading
import warnings

from virtabs.spi import InvalidArgumentError

__all__ = ["InsecureConnectionWarning", "normalise_thumbprint", "ssl_context"]

log = logging.getLogger("virtabs.esx")

_warned = threading.Event()


class InsecureConnectionWarning(UserWarning):
    """A connection was opened with ``no_verify=1``: anybody on the path can read the credentials."""


def normalise_thumbprint(text: str) -> bytes:
    """``"AA:bb:..."`` (64 hex digits, colons optional) -> the 32-byte SHA-256 digest."""
    digits = text.replace(":", "").strip().lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise InvalidArgumentError("thumbprint must be the SHA-256 of the certificate: 64 hex digits, colons allowed")
    return bytes.fromhex(digits)


class _PinnedSocket(ssl.SSLSocket):
    """An SSLSocket that refuses a peer whose certificate does not hash to the context's pin."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        pin: bytes = getattr(self.context, "virtabs_pin", b"")
        der = self.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).digest() != pin:
            raise ssl.SSLCertVerificationError("server certificate does not match the pinned SHA-256 thumbprint")


def ssl_context(*, cafile: str | None, thumbprint: str | None, no_verify: bool, what: str) -> ssl.SSLContext:
    """The context for ``what`` (``esx://host/``) according to the URI's TLS parameters."""
    if no_verify and (cafile or thumbprint):
        raise InvalidArgumentError("no_verify=1 cannot be combined with cafile= or thumbprint=")
    if no_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if not _warned.is_set():
            _warned.set()
            message = f"{what}: TLS certificate verification is OFF (no_verify=1)"
            log.warning(message)
            warnings.warn(message, InsecureConnectionWarning, stacklevel=4)
        return ctx
    if thumbprint:
        pin = normalise_thumbprint(thumbprint)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the pin replaces the CA check
        ctx.virtabs_pin = pin  # type: ignore[attr-defined]
        ctx.sslsocket_class = _PinnedSocket
        return ctx
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgumentError(f"cafile {cafile!r} cannot be read as PEM certificates: {exc}") from None

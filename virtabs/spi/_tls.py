"""One sentence for a failed TLS connection: which check failed, for every driver that speaks TLS."""

from __future__ import annotations

import ssl

__all__ = ["describe_tls_failure"]

# OpenSSL's X509_V_ERR_* codes (include/openssl/x509_vfy.h) that a client meets in practice
_EXPIRED = {10}  # X509_V_ERR_CERT_HAS_EXPIRED
_NOT_YET_VALID = {9}  # X509_V_ERR_CERT_NOT_YET_VALID
_WRONG_NAME = {62, 63, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH
# DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
# UNABLE_TO_VERIFY_LEAF_SIGNATURE, UNABLE_TO_GET_ISSUER_CERT
_UNKNOWN_ISSUER = {18, 19, 20, 21, 2}
# what OpenSSL says when the peer's first bytes are not a TLS record (a plain-HTTP server answering)
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
)


def _ssl_error_in(exc: BaseException) -> ssl.SSLError | None:
    """The ``ssl.SSLError`` in ``exc`` or wrapped inside it (requests/urllib3 nest it in MaxRetryError...)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return item
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return None


def describe_tls_failure(exc: BaseException, host: str) -> str | None:
    """Which TLS check ``exc`` (raised while connecting to ``host``) failed, as one line; None if not TLS.

    ``exc`` may be the ``ssl`` error itself or any exception wrapping it (``__cause__``, ``__context__``,
    a ``reason`` attribute or an argument: requests' ``SSLError`` around urllib3's ``MaxRetryError``).

    Certificate verification: an issuer not trusted (unknown CA, self-signed), a certificate for another
    host name, an expired or not yet valid certificate, or another verification error with OpenSSL's
    words; a handshake with something that is not TLS (plain HTTP where TLS is expected); any other
    handshake failure with OpenSSL's reason. Never raises (it reads attributes that may be missing: an
    ``SSLCertVerificationError`` raised by Python code has no ``verify_code``).
    """
    found = _ssl_error_in(exc)
    if found is None:
        return None
    exc = found
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        words = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc) or "failed"
        if code in _EXPIRED:
            return f"TLS certificate of {host} has expired ({words})"
        if code in _NOT_YET_VALID:
            return f"TLS certificate of {host} is not valid yet ({words})"
        if code in _WRONG_NAME:
            return f"TLS certificate of {host} is for another host name ({words})"
        if code in _UNKNOWN_ISSUER:
            return f"TLS certificate of {host} is not trusted: its issuer is an unknown CA ({words})"
        return f"TLS certificate of {host} not trusted: {words}"
    reason = str(getattr(exc, "reason", "") or "")
    if reason.upper() in _NOT_TLS:
        return (
            f"TLS handshake with {host} failed: the server does not speak TLS there "
            f"(plain HTTP where HTTPS is expected?) ({reason})"
        )
    return f"TLS handshake with {host} failed: {reason or exc}"

"""Credentials for libvirt: its auth callback answered from ``ConnectOptions.credentials``, and redaction.

libvirt asks for credentials through a callback (``virConnectOpenAuth``) when the peer wants them:
SASL asks for an auth name and a passphrase, the ssh transports for a password or a key's
passphrase (``NOECHOPROMPT``) and to confirm an unknown host key (``ECHOPROMPT``). The answers:

========================  ===============================================================
``USERNAME``/``AUTHNAME``  the credentials' username, else libvirt's suggested default
``PASSPHRASE``             the credentials' password
``NOECHOPROMPT``           the credentials' password (a secret prompt: ssh password, key)
``ECHOPROMPT``             refused: a visible question (an unknown ssh host key) is the
                           user's to answer (``virsh``, ``ssh``), never guessed
``REALM``/``LANGUAGE``     libvirt's default, else empty
anything else              refused
========================  ===============================================================

A refused or unanswerable request fails the whole answer (libvirt then fails the connect with
``VIR_ERR_AUTH_FAILED`` or ``VIR_ERR_AUTH_CANCELLED``); :attr:`CredentialCallback.missing` says what was
asked, so the error can say what to pass. No answer, password or prompt reply is ever logged or
shown in a ``repr``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from virtabs.spi import Credentials, quote, redact_uri_text

__all__ = ["CredType", "CredentialCallback", "redact_text"]


class CredType(enum.IntEnum):
    """libvirt's ``virConnectCredentialType`` (values fixed by libvirt's ABI)."""

    USERNAME = 1
    AUTHNAME = 2
    LANGUAGE = 3
    CNONCE = 4
    PASSPHRASE = 5
    ECHOPROMPT = 6
    NOECHOPROMPT = 7
    REALM = 8
    EXTERNAL = 9


_ASKED = {
    CredType.USERNAME: "a user name",
    CredType.AUTHNAME: "an authentication name",
    CredType.PASSPHRASE: "a password",
    CredType.NOECHOPROMPT: "a secret",
    CredType.ECHOPROMPT: "an answer to a question",
    CredType.CNONCE: "a client nonce",
    CredType.EXTERNAL: "an external credential",
}


class CredentialCallback:
    """libvirt's auth callback over one connection's :class:`~virtabs.spi.Credentials`.

    ``auth()`` is the ``[credtypes, callback, opaque]`` list ``libvirt.openAuth`` takes.
    """

    def __init__(self, credentials: Credentials | None) -> None:
        self._username = credentials.username if credentials else None
        self._password = credentials.password if credentials else None
        self.missing: list[str] = []
        """What libvirt asked for and got no answer (``"a password (VIR_CRED_PASSPHRASE)"``)."""

    def auth(self) -> list[Any]:
        """The ``auth`` argument of ``libvirt.openAuth``."""
        return [[int(t) for t in CredType], self, None]

    def answer(self, kind: int, prompt: str, default: str | None) -> str | None:
        """The answer to one request, or None to refuse it."""
        if kind in (CredType.USERNAME, CredType.AUTHNAME):
            return self._username or default or None
        if kind in (CredType.PASSPHRASE, CredType.NOECHOPROMPT):
            return self._password or None
        if kind in (CredType.REALM, CredType.LANGUAGE):
            return default or ""
        return None  # ECHOPROMPT (an unknown ssh host key ...), CNONCE, EXTERNAL: not ours to answer

    def __call__(self, creds: list[list[Any]], _opaque: Any) -> int:
        """Fill ``cred[4]`` of every ``[type, prompt, challenge, default, result]``; 0, or -1 when one is refused."""
        for cred in creds:
            kind, prompt, _challenge, default = int(cred[0]), str(cred[1] or ""), cred[2], cred[3]
            value = self.answer(kind, prompt, default)
            if value is None:
                try:
                    ctype = CredType(kind)
                    name, asked = f"VIR_CRED_{ctype.name}", _ASKED.get(ctype, "a credential")
                except ValueError:
                    name, asked = f"credential type {kind}", "a credential"
                self.missing.append(f"{asked} ({name}{f': {quote(prompt)}' if prompt else ''})")
                return -1
            cred[4] = value
        return 0

    def secrets(self) -> tuple[str, ...]:
        """What must never be shown."""
        return (self._password,) if self._password else ()

    def __repr__(self) -> str:
        return f"CredentialCallback(username={quote(self._username)}, password={'***' if self._password else None})"


# user:password@ in a URI's authority, and a secret-looking query parameter.


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without ``secrets`` and without a password inside any URI it quotes."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return redact_uri_text(text)

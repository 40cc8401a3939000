"""Connection URIs, libvirt's grammar: ``driver[+transport]://[user@][host][:port]/path?params``.

Examples: ``test:///default``, ``qemu:///session``, ``qemu:///embed?root=/tmp/x``,
``esx://h/?no_verify=1``, ``hyperv://h/?transport=http``, ``xen+ssh://root@h/``.
A password inside the URI is refused: credentials travel separately.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

import attrs

from ._errors import InvalidArgumentError, quote

__all__ = ["URI", "parse_uri", "redact_uri_text"]

_SCHEME_RE = re.compile(r"[a-z][a-z0-9_-]*(\+[a-z][a-z0-9_-]*)?")


def _as_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class URI:
    """A parsed connection URI. ``str(uri)`` gives it back (never with a password: none is accepted)."""

    driver: str
    transport: str | None = None
    user: str | None = None
    host: str | None = None
    port: int | None = None
    path: str = "/"
    params: Mapping[str, str] = attrs.field(factory=dict, converter=_as_dict)

    @property
    def scheme(self) -> str:
        """``driver`` or ``driver+transport``."""
        return f"{self.driver}+{self.transport}" if self.transport else self.driver

    @property
    def is_local(self) -> bool:
        """True when the URI names no host."""
        return not self.host

    def param(self, name: str, default: str | None = None) -> str | None:
        """A query parameter, or ``default``."""
        return self.params.get(name, default)

    def flag(self, name: str) -> bool:
        """A boolean query parameter (``?no_verify=1``)."""
        value = self.params.get(name)
        return value is not None and value.lower() in ("1", "true", "yes", "on")

    def __str__(self) -> str:
        netloc = ""
        if self.user:
            netloc += urllib.parse.quote(self.user, safe="") + "@"
        if self.host:
            netloc += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        query = urllib.parse.urlencode(dict(self.params), safe="/")
        return f"{self.scheme}://{netloc}{self.path}" + (f"?{query}" if query else "")


_WHERE_CREDENTIALS_GO = (
    "pass credentials= to virtabs.open(), set VIRTABS_USERNAME/VIRTABS_PASSWORD, "
    "or put them in ~/.config/virtabs/config.toml"
)
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "pass", "secret"})
# user:password@ in the authority, and ?password=... in the query: what redact_uri_text hides.
_USERINFO_SECRET = re.compile(r"((?:^|://|\s)[^\s/?#@:]*:)[^\s/?@]*@")
_QUERY_SECRET = re.compile(r"([?&](?:" + "|".join(sorted(_SECRET_PARAMS)) + r")=)[^&#]*", re.IGNORECASE)


def redact_uri_text(text: str) -> str:
    """``text`` with a password in its authority or a secret query parameter replaced by ``***``.

    The one redaction point for URI text that is not (yet) a parsed :class:`URI`: every error
    message of :func:`parse_uri`, and every echo of a URI as the user typed it, goes through it.
    """
    return _QUERY_SECRET.sub(r"\1***", _USERINFO_SECRET.sub(r"\1***@", text))


def parse_uri(text: str) -> URI:
    """Parse a connection URI; a malformed one or a password inside it raises InvalidArgumentError.

    No message ever repeats a password the text held.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError("empty connection URI")
    text = text.strip()
    shown = redact_uri_text(text)
    if "\x00" in text or any(ord(c) < 32 for c in text):
        raise InvalidArgumentError(f"invalid connection URI {quote(shown)}: control characters are not allowed")
    if "://" not in text:
        raise InvalidArgumentError(
            f"invalid connection URI {quote(shown)}: expected driver[+transport]://[user@][host][:port]/path, "
            "e.g. test:///default or qemu:///session"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
        password = parts.password
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid connection URI {quote(shown)}: {redact_uri_text(str(exc))}") from None
    scheme = parts.scheme.lower()
    if not _SCHEME_RE.fullmatch(scheme):
        raise InvalidArgumentError(f"invalid connection URI {quote(shown)}: bad scheme {quote(parts.scheme)}")
    if password is not None:
        raise InvalidArgumentError(
            "a password inside a connection URI is refused (it would end up in logs and shell history); "
            + _WHERE_CREDENTIALS_GO
        )
    if parts.fragment:
        raise InvalidArgumentError(f"invalid connection URI: fragments ('#...') are not allowed in {quote(shown)}")
    if parts.path and not parts.path.startswith("/"):
        raise InvalidArgumentError(f"invalid connection URI {quote(shown)}: the path must start with '/'")
    if shown != text and not any(k.lower() in _SECRET_PARAMS for k, _ in urllib.parse.parse_qsl(parts.query)):
        raise InvalidArgumentError(
            f"invalid connection URI {quote(shown)}: it holds something shaped like user:password@; "
            + _WHERE_CREDENTIALS_GO
        )
    driver, _, transport = scheme.partition("+")
    params: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if redact_uri_text(value) != value:
            raise InvalidArgumentError(
                f"parameter {quote(key)} of a connection URI holds a password (user:password@ or password=): a "
                f"password inside a URI is refused, it would end up in logs and repr; {_WHERE_CREDENTIALS_GO}"
            )
        if key.lower() in _SECRET_PARAMS:
            raise InvalidArgumentError(
                f"a {quote(key)} parameter in a connection URI is refused (it would end up in logs, errors and "
                f"repr); {_WHERE_CREDENTIALS_GO}"
            )
        if key in params:
            raise InvalidArgumentError(f"invalid connection URI: parameter {quote(key)} given twice")
        params[key] = value
    return URI(
        driver=driver,
        transport=transport or None,
        user=urllib.parse.unquote(parts.username) if parts.username else None,
        host=parts.hostname or None,
        port=port,
        path=parts.path or "/",
        params=params,
    )

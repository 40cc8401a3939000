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

from ._errors import InvalidArgumentError

__all__ = ["URI", "parse_uri"]

_SCHEME_RE = re.compile(r"^[a-z][a-z0-9_-]*(\+[a-z][a-z0-9_-]*)?$")


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


def parse_uri(text: str) -> URI:
    """Parse a connection URI; a malformed one or a password inside it raises InvalidArgumentError."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError("empty connection URI")
    text = text.strip()
    if "://" not in text:
        raise InvalidArgumentError(
            f"invalid connection URI {text!r}: expected driver[+transport]://[user@][host][:port]/path, "
            "e.g. test:///default or qemu:///session"
        )
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid connection URI {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if not _SCHEME_RE.match(scheme):
        raise InvalidArgumentError(f"invalid connection URI {text!r}: bad scheme {parts.scheme!r}")
    if parts.password is not None:
        raise InvalidArgumentError(
            "a password inside a connection URI is refused (it would end up in logs and shell history); "
            "pass credentials=, set VIRTABS_PASSWORD or put it in the config file"
        )
    if parts.fragment:
        raise InvalidArgumentError(f"invalid connection URI: fragments ('#...') are not allowed in {text!r}")
    driver, _, transport = scheme.partition("+")
    params: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in params:
            raise InvalidArgumentError(f"invalid connection URI: parameter {key!r} given twice")
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

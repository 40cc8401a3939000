"""The user's config file and credentials.

``$VIRTABS_CONFIG`` or ``$XDG_CONFIG_HOME/virtabs/config.toml`` (default
``~/.config/virtabs/config.toml``)::

    default_uri = "qemu:///session"

    [aliases]                       # like libvirt's uri_aliases
    lab = "qemu:///embed?root=/srv/lab"

    [credentials."esx://vc.example.com"]
    username = "administrator@vsphere.local"
    password = "..."

Credentials are looked up in this order: ``credentials=`` passed to
:func:`virtabs.open`, the ``VIRTABS_USERNAME`` / ``VIRTABS_PASSWORD``
environment variables, then the config file entry for the URI (matched on
``scheme://host``, user and path ignored). A user written in the URI
(``xen+ssh://root@dom0/``, ``esx://admin@vc/``) wins over the username of all
of them, as in libvirt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._errors import InvalidArgumentError, quote
from ._uri import URI

__all__ = ["Config", "Credentials", "load_config"]

DEFAULT_URI = "test:///default"


@attrs.frozen(repr=False)
class Credentials:
    """A username and a secret. The secret never shows in ``repr``/``str``."""

    username: str | None = None
    password: str | None = attrs.field(default=None, eq=False)

    def __repr__(self) -> str:
        secret = "'***'" if self.password else "None"
        return f"Credentials(username={self.username!r}, password={secret})"

    __str__ = __repr__

    def secrets(self) -> tuple[str, ...]:
        """Strings that must be redacted wherever they might appear."""
        return (self.password,) if self.password else ()


@attrs.frozen
class Config:
    """The parsed config file."""

    path: Path | None = None
    default_uri: str | None = None
    aliases: Mapping[str, str] = attrs.field(factory=dict)
    credentials: Mapping[str, Credentials] = attrs.field(factory=dict, repr=False)

    def resolve_alias(self, name: str) -> str:
        """The URI an alias stands for, or ``name`` unchanged."""
        return self.aliases.get(name, name)

    def credentials_for(self, uri: URI) -> Credentials | None:
        """The config-file credentials for ``uri`` (keyed ``scheme://host``), if any."""
        key = f"{uri.scheme}://{uri.host or ''}"
        return self.credentials.get(key) or self.credentials.get(f"{uri.driver}://{uri.host or ''}")


def config_path() -> Path:
    """Where the config file is read from."""
    explicit = os.environ.get("VIRTABS_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "virtabs" / "config.toml"


def load_config(path: Path | None = None) -> Config:
    """Read the config file; a missing file is an empty config, a malformed one an error."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config(path=None)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read config file {path}: {exc.strerror}") from None
    import tomllib  # here: a process without a config file does not pay for the TOML parser

    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"config file {path} is not valid TOML: {exc}") from None
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise InvalidArgumentError(f"config file {path}: [aliases] must map names to URI strings")
    creds: dict[str, Credentials] = {}
    for key, entry in (data.get("credentials") or {}).items():
        if not isinstance(entry, dict):
            raise InvalidArgumentError(f"config file {path}: [credentials.{quote(key)}] must be a table")
        creds[key] = Credentials(username=entry.get("username"), password=entry.get("password"))
    default = data.get("default_uri")
    if default is not None and not isinstance(default, str):
        raise InvalidArgumentError(f"config file {path}: default_uri must be a string")
    return Config(path=path, default_uri=default, aliases=aliases, credentials=creds)


def default_uri(config: Config) -> str:
    """``$VIRTABS_DEFAULT_URI``, then the config's ``default_uri``, then ``test:///default``."""
    return os.environ.get("VIRTABS_DEFAULT_URI") or config.default_uri or DEFAULT_URI


def credentials_from_env() -> Credentials | None:
    """Credentials from ``VIRTABS_USERNAME`` / ``VIRTABS_PASSWORD``, if either is set."""
    user = os.environ.get("VIRTABS_USERNAME")
    password = os.environ.get("VIRTABS_PASSWORD")
    if user is None and password is None:
        return None
    return Credentials(username=user, password=password)


def coerce_credentials(value: Credentials | Mapping[str, str] | tuple[str, str] | None) -> Credentials | None:
    """Accept ``Credentials``, ``{"username":..,"password":..}`` or ``(user, password)``."""
    if value is None or isinstance(value, Credentials):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Credentials(username=value[0], password=value[1])
    if isinstance(value, Mapping):
        unknown = set(value) - {"username", "password"}
        if unknown:
            raise InvalidArgumentError(f"unknown credential field(s): {', '.join(sorted(unknown))}")
        return Credentials(username=value.get("username"), password=value.get("password"))
    raise InvalidArgumentError("credentials must be Credentials, a (username, password) pair or a mapping")

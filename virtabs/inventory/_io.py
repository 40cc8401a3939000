"""Files: atomic output, the host list (``--config``), reading a saved inventory back."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import InvalidArgumentError, quote
from ._collect import HostTarget
from ._model import READABLE_SCHEMA_VERSIONS

__all__ = ["load_hosts_file", "load_inventory", "write_atomic"]

_SECRET_KEYS = frozenset({"password", "passwd", "secret", "token", "username", "user", "credentials"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The data goes to a temporary file in the same directory, is flushed to disk,
    and replaces ``path`` with :func:`os.replace`. If anything fails (or Ctrl-C
    arrives) before that, the temporary file is removed and ``path`` is untouched.
    A replaced file keeps its permission bits; a new one gets the umask's.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    directory = target.parent
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not possible everywhere
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _parse_config(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgumentError(f"host list {path} is not valid TOML: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        kind = "YAML" if suffix in (".yaml", ".yml") else "TOML or YAML"
        raise InvalidArgumentError(f"host list {path} is not valid {kind}: {exc}") from None


def _host_entry(path: Path, position: int, entry: Any, default_timeout: float | None) -> HostTarget:
    where = f"host list {path}, host #{position}"
    if isinstance(entry, str):
        return HostTarget(uri=entry, timeout=default_timeout)
    if not isinstance(entry, Mapping):
        raise InvalidArgumentError(f"{where}: expected a URI string or a table with 'uri', got {quote(entry)}")
    secrets = sorted(k for k in entry if str(k).lower() in _SECRET_KEYS)
    if secrets:
        raise InvalidArgumentError(
            f"{where}: {', '.join(secrets)} is not accepted in a host list (it would sit next to the inventory); "
            "put credentials in the virtabs config file or VIRTABS_USERNAME / VIRTABS_PASSWORD"
        )
    unknown = sorted(set(map(str, entry)) - {"uri", "name", "alias", "timeout"})
    if unknown:
        raise InvalidArgumentError(f"{where}: unknown key(s) {', '.join(unknown)} (known: uri, name, alias, timeout)")
    if "uri" not in entry:
        raise InvalidArgumentError(f"{where}: 'uri' is missing")
    if "name" in entry and "alias" in entry:
        raise InvalidArgumentError(f"{where}: give 'name' or 'alias', not both")
    name = entry.get("name", entry.get("alias"))
    timeout = entry.get("timeout", default_timeout)
    try:
        return HostTarget(uri=entry["uri"], name=name, timeout=timeout)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{where}: {exc.message}") from None


def load_hosts_file(path: str | os.PathLike[str]) -> tuple[list[HostTarget], dict[str, Any]]:
    """Read a host list; returns the hosts and the file's run settings (``timeout``, ``concurrency``).

    TOML (``.toml``) or YAML (anything else)::

        timeout = 30          # optional, seconds per host
        concurrency = 8       # optional
        [[hosts]]
        uri = "qemu+ssh://root@kvm1/system"
        name = "kvm1"         # optional ("alias" works too)
        timeout = 10          # optional, this host only

    YAML may also be a bare list of URIs or host tables. Credentials are refused
    here: they come from the virtabs config file or the environment.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read host list {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"host list {p} is not UTF-8 text") from None
    data = _parse_config(p, text)
    settings: dict[str, Any] = {}
    if isinstance(data, list):
        entries: Any = data
    elif isinstance(data, Mapping):
        unknown = sorted(set(map(str, data)) - {"hosts", "timeout", "concurrency"})
        if unknown:
            raise InvalidArgumentError(
                f"host list {p}: unknown key(s) {', '.join(unknown)} (known: hosts, timeout, concurrency)"
            )
        entries = data.get("hosts")
        for key in ("timeout", "concurrency"):
            if key in data:
                settings[key] = data[key]
    else:
        raise InvalidArgumentError(f"host list {p}: expected a list of hosts or a table with 'hosts'")
    if not isinstance(entries, list) or not entries:
        raise InvalidArgumentError(f"host list {p}: 'hosts' must be a non-empty list")
    timeout = settings.get("timeout")
    if timeout is not None:
        try:
            HostTarget(timeout=timeout)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"host list {p}: {exc.message}") from None
    concurrency = settings.get("concurrency")
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise InvalidArgumentError(f"host list {p}: concurrency must be a positive integer, got {quote(concurrency)}")
    targets = [_host_entry(p, i, e, None) for i, e in enumerate(entries, 1)]
    return targets, settings


def load_inventory(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an inventory JSON file written by ``virtabs inventory`` (schema v3, v2 or v1)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read inventory {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"inventory {p} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{p} is not an inventory JSON file (--format json): {exc}") from None
    if not isinstance(data, dict) or "hosts" not in data or "schema_version" not in data:
        raise InvalidArgumentError(f"{p} is not an inventory JSON file (no schema_version/hosts); use --format json")
    version = data["schema_version"]
    if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
        *earlier, last = sorted(READABLE_SCHEMA_VERSIONS)
        readable = f"{', '.join(str(v) for v in earlier)} and {last}"
        raise InvalidArgumentError(
            f"{p} has inventory schema version {quote(data['schema_version'])}; this virtabs reads versions {readable}"
        )
    if not isinstance(data["hosts"], list):
        raise InvalidArgumentError(f"{p}: 'hosts' must be a list")
    return data

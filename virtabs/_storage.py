""":class:`StoragePool` and :class:`Volume`: storage of one connection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _rules
from ._errors import InvalidArgumentError, quote
from ._models import DIRECTORY_FORMAT, VOLUME_FORMATS, PoolInfo, VolumeInfo
from .spi import OPERATIONS

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["StoragePool", "Volume"]


class StoragePool:
    """A storage pool of a connection."""

    def __init__(self, conn: Connection, info: PoolInfo) -> None:
        self._conn = conn
        self._info = info

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._info.name

    @property
    def last_info(self) -> PoolInfo:
        """The facts of the listing or lookup that made this handle (no host call; :meth:`info` refreshes)."""
        return self._info

    def __repr__(self) -> str:
        return f"<StoragePool name={self.name!r} type={self._info.type!r}>"

    def info(self) -> PoolInfo:
        """Fresh capacity and allocation figures."""
        with self._conn._gate(OPERATIONS["lookup_storage_pool"], f"info of pool {quote(self.name)}") as call:
            self._info = call.driver.lookup_storage_pool(self.name)
        return self._info

    def list_volumes(self) -> list[Volume]:
        """The pool's volumes."""
        with self._conn._gate(OPERATIONS["list_volumes"], f"volume listing of pool {quote(self.name)}") as call:
            vols = call.driver.list_volumes(self.name)
        return [Volume(self._conn, v) for v in vols]

    def lookup_volume(self, name: str) -> Volume:
        """A volume by name; NoStorageVolumeError when missing."""
        _rules.require_volume_name(name)
        what = f"lookup of volume {quote(name)} in pool {quote(self.name)}"
        with self._conn._gate(OPERATIONS["lookup_volume"], what) as call:
            return Volume(self._conn, call.driver.lookup_volume(self.name, name))

    def create_volume(
        self, name: str, capacity_bytes: int | None = None, *, format: str = "qcow2", backing: str | None = None
    ) -> Volume:
        """Create a volume: a disk image of ``capacity_bytes`` in ``format`` (optionally backed by ``backing``,
        an absolute path), or, with ``format="dir"`` and no size, a directory volume (a Docker or Podman named
        volume). Which formats a pool makes is the host's: a pool refuses the others (InvalidArgumentError)."""
        _rules.require_volume_name(name, new=True)
        if format not in VOLUME_FORMATS:
            raise InvalidArgumentError(
                f"unknown volume format {quote(format)} (known: {', '.join(sorted(VOLUME_FORMATS))})"
            )
        if format == DIRECTORY_FORMAT:
            if capacity_bytes is not None:
                raise InvalidArgumentError(
                    f"a directory volume (format {DIRECTORY_FORMAT!r}) has no capacity: create it without one"
                )
            if backing is not None:
                raise InvalidArgumentError(
                    f"a directory volume (format {DIRECTORY_FORMAT!r}) cannot have a backing image"
                )
        else:
            if capacity_bytes is None:
                raise InvalidArgumentError(f"a {format} volume needs capacity_bytes (its size in bytes)")
            capacity_bytes = _rules.require_positive_size(capacity_bytes, "capacity_bytes")
            if capacity_bytes > _rules.LLONG_MAX:
                raise InvalidArgumentError(
                    f"capacity_bytes {capacity_bytes} is impossible (at most {_rules.LLONG_MAX})"
                )
        if backing is not None:
            _rules.require_host_path(backing, "backing image")
        if backing is not None and format == "raw":
            raise InvalidArgumentError("a raw volume cannot have a backing image")
        what = f"create of volume {quote(name)} in pool {quote(self.name)}"
        with self._conn._gate(OPERATIONS["create_volume"], what) as call:
            return Volume(self._conn, call.driver.create_volume(self.name, name, capacity_bytes, format, backing))


class Volume:
    """A storage volume."""

    def __init__(self, conn: Connection, info: VolumeInfo) -> None:
        self._conn = conn
        self._info = info

    @property
    def name(self) -> str:
        """The volume's name."""
        return self._info.name

    @property
    def pool(self) -> str:
        """The name of the pool it lives in."""
        return self._info.pool

    @property
    def path(self) -> str:
        """The volume's path on the host."""
        return self._info.path

    @property
    def last_info(self) -> VolumeInfo:
        """The facts of the listing or lookup that made this handle (no host call; :meth:`info` refreshes)."""
        return self._info

    def __repr__(self) -> str:
        return f"<Volume name={self.name!r} pool={self.pool!r}>"

    def info(self) -> VolumeInfo:
        """Fresh facts (format, capacity, allocation, backing chain; a directory volume has no capacity)."""
        with self._conn._gate(OPERATIONS["lookup_volume"], f"info of volume {quote(self.name)}") as call:
            self._info = call.driver.lookup_volume(self.pool, self.name)
        return self._info

    def delete(self) -> None:
        """Delete the volume."""
        with self._conn._gate(OPERATIONS["delete_volume"], f"delete of volume {quote(self.name)}") as call:
            call.driver.delete_volume(self.pool, self.name)

    def resize(self, capacity_bytes: int) -> VolumeInfo:
        """Grow the volume to ``capacity_bytes``."""
        capacity_bytes = _rules.require_positive_size(capacity_bytes, "capacity_bytes")
        if capacity_bytes > _rules.LLONG_MAX:
            raise InvalidArgumentError(f"capacity_bytes {capacity_bytes} is impossible (at most {_rules.LLONG_MAX})")
        with self._conn._gate(OPERATIONS["resize_volume"], f"resize of volume {quote(self.name)}") as call:
            self._info = call.driver.resize_volume(self.pool, self.name, capacity_bytes)
        return self._info

"""Storage: directory pools and their volumes, and the disk facts read from image headers.

Pools: ``default`` (the images directory) plus ``<config>/pools/NAME.json``
``{"type": "dir", "path": ...}``. A volume's format is the one it was created with (recorded in
the pool's ``.virtabs-volumes.json``); a file created elsewhere is raw: a format is never guessed
from an image's bytes (a guest can write any header into a raw disk). The same holds for a backing
image given to ``create_volume``: its pool's record, else raw, always passed to ``qemu-img -F``.
"""

from __future__ import annotations

import contextlib
import os

from virtabs.spi import (
    DiskInfo,
    InvalidArgumentError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationInvalidError,
    PoolInfo,
    VirtabsError,
    VolumeInfo,
)

from . import _img
from ._records import Definition
from ._state import StateDirs, file_lock, read_json, write_json_atomic

__all__ = ["Storage"]

_VOLUME_FORMATS = ".virtabs-volumes.json"
_VOLUME_LOCK = ".virtabs-volumes.lock"


class Storage:
    """The pools and volumes of one state root."""

    def __init__(self, dirs: StateDirs) -> None:
        self.dirs = dirs

    # --- pools ------------------------------------------------------------------------------------

    def pools(self) -> dict[str, str]:
        """Every pool's directory by name."""
        pools = {"default": self.dirs.images}
        with contextlib.suppress(FileNotFoundError):
            for fname in sorted(os.listdir(self.dirs.pools)):
                if fname.endswith(".json") and not fname.startswith("."):
                    data = read_json(os.path.join(self.dirs.pools, fname))
                    if isinstance(data, dict) and data.get("type", "dir") == "dir" and data.get("path"):
                        pools[fname[:-5]] = os.path.abspath(str(data["path"]))
        return pools

    def pool_path(self, pool: str) -> str:
        """The directory of ``pool``; NoStoragePoolError when there is no such pool."""
        path = self.pools().get(pool)
        if path is None:
            raise NoStoragePoolError(f"no storage pool named {pool!r}")
        return path

    def pool_of(self, path: str, pools: dict[str, str] | None = None) -> str | None:
        """The pool whose directory holds ``path``, if any."""
        directory = os.path.dirname(os.path.realpath(path))
        for name, ppath in (self.pools() if pools is None else pools).items():
            if os.path.realpath(ppath) == directory:
                return name
        return None

    @staticmethod
    def pool_info(name: str, path: str) -> PoolInfo:
        """Capacity and use of the file system under the pool's directory (made by the first volume created:
        a listing creates nothing, so a directory not there yet is measured at its nearest existing parent)."""
        existing = path
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        st = os.statvfs(existing)
        cap = st.f_blocks * st.f_frsize
        return PoolInfo(
            name=name,
            type="dir",
            capacity_bytes=cap,
            allocation_bytes=cap - st.f_bfree * st.f_frsize,
            available_bytes=st.f_bavail * st.f_frsize,
            path=path,
            active=True,
        )

    def list_pools(self) -> list[PoolInfo]:
        """Every pool."""
        return [self.pool_info(n, p) for n, p in self.pools().items()]

    def lookup_pool(self, name: str) -> PoolInfo:
        """A pool by name."""
        return self.pool_info(name, self.pool_path(name))

    # --- volumes ----------------------------------------------------------------------------------

    @staticmethod
    def _formats(pool_path: str) -> dict[str, str]:
        data = read_json(os.path.join(pool_path, _VOLUME_FORMATS))
        return dict(data) if isinstance(data, dict) else {}

    def _volumes_lock(self, pool: str, pool_path: str) -> contextlib.AbstractContextManager[None]:
        """The lock of the pool's recorded volume formats (waited for at most the connection's timeout)."""
        return file_lock(
            os.path.join(pool_path, _VOLUME_LOCK), self.dirs.lock_timeout, f"the volumes of storage pool {pool!r}"
        )

    def volume_format(self, pool_path: str, name: str) -> str:
        """The format the volume was created with; a file created elsewhere is raw (never guessed from its bytes)."""
        return self._formats(pool_path).get(name) or "raw"

    def backing_format(self, backing_path: str) -> str:
        """The known format of a backing image: the one its pool recorded when the volume was created there, else
        raw. Never read from the image's bytes (a raw disk may hold a qcow2 header naming any host file), and
        never from a record in a directory that is not a pool."""
        pools = self.pools()
        real = os.path.realpath(backing_path)
        bpool = self.pool_of(real, pools)
        if bpool is None:
            return "raw"
        return self.volume_format(pools[bpool], os.path.basename(real))

    @staticmethod
    def resolve(pool: str, pool_path: str, name: str) -> str:
        """The path of volume ``name`` under ``pool_path``, refused when it would leave the pool.

        Directory pools are flat: ``name`` is one component not starting with '.', and the file it names
        (a symlink followed to its end) must be a file directly in the pool's real directory.
        """
        if not name or "/" in name or "\0" in name or name.startswith("."):
            raise InvalidArgumentError(
                f"invalid volume name {name!r} for pool {pool!r}: directory pools are flat and names "
                "starting with '.' are reserved"
            )
        root = os.path.realpath(pool_path)
        path = os.path.join(pool_path, name)
        if os.path.dirname(os.path.realpath(path)) != root:
            raise InvalidArgumentError(
                f"volume {name!r} of storage pool {pool!r} resolves outside the pool's directory {root} "
                "(a symlink leaving the pool): refused"
            )
        return path

    def _volume(self, pool: str, pool_path: str, name: str) -> VolumeInfo:
        path = self.resolve(pool, pool_path, name)
        if not os.path.isfile(path):
            raise NoStorageVolumeError(f"no volume {name!r} in storage pool {pool!r}")
        fmt = self.volume_format(pool_path, name)
        layers = _img.chain(path, fmt)
        return VolumeInfo(
            name=name,
            pool=pool,
            path=path,
            format=fmt,
            capacity_bytes=int(layers[0].get("virtual-size", 0)),
            allocation_bytes=layers[0].get("actual-size"),
            backing_chain=_img.backing_paths(layers),
        )

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Regular files of the pool directory (``qemu-img info -f FORMAT --backing-chain``)."""
        path = self.pool_path(pool)
        out = []
        try:
            fnames = sorted(os.listdir(path))
        except FileNotFoundError:  # no volume created yet
            return []
        for fname in fnames:
            if fname.startswith(".") or not os.path.isfile(os.path.join(path, fname)):
                continue
            with contextlib.suppress(VirtabsError):  # a symlink leaving the pool is not listed
                out.append(self._volume(pool, path, fname))
        return out

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A volume by name."""
        return self._volume(pool, self.pool_path(pool), name)

    def create_volume(self, pool: str, name: str, capacity_bytes: int, fmt: str, backing: str | None) -> VolumeInfo:
        """``qemu-img create -f FORMAT [-b BACKING -F BACKING_FORMAT]``; an existing file is refused."""
        path = self.pool_path(pool)
        os.makedirs(path, mode=0o700, exist_ok=True)
        vpath = self.resolve(pool, path, name)
        if os.path.lexists(vpath):  # a dangling symlink too: qemu-img would create its target
            raise OperationInvalidError(f"volume {name!r} already exists in storage pool {pool!r}")
        backing_path = backing_fmt = None
        if backing:
            backing_path = backing if os.path.isabs(backing) else self.resolve(pool, path, backing)
            if not os.path.exists(backing_path):
                raise InvalidArgumentError(f"backing volume {backing} does not exist")
            backing_fmt = self.backing_format(backing_path)
        with self._volumes_lock(pool, path):
            _img.create(vpath, fmt, capacity_bytes or None, backing_path, backing_fmt)
            meta = self._formats(path)
            meta[name] = fmt
            write_json_atomic(os.path.join(path, _VOLUME_FORMATS), meta)
        return self._volume(pool, path, name)

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove the file and its recorded format."""
        path = self.pool_path(pool)
        vpath = self.resolve(pool, path, name)
        if not os.path.isfile(vpath):
            raise NoStorageVolumeError(f"no volume {name!r} in storage pool {pool!r}")
        with self._volumes_lock(pool, path):
            os.unlink(vpath)
            meta = self._formats(path)
            if meta.pop(name, None) is not None:
                write_json_atomic(os.path.join(path, _VOLUME_FORMATS), meta)

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``qemu-img resize -f FORMAT`` (``--shrink`` when smaller)."""
        path = self.pool_path(pool)
        vol = self._volume(pool, path, name)
        _img.resize(vol.path, vol.format, capacity_bytes, shrink=capacity_bytes < vol.capacity_bytes)
        return self._volume(pool, path, name)

    # --- disks --------------------------------------------------------------------------------------

    def disk_infos(self, defn: Definition) -> list[DiskInfo]:
        """The definition's disks with capacity and backing chain read from the image headers."""
        pools = self.pools()
        out = []
        for d in defn.spec.disks:
            chain: tuple[str, ...] = ()
            capacity = allocation = None
            if os.path.exists(d.path):
                with contextlib.suppress(VirtabsError):
                    layers = _img.chain(d.path, d.format)
                    chain = _img.backing_paths(layers)
                    capacity = int(layers[0].get("virtual-size", 0)) or None
                    allocation = layers[0].get("actual-size")
            out.append(
                DiskInfo(
                    target=d.target,
                    path=d.path,
                    format=d.format,
                    bus=d.bus,
                    readonly=d.readonly,
                    capacity_bytes=capacity,
                    allocation_bytes=allocation,
                    backing_chain=chain,
                    pool=self.pool_of(d.path, pools),
                )
            )
        return out

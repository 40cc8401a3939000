"""Storage: directory pools and their volumes, and the disk facts read from image headers.

Pools: ``default`` (the images directory) plus ``<config>/pools/NAME.json``
``{"type": "dir", "path": ...}``. A volume's format is the one it was created with (recorded in
the pool's ``.virtabs-volumes.json``); a file created elsewhere is raw: a format is never guessed
from an image's bytes (a guest can write any header into a raw disk). The same holds for a backing
image given to ``create_volume``: its pool's record, else raw, always passed to ``qemu-img -F``.

A volume's path is checked to stay in its pool (:meth:`Storage.resolve`), then opened without following a
symlink anywhere (:class:`_Pinned`): the pool's directory is walked from ``/`` with ``O_NOFOLLOW`` on each
component of the path that was checked, and the reads (Python's header reads and ``qemu-img``) go through
``/dev/fd/N``, so a path component swapped for a symlink after the check is refused, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

from virtabs.spi import (
    DiskInfo,
    InvalidArgumentError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    PoolInfo,
    VirtabsError,
    VolumeInfo,
    quote,
)

from . import _img
from ._records import Definition
from ._state import StateDirs, file_lock, read_json, write_json_atomic

__all__ = ["Storage"]

_VOLUME_FORMATS = ".virtabs-volumes.json"
_VOLUME_LOCK = ".virtabs-volumes.lock"


_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Pinned:
    """A pool directory (and optionally one volume in it) opened without following any symlink.

    ``dir_fd`` is the directory reached from ``/`` one component at a time with ``O_NOFOLLOW``, along the
    real path that was checked; ``file_fd`` the volume opened in it with ``O_NOFOLLOW``. :meth:`path` is what
    readers and ``qemu-img`` (given :attr:`fds`) open: ``/dev/fd/N`` of the volume itself for raw, the name
    under the pinned directory for other formats (their relative backing names resolve next to it).
    """

    def __init__(self, pool: str, root: str) -> None:
        self.pool = pool
        self.root = root
        self.dir_fd = os.open("/", _DIR_FLAGS)
        self.file_fd: int | None = None
        self.name = ""
        try:
            for part in root.strip("/").split("/"):
                if part:
                    nfd = os.open(part, _DIR_FLAGS, dir_fd=self.dir_fd)
                    os.close(self.dir_fd)
                    self.dir_fd = nfd
        except OSError as exc:
            os.close(self.dir_fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise OperationFailedError(
                    f"storage pool {quote(pool)}: a component of its directory {root} was replaced by a symlink or a "
                    "non-directory while in use: refused"
                ) from None
            raise

    def open_volume(self, name: str, writable: bool = False) -> None:
        """Open volume ``name`` (a plain file directly in the directory, no symlink); NoStorageVolumeError if none."""
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=self.dir_fd)
        except FileNotFoundError:
            raise NoStorageVolumeError(f"no volume {quote(name)} in storage pool {quote(self.pool)}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OperationFailedError(
                    f"volume {quote(name)} of storage pool {quote(self.pool)} was replaced by a symlink while in use: refused"
                ) from None
            if exc.errno in (errno.EISDIR, errno.ENXIO):
                raise NoStorageVolumeError(f"no volume {quote(name)} in storage pool {quote(self.pool)}") from None
            raise OperationFailedError(
                f"volume {quote(name)} of storage pool {quote(self.pool)}: {exc.strerror}"
            ) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NoStorageVolumeError(f"no volume {quote(name)} in storage pool {quote(self.pool)}")
        self.file_fd, self.name = fd, name

    @property
    def dir_path(self) -> str:
        """The pinned directory as a path this process (or a child given :attr:`fds`) can open names under."""
        return f"/dev/fd/{self.dir_fd}"

    @property
    def fds(self) -> tuple[int, ...]:
        """The descriptors :meth:`path` names (for ``pass_fds``)."""
        return (self.dir_fd,) if self.file_fd is None else (self.dir_fd, self.file_fd)

    def path(self, fmt: str, name: str | None = None) -> str:
        """The name readers open: the volume's descriptor for raw, else ``name`` under the pinned directory."""
        if fmt == "raw" and self.file_fd is not None and name is None:
            return f"/dev/fd/{self.file_fd}"
        return f"/dev/fd/{self.dir_fd}/{name or self.name}"

    def unmap(self, layers: list[_img.ImageLayer]) -> list[_img.ImageLayer]:
        """``layers`` with the ``/dev/fd`` names of :meth:`path` given back as paths in the pool's directory."""
        prefix = f"/dev/fd/{self.dir_fd}/"
        for layer in layers:
            for key in ("filename", "full-backing-filename"):
                value = layer.get(key)
                if isinstance(value, str) and value.startswith(prefix):
                    layer[key] = os.path.join(self.root, value[len(prefix) :])
                elif self.file_fd is not None and value == f"/dev/fd/{self.file_fd}":
                    layer[key] = os.path.join(self.root, self.name)
        return layers

    def close(self) -> None:
        """Close the descriptors."""
        for fd in self.fds:
            os.close(fd)


@contextlib.contextmanager
def _pinned(pool: str, root: str) -> Iterator[_Pinned]:
    pin = _Pinned(pool, root)
    try:
        yield pin
    finally:
        pin.close()


def _pin_for_volume(pool: str, root: str, name: str) -> _Pinned:
    """The pool's directory pinned for work on volume ``name``: a directory gone is NoStorageVolumeError."""
    try:
        return _Pinned(pool, root)
    except FileNotFoundError:
        raise NoStorageVolumeError(f"no volume {quote(name)} in storage pool {quote(pool)}") from None


class Storage:
    """The pools and volumes of one state root."""

    def __init__(self, dirs: StateDirs, timeout: float | None = None) -> None:
        self.dirs = dirs
        self.timeout = timeout
        """The connection's timeout (None: none given): bounds every ``qemu-img`` call (:func:`_img.qemu_img`)."""

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
            raise NoStoragePoolError(f"no storage pool named {quote(pool)}")
        return path

    def pool_of(self, path: str, pool_dirs: dict[str, str] | None = None) -> str | None:
        """The pool whose directory holds ``path``, if any (``pool_dirs``: :meth:`pool_dirs`, read once by a caller)."""
        directory = os.path.dirname(os.path.realpath(path))
        dirs = self.pool_dirs() if pool_dirs is None else pool_dirs
        return next((name for name, real in dirs.items() if real == directory), None)

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
            os.path.join(pool_path, _VOLUME_LOCK), self.dirs.lock_timeout, f"the volumes of storage pool {quote(pool)}"
        )

    def volume_format(self, pool_path: str, name: str) -> str:
        """The format the volume was created with; a file created elsewhere is raw (never guessed from its bytes)."""
        return self._formats(pool_path).get(name) or "raw"

    def backing_format(self, backing_path: str) -> str:
        """The known format of a backing image: the one its pool recorded when the volume was created there, else
        raw. Never read from the image's bytes (a raw disk may hold a qcow2 header naming any host file), and
        never from a record in a directory that is not a pool."""
        pool_dirs = self.pool_dirs()
        real = os.path.realpath(backing_path)
        bpool = self.pool_of(real, pool_dirs)
        if bpool is None:
            return "raw"
        return self.volume_format(pool_dirs[bpool], os.path.basename(real))

    @staticmethod
    def resolve(pool: str, pool_path: str, name: str) -> str:
        """The path of volume ``name`` under ``pool_path``, refused when it would leave the pool.

        Directory pools are flat: ``name`` is one component not starting with '.', and the file it names
        (a symlink followed to its end) must be a file directly in the pool's real directory.
        """
        if not name or "/" in name or "\0" in name or name.startswith("."):
            raise InvalidArgumentError(
                f"invalid volume name {quote(name)} for pool {quote(pool)}: directory pools are flat and names "
                "starting with '.' are reserved"
            )
        root = os.path.realpath(pool_path)
        path = os.path.join(pool_path, name)
        if os.path.dirname(os.path.realpath(path)) != root:
            raise InvalidArgumentError(
                f"volume {quote(name)} of storage pool {quote(pool)} resolves outside the pool's directory {root} "
                "(a symlink leaving the pool): refused"
            )
        return path

    @contextlib.contextmanager
    def _open(self, pool: str, pool_path: str, name: str, writable: bool = False) -> Iterator[tuple[str, _Pinned]]:
        """Volume ``name`` checked (:meth:`resolve`) and then opened under the real directory that was checked."""
        root = os.path.realpath(pool_path)
        path = self.resolve(pool, pool_path, name)
        pin = _pin_for_volume(pool, root, name)
        try:
            pin.open_volume(os.path.basename(os.path.realpath(path)), writable)  # a symlink to a file in the pool
            yield path, pin
        finally:
            pin.close()

    def _info(self, pool: str, name: str, path: str, pin: _Pinned) -> VolumeInfo:
        fmt = self.volume_format(pin.dir_path, name)
        layers = pin.unmap(_img.chain(pin.path(fmt), fmt, timeout=self.timeout, image=path, pass_fds=pin.fds))
        return VolumeInfo(
            name=name,
            pool=pool,
            path=path,
            format=fmt,
            capacity_bytes=int(layers[0].get("virtual-size", 0)),
            allocation_bytes=layers[0].get("actual-size"),
            backing_chain=_img.backing_paths(layers),
        )

    def _volume(self, pool: str, pool_path: str, name: str) -> VolumeInfo:
        with self._open(pool, pool_path, name) as (path, pin):
            return self._info(pool, name, path, pin)

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
        """``qemu-img create -f FORMAT [-b BACKING -F BACKING_FORMAT]``; an existing file is refused.

        Everything after the check (the lock, the new file, the format record) is reached through the pool's
        directory opened along the checked path (:class:`_Pinned`), never through a component swapped since.
        """
        path = self.pool_path(pool)
        os.makedirs(path, mode=0o700, exist_ok=True)
        root = os.path.realpath(path)
        vpath = self.resolve(pool, path, name)
        if os.path.lexists(vpath):  # a dangling symlink too: qemu-img would create its target
            raise OperationInvalidError(f"volume {quote(name)} already exists in storage pool {quote(pool)}")
        backing_path = backing_fmt = None
        if backing:
            backing_path = backing if os.path.isabs(backing) else self.resolve(pool, path, backing)
            if not os.path.exists(backing_path):
                raise InvalidArgumentError(f"backing volume {backing} does not exist")
            backing_fmt = self.backing_format(backing_path)
        with _pinned(pool, root) as pin, self._volumes_lock(pool, pin.dir_path):
            # Created here, exclusively and without following a symlink, then written by qemu-img through the
            # pinned directory: a name swapped for a symlink after the check above is refused, not followed.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                os.close(os.open(name, flags, 0o644, dir_fd=pin.dir_fd))
            except FileExistsError:
                raise OperationInvalidError(
                    f"volume {quote(name)} already exists in storage pool {quote(pool)}"
                ) from None
            try:
                _img.create(
                    pin.path(fmt, name),
                    fmt,
                    capacity_bytes or None,
                    backing_path,
                    backing_fmt,
                    timeout=self.timeout,
                    image=vpath,
                    pass_fds=pin.fds,
                )
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=pin.dir_fd)
                raise
            meta = self._formats(pin.dir_path)
            meta[name] = fmt
            write_json_atomic(os.path.join(pin.dir_path, _VOLUME_FORMATS), meta)
        return self._volume(pool, path, name)

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove the name from the pool's directory (the one that was checked) and its recorded format."""
        path = self.pool_path(pool)
        root = os.path.realpath(path)
        self.resolve(pool, path, name)
        pin = _pin_for_volume(pool, root, name)
        try:
            try:
                is_file = stat.S_ISREG(os.stat(name, dir_fd=pin.dir_fd).st_mode)
            except OSError:
                is_file = False
            if not is_file:
                raise NoStorageVolumeError(f"no volume {quote(name)} in storage pool {quote(pool)}")
            with self._volumes_lock(pool, pin.dir_path):
                os.unlink(name, dir_fd=pin.dir_fd)  # the name itself (a symlink is not followed)
                meta = self._formats(pin.dir_path)
                if meta.pop(name, None) is not None:
                    write_json_atomic(os.path.join(pin.dir_path, _VOLUME_FORMATS), meta)
        finally:
            pin.close()

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``qemu-img resize -f FORMAT`` (``--shrink`` when smaller) of the volume opened under its pool."""
        path = self.pool_path(pool)
        with self._open(pool, path, name, writable=True) as (vpath, pin):
            vol = self._info(pool, name, vpath, pin)
            _img.resize(
                pin.path(vol.format),
                vol.format,
                capacity_bytes,
                shrink=vol.capacity_bytes is not None and capacity_bytes < vol.capacity_bytes,
                timeout=self.timeout,
                image=vpath,
                pass_fds=pin.fds,
            )
            return self._info(pool, name, vpath, pin)

    # --- disks --------------------------------------------------------------------------------------

    def pool_dirs(self) -> dict[str, str]:
        """Every pool's directory by name, symlinks resolved (what :meth:`disk_infos` matches disks against)."""
        return {name: os.path.realpath(path) for name, path in self.pools().items()}

    def disk_infos(self, defn: Definition, pool_dirs: dict[str, str] | None = None) -> list[DiskInfo]:
        """The definition's disks with capacity and backing chain read from the image headers.

        ``pool_dirs`` (from :meth:`pool_dirs`) lets a caller reading many domains resolve the pools once.
        """
        real_pools = self.pool_dirs() if pool_dirs is None else pool_dirs
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
                    pool=self.pool_of(d.path, real_pools),
                )
            )
        return out

"""Where the host paths a caller hands libvirtd may lie (``virtabs.spi.confine_host_path`` does the judging).

libvirtd runs as root: it opens, relabels and chowns to the QEMU user the disks a definition names, creates a
block copy's destination, writes a save image, reads the image it restores and runs ``qemu-img`` over a new
volume's backing file. Every such path is confined before libvirtd is asked. It may lie only

* strictly inside the target directory of an active storage pool of the connection whose volumes are files
  (types ``dir``, ``fs``, ``netfs``; read with ``virStoragePoolGetXMLDesc``), unless that directory is ``/`` or
  lies in ``/etc``, ``/proc``, ``/sys`` or ``/dev`` (such a pool is no root);
* strictly inside a directory the connection's URI names: ``path_root=DIR`` (several separated by ``:``),
  chosen by the connection's owner, not by the caller of an operation;
* or be exactly a volume of an active pool whose volumes are block devices (``logical``, ``disk``, ``iscsi``,
  ``iscsi-direct``, ``scsi``, ``mpath``, ``zfs``), or exactly a block device the URI names with
  ``block_device=DEV`` (several separated by ``:``; on this host each must be an existing block device): the
  only ways to a path under ``/dev``.

An existing image also names files in its header: a qcow2's backing file, which libvirtd opens and relabels with
the disk (a guest that wrote a qcow2 header into its raw disk, defined again as qcow2, would otherwise hand it
``/etc/shadow``). So on this host, for a disk, a reused copy destination and a new volume's backing file, every
backing file the image records is confined the same way, read one image at a time with ``qemu-img info -U``
(which opens no backing file), up to :data:`MAX_BACKING_DEPTH` levels; a backing that is no plain file (``json:``,
``nbd:``, any protocol) is refused. A far host's images are not read (their paths are judged lexically only).
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

import attrs
from virtabs.spi import InvalidArgumentError, confine_host_path, quote, resolve_path_root, run_in_process_group

__all__ = [
    "MAX_BACKING_DEPTH",
    "BLOCK_DEVICE_PARAM",
    "BLOCK_POOL_TYPES",
    "DIRECTORY_POOL_TYPES",
    "PATH_ROOT_PARAM",
    "PathRoots",
    "uri_block_devices",
    "uri_path_roots",
]

DIRECTORY_POOL_TYPES = frozenset({"dir", "fs", "netfs"})
"""Pools whose volumes are files in the pool's target directory."""
BLOCK_POOL_TYPES = frozenset({"logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "zfs"})
"""Pools whose volumes are block devices: each volume's own path is allowed, nothing else under it."""
PATH_ROOT_PARAM = "path_root"
"""The URI parameter naming directories (``:``-separated) where paths are allowed besides the pools'."""
MAX_BACKING_DEPTH = 64
"""Backing files followed below an image before the chain is refused as too deep."""
QEMU_IMG_TIMEOUT = 60.0
"""Seconds one ``qemu-img info`` may take."""
BLOCK_DEVICE_PARAM = "block_device"
"""The URI parameter naming block devices (``:``-separated) allowed exactly, besides the pools' volumes."""


def _split(value: str, param: str) -> list[str]:
    parts = value.split(":")
    if not all(parts):
        raise InvalidArgumentError(
            f"libvirt: the URI's {param} {quote(value)} holds an empty entry (separate several with ':')"
        )
    return parts


def uri_path_roots(value: str | None, *, local: bool) -> tuple[str, ...]:
    """The directories of the URI's ``path_root`` parameter, each resolved (and, locally, existing)."""
    if value is None:
        return ()
    what = f"libvirt: the URI's {PATH_ROOT_PARAM}"
    return tuple(resolve_path_root(part, what, local=local) for part in _split(value, PATH_ROOT_PARAM))


def uri_block_devices(value: str | None, *, local: bool) -> frozenset[str]:
    """The block devices of the URI's ``block_device`` parameter, resolved; on this host each must exist and be
    a block device, on another host lie under ``/dev``."""
    if value is None:
        return frozenset()
    devices = set()
    for part in _split(value, BLOCK_DEVICE_PARAM):
        what = f"libvirt: the URI's {BLOCK_DEVICE_PARAM} {quote(part)}"
        if not part.startswith("/"):
            raise InvalidArgumentError(f"{what} must be an absolute path")
        if local:
            resolved = os.path.realpath(part)
            try:
                is_block = stat.S_ISBLK(os.stat(resolved).st_mode)
            except OSError as exc:
                raise InvalidArgumentError(f"{what} cannot be examined: {exc.strerror or exc}") from None
            if not is_block:
                raise InvalidArgumentError(f"{what} is not a block device")
        else:
            resolved = posixpath.normpath(part)
            if not resolved.startswith("/dev/"):
                raise InvalidArgumentError(f"{what} does not lie under /dev")
        devices.add(resolved)
    return frozenset(devices)


@attrs.frozen
class PathRoots:
    """What a connection allows at one moment: root directories and exact block-device volumes."""

    directories: tuple[str, ...]
    devices: frozenset[str]
    local: bool

    def confine(self, path: str, what: str) -> str:
        """``path`` resolved, or InvalidArgumentError saying where paths may lie."""
        try:
            return confine_host_path(path, self.directories, what, devices=self.devices, local=self.local)
        except InvalidArgumentError as exc:
            exc.message = (
                f"{exc.message} (libvirtd opens it as root: a path must lie in a directory of one of the "
                f"connection's storage pools of type dir/fs/netfs or of the URI's {PATH_ROOT_PARAM}=DIR, or be a "
                f"volume of a pool of block devices or a device of the URI's {BLOCK_DEVICE_PARAM}=DEV)"
            )
            exc.args = (exc.message,)
            raise

    @classmethod
    def read(
        cls, conn: Any, libvirt: Any, uri_roots: Iterable[str], uri_devices: Iterable[str] = (), *, local: bool
    ) -> PathRoots:
        """The URI's roots and devices plus what the connection's active pools give
        (``virConnectListAllStoragePools``, each pool's XML, and the volumes of each pool of block devices)."""
        directories = list(uri_roots)
        devices: set[str] = set(uri_devices)
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                root = ET.fromstring(pool.XMLDesc(0))
                kind = root.get("type", "")
                if kind in BLOCK_POOL_TYPES:
                    for vol in pool.listAllVolumes(0):
                        path = str(vol.path())  # /dev/VG/LV is a symlink to /dev/dm-N: compared resolved
                        devices.add(os.path.realpath(path) if local else posixpath.normpath(path))
                    continue
            except libvirt.libvirtError:  # the pool went away while listing
                continue
            target = (root.findtext("./target/path") or "").strip()
            if kind in DIRECTORY_POOL_TYPES and target:
                try:
                    directories.append(
                        resolve_path_root(target, "a storage pool's directory", local=local, must_exist=False)
                    )
                except InvalidArgumentError:  # a pool at '/' or in /etc, /dev ...: no root for a caller's paths
                    continue
        return cls(tuple(dict.fromkeys(directories)), frozenset(devices), local)

    def confine_image(self, path: str, what: str, format: str | None) -> str:
        """:meth:`confine`, then (on this host, for an existing image not declared ``raw``) every backing file its
        header records, each read with ``qemu-img info -U`` in turn; the resolved ``path``."""
        resolved = self.confine(path, what)
        if not self.local or format == "raw" or not os.path.exists(resolved):
            return resolved
        image, image_format = resolved, format
        for _ in range(MAX_BACKING_DEPTH):
            info = _image_info(image, image_format, what)
            backing = info.get("full-backing-filename") or info.get("backing-filename")
            if not backing:
                return resolved
            backing = str(backing)
            if not backing.startswith("/"):
                if ":" in backing.split("/", 1)[0]:  # json:{...}, nbd://, file: ...: no plain file
                    raise InvalidArgumentError(
                        f"{what}: the image {quote(image, 120)} names a backing {quote(backing, 120)} that is no plain "
                        "file (libvirtd would open it as root)"
                    )
                backing = os.path.join(os.path.dirname(image), backing)
            image = self.confine(backing, f"{what}: the backing file of {quote(image, 120)}")
            image_format = info.get("backing-filename-format")
        raise InvalidArgumentError(
            f"{what}: the backing chain of {quote(resolved, 120)} is deeper than {MAX_BACKING_DEPTH}"
        )


def _image_info(path: str, format: str | None, what: str) -> dict[str, Any]:
    """``qemu-img info --output=json -U`` of one image (its backing file is not opened)."""
    argv = ["qemu-img", "info", "--output=json", "-U", *(("-f", format) if format else ()), path]
    try:
        code, out, err = run_in_process_group(argv, QEMU_IMG_TIMEOUT)
    except FileNotFoundError:
        raise InvalidArgumentError(
            f"{what}: qemu-img is not installed here, so the backing files {quote(path, 120)} names cannot be checked"
        ) from None
    except subprocess.TimeoutExpired:
        raise InvalidArgumentError(
            f"{what}: qemu-img info of {quote(path, 120)} took over {QEMU_IMG_TIMEOUT:g}s"
        ) from None
    if code != 0:
        message = err.decode(errors="replace").strip()[:300]
        raise InvalidArgumentError(f"{what}: qemu-img cannot read the image {quote(path, 120)}: {message}")
    info: dict[str, Any] = json.loads(out)
    return info

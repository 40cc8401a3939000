"""What a block copy may write to: a file, or (COPY_DEV) a block device, checked before QEMU is touched.

A file destination is any absolute path (as with libvirt): a new file QEMU creates, an empty file it
replaces, or with REUSE_EXT an existing image. It must never be a block device or any other node that
is not a regular file: an "empty" device (``getsize`` reads 0) must not be unlinked or overwritten by a
copy that did not say COPY_DEV.

A block device destination (COPY_DEV, libvirt's ``<disk type='block'>``) is not under the embed root
and cannot be: devices live in ``/dev``. So what a caller may name is narrowed instead:

* a path under ``/dev`` (``/dev/loop3``, ``/dev/mapper/vg-copy``, ``/dev/disk/by-id/...``) that is, after
  its symlinks, a block device node under ``/dev``; never a regular file, a character device, a directory
  or anything outside ``/dev`` (a symlink elsewhere pointing at a device is refused too: at the next start
  the definition's path is opened as ``host_device`` because it is under ``/dev``);
* not a disk of the domain itself (compared by device number, so another name of the same device is
  caught);
* not in use by the kernel: an exclusive open (``O_EXCL`` on a block device) fails while the device is
  mounted, is swap, or is held by device-mapper, MD RAID or a partition in use;
* openable for writing by this process;
* of a size that fits: a raw copy needs exactly the disk's virtual size (QEMU's mirror fails a job
  whose target differs in size, only once it has started); any other format at least that size;
* with REUSE_EXT, only with the format named (COPY_RAW or ``format=``): a device's contents are never
  probed for a format.

A device another running QEMU has open is refused by QEMU's own image locking when the mirror opens it.
"""

from __future__ import annotations

import errno
import os
import stat

from virtabs.spi import DiskSpec, InvalidArgumentError, OperationFailedError, OperationInvalidError, quote

__all__ = ["check_device_destination", "check_file_destination"]

DEV = "/dev"
"""Where a COPY_DEV destination must be named, and must resolve."""


def _under_dev(path: str) -> bool:
    return os.path.normpath(path).startswith(DEV + "/")


def check_file_destination(dest: str, what: str) -> None:
    """A copy without COPY_DEV: an existing destination must be a regular file (never a device node)."""
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OperationFailedError(f"{what}: cannot read destination {quote(dest)}: {exc.strerror}") from None
    if stat.S_ISBLK(st.st_mode):
        raise InvalidArgumentError(
            f"{what}: destination {quote(dest)} is a block device; copying onto one needs COPY_DEV"
        )
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgumentError(f"{what}: destination {quote(dest)} exists and is not a regular file")


def check_device_destination(
    dest: str,
    *,
    fmt: str | None,
    reuse: bool,
    virtual_size: int | None,
    own_disks: tuple[DiskSpec, ...],
    what: str,
) -> None:
    """A COPY_DEV destination, by the rules of this module's docstring; raises before QEMU is touched.

    ``fmt`` is the destination's format as the copy will open it (None: REUSE_EXT without a format),
    ``virtual_size`` the disk's size as QEMU reports it (None: unknown, no size check).
    """
    if not _under_dev(dest):
        raise InvalidArgumentError(
            f"{what}: a COPY_DEV destination must be a block device under {DEV}, not {quote(dest)}"
        )
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        raise OperationFailedError(f"{what}: block device {quote(dest)} does not exist") from None
    except OSError as exc:
        raise OperationFailedError(f"{what}: cannot read block device {quote(dest)}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgumentError(f"{what}: COPY_DEV destination {quote(dest)} is not a block device")
    real = os.path.realpath(dest)
    if not _under_dev(real):
        raise InvalidArgumentError(
            f"{what}: COPY_DEV destination {quote(dest)} resolves to {quote(real)}, outside {DEV}"
        )
    for disk in own_disks:
        try:
            other = os.stat(disk.path)
        except OSError:
            continue
        if stat.S_ISBLK(other.st_mode) and other.st_rdev == st.st_rdev:
            raise InvalidArgumentError(f"{what}: block device {quote(dest)} is disk {disk.target} of the domain itself")
    if reuse and fmt is None:
        raise InvalidArgumentError(
            f"{what}: a reused block device needs its format named (COPY_RAW, or format=); "
            "the driver never probes a device's contents"
        )
    try:
        fd = os.open(dest, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise OperationInvalidError(
                f"{what}: block device {quote(dest)} is in use (mounted, swap, or held by device-mapper, "
                "RAID or a partition)"
            ) from None
        raise OperationFailedError(
            f"{what}: cannot open block device {quote(dest)} for writing: {exc.strerror}"
        ) from None
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
    if virtual_size is None:
        return
    if fmt == "raw" and size != virtual_size:
        raise InvalidArgumentError(
            f"{what}: a raw copy onto block device {quote(dest)} needs a device of exactly the disk's size, "
            f"{virtual_size} bytes; it has {size}"
        )
    if size < virtual_size:
        raise InvalidArgumentError(
            f"{what}: block device {quote(dest)} ({size} bytes) is smaller than the disk ({virtual_size} bytes)"
        )

"""Reading image content by the target's own means: ``qemu-img`` for targets whose disks are files.

A target whose disks are qcow2 or raw files (QEMU, libvirt with QEMU, Xen with qdisk) gets the
optional methods ``image_digest`` and ``layer_digest`` by mixing in :class:`QemuImgContent`::

    class MyTarget(QemuImgContent, DefaultTarget): ...

The content is read with ``qemu-img convert -U`` (shared locks: the image may be in use by a running
guest) into a sparse raw file and hashed. ``layer_digest`` opens a qcow2 image with its backing
detached (``"backing": null``), so it sees only the clusters that image itself holds. ``qemu-img``
is Debian's ``qemu-utils``; without it the methods raise :class:`TargetUnavailable` saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from typing import Any

from .target import TargetUnavailable

__all__ = ["QemuImgContent", "image_format", "qemu_img_digest"]

QCOW2_MAGIC = b"QFI\xfb"
_CHUNK = 1 << 20


def image_format(path: str) -> str:
    """``qcow2`` when the file starts with qcow2's magic, else ``raw``."""
    with open(path, "rb") as fh:
        return "qcow2" if fh.read(4) == QCOW2_MAGIC else "raw"


def qemu_img_digest(path: str, *, layer_only: bool = False, timeout: float = 300.0) -> str | None:
    """SHA-256 of the guest-visible content of ``path`` (``layer_only``: of its own clusters), with its
    virtual size; None when there is no file at ``path``."""
    if not os.path.exists(path):
        return None
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise TargetUnavailable("reading image content needs qemu-img: apt-get install qemu-utils")
    fmt = image_format(path)
    protocol = "host_device" if stat.S_ISBLK(os.stat(path).st_mode) else "file"
    spec: dict[str, Any] = {"driver": fmt, "file": {"driver": protocol, "filename": path}}
    if layer_only and fmt == "qcow2":
        spec["backing"] = None
    with tempfile.TemporaryDirectory(prefix="virtabs-digest-") as tmp:
        out = os.path.join(tmp, "content.raw")
        proc = subprocess.run(
            [qemu_img, "convert", "-U", "-O", "raw", f"json:{json.dumps(spec)}", out],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"qemu-img cannot read {path!r}: {proc.stderr.strip()}")
        digest = hashlib.sha256()
        size = 0
        with open(out, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return f"{size}:{digest.hexdigest()}"


class QemuImgContent:
    """Mix-in: ``image_digest`` and ``layer_digest`` of a target whose images are files, read by qemu-img."""

    def image_digest(self, conn: object, path: str) -> str | None:
        """The guest-visible content of ``path``, through its backing chain."""
        return qemu_img_digest(path)

    def layer_digest(self, conn: object, path: str) -> str | None:
        """The data ``path`` itself holds (a qcow2 image's own clusters; a raw file's whole content)."""
        return qemu_img_digest(path, layer_only=True)

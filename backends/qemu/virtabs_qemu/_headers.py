"""Image headers read in Python: the facts ``qemu-img info --backing-chain`` gives, without a process.

Only two formats are read, each only when the caller names it (never guessed from the bytes):

* ``raw``: the virtual size is the file's size (a block device's size), nothing else;
* ``qcow2`` (versions 2 and 3): virtual size, backing file name and backing format (the
  ``0xe2792aca`` header extension), with every offset and length checked against the header
  cluster and the file before it is used.

Anything unusual raises :class:`Unusual` and the caller falls back to ``qemu-img`` (told the
format with ``-f``): encryption, an external data file, a corrupt flag, unknown incompatible
features, a backing name that is a protocol (``json:``, ``nbd:`` ...), a backing format other than
raw or qcow2. A header that contradicts itself is :class:`Unusual` too, never a guess.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_CHAIN", "Layer", "Unusual", "is_protocol", "read_chain", "read_layer"]

QCOW2_MAGIC = b"QFI\xfb"
MAX_CHAIN = 64
"""Deeper chains are unusual (qemu-img follows them; a loop is refused)."""

_EXT_END = 0x00000000
_EXT_BACKING_FORMAT = 0xE2792ACA
_EXT_CRYPTO = 0x0537BE77
_EXT_DATA_FILE = 0x44415441
_INCOMPAT_KNOWN = 0b11001  # dirty (0), compression type (3), extended L2 (4)
_MAX_BACKING_NAME = 1023  # QEMU refuses longer backing file names
_V2_HEADER = 72
_V3_MIN_HEADER = 104


class Unusual(Exception):
    """The image needs ``qemu-img`` to be read (the reason is the message)."""


@dataclass(frozen=True)
class Layer:
    """One image of a chain, as ``qemu-img info`` describes it."""

    filename: str
    format: str
    virtual_size: int
    actual_size: int
    backing_filename: str | None = None
    """The backing file name as written in the header."""
    backing_format: str | None = None
    full_backing_filename: str | None = None
    """The backing file name resolved against this image's directory."""

    def info(self) -> dict[str, Any]:
        """The same keys ``qemu-img info --output=json`` uses."""
        data: dict[str, Any] = {
            "filename": self.filename,
            "format": self.format,
            "virtual-size": self.virtual_size,
            "actual-size": self.actual_size,
        }
        if self.backing_filename is not None:
            data["backing-filename"] = self.backing_filename
            data["full-backing-filename"] = self.full_backing_filename
            if self.backing_format is not None:
                data["backing-filename-format"] = self.backing_format
        return data


def read_layer(path: str, fmt: str) -> Layer:
    """The header facts of ``path`` opened as ``fmt``; OSError when it cannot be read, Unusual otherwise."""
    if fmt == "raw":
        return _raw(path)
    if fmt == "qcow2":
        return _qcow2(path)
    raise Unusual(f"format {fmt!r} is read by qemu-img")


def read_chain(path: str, fmt: str) -> list[Layer]:
    """The chain under ``path`` (top first), following backing files with the formats the headers name.

    A layer naming a backing file without its format ends the walk there (the caller refuses it:
    QEMU would have to probe). A loop or a chain deeper than :data:`MAX_CHAIN` is Unusual.
    """
    layers = [read_layer(path, fmt)]
    seen = {os.path.realpath(path)}
    while (top := layers[-1]).full_backing_filename is not None and top.backing_format is not None:
        if len(layers) >= MAX_CHAIN:
            raise Unusual(f"backing chain of {path} is deeper than {MAX_CHAIN}")
        nxt = top.full_backing_filename
        real = os.path.realpath(nxt)
        if real in seen:
            raise Unusual(f"backing chain of {path} loops at {nxt}")
        seen.add(real)
        layers.append(read_layer(nxt, top.backing_format))
    return layers


def _sizes(path: str) -> tuple[os.stat_result, int]:
    st = os.stat(path)
    if stat.S_ISREG(st.st_mode):
        return st, st.st_size
    if stat.S_ISBLK(st.st_mode):
        with open(path, "rb") as fh:
            return st, fh.seek(0, os.SEEK_END)
    raise Unusual(f"{path} is neither a regular file nor a block device")


def _raw(path: str) -> Layer:
    st, size = _sizes(path)
    return Layer(filename=path, format="raw", virtual_size=size, actual_size=st.st_blocks * 512)


def _qcow2(path: str) -> Layer:
    st, file_size = _sizes(path)
    with open(path, "rb") as fh:
        head = fh.read(_V3_MIN_HEADER)
        if len(head) < _V2_HEADER or head[:4] != QCOW2_MAGIC:
            raise Unusual(f"{path} has no qcow2 header")
        (version, backing_offset, backing_size, cluster_bits, virtual_size, crypt) = struct.unpack_from(
            ">IQIIQI", head, 4
        )
        if version not in (2, 3):
            raise Unusual(f"{path}: qcow2 version {version}")
        if not 9 <= cluster_bits <= 21:
            raise Unusual(f"{path}: qcow2 cluster_bits {cluster_bits} out of range")
        cluster = 1 << cluster_bits
        if crypt != 0:
            raise Unusual(f"{path}: encrypted qcow2")
        header_length = _V2_HEADER
        if version == 3:
            if len(head) < _V3_MIN_HEADER:
                raise Unusual(f"{path}: truncated qcow2 v3 header")
            incompatible, _compatible, _autoclear, _refcount_order, header_length = struct.unpack_from(
                ">QQQII", head, 72
            )
            if incompatible & 0b10:
                raise Unusual(f"{path}: qcow2 image marked corrupt")
            if incompatible & ~_INCOMPAT_KNOWN:
                raise Unusual(f"{path}: qcow2 incompatible features 0x{incompatible:x}")
            if header_length < _V3_MIN_HEADER or header_length % 8 or header_length > cluster:
                raise Unusual(f"{path}: qcow2 header length {header_length} out of range")
        if backing_offset:
            if backing_size > _MAX_BACKING_NAME or backing_offset < header_length:
                raise Unusual(f"{path}: qcow2 backing file name out of range")
            if backing_offset + backing_size > min(cluster, file_size):
                raise Unusual(f"{path}: qcow2 backing file name beyond the header cluster")
        ext_end = min(cluster, file_size, backing_offset or cluster)
        fh.seek(0)
        cluster_data = fh.read(ext_end if not backing_offset else backing_offset + backing_size)
    backing_format = _extensions(path, cluster_data, header_length, ext_end)
    backing: str | None = None
    full: str | None = None
    if backing_offset:
        raw_name = cluster_data[backing_offset : backing_offset + backing_size]
        if len(raw_name) != backing_size or b"\0" in raw_name:
            raise Unusual(f"{path}: qcow2 backing file name is malformed")
        try:
            backing = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise Unusual(f"{path}: qcow2 backing file name is not UTF-8") from None
        if not backing or is_protocol(backing):
            raise Unusual(f"{path}: backing file {backing!r} is not a plain path")
        full = backing if os.path.isabs(backing) else os.path.join(os.path.dirname(path), backing)
        if backing_format not in (None, "raw", "qcow2"):
            raise Unusual(f"{path}: backing format {backing_format!r} is read by qemu-img")
    return Layer(
        filename=path,
        format="qcow2",
        virtual_size=virtual_size,
        actual_size=st.st_blocks * 512,
        backing_filename=backing,
        backing_format=backing_format if backing else None,
        full_backing_filename=full,
    )


def _extensions(path: str, data: bytes, start: int, end: int) -> str | None:
    """Walk the header extensions between ``start`` and ``end``; the backing format, if named."""
    backing_format = None
    offset = start
    while offset + 8 <= end:
        kind, length = struct.unpack_from(">II", data, offset)
        offset += 8
        if kind == _EXT_END:
            return backing_format
        if offset + length > end:
            raise Unusual(f"{path}: qcow2 header extension 0x{kind:08x} runs past the header")
        if kind == _EXT_BACKING_FORMAT:
            value = data[offset : offset + length]
            if not value or len(value) > 16 or not value.isascii() or not value.decode().isprintable():
                raise Unusual(f"{path}: qcow2 backing format extension is malformed")
            backing_format = value.decode()
        elif kind in (_EXT_DATA_FILE, _EXT_CRYPTO):
            raise Unusual(f"{path}: qcow2 header extension 0x{kind:08x} needs qemu-img")
        offset += (length + 7) & ~7
    return backing_format


def is_protocol(name: str) -> bool:
    """``json:{...}``, ``nbd://host``, ``file:/x`` ...: QEMU would parse it as a protocol, not a path."""
    colon = name.find(":")
    return colon > 0 and "/" not in name[:colon]

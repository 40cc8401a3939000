"""The real xl.cfg parser, libxlutil 4.17 (Debian's ``xen-utils-4.17``), through ctypes: test infrastructure.

``xl`` itself cannot run without a hypervisor, but the library it parses config files with can: it
reads a generated file exactly as ``xl create`` would (syntax, strings, escapes, lists), and
``xlu_disk_parse`` reads a disk specification exactly as ``xl block-attach`` and ``disk = [...]`` do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.fopen.restype = ctypes.c_void_p
_libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_libc.fclose.argtypes = [ctypes.c_void_p]

try:
    _xlu = ctypes.CDLL("libxlutil.so.4.17")
    _xl = ctypes.CDLL("libxenlight.so.4.17")
    AVAILABLE = True
except OSError:
    AVAILABLE = False

if AVAILABLE:
    _xlu.xlu_cfg_init.restype = ctypes.c_void_p
    _xlu.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    _xlu.xlu_cfg_readdata.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    _xlu.xlu_cfg_destroy.argtypes = [ctypes.c_void_p]
    _xlu.xlu_cfg_get_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
    _xlu.xlu_cfg_get_long.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_long), ctypes.c_int]
    _xlu.xlu_cfg_get_list.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    _xlu.xlu_cfg_get_listitem.restype = ctypes.c_char_p
    _xlu.xlu_cfg_get_listitem.argtypes = [ctypes.c_void_p, ctypes.c_int]
    _xlu.xlu_disk_parse.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    _xl.libxl_device_disk_init.argtypes = [ctypes.c_void_p]
    _xl.libxl_device_disk_dispose.argtypes = [ctypes.c_void_p]


class XluError(Exception):
    """libxlutil refused the input; the message is what it printed."""


@contextmanager
def _config(name: str = "generated.cfg") -> Iterator[tuple[ctypes.c_void_p, list[str]]]:
    """An XLU_Config whose error report goes to a temporary file (read into the list on exit)."""
    report: list[str] = []
    with tempfile.NamedTemporaryFile("r", prefix="xlu-report-") as rep:
        fp = _libc.fopen(os.fsencode(rep.name), b"w")
        cfg = _xlu.xlu_cfg_init(fp, name.encode())
        try:
            yield cfg, report
        finally:
            _xlu.xlu_cfg_destroy(cfg)
            _libc.fclose(fp)
            report.append(rep.read())


@attrs.frozen
class ParsedConfig:
    """What libxlutil read from a file: strings, numbers and string lists, by key."""

    strings: dict[str, str]
    longs: dict[str, int]
    lists: dict[str, list[str]]


def parse_config(text: str, strings: list[str], longs: list[str], lists: list[str]) -> ParsedConfig:
    """Parse ``text`` as ``xl create`` does and read the named keys back; :class:`XluError` if it fails."""
    data = text.encode()
    out = ParsedConfig({}, {}, {})
    with _config() as (cfg, report):
        rc = _xlu.xlu_cfg_readdata(cfg, data, len(data))
        if rc == 0:
            for key in strings:
                value = ctypes.c_char_p()
                if _xlu.xlu_cfg_get_string(cfg, key.encode(), ctypes.byref(value), 1) == 0:
                    out.strings[key] = (value.value or b"").decode()
            for key in longs:
                number = ctypes.c_long()
                if _xlu.xlu_cfg_get_long(cfg, key.encode(), ctypes.byref(number), 1) == 0:
                    out.longs[key] = number.value
            for key in lists:
                lst, count = ctypes.c_void_p(), ctypes.c_int()
                if _xlu.xlu_cfg_get_list(cfg, key.encode(), ctypes.byref(lst), ctypes.byref(count), 1) == 0:
                    out.lists[key] = [(_xlu.xlu_cfg_get_listitem(lst, i) or b"").decode() for i in range(count.value)]
    if rc != 0:
        raise XluError(f"rc={rc}: {''.join(report).strip()}")
    return out


@attrs.frozen
class ParsedDisk:
    """The fields of ``libxl_device_disk`` a test looks at."""

    pdev_path: str
    vdev: str
    readwrite: bool
    script: str | None = None
    backend: int = 0
    """libxl_disk_backend: 0 unknown (xl chooses), 1 phy, 2 tap, 3 qdisk (libxl_types.idl)."""


class _DiskHead(ctypes.Structure):
    # the first members of libxl_device_disk (libxl_types.idl, Xen 4.17)
    _fields_ = [
        ("backend_domid", ctypes.c_uint32),
        ("backend_domname", ctypes.c_char_p),
        ("pdev_path", ctypes.c_char_p),
        ("vdev", ctypes.c_char_p),
        ("backend", ctypes.c_int),
        ("format", ctypes.c_int),
        ("script", ctypes.c_char_p),
        ("removable", ctypes.c_int),
        ("readwrite", ctypes.c_int),
    ]


def parse_disk(spec: str) -> ParsedDisk:
    """Parse one disk specification as ``xl`` does; :class:`XluError` if it fails."""
    buf = ctypes.create_string_buffer(4096)  # larger than libxl_device_disk
    _xl.libxl_device_disk_init(buf)
    args = (ctypes.c_char_p * 1)(spec.encode())
    with _config() as (cfg, report):
        rc = _xlu.xlu_disk_parse(cfg, 1, args, buf)
    if rc != 0:
        raise XluError(f"rc={rc}: {''.join(report).strip()}")
    head = _DiskHead.from_buffer(buf)
    parsed = ParsedDisk(
        pdev_path=(head.pdev_path or b"").decode(),
        vdev=(head.vdev or b"").decode(),
        readwrite=bool(head.readwrite),
        script=None if head.script is None else head.script.decode(),
        backend=head.backend,
    )
    _xl.libxl_device_disk_dispose(buf)
    return parsed

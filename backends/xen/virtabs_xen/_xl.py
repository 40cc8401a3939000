"""Parsers of what Xen 4.17's ``xl`` prints: pure functions, no I/O.

Formats (recorded from the real ``xl`` in ``tests/recorded/``):

* ``xl list`` / ``xl list -v``: a table; the name column is padded, so rows are split from the right.
* the ``State`` column: six positions ``r b p s c d`` (running, blocked, paused, shutdown, crashed,
  dying), ``-`` when a flag is off.
* ``xl list -l``: a JSON array of ``{"domid": N, "config": {...}}`` (libxl's domain config); it has no
  run state, and ``config.c_info.domid`` is ``4294967295`` (the real ID is the top-level ``domid``).
* ``xl info``: ``key : value`` lines.
* ``xl block-list DOM``: a table whose ``Vdev`` column is the virtual device *number* (``51712`` is
  ``xvda``) and whose ``state`` column is the xenbus state (``4`` = connected).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "STATE_FLAGS",
    "BlockListEntry",
    "ListEntry",
    "XlParseError",
    "config_disks",
    "domain_config",
    "parse_block_list",
    "parse_info",
    "parse_list",
    "parse_list_long",
    "parse_state_flags",
    "vdev_name",
    "vdev_number",
]

#: The six positions of ``xl list``'s State column, in order.
STATE_FLAGS = ("running", "blocked", "paused", "shutdown", "crashed", "dying")
_FLAG_LETTERS = "rbpscd"

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class XlParseError(ValueError):
    """``xl`` printed something these parsers do not understand."""


def parse_state_flags(column: str) -> frozenset[str]:
    """The set of flags (names from :data:`STATE_FLAGS`) in a State column such as ``-b----``."""
    if len(column) != len(_FLAG_LETTERS):
        raise XlParseError(f"xl state column {column!r}: expected 6 characters")
    flags = set()
    for pos, (char, letter) in enumerate(zip(column, _FLAG_LETTERS, strict=True)):
        if char == letter:
            flags.add(STATE_FLAGS[pos])
        elif char != "-":
            raise XlParseError(f"xl state column {column!r}: unexpected {char!r} at position {pos}")
    return frozenset(flags)


@attrs.frozen
class ListEntry:
    """One row of ``xl list`` (``uuid`` only with ``-v``)."""

    name: str
    domid: int
    memory_mib: int
    vcpus: int
    state: str
    flags: frozenset[str]
    cpu_time_s: float
    uuid: str | None = None


def parse_list(text: str) -> list[ListEntry]:
    """Rows of ``xl list`` or ``xl list -v`` (the header line is recognised and skipped)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    if header[:2] != ["Name", "ID"]:
        raise XlParseError(f"xl list: unexpected header {lines[0]!r}")
    verbose = "UUID" in header
    entries = []
    for line in lines[1:]:
        # Name ID Mem VCPUs State Time(s) [UUID Reason-Code Security-Label]
        fields = line.rsplit(None, 8 if verbose else 5)
        if len(fields) != (9 if verbose else 6):
            raise XlParseError(f"xl list: cannot read row {line!r}")
        name, domid, mem, vcpus, state, cpu_time = fields[:6]
        uuid = fields[6] if verbose else None
        if uuid is not None and not _UUID_RE.match(uuid):
            raise XlParseError(f"xl list -v: bad UUID in row {line!r}")
        try:
            entries.append(
                ListEntry(
                    name=name.strip(),
                    domid=int(domid),
                    memory_mib=int(mem),
                    vcpus=int(vcpus),
                    state=state,
                    flags=parse_state_flags(state),
                    cpu_time_s=float(cpu_time),
                    uuid=uuid,
                )
            )
        except ValueError as exc:
            raise XlParseError(f"xl list: cannot read row {line!r}: {exc}") from None
    return entries


def parse_list_long(text: str) -> list[dict[str, Any]]:
    """``xl list -l``: one dict per domain with ``domid`` and ``config`` (libxl's JSON, as printed)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise XlParseError(f"xl list -l: not JSON: {exc}") from None
    if not isinstance(data, list) or not all(
        isinstance(d, dict) and isinstance(d.get("domid"), int) and isinstance(d.get("config"), dict) for d in data
    ):
        raise XlParseError("xl list -l: expected a list of {domid, config} objects")
    return data


def parse_info(text: str) -> dict[str, str]:
    """``xl info`` as a mapping of key to (stripped) value."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            raise XlParseError(f"xl info: cannot read line {line!r}")
        info[key.strip()] = value.strip()
    for required in ("host", "nr_cpus", "total_memory", "xen_version"):
        if required not in info:
            raise XlParseError(f"xl info: no {required!r} line")
    return info


@attrs.frozen
class BlockListEntry:
    """One row of ``xl block-list``: the device number, its name and the xenbus state."""

    vdev_number: int
    vdev: str
    backend_domid: int
    state: int
    backend_path: str


def parse_block_list(text: str) -> list[BlockListEntry]:
    """Rows of ``xl block-list DOM`` (the header line is recognised and skipped)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    if lines[0].split()[:2] != ["Vdev", "BE"]:
        raise XlParseError(f"xl block-list: unexpected header {lines[0]!r}")
    entries = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) != 7:
            raise XlParseError(f"xl block-list: cannot read row {line!r}")
        try:
            number = int(fields[0])
            entries.append(
                BlockListEntry(
                    vdev_number=number,
                    vdev=vdev_name(number),
                    backend_domid=int(fields[1]),
                    state=int(fields[3]),
                    backend_path=fields[6],
                )
            )
        except ValueError as exc:
            raise XlParseError(f"xl block-list: cannot read row {line!r}: {exc}") from None
    return entries


# --- virtual disk numbers (docs/misc/vbd-interface.txt in Xen's tree) ---

_XVD_MAJOR, _SD_MAJOR, _HD_MAJORS = 202, 8, (3, 22)
_EXTENDED = 1 << 28


def _letters(index: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa (bijective base 26, as Linux names disks)."""
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def _index(letters: str) -> int:
    value = 0
    for char in letters:
        value = value * 26 + (ord(char) - ord("a") + 1)
    return value - 1


_NAME_RE = re.compile(r"^(xvd|sd|hd)([a-z]+)([0-9]*)$")


def vdev_name(number: int) -> str:
    """The name of a virtual device number: ``51712`` -> ``xvda``, ``51729`` -> ``xvdb1``."""
    if number & _EXTENDED:
        disk, part = (number >> 8) & 0xFFFFF, number & 0xFF
        prefix = "xvd"
    else:
        major = number >> 8
        if major == _XVD_MAJOR:
            prefix, disk, part = "xvd", (number >> 4) & 0xF, number & 0xF
        elif major == _SD_MAJOR:
            prefix, disk, part = "sd", (number >> 4) & 0xF, number & 0xF
        elif major in _HD_MAJORS:
            prefix = "hd"
            disk = (number >> 6) & 1 | (2 if major == 22 else 0)
            part = number & 0x3F
        else:
            raise XlParseError(f"unknown virtual device number {number}")
    return f"{prefix}{_letters(disk)}{part if part else ''}"


def vdev_number(name: str) -> int:
    """The virtual device number of a name (the inverse of :func:`vdev_name`)."""
    match = _NAME_RE.match(name)
    if not match:
        raise XlParseError(f"{name!r} is not a Xen virtual disk name (xvdX, sdX or hdX)")
    prefix, letters, part_s = match.groups()
    disk, part = _index(letters), int(part_s or 0)
    if prefix == "xvd":
        if disk < 16 and part < 16:
            return (_XVD_MAJOR << 8) | (disk << 4) | part
        return _EXTENDED | (disk << 8) | part
    if prefix == "sd":
        if disk >= 16 or part >= 16:
            raise XlParseError(f"{name!r}: sd disks stop at sdp15")
        return (_SD_MAJOR << 8) | (disk << 4) | part
    if disk >= 4 or part >= 64:
        raise XlParseError(f"{name!r}: hd disks stop at hdd63")
    return ((_HD_MAJORS[disk >> 1]) << 8) | ((disk & 1) << 6) | part


def domain_config(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``config`` object of one ``xl list -l`` element."""
    config = entry.get("config")
    if not isinstance(config, Mapping):
        raise XlParseError("xl list -l: element without a config object")
    return config


def config_disks(config: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    """The ``disks`` array of a libxl domain config (empty when absent)."""
    disks = config.get("disks", [])
    if not isinstance(disks, list):
        raise XlParseError("xl list -l: 'disks' is not an array")
    return disks

"""Directory storage pools on the Xen host, as libvirt's ``dir`` pool: volumes made by ``qemu-img`` there.

Pools: ``default`` is ``<dir>/images`` (made by the first volume created in it); any other pool is a file
``<dir>/pools/NAME.dir`` on the Xen host holding the pool's absolute directory on one line. A volume's
format is the one it was created with, recorded in ``<pool>/.virtabs-formats/NAME``; a file created
elsewhere is raw: a format is never guessed from an image's bytes (a guest can write any header into a
raw disk), the QEMU backend's rule.

Confinement (the QEMU backend's rules, on the far side of the command transport): a volume name is one
path component, not starting with ``.``, without ``/``, NUL or a newline; every script first enters the
pool's real directory (``cd -P``) and then names the volume ``./NAME`` only, so nothing outside the pool is
reached through the name. A symlink is never a volume: it is not listed, not looked up, not resized and not
deleted, and creating a volume over an existing name (a dangling symlink included) is refused. A volume
is created with the shell's ``noclobber`` (an exclusive create) before ``qemu-img`` writes it.

Each operation is one round trip: one ``sh -c`` script with the directory, pool and volume names as
positional parameters (never spliced into the script text).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping

from virtabs.spi import (
    CommandResult,
    InvalidArgumentError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    PoolInfo,
    VolumeInfo,
    quote,
)

__all__ = ["VOLUME_FORMATS", "Pools"]

VOLUME_FORMATS = ("raw", "qcow2")
"""The formats a volume is created in (raw is what xl's default ``phy`` back-end serves)."""
DEFAULT_POOL = "default"
_POOL_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
_PATH_OK = re.compile(r"^/[^\n\0]*$")
_RECORD = "P"

# exit codes of the scripts
_NO_POOL, _NO_VOLUME, _EXISTS, _NO_QEMU_IMG, _BAD_DIR = 10, 11, 12, 13, 14

# $1: definitions directory, $2: pool. Sets $p to the pool's directory (exit 10 without such a pool).
_POOL = (
    'if [ "$2" = default ]; then p="$1/images"; '
    'else [ -f "$1/pools/$2.dir" ] || exit 10; IFS= read -r p < "$1/pools/$2.dir" || exit 10; fi; '
    'case "$p" in /*) ;; *) exit 14;; esac; '
)
# Enter the pool's real directory; a pool whose directory is not made yet holds no volume (exit 11).
_ENTER = 'cd -P -- "$p" 2>/dev/null || exit 11; '
# $3: a volume that must be a regular file and not a symlink (exit 11); its format in $fmt.
_VOLUME = (
    '[ -f "./$3" ] && [ ! -L "./$3" ] || exit 11; '
    'fmt=raw; [ -f "./.virtabs-formats/$3" ] && IFS= read -r fmt < "./.virtabs-formats/$3"; '
    "command -v qemu-img >/dev/null || exit 13; "
)
# The statfs figures of the nearest existing directory of $p: block size, blocks, free, available.
_STATFS = 'd=$p; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done; stat -f -c "%S %b %f %a" -- "$d"'

_LIST_POOLS = (
    'pool() { printf "P\\t%s\\t%s\\t" "$1" "$2"; p=$2; ' + _STATFS + "; }; "
    'pool default "$1/images"; '
    'for f in "$1"/pools/*.dir; do [ -f "$f" ] || continue; IFS= read -r d < "$f" || continue; '
    'n=${f##*/}; pool "${n%.dir}" "$d"; done; exit 0'
)
_LOOKUP_POOL = _POOL + 'printf "P\\t%s\\t%s\\t" "$2" "$p"; ' + _STATFS
_MARK = "@@virtabs-xen-volume@@"
_LIST_VOLUMES = (
    _POOL
    + 'cd -P -- "$p" 2>/dev/null || exit 0; command -v qemu-img >/dev/null || exit 13; '
    + "nl='\n'; for f in *; do "
    + 'case "$f" in .*|*"$nl"*) continue;; esac; [ -f "./$f" ] && [ ! -L "./$f" ] || continue; '
    + 'fmt=raw; [ -f "./.virtabs-formats/$f" ] && IFS= read -r fmt < "./.virtabs-formats/$f"; '
    + f'printf "{_MARK}\\t%s\\t%s\\n" "$fmt" "$f"; qemu-img info --output=json -f "$fmt" "./$f" 2>/dev/null; '
    + "done; exit 0"
)
_LOOKUP_VOLUME = _POOL + _ENTER + _VOLUME + 'printf "%s\\n" "$fmt"; exec qemu-img info --output=json -f "$fmt" "./$3"'
# $4: format, $5: capacity in bytes.
_CREATE_VOLUME = (
    _POOL
    + "command -v qemu-img >/dev/null || exit 13; "
    + 'mkdir -p -m 700 -- "$p" && cd -P -- "$p" || exit 14; '
    + '{ [ -e "./$3" ] || [ -L "./$3" ]; } && exit 12; '
    + "mkdir -p ./.virtabs-formats || exit 14; "
    + '( set -C; : > "./$3" ) 2>/dev/null || exit 12; '
    + 'qemu-img create -q -f "$4" "./$3" "$5" >&2 || { rm -f -- "./$3"; exit 1; }; '
    + 'printf "%s\\n" "$4" > "./.virtabs-formats/$3"; '
    + 'printf "%s\\n" "$4"; exec qemu-img info --output=json -f "$4" "./$3"'
)
_DELETE_VOLUME = _POOL + _ENTER + '[ -f "./$3" ] && [ ! -L "./$3" ] || exit 11; rm -f -- "./$3" "./.virtabs-formats/$3"'
# $4: new capacity in bytes, $5: "--shrink" or "".
_RESIZE_VOLUME = (
    _POOL
    + _ENTER
    + _VOLUME
    + 'qemu-img resize -q -f "$fmt" $5 "./$3" "$4" >&2 || exit 1; '
    + 'printf "%s\\n" "$fmt"; exec qemu-img info --output=json -f "$fmt" "./$3"'
)

Runner = Callable[[str, list[str]], CommandResult]
"""Runs ``sh -c SCRIPT virtabs-xen ARGS...`` on the Xen host (the driver's transport)."""


def check_pool_name(name: str) -> None:
    """A pool name is a file name in ``<dir>/pools`` (letters, digits, ``_ . + -``)."""
    if not isinstance(name, str) or not _POOL_NAME_OK.match(name):
        raise NoStoragePoolError(f"no storage pool named {quote(name)}")


def check_volume_name(pool: str, name: str) -> None:
    """Directory pools are flat: one component, not starting with '.', no '/', NUL or newline."""
    if not name or "/" in name or "\0" in name or "\n" in name or name.startswith("."):
        raise InvalidArgumentError(
            f"invalid volume name {quote(name)} for pool {quote(pool)}: directory pools are flat and names "
            "starting with '.' are reserved"
        )


def _pool_from_record(line: str) -> PoolInfo | None:
    """One ``P<TAB>name<TAB>path<TAB>bsize blocks free avail`` line; None for a line that is not one."""
    fields = line.split("\t")
    if len(fields) != 4 or fields[0] != _RECORD:
        return None
    name, path, figures = fields[1], fields[2], fields[3].split()
    if not _POOL_NAME_OK.match(name) or not _PATH_OK.match(path) or len(figures) != 4:
        return None
    try:
        bsize, blocks, free, avail = (int(x) for x in figures)
    except ValueError:
        return None
    return PoolInfo(
        name=name,
        type="dir",
        capacity_bytes=blocks * bsize,
        allocation_bytes=(blocks - free) * bsize,
        available_bytes=avail * bsize,
        path=path.rstrip("/") or "/",
        active=True,
    )


def _volume_info(pool: PoolInfo, name: str, fmt: str, qemu_img_json: str) -> VolumeInfo:
    """A volume from ``qemu-img info --output=json`` (read with the recorded format)."""
    try:
        data = json.loads(qemu_img_json)
    except ValueError:
        raise OperationFailedError(
            f"unreadable qemu-img info of volume {quote(name)} in pool {quote(pool.name)}"
        ) from None
    if not isinstance(data, Mapping):
        raise OperationFailedError(f"unreadable qemu-img info of volume {quote(name)} in pool {quote(pool.name)}")
    assert pool.path is not None
    actual = data.get("actual-size")
    return VolumeInfo(
        name=name,
        pool=pool.name,
        path=posixpath.join(pool.path, name),
        format=fmt,
        capacity_bytes=int(data.get("virtual-size", 0)),
        allocation_bytes=int(actual) if isinstance(actual, int) else None,
    )


class Pools:
    """The directory pools of one Xen host, through the driver's command runner."""

    def __init__(self, directory: str, run: Runner, where: str) -> None:
        self._dir = directory
        self._run = run
        self._where = where

    def _script(self, script: str, pool: str, *args: str) -> CommandResult:
        result = self._run(script, [self._dir, pool, *args])
        volume = args[0] if args else ""
        if result.returncode == _NO_POOL:
            raise NoStoragePoolError(f"no storage pool named {quote(pool)}")
        if result.returncode == _NO_VOLUME:
            raise NoStorageVolumeError(f"no volume {quote(volume)} in storage pool {quote(pool)}")
        if result.returncode == _EXISTS:
            raise OperationInvalidError(f"volume {quote(volume)} already exists in storage pool {quote(pool)}")
        if result.returncode == _NO_QEMU_IMG:
            raise OperationFailedError(f"no qemu-img on {self._where} (Debian: apt-get install qemu-utils)")
        if result.returncode == _BAD_DIR:
            raise OperationFailedError(f"storage pool {quote(pool)}: its directory cannot be used on {self._where}")
        if result.returncode != 0:
            detail = "; ".join(line for line in result.err.strip().splitlines()[-3:] if line.strip())
            raise OperationFailedError(f"storage pool {quote(pool)} on {self._where}: {detail or 'failed'}")
        return result

    def list_pools(self) -> list[PoolInfo]:
        """``default`` and every ``<dir>/pools/NAME.dir``, with the file system's figures (one round trip)."""
        result = self._run(_LIST_POOLS, [self._dir])
        if result.returncode != 0:
            raise OperationFailedError(f"listing storage pools on {self._where} failed: {result.err.strip()[-300:]}")
        pools = [p for p in (_pool_from_record(line) for line in result.out.splitlines()) if p is not None]
        return sorted(pools, key=lambda p: (p.name != DEFAULT_POOL, p.name))

    def lookup_pool(self, name: str) -> PoolInfo:
        """One pool; NoStoragePoolError when there is none."""
        check_pool_name(name)
        found = _pool_from_record(self._script(_LOOKUP_POOL, name).out.rstrip("\n"))
        if found is None:
            raise OperationFailedError(f"storage pool {quote(name)} on {self._where}: unreadable answer")
        return found

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Regular files of the pool's directory (symlinks and names starting with '.' left out)."""
        info = self.lookup_pool(pool)
        out = self._script(_LIST_VOLUMES, pool).out
        volumes = []
        for chunk in out.split(_MARK + "\t")[1:]:
            head, _, body = chunk.partition("\n")
            fmt, _, name = head.partition("\t")
            if body.strip():  # qemu-img could not read it (removed meanwhile, or not an image of its format)
                volumes.append(_volume_info(info, name, fmt, body))
        return volumes

    def _answer(self, info: PoolInfo, name: str, out: str) -> VolumeInfo:
        fmt, _, body = out.partition("\n")
        return _volume_info(info, name, fmt.strip(), body)

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A volume by name."""
        check_volume_name(pool, name)
        info = self.lookup_pool(pool)
        return self._answer(info, name, self._script(_LOOKUP_VOLUME, pool, name).out)

    def create_volume(self, pool: str, name: str, capacity_bytes: int, fmt: str, backing: str | None) -> VolumeInfo:
        """``qemu-img create -f FORMAT`` of a new file in the pool; an existing name is refused."""
        check_volume_name(pool, name)
        if fmt not in VOLUME_FORMATS:
            raise InvalidArgumentError(
                f"volume format {quote(fmt)}: the Xen driver's pools make {', '.join(VOLUME_FORMATS)}"
            )
        if backing is not None:
            raise InvalidArgumentError("the Xen driver's pools create volumes without a backing image")
        info = self.lookup_pool(pool)
        return self._answer(info, name, self._script(_CREATE_VOLUME, pool, name, fmt, str(capacity_bytes)).out)

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove the volume's file and its recorded format."""
        check_volume_name(pool, name)
        self._script(_DELETE_VOLUME, pool, name)

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``qemu-img resize -f FORMAT`` (``--shrink`` when smaller)."""
        current = self.lookup_volume(pool, name)
        info = self.lookup_pool(pool)
        shrink = "--shrink" if current.capacity_bytes is not None and capacity_bytes < current.capacity_bytes else ""
        return self._answer(info, name, self._script(_RESIZE_VOLUME, pool, name, str(capacity_bytes), shrink).out)

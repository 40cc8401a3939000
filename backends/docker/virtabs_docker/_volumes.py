"""Named volumes of a Docker or Podman engine as one storage pool, ``volumes``.

A named volume is a directory the engine manages (``<root>/volumes/<name>/_data`` for the ``local`` volume
driver), not a disk image: its :class:`~virtabs.spi.VolumeInfo` has format ``"dir"``
(:data:`~virtabs.spi.DIRECTORY_FORMAT`), no capacity and no backing chain. The engine reports no size for it
in its volume listing or inspect (only ``GET /system/df`` walks every volume's tree to count its bytes), so
``allocation_bytes`` is None too: never a guess.

The engine calls: the listing is ``GET /volumes`` (one call whatever the number of volumes), a lookup
``GET /volumes/{name}``, a create ``POST /volumes/create`` and a delete ``DELETE /volumes/{name}``. Both
engines answer a create of an existing name with the existing volume (201, not an error); a create therefore
carries a label with a token of its own, and a volume that comes back without it already existed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from virtabs.spi import DIRECTORY_FORMAT, PoolInfo, VolumeInfo

__all__ = ["CREATE_TOKEN_LABEL", "POOL_NAME", "pool_info", "volume_info", "volume_name_problem"]

POOL_NAME = "volumes"
"""The one pool of a Docker or Podman connection: the engine's named volumes."""
CREATE_TOKEN_LABEL = "virtabs.create-token"
"""The label a create sets to a fresh token, to tell a new volume from an existing one of the same name."""

# Docker's rule for a local volume name ("[a-zA-Z0-9][a-zA-Z0-9_.-]" and at least two characters); Podman's is
# the same without the minimum length.
_NAME_RULES: Mapping[str, re.Pattern[str]] = {
    "docker": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]+"),
    "podman": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
}


def volume_name_problem(engine: str, name: str) -> str | None:
    """Why ``engine`` would refuse ``name`` for a new named volume, or None when it takes it."""
    if _NAME_RULES[engine].fullmatch(name):
        return None
    minimum = " and at least two characters" if engine == "docker" else ""
    return f"{engine} names a volume with letters, digits, '_', '.' and '-', starting with a letter or digit{minimum}"


def pool_info(engine: str, volumes_dir: str) -> PoolInfo:
    """The pool of the engine's named volumes, kept in ``volumes_dir`` on the engine's host.

    No capacity, allocation or free space: the engine reports none for its volume directory (a figure read
    on this machine would describe another host's disk when the engine is remote).
    """
    return PoolInfo(
        name=POOL_NAME,
        type=f"{engine}-volumes",
        capacity_bytes=None,
        allocation_bytes=None,
        available_bytes=None,
        path=volumes_dir,
        active=True,
    )


def volume_info(raw: Mapping[str, Any]) -> VolumeInfo:
    """One entry of ``GET /volumes`` (or the answer of an inspect or a create) as a directory volume."""
    return VolumeInfo(
        name=str(raw["Name"]),
        pool=POOL_NAME,
        path=str(raw.get("Mountpoint") or ""),
        format=DIRECTORY_FORMAT,
        capacity_bytes=None,
        allocation_bytes=None,
    )

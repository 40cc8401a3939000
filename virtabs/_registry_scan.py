"""Reading the ``virtabs.drivers`` entry points of every installed distribution.

Imported by :mod:`virtabs._registry` only when it must read them (listing the drivers, or opening one
that is not embedded), so that ``virtabs.open("test:///default")`` neither imports
:mod:`importlib.metadata` nor generates these classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["DriverEntry", "Scan", "scan"]


@attrs.frozen
class DriverEntry:
    """One installed driver as its entry point describes it (nothing imported)."""

    name: str
    target: str
    distribution: str | None


@attrs.frozen
class Scan:
    """One reading of the group: the claims by scheme, and the entry points stevedore loads from."""

    entries: dict[str, list[DriverEntry]]
    points: list[EntryPoint]


def scan(group: str) -> Scan:
    """Read the entry points of ``group`` from every distribution on ``sys.path``."""
    import importlib.metadata as md

    found: dict[str, list[DriverEntry]] = {}
    points: list[EntryPoint] = []
    for ep in md.entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else None
        entry = DriverEntry(ep.name, ep.value, dist)
        claims = found.setdefault(ep.name, [])
        if entry not in claims:  # the same distribution seen twice on sys.path is one claim
            claims.append(entry)
            points.append(ep)
    return Scan(found, points)

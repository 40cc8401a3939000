"""Reading the ``virtabs.drivers`` entry points of every installed distribution.

Imported by :mod:`virtabs._registry` only when it must read them (listing the drivers, or opening one
that is not embedded), so that ``virtabs.open("test:///default")`` does not import it.

Reading: the ``*.dist-info`` and ``*.egg-info`` directories of the ``sys.path`` directories are listed,
and only their ``entry_points.txt`` is read (the text of a distribution without the group is not
parsed): the places and the rules of :mod:`importlib.metadata`'s path finder (its ``Lookup`` and
``Sectioned`` parser, ``entry_points()``'s first-distribution-of-a-name-wins), without importing it.
:mod:`importlib.metadata` (about 10-45 ms here with the ``email`` package it pulls in) is imported only
where this reading would not see what it sees: a zip file or a ``.egg`` on ``sys.path``, or another
distribution finder on ``sys.meta_path``. Every ssh connection to a remote host starts a new helper that
opens one driver, so this is set-up time.
"""

from __future__ import annotations

import os
import re
import sys

import attrs

__all__ = ["DriverEntry", "Scan", "scan"]


@attrs.frozen
class DriverEntry:
    """One installed driver as its entry point describes it (nothing imported)."""

    name: str
    target: str
    distribution: str | None


@attrs.frozen
class Scan:
    """One reading of the group: the claims by scheme, and which reader made it."""

    entries: dict[str, list[DriverEntry]]
    read_by: str
    """``"directories"`` (the metadata directories read directly) or ``"importlib.metadata"``."""


def scan(group: str) -> Scan:
    """Read the entry points of ``group`` from every distribution on ``sys.path``."""
    found = _read_directories(group)
    if found is not None:
        return Scan(found, "directories")
    return Scan(_read_importlib_metadata(group), "importlib.metadata")


def _add(found: dict[str, list[DriverEntry]], entry: DriverEntry) -> None:
    claims = found.setdefault(entry.name, [])
    if entry not in claims:  # the same distribution seen twice on sys.path is one claim
        claims.append(entry)


def _read_importlib_metadata(group: str) -> dict[str, list[DriverEntry]]:
    import importlib.metadata as md

    found: dict[str, list[DriverEntry]] = {}
    for ep in md.entry_points(group=group):
        _add(found, DriverEntry(ep.name, ep.value, ep.dist.name if ep.dist is not None else None))
    return found


_PATH_FINDERS = frozenset({("importlib_metadata", "MetadataPathFinder")})
"""Distribution finders that read the very directories of ``sys.path`` this module reads: the
``importlib_metadata`` backport puts its ``MetadataPathFinder`` on ``sys.meta_path`` when a library imports it."""


def _only_the_path_finder_finds_distributions() -> bool:
    """True when :mod:`importlib.metadata` would ask no finder but the standard path finder (or one that
    reads the same ``sys.path`` directories, :data:`_PATH_FINDERS`)."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if getattr(finder, "find_distributions", None) is None or finder is PathFinder:
            continue
        kind = type(finder) if not isinstance(finder, type) else finder
        if (kind.__module__, kind.__qualname__) not in _PATH_FINDERS:
            return False
    return True


_NORMALIZE = re.compile(r"[-_.]+")


def _read_directories(group: str) -> dict[str, list[DriverEntry]] | None:
    """The group's entry points read from the metadata directories, or None when only
    :mod:`importlib.metadata` can read this environment (see the module's docstring)."""
    if not _only_the_path_finder_finds_distributions():
        return None
    header = f"[{group}]"
    seen: set[str] = set()
    found: dict[str, list[DriverEntry]] = {}
    for entry in sys.path:
        root = entry or "."
        if os.path.basename(root).lower().endswith(".egg"):
            return None
        try:
            children = os.listdir(root)
        except OSError:
            if os.path.isfile(root):
                return None  # a zip archive on sys.path: its distributions are importlib.metadata's to read
            continue
        for child in children:
            low = child.lower()
            if not low.endswith((".dist-info", ".egg-info")):
                continue
            stem_name = low.rpartition(".")[0].partition("-")[0]
            normalized = _NORMALIZE.sub("_", stem_name)
            if normalized in seen:
                continue  # entry_points(): the first distribution of a name on sys.path wins
            seen.add(normalized)
            info = os.path.join(root, child)
            text = _read(os.path.join(info, "entry_points.txt"))
            if text is None or header not in text:
                continue
            pairs = _section_pairs(text, group)
            if pairs:
                dist = _distribution_name(info, child)
                for name, value in pairs:
                    _add(found, DriverEntry(name, value, dist))
    return found


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):  # importlib.metadata skips an unreadable file too
        return None


def _section_pairs(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` lines of section ``group``, parsed as importlib.metadata's ``Sectioned`` does."""
    pairs: list[tuple[str, str]] = []
    section: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section == group:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def _distribution_name(info: str, child: str) -> str:
    """The ``Name`` field of the distribution's metadata (what ``EntryPoint.dist.name`` says), else the
    name in its directory's name."""
    for filename in ("METADATA", "PKG-INFO"):
        text = _read(os.path.join(info, filename))
        if text is None:
            continue
        for line in text.splitlines():
            if not line:
                break  # the end of the headers
            if line[:5].lower() == "name:":
                return line[5:].strip()
    return child.rpartition(".")[0].partition("-")[0]


_ENTRY_POINT_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")
"""``module:attr [extras]``: importlib.metadata's ``EntryPoint.pattern``."""


def load_target(target: str) -> object:
    """Import what an entry point's value names, as ``EntryPoint.load()`` does (ImportError propagates)."""
    import importlib

    match = _ENTRY_POINT_VALUE.match(target)
    if match is None:
        raise ValueError(f"not an entry point value: {target!r}")
    value: object = importlib.import_module(match.group("module"))
    for attribute in filter(None, (match.group("attr") or "").split(".")):
        value = getattr(value, attribute)
    return value

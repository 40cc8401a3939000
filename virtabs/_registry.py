"""Finding and loading drivers through the ``virtabs.drivers`` entry-point group.

Listing reads entry-point *names* only (nothing is imported); loading imports
exactly the driver a URI names, through stevedore.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from typing import Any

import attrs

from ._errors import DriverNotFoundError, DriverUnavailableError, InternalError

__all__ = ["DriverEntry", "installed_drivers", "load_driver_class"]

GROUP = "virtabs.drivers"


@attrs.frozen
class DriverEntry:
    """One installed driver as its entry point describes it (nothing imported)."""

    name: str
    target: str
    distribution: str | None


_SCAN_CACHE: dict[tuple[str, ...], dict[str, list[DriverEntry]]] = {}
_SCAN_LOCK = threading.Lock()


def _entries() -> dict[str, list[DriverEntry]]:
    """The group's entry points by name, scanned once per ``sys.path`` (opening many hosts stays cheap)."""
    key = tuple(sys.path)
    with _SCAN_LOCK:
        cached = _SCAN_CACHE.get(key)
        if cached is None:
            cached = _SCAN_CACHE[key] = _scan()
        return cached


def _scan() -> dict[str, list[DriverEntry]]:
    import importlib.metadata as md  # lazily: only opening or listing drivers needs it

    found: dict[str, list[DriverEntry]] = defaultdict(list)
    for ep in md.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        entry = DriverEntry(ep.name, ep.value, dist)
        if entry not in found[ep.name]:  # the same distribution seen twice on sys.path is one claim
            found[ep.name].append(entry)
    return found


def installed_drivers() -> list[DriverEntry]:
    """Every installed driver, sorted by scheme; a scheme claimed twice raises InternalError."""
    result = []
    for name, entries in sorted(_entries().items()):
        _check_single(name, entries)
        result.append(entries[0])
    return result


def _check_single(name: str, entries: list[DriverEntry]) -> None:
    dists = {e.distribution for e in entries}
    if len(entries) > 1 and len(dists) > 1:
        claims = ", ".join(f"{e.distribution} ({e.target})" for e in entries)
        raise InternalError(f"URI scheme {name!r} is claimed by several distributions: {claims}; uninstall all but one")
    if len(entries) > 1:
        targets = ", ".join(e.target for e in entries)
        raise InternalError(f"URI scheme {name!r} is registered twice ({targets})")


KNOWN_BACKENDS: dict[str, tuple[str, str]] = {
    "qemu": ("virtabs-qemu", "backends/qemu"),
    "lxc": ("virtabs-lxc", "backends/lxc"),
    "docker": ("virtabs-docker", "backends/docker"),
    "esx": ("virtabs-esx", "backends/esx"),
    "vpx": ("virtabs-esx", "backends/esx"),
    "xen": ("virtabs-xen", "backends/xen"),
    "hyperv": ("virtabs-hyperv", "backends/hyperv"),
    "vbox": ("virtabs-vbox", "backends/vbox"),
    "libvirt": ("virtabs-libvirt", "contrib/virtabs-libvirt"),
    "example": ("virtabs-example", "contrib/virtabs-example"),
}
"""The drivers of this repository: URI scheme -> (distribution, directory in a virtabs checkout).

They are not on any package index: they install from a checkout (``pip install -e backends/qemu``),
or all at once with ``bash scripts/bootstrap``. Install hints name only these, never a made-up package.
"""


def install_hint(name: str) -> str | None:
    """How to install the driver for scheme ``name``, if it is one of this repository's."""
    known = KNOWN_BACKENDS.get(name)
    if known is None:
        return None
    dist, directory = known
    return f"{dist} installs from a virtabs checkout: pip install -e {directory} (or: bash scripts/bootstrap)"


def load_driver_class(name: str) -> type:
    """Import the driver class registered for scheme ``name`` (and nothing else)."""
    entries = _entries().get(name)
    if not entries:
        installed = ", ".join(sorted(_entries())) or "none"
        hint = install_hint(name)
        if hint is not None:
            detail = f"the {name} driver is not installed; {hint}"
        else:
            detail = (
                f"no driver for URI scheme {name!r}; a third-party driver registers itself under the "
                f"entry-point group {GROUP} (docs/writing-a-driver.md)"
            )
        raise DriverNotFoundError(f"{detail}; installed drivers: {installed}")
    _check_single(name, entries)
    from stevedore import DriverManager  # imported here: `virtabs --help` need not pay for it
    from stevedore.extension import ExtensionManager

    # stevedore memoises a group's entry points for the life of the process; drop that memo when it
    # lacks a driver our own scan found (one that appeared on sys.path after the first open()).
    memo = ExtensionManager.ENTRY_POINT_CACHE.get(GROUP)
    if memo is not None and not any(ep.name == name for ep in memo):
        ExtensionManager.ENTRY_POINT_CACHE.pop(GROUP, None)

    try:
        manager: Any = DriverManager(
            namespace=GROUP, name=name, invoke_on_load=False, on_load_failure_callback=_reraise
        )
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        dist = entries[0].distribution
        hint = install_hint(name) or (f"reinstall {dist} with its dependencies" if dist else "reinstall the driver")
        raise DriverUnavailableError(
            f"driver {name!r} is installed but cannot load: missing module {missing!r}; {hint}"
        ) from exc
    driver_class = manager.driver
    if not isinstance(driver_class, type):
        raise InternalError(f"the entry point of driver {name!r} ({entries[0].target}) is not a class")
    return driver_class


def _reraise(_manager: object, _entrypoint: object, exc: BaseException) -> None:
    raise exc

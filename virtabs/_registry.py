"""Finding and loading drivers through the ``virtabs.drivers`` entry-point group.

Listing reads entry-point *names* only (nothing is imported); loading imports exactly the driver a URI
names, as ``EntryPoint.load()`` would.

Start-up cost: the entry points are read once per ``sys.path`` and only when a scheme outside
:data:`EMBEDDED` is opened or the drivers are listed, from the distributions' ``entry_points.txt``
directly (:mod:`virtabs._registry_scan`; :mod:`importlib.metadata` only where that reading cannot see
what it sees). The drivers shipped inside the ``virtabs`` distribution (``test``) are imported directly:
``virtabs.open("test:///default")`` reads no entry point at all.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

from ._errors import DriverNotFoundError, DriverUnavailableError, InternalError, quote

if TYPE_CHECKING:
    from ._registry_scan import DriverEntry, Scan

__all__ = ["EMBEDDED", "DriverEntry", "installed_drivers", "load_driver_class"]

GROUP = "virtabs.drivers"

EMBEDDED: dict[str, str] = {"test": "virtabs.drivers.test:TestDriver"}
"""Drivers inside the ``virtabs`` distribution: URI scheme -> ``module:Class``.

They are published as entry points like any driver (``installed_drivers()`` and ``virtabs drivers``
list them from there), but opening one imports its module directly, without reading any entry point.
A scheme listed here cannot be taken over by another distribution: ``installed_drivers()`` reports a
second claim as an error. ``tests/core/test_import_budget.py`` checks this table against the
entry points of the installed ``virtabs`` distribution.
"""


def __getattr__(name: str) -> Any:
    # DriverEntry lives with the scanning code (virtabs._registry_scan): opening the embedded driver
    # neither imports that module nor generates its classes.
    if name == "DriverEntry":
        from ._registry_scan import DriverEntry

        return DriverEntry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_SCAN_CACHE: dict[tuple[str, ...], Scan] = {}
_SCAN_LOCK = threading.Lock()


def _scan_once() -> Scan:
    """The group's entry points, read once per ``sys.path`` (opening many hosts stays cheap)."""
    key = tuple(sys.path)
    with _SCAN_LOCK:
        cached = _SCAN_CACHE.get(key)
        if cached is None:
            from ._registry_scan import scan

            cached = _SCAN_CACHE[key] = scan(GROUP)
        return cached


def _entries() -> dict[str, list[DriverEntry]]:
    """The group's entry points by name (read on first use, see :func:`_scan_once`)."""
    return _scan_once().entries


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
        raise InternalError(
            f"URI scheme {quote(name)} is claimed by several distributions: {claims}; uninstall all but one"
        )
    if len(entries) > 1:
        targets = ", ".join(e.target for e in entries)
        raise InternalError(f"URI scheme {quote(name)} is registered twice ({targets})")


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
    embedded = EMBEDDED.get(name)
    if embedded is not None:
        return _load_embedded(name, embedded)
    known = _entries()
    entries = known.get(name)
    if not entries:
        installed = ", ".join(sorted({*known, *EMBEDDED}))
        hint = install_hint(name)
        if hint is not None:
            detail = f"the {name} driver is not installed; {hint}"
        else:
            detail = (
                f"no driver for URI scheme {quote(name)}; a third-party driver registers itself under the "
                f"entry-point group {GROUP} (docs/writing-a-driver.md)"
            )
        raise DriverNotFoundError(f"{detail}; installed drivers: {installed}")
    _check_single(name, entries)
    from ._registry_scan import load_target

    try:
        driver_class = load_target(entries[0].target)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        dist = entries[0].distribution
        hint = install_hint(name) or (f"reinstall {dist} with its dependencies" if dist else "reinstall the driver")
        raise DriverUnavailableError(
            f"driver {quote(name)} is installed but cannot load: missing module {quote(missing)}; {hint}"
        ) from exc
    except (AttributeError, ValueError) as exc:
        raise InternalError(
            f"the entry point of driver {quote(name)} ({entries[0].target}) cannot be loaded: {exc}"
        ) from exc
    if not isinstance(driver_class, type):
        raise InternalError(f"the entry point of driver {quote(name)} ({entries[0].target}) is not a class")
    return driver_class


def _load_embedded(name: str, target: str) -> type:
    """Import a driver of :data:`EMBEDDED` directly (no entry point read)."""
    import importlib

    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise DriverUnavailableError(
            f"driver {quote(name)} is part of virtabs but cannot load: missing module {quote(missing)}; reinstall virtabs"
        ) from exc
    driver_class = getattr(module, attribute, None)
    if not isinstance(driver_class, type):
        raise InternalError(f"the embedded driver {quote(name)} ({target}) is not a class")
    return driver_class

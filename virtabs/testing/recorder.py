"""Record which driver (SPI) methods run, including the driver's calls to itself."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..spi import SPI_METHODS, Driver

__all__ = ["HOST_TOUCHING_METHODS", "READ_METHODS", "CallRecorder"]

READ_METHODS: frozenset[str] = frozenset(
    {
        "connection_capabilities",
        "host_info",
        "list_domains",
        "lookup_domain",
        "domain_info",
        "domain_status",
        "domain_spec",
        "disks",
        "nics",
        "autostart",
        "inventory",
        "block_job_info",
        "block_jobs",
        "list_snapshots",
        "list_storage_pools",
        "lookup_storage_pool",
        "list_volumes",
        "lookup_volume",
        "list_networks",
        "lookup_network",
    }
)
"""SPI methods that only read from the host."""

_MISSING = object()

HOST_TOUCHING_METHODS: frozenset[str] = frozenset(SPI_METHODS) - {"connection_capabilities"}
"""Every SPI method that reaches the host (reads included)."""


class CallRecorder:
    """Count the SPI methods a driver instance runs while the recorder is active.

    The recorder shadows each SPI method with an instance attribute, so calls the
    public layer makes *and* calls the driver makes to itself (``self.disks(...)``
    inside a generic ``inventory``) are both seen. Leaving the ``with`` block
    restores the driver. Recorders nest (the plugin records every contract test
    whole, a test records a part)::

        with CallRecorder(conn._driver) as rec:
            conn.list_domains()
        assert rec.count() == 1
    """

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._patched: list[tuple[str, object]] = []

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls.append(name)
            return method(*args, **kwargs)

        return recorded

    def __enter__(self) -> CallRecorder:
        for name in SPI_METHODS:
            method = getattr(self.driver, name, None)
            if callable(method):
                # a nested recorder wraps the outer one's wrapper and puts it back on exit
                self._patched.append((name, vars(self.driver).get(name, _MISSING)))
                setattr(self.driver, name, self._wrap(name, method))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for name, previous in reversed(self._patched):
            if previous is _MISSING:
                vars(self.driver).pop(name, None)
            else:
                setattr(self.driver, name, previous)
        self._patched.clear()

    def count(self, *names: str) -> int:
        """How many calls ran (only of ``names`` when given)."""
        with self._lock:
            return sum(1 for c in self.calls if not names or c in names)

    def names(self) -> list[str]:
        """The methods called, in order."""
        with self._lock:
            return list(self.calls)

    def host_touching(self, allowed: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """The calls that reached the host, except those in ``allowed``."""
        return [c for c in self.names() if c in HOST_TOUCHING_METHODS and c not in allowed]

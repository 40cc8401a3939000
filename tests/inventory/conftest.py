"""Fixtures for the inventory tests: test-driver node files and driver call counting."""

from __future__ import annotations

import collections
import functools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virtabs.drivers.test import TestDriver, reset_all_nodes
from virtabs.testing.fleet import fleet_node
from virtabs.testing.recorder import READ_METHODS

BASE_IMAGES = 3
"""Base images per node: the domains' disks are spread over three backing files, so a pool has volumes."""


@pytest.fixture(autouse=True)
def _fresh_nodes() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()


@pytest.fixture
def make_node(tmp_path: Path) -> Callable[..., str]:
    """``make_node(host, domains=3, seed=0) -> "test:///.../host.json"``: a ``fleet_node`` with three base
    images, or ``description`` when given."""

    def make(host: str, domains: int = 3, seed: int = 0, description: dict[str, Any] | None = None) -> str:
        path = tmp_path / f"{host}.json"
        path.write_text(json.dumps(description or fleet_node(host, domains, seed, base_images=BASE_IMAGES)))
        return f"test://{path}"

    return make


class DriverCalls:
    """Counts TestDriver (SPI) read calls per connection URI, for every connection in the process."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, uri: str, method: str) -> None:
        with self._lock:
            self.counts[(uri, method)] += 1

    def of(self, method: str) -> dict[str, int]:
        """``{uri: calls}`` of one method."""
        return {uri: n for (uri, m), n in self.counts.items() if m == method}

    def per_uri(self, uri: str) -> dict[str, int]:
        return {m: n for (u, m), n in self.counts.items() if u == uri}


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> DriverCalls:
    """Wrap every read method of TestDriver (the class) so that calls are counted per URI."""
    calls = DriverCalls()
    for name in READ_METHODS:
        original = getattr(TestDriver, name)

        def wrapper(original: Callable[..., Any], name: str) -> Callable[..., Any]:
            @functools.wraps(original)
            def counted(self: TestDriver, *args: Any, **kwargs: Any) -> Any:
                calls.record(str(self.uri), name)
                return original(self, *args, **kwargs)

            return counted

        monkeypatch.setattr(TestDriver, name, wrapper(original, name))
    return calls

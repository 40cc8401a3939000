"""Fixtures for the inventory tests: test-driver node files and driver call counting."""

from __future__ import annotations

import collections
import functools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from virtabs.drivers.test import TestDriver, reset_all_nodes
from virtabs.testing.recorder import READ_METHODS

GiB = 1 << 30
STATES = ("running", "shutoff", "paused", "running")


def node_description(host: str, domains: int, seed: int = 0) -> dict[str, Any]:
    """A test-driver node: ``domains`` domains with a qcow2 disk on a backing chain, a NIC, one pool."""
    doms = []
    for i in range(domains):
        n = seed * 100_000 + i
        doms.append(
            {
                "name": f"{host}-vm{i:03d}",
                "uuid": str(uuid.UUID(int=(seed << 64) + i + 1)),
                "memory_bytes": (1 + i % 4) * GiB,
                "vcpus": 1 + i % 8,
                "state": STATES[i % len(STATES)],
                "autostart": i % 2 == 0,
                "disks": [
                    {
                        "target": "vda",
                        "path": f"/pool/{host}-vm{i:03d}.qcow2",
                        "format": "qcow2",
                        "capacity_bytes": 20 * GiB,
                        "allocation_bytes": (i + 1) * (1 << 20),
                        "backing_chain": [f"/img/{host}-base{i % 3}.qcow2"],
                    }
                ],
                "nics": [
                    {
                        "mac": f"52:54:00:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}",
                        "network": "default",
                        "model": "virtio",
                        "ips": [f"10.{seed % 250}.{i // 250}.{i % 250 + 1}"],
                    }
                ],
            }
        )
    return {
        "host": {"hostname": host, "cpus": 32, "memory_bytes": 128 * GiB},
        "pools": [
            {
                "name": "images",
                "type": "dir",
                "path": "/img",
                "capacity_bytes": 500 * GiB,
                "volumes": [
                    {
                        "name": f"{host}-base{b}.qcow2",
                        "format": "qcow2",
                        "capacity_bytes": 20 * GiB,
                        "allocation_bytes": GiB,
                    }
                    for b in range(3)
                ],
            }
        ],
        "domains": doms,
    }


@pytest.fixture(autouse=True)
def _fresh_nodes() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()


@pytest.fixture
def make_node(tmp_path: Path) -> Callable[..., str]:
    """``make_node(host, domains=3, seed=0) -> "test:///.../host.json"``."""

    def make(host: str, domains: int = 3, seed: int = 0, description: dict[str, Any] | None = None) -> str:
        path = tmp_path / f"{host}.json"
        path.write_text(json.dumps(description or node_description(host, domains, seed)))
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

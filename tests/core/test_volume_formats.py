"""Volumes that are images and volumes that are directories: the core's rules for ``create_volume``.

An image volume (qcow2, raw, ...) has a size; a directory volume (format ``dir``, a Docker or Podman named
volume) has none. The public layer refuses a size-less image and a sized directory before any driver runs;
a pool of images refuses a directory volume (``image_volume_capacity``), with nothing created.
"""

from __future__ import annotations

from typing import Any

import pytest

import virtabs
from virtabs import Capabilities, Capability, HostInfo, PoolInfo, VolumeInfo
from virtabs._api import Connection
from virtabs._uri import parse_uri
from virtabs.spi import DIRECTORY_FORMAT, Driver, NoStoragePoolError

MiB = 1 << 20


class DirectoryPoolDriver(Driver):
    """One pool, ``volumes``, of directory volumes; it records every create it receives."""

    name = "dirs"
    capabilities = Capabilities.of(Capability.STORAGE_POOL, Capability.STORAGE_VOLUME)

    def __init__(self, uri: Any, options: Any) -> None:
        super().__init__(uri, options)
        self.created: list[tuple[str, str, int | None, str, str | None]] = []
        self.volumes: dict[str, VolumeInfo] = {}

    def host_info(self) -> HostInfo:
        return HostInfo("h", "dirs", "1", 1, 1)

    def list_storage_pools(self) -> list[PoolInfo]:
        return [PoolInfo("volumes", "docker", None, None, None, path="/v")]

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        if name != "volumes":
            raise NoStoragePoolError(name)
        return self.list_storage_pools()[0]

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        return list(self.volumes.values())

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        self.created.append((pool, name, capacity_bytes, format, backing))
        self.volumes[name] = VolumeInfo(name, pool, f"/v/{name}", format, capacity_bytes)
        return self.volumes[name]


@pytest.fixture
def dirs() -> Any:
    conn = Connection._open(DirectoryPoolDriver, parse_uri("dirs:///"), None, False, None)
    yield conn, conn._driver
    conn.close()


def test_a_directory_volume_reaches_the_driver_without_a_capacity(dirs: Any) -> None:
    conn, driver = dirs
    vol = conn.lookup_storage_pool("volumes").create_volume("data", format=DIRECTORY_FORMAT)
    assert driver.created == [("volumes", "data", None, "dir", None)]
    assert vol.last_info.capacity_bytes is None and vol.last_info.format == "dir"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("data", 16 * MiB), {"format": "dir"}, "has no capacity"),
        (("data",), {"format": "dir", "backing": "/img/base.qcow2"}, "cannot have a backing image"),
        (("data.qcow2",), {}, "needs capacity_bytes"),
        (("data.raw",), {"format": "raw"}, "needs capacity_bytes"),
        (("data",), {"format": "directory"}, "unknown volume format"),
        (("data.qcow2", 0), {}, "capacity_bytes"),
    ],
)
def test_size_and_format_that_contradict_are_refused_before_the_driver(
    dirs: Any, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    conn, driver = dirs
    with pytest.raises(virtabs.InvalidArgumentError, match=message):
        conn.lookup_storage_pool("volumes").create_volume(*args, **kwargs)
    assert driver.created == []


def test_a_pool_of_images_refuses_a_directory_volume_and_makes_nothing() -> None:
    with virtabs.open("test:///default") as conn:
        pool = conn.lookup_storage_pool("default-pool")
        before = sorted(v.name for v in pool.list_volumes())
        with pytest.raises(virtabs.InvalidArgumentError, match="holds disk images, not directory volumes"):
            pool.create_volume("data", format="dir")
        assert sorted(v.name for v in pool.list_volumes()) == before
        made = pool.create_volume("sized.qcow2", 16 * MiB)  # an image with a size still works
        assert made.info().capacity_bytes == 16 * MiB


def test_the_inventory_says_why_a_directory_volume_has_no_capacity(dirs: Any) -> None:
    from virtabs.inventory._model import PoolInventory

    conn, _driver = dirs
    vol = conn.lookup_storage_pool("volumes").create_volume("data", format="dir")
    pool = PoolInventory(conn.lookup_storage_pool("volumes").info(), (vol.last_info,))
    data = pool.to_dict()
    assert data["volumes"][0]["capacity_bytes"] is None and data["volumes"][0]["format"] == "dir"
    assert data["field_errors"]["volumes.data.capacity_bytes"].startswith("NOT_REPORTED: a directory volume")

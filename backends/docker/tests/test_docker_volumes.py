"""Named volumes as the storage pool ``volumes``, on the real engines (a private dockerd and a private podman).

Every effect is checked through the engine's own SDK client, not through the driver that caused it; engine
calls are counted on the driver's HTTP client.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import virtabs
from click.testing import CliRunner
from docker_helpers import SLEEPER, Engine, RequestCounter
from virtabs.cli import cli

MiB = 1 << 20


@pytest.fixture
def conn(engine: Engine) -> Iterator[virtabs.Connection]:
    with virtabs.open(engine.uri) as c:
        yield c


@pytest.fixture
def sdk(engine: Engine) -> Iterator[Any]:
    """The engine's own low-level client: the other door every effect is checked through."""
    client = engine.client()
    yield client.api
    client.close()


def _engine_volumes(sdk: Any) -> dict[str, dict[str, Any]]:
    return {v["Name"]: v for v in (sdk.volumes() or {}).get("Volumes") or []}


def test_the_pool_is_the_engines_volume_directory(engine: Engine, conn: virtabs.Connection) -> None:
    pools = conn.list_storage_pools()
    assert [p.name for p in pools] == ["volumes"]
    info = pools[0].info()
    # the private engines keep everything under their work dir: dockerd's --data-root, podman's --root
    assert info.path == f"{engine.workdir}/root/volumes", info
    assert info.type == f"{engine.kind}-volumes"
    assert (info.capacity_bytes, info.allocation_bytes, info.available_bytes) == (None, None, None)
    with pytest.raises(virtabs.NoStoragePoolError):
        conn.lookup_storage_pool("default")


def test_the_volume_listing_is_one_engine_call_whatever_the_number(
    engine: Engine, conn: virtabs.Connection, sdk: Any, request: pytest.FixtureRequest
) -> None:
    names = [f"vtvol-bulk{i}-{uuid.uuid4().hex[:6]}" for i in range(25)]
    pool = conn.lookup_storage_pool("volumes")
    driver = conn._driver
    counts = []
    for batch in (names[:2], names[2:]):
        for name in batch:
            sdk.create_volume(name)
        request.addfinalizer(lambda b=batch: [sdk.remove_volume(n) for n in b])
        with RequestCounter(driver._api) as listing:
            listed = {v.name: v for v in pool.list_volumes()}
        assert set(batch) <= set(listed)
        counts.append(listing.paths)
    assert counts[0] == counts[1] == ["GET /v1.41/volumes"], counts
    engine_view = _engine_volumes(sdk)
    for name in names:
        vol = listed[name].last_info
        assert (vol.format, vol.capacity_bytes, vol.allocation_bytes, vol.backing_chain) == ("dir", None, None, ())
        assert vol.path == engine_view[name]["Mountpoint"]
        assert vol == pool.lookup_volume(name).info()  # the listing carries every fact a lookup has


def test_create_lookup_and_delete_are_seen_by_the_engine(conn: virtabs.Connection, sdk: Any) -> None:
    pool = conn.lookup_storage_pool("volumes")
    name = f"vtvol-cycle-{uuid.uuid4().hex[:8]}"
    vol = pool.create_volume(name, format="dir")
    try:
        seen = sdk.inspect_volume(name)
        assert seen["Driver"] == "local" and vol.path == seen["Mountpoint"]
        assert (vol.last_info.format, vol.last_info.capacity_bytes) == ("dir", None)
        assert pool.lookup_volume(name).path == seen["Mountpoint"]
    finally:
        vol.delete()
    assert name not in _engine_volumes(sdk)
    with pytest.raises(virtabs.NoStorageVolumeError) as missing:
        pool.lookup_volume(name)
    assert missing.value.code == 50 and name in missing.value.message
    with pytest.raises(virtabs.NoStorageVolumeError):
        vol.delete()


def test_an_existing_name_is_refused_and_the_volume_is_left_as_it_was(conn: virtabs.Connection, sdk: Any) -> None:
    name = f"vtvol-taken-{uuid.uuid4().hex[:8]}"
    sdk.create_volume(name, labels={"owner": "someone-else"})
    try:
        with pytest.raises(virtabs.OperationInvalidError, match="already exists"):
            conn.lookup_storage_pool("volumes").create_volume(name, format="dir")
        assert sdk.inspect_volume(name)["Labels"] == {"owner": "someone-else"}
    finally:
        sdk.remove_volume(name)


def test_a_volume_in_use_is_not_deleted(engine: Engine, conn: virtabs.Connection, sdk: Any) -> None:
    name = f"vtvol-used-{uuid.uuid4().hex[:8]}"
    vol = conn.lookup_storage_pool("volumes").create_volume(name, format="dir")
    hc = sdk.create_host_config(binds={name: {"bind": "/data", "mode": "rw"}}, network_mode="none")
    container = sdk.create_container(engine.image, command=list(SLEEPER), host_config=hc, name=f"{name}-user")
    try:
        with pytest.raises(virtabs.OperationInvalidError, match="use"):
            vol.delete()
        assert name in _engine_volumes(sdk)
    finally:
        sdk.remove_container(container["Id"], force=True)
    vol.delete()
    assert name not in _engine_volumes(sdk)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("img.qcow2", 16 * MiB), {"format": "qcow2"}, "holds named volumes, which are directories"),
        (("x+y",), {"format": "dir"}, "invalid volume name"),
        (("a/b",), {"format": "dir"}, "invalid volume name"),
    ],
)
def test_what_the_pool_cannot_hold_is_refused_without_an_engine_call(
    conn: virtabs.Connection, sdk: Any, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    before = set(_engine_volumes(sdk))
    pool = conn.lookup_storage_pool("volumes")
    with RequestCounter(conn._driver._api) as calls, pytest.raises(virtabs.InvalidArgumentError, match=message):
        pool.create_volume(*args, **kwargs)
    assert calls.paths == []
    assert set(_engine_volumes(sdk)) == before


def test_the_cli_and_the_inventory_show_a_directory_volume_without_a_size(
    engine: Engine, conn: virtabs.Connection, sdk: Any
) -> None:
    name = f"vtvol-cli-{uuid.uuid4().hex[:8]}"
    runner = CliRunner()
    made = runner.invoke(cli, ["-c", engine.uri, "vol-create", "volumes", name, "--format", "dir"])
    assert made.exit_code == 0, made.output
    assert "(a directory)" in made.output and name in _engine_volumes(sdk)
    try:
        listed = runner.invoke(cli, ["-c", engine.uri, "vol-list", "volumes", "--json"])
        assert listed.exit_code == 0, listed.output
        entry = next(v for v in json.loads(listed.output) if v["name"] == name)
        assert (entry["format"], entry["capacity_bytes"]) == ("dir", None)
        sized = runner.invoke(cli, ["-c", engine.uri, "vol-create", "volumes", f"{name}-x", "1G", "--format", "dir"])
        assert sized.exit_code == 1 and "has no capacity" in sized.output
        from virtabs import inventory

        document = inventory.collect([engine.uri]).to_dict()
        inventory.validate(document)  # schema version 3: a volume's capacity may be null (version 2's may not)
        assert document["schema_version"] == 3
        pool = next(p for p in document["hosts"][0]["pools"] if p["name"] == "volumes")
        volume = next(v for v in pool["volumes"] if v["name"] == name)
        assert (volume["format"], volume["capacity_bytes"]) == ("dir", None)
        assert pool["field_errors"][f"volumes.{name}.capacity_bytes"].startswith("NOT_REPORTED: a directory volume")
    finally:
        deleted = runner.invoke(cli, ["-c", engine.uri, "vol-delete", "volumes", name])
    assert deleted.exit_code == 0, deleted.output
    assert name not in _engine_volumes(sdk)

"""Domain.migrate (issue 23): the rules, the capability gate on both connections, and the protocol,
on two test nodes (``test:///default`` and a JSON node)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import virtabs
from virtabs import (
    BlockCopyActiveError,
    DomainState,
    InvalidArgumentError,
    MigrateFlags,
    NotSupportedError,
    OperationDeniedError,
    OperationFailedError,
    OperationInvalidError,
)
from virtabs.drivers.test import get_node, reset_all_nodes
from virtabs.spi import OPERATIONS, JobRule, StateRule

M = MigrateFlags
COPY = M.LIVE | M.NON_SHARED_DISK | M.PERSIST_DEST


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[virtabs.Connection, virtabs.Connection, str]]:
    reset_all_nodes()
    dest = tmp_path / "dest.json"
    dest.write_text("{}")
    # a small, fast domain: 64 MiB of memory, its disk the default node's 1 GiB raw image
    src = virtabs.open("test:///default")
    get_node("test:///default").unlimited_rate = 8 << 30
    dst = virtabs.open(f"test://{dest}")
    yield src, dst, f"test://{dest}"
    src.close()
    dst.close()
    reset_all_nodes()


def test_flags_have_libvirts_values() -> None:
    assert (int(M.LIVE), int(M.TUNNELLED), int(M.PERSIST_DEST), int(M.UNDEFINE_SOURCE), int(M.PAUSED)) == (
        1,
        4,
        8,
        16,
        32,
    )
    assert (int(M.NON_SHARED_DISK), int(M.NON_SHARED_INC), int(M.OFFLINE)) == (64, 128, 1024)
    assert (int(M.ABORT_ON_ERROR), int(M.AUTO_CONVERGE)) == (4096, 8192)


def test_operation_rows_for_both_halves() -> None:
    assert OPERATIONS["migrate_perform"].state is StateRule.ACTIVE
    assert OPERATIONS["migrate_perform"].jobs is JobRule.NO_JOB
    for method in ("migrate_prepare", "migrate_perform", "migrate_finish", "migrate_confirm", "migrate_abort"):
        assert OPERATIONS[method].writes


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (M.NON_SHARED_DISK | M.NON_SHARED_INC, "mutually exclusive"),
        (M.OFFLINE | M.LIVE | M.PERSIST_DEST, "OFFLINE and LIVE"),
        (M.OFFLINE, "PERSIST_DEST"),
        (M.OFFLINE | M.PERSIST_DEST | M.NON_SHARED_DISK, "non-shared storage"),
        (M.OFFLINE | M.PERSIST_DEST | M.PAUSED, "paused"),
        (1 << 1, "unsupported flags"),  # PEER2PEER: not offered
    ],
)
def test_flag_rules_refuse_before_any_host_call(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str], flags: int, fragment: str
) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    with pytest.raises(InvalidArgumentError, match=fragment):
        dom.migrate(dst, flags=flags)
    assert dst.list_domains() == []


def test_argument_rules(nodes: tuple[virtabs.Connection, virtabs.Connection, str]) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    with pytest.raises(InvalidArgumentError, match="own connection"):
        dom.migrate(src)
    with pytest.raises(InvalidArgumentError, match="own connection"):
        dom.migrate("test:///default")
    with pytest.raises(InvalidArgumentError, match="max_downtime"):
        dom.migrate(dst, max_downtime=0)
    with pytest.raises(InvalidArgumentError, match="bandwidth"):
        dom.migrate(dst, bandwidth=-1)
    with pytest.raises(InvalidArgumentError, match="NON_SHARED"):
        dom.migrate(dst, disks=["vda"])
    with pytest.raises(InvalidArgumentError, match="no disk"):
        dom.migrate(dst, flags=COPY, disks=["vdz"])
    assert dst.list_domains() == []


def test_capabilities_of_both_connections_are_checked_first(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    src, _dst, dest_uri = nodes
    dom = src.lookup_domain("test")
    with virtabs.open(f"{dest_uri}?without=domain.migrate.copy_storage") as no_copy:
        with pytest.raises(NotSupportedError, match="copy_storage"):
            dom.migrate(no_copy, flags=COPY)
        assert no_copy.list_domains() == []
    with (
        virtabs.open("test:///default?without=domain.migrate.live") as src_no_live,
        pytest.raises(NotSupportedError, match="domain.migrate.live"),
    ):
        src_no_live.lookup_domain("test").migrate(dest_uri, flags=M.LIVE)
    with virtabs.open(dest_uri, readonly=True) as ro, pytest.raises(OperationDeniedError):
        dom.migrate(ro)
    assert dom.state() == DomainState.RUNNING


def test_live_migration_of_an_inactive_domain_is_refused(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    dom.destroy()
    with pytest.raises(OperationInvalidError, match="not running"):
        dom.migrate(dst)
    assert dst.list_domains() == []


def test_a_disk_under_a_block_job_refuses_migration(nodes: tuple[virtabs.Connection, virtabs.Connection, str]) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    dom.block_copy("vda", "/guest/copy.raw", bandwidth=1 << 20)
    with pytest.raises(BlockCopyActiveError, match="vda"):
        dom.migrate(dst, flags=COPY)
    assert dst.list_domains() == []


def test_live_migration_with_storage(nodes: tuple[virtabs.Connection, virtabs.Connection, str]) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    seen: list[virtabs.MigrationInfo] = []
    job = dom.migrate(dst, flags=COPY | M.UNDEFINE_SOURCE)
    moved = job.wait(progress=seen.append)
    assert moved.connection is dst
    assert moved.state() == DomainState.RUNNING
    assert dst.lookup_domain("test").uuid == dom.uuid
    disk = moved.disks()[0]
    assert (disk.capacity_bytes, disk.allocation_bytes) == (1 << 30, 1 << 30)  # the data arrived
    assert [d.name for d in src.list_domains()] == []  # UNDEFINE_SOURCE
    final = job.info()
    assert final.phase == "completed"
    assert final.disk_processed == final.disk_total == 1 << 30
    assert final.memory_processed == final.memory_total > 0
    assert seen[-1].phase == "completed"


def test_without_undefine_the_source_is_stopped_and_paused_stays_paused(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    moved = dom.migrate(dst, flags=M.LIVE | M.PAUSED | M.PERSIST_DEST).wait()
    assert moved.state() == DomainState.PAUSED
    assert dom.state() == DomainState.SHUTOFF


def test_offline_migration_moves_the_definition(nodes: tuple[virtabs.Connection, virtabs.Connection, str]) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    with pytest.raises(OperationInvalidError, match="undefine the source while it runs"):
        dom.migrate(dst, flags=M.OFFLINE | M.PERSIST_DEST | M.UNDEFINE_SOURCE)
    dom.destroy()
    moved = dom.migrate(dst, flags=M.OFFLINE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait()
    assert moved.state() == DomainState.SHUTOFF
    assert moved.spec().name == "test"
    assert src.list_domains() == []


def test_abort_rolls_back_both_sides(nodes: tuple[virtabs.Connection, virtabs.Connection, str]) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    job = dom.migrate(dst, flags=COPY, bandwidth=64)  # 1 GiB + memory at 64 MiB/s: long enough to abort
    job.abort()
    with pytest.raises(OperationFailedError, match="aborted"):
        job.wait()
    assert job.info().phase == "cancelled"
    assert dom.state() == DomainState.RUNNING
    assert dst.list_domains() == []
    assert "/guest/diskimage1" not in get_node(str(dst.uri)).images  # the image prepare made is gone


def test_a_failing_prepare_leaves_the_source_running(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    src, dst, _ = nodes
    dom = src.lookup_domain("test")
    spec = dom.spec()
    dst.define_domain(spec)  # the name and UUID are taken on the destination
    with pytest.raises(OperationInvalidError):
        dom.migrate(dst, flags=COPY).wait()
    assert dom.state() == DomainState.RUNNING
    assert [d.name for d in dst.list_domains()] == ["test"]


# --- what a migration asks for besides its flags (issue 27): the source's declaration decides -----


def test_without_keep_source_a_persistent_domain_needs_undefine_source(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    _src, dst, dest_uri = nodes
    with virtabs.open("test:///default?without=domain.migrate.keep_source") as src:
        dom = src.lookup_domain("test")
        for flags in (M.LIVE | M.PERSIST_DEST, COPY):
            with pytest.raises(NotSupportedError, match="keep_source is not declared.*add UNDEFINE_SOURCE"):
                dom.migrate(dst, flags=flags)
        dom.destroy()
        with pytest.raises(NotSupportedError, match="add UNDEFINE_SOURCE"):
            dom.migrate(dest_uri, flags=M.OFFLINE | M.PERSIST_DEST)
        assert dst.list_domains() == []
        assert dom.state() == DomainState.SHUTOFF
        dom.start()
        moved = dom.migrate(dst, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait()
        assert moved.state() == DomainState.RUNNING
        assert src.list_domains() == []


def test_without_keep_source_a_transient_domain_migrates_without_undefine_source(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a persistent domain has a definition to keep: a transient one has nothing to refuse."""
    from virtabs.drivers.test import TestDriver

    real = TestDriver.domain_status
    monkeypatch.setattr(TestDriver, "domain_status", lambda self, dom: attrs.evolve(real(self, dom), persistent=False))
    _src, dst, _ = nodes
    with virtabs.open("test:///default?without=domain.migrate.keep_source") as src:
        moved = src.lookup_domain("test").migrate(dst, flags=M.LIVE | M.PERSIST_DEST).wait()
        assert moved.state() == DomainState.RUNNING


def test_bandwidth_and_max_downtime_need_the_sources_declaration(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    _src, dst, dest_uri = nodes
    flags = M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE
    for cap, kwargs in (
        ("domain.migrate.bandwidth", {"bandwidth": 1}),
        ("domain.migrate.max_downtime", {"max_downtime": 100}),
    ):
        with virtabs.open(f"test:///default?without={cap}") as src:
            dom = src.lookup_domain("test")
            with pytest.raises(NotSupportedError, match=cap.replace(".", r"\.")):
                dom.migrate(dest_uri, flags=flags, **kwargs)  # type: ignore[arg-type]
            assert dst.list_domains() == []
            assert dom.state() == DomainState.RUNNING
    # 0 and None ask for nothing; the destination's declaration does not matter (the source runs the copy)
    with (
        virtabs.open("test:///default?without=domain.migrate.bandwidth,domain.migrate.max_downtime") as src,
        virtabs.open(f"{dest_uri}?without=domain.migrate.bandwidth,domain.migrate.max_downtime") as bare,
    ):
        moved = src.lookup_domain("test").migrate(bare, flags=flags, bandwidth=0, max_downtime=None).wait()
        assert moved.state() == DomainState.RUNNING
    with (
        virtabs.open(dest_uri) as there,
        virtabs.open("test:///default?without=domain.migrate.bandwidth,domain.migrate.max_downtime") as bare,
    ):
        back = there.lookup_domain("test").migrate(bare, flags=flags, bandwidth=4096, max_downtime=100).wait()
        assert back.state() == DomainState.RUNNING


def test_abort_needs_the_sources_declaration_and_the_migration_goes_on(
    nodes: tuple[virtabs.Connection, virtabs.Connection, str],
) -> None:
    _src, dst, _ = nodes
    with virtabs.open("test:///default?without=domain.migrate.abort") as src:
        dom = src.lookup_domain("test")
        job = dom.migrate(dst, flags=COPY | M.UNDEFINE_SOURCE)
        with pytest.raises(NotSupportedError, match="domain.migrate.abort"):
            job.abort()
        moved = job.wait()
        assert job.info().phase == "completed"
        assert moved.state() == DomainState.RUNNING
        assert src.list_domains() == []


def test_the_new_rows_and_capabilities() -> None:
    from virtabs import Capability
    from virtabs.spi import methods_for

    assert OPERATIONS["migrate_abort"].required_capabilities() == {Capability.DOMAIN_MIGRATE_ABORT}
    assert methods_for(Capability.DOMAIN_MIGRATE_ABORT) == ("migrate_abort",)
    assert "migrate_abort" not in methods_for(Capability.DOMAIN_MIGRATE)
    for cap in ("keep_source", "bandwidth", "max_downtime"):
        assert methods_for(Capability(f"domain.migrate.{cap}")) == ()


# --- drivers that do not declare migration refuse before touching either host -------------------


@pytest.mark.parametrize(
    ("module", "name", "scheme"),
    [("virtabs_lxc.driver", "LxcDriver", "lxc"), ("virtabs_docker.driver", "DockerDriver", "docker")],
)
def test_container_drivers_refuse_migration_before_touching_the_host(module: str, name: str, scheme: str) -> None:
    import importlib

    from virtabs import Capability, Connection, Domain
    from virtabs.spi import SPI_METHODS, ConnectOptions, DomainRef, Driver, parse_uri

    driver_class = getattr(importlib.import_module(module), name)
    assert Capability.DOMAIN_MIGRATE not in driver_class.capabilities
    touched: list[str] = []

    class Untouchable(driver_class):  # type: ignore[misc, valid-type]
        """The real declaration; every SPI method records that the host was touched."""

        def __init__(self, uri: object, options: ConnectOptions) -> None:
            Driver.__init__(self, uri, options)  # type: ignore[arg-type]

        def connection_capabilities(self) -> object:
            return type(self).capabilities

    for method in SPI_METHODS:
        if method not in ("connection_capabilities", "close", "start_events", "stop_events"):
            setattr(Untouchable, method, lambda self, *a, _m=method, **k: touched.append(_m))

    conns = [Connection._open(Untouchable, parse_uri(f"{scheme}:///{side}"), None, False, None) for side in ("a", "b")]
    dom = Domain(conns[0], DomainRef("c1", "6695eb01-f6a4-8304-79aa-97f2502e193f"))
    for flags in (M.LIVE, M.OFFLINE | M.PERSIST_DEST, COPY):
        with pytest.raises(NotSupportedError, match="domain.migrate"):
            dom.migrate(conns[1], flags=flags)
    assert touched == []


def test_the_async_wrapper_migrates(nodes: tuple[virtabs.Connection, virtabs.Connection, str]) -> None:
    import asyncio

    import virtabs.aio

    _src, _dst, dest_uri = nodes

    async def go() -> tuple[DomainState, str]:
        async with await virtabs.aio.open("test:///default") as src, await virtabs.aio.open(dest_uri) as dst:
            dom = await src.lookup_domain("test")
            job = await dom.migrate(dst, flags=COPY | M.UNDEFINE_SOURCE)
            moved = await job.wait()
            return await moved.state(), (await job.info()).phase

    assert asyncio.run(go()) == (DomainState.RUNNING, "completed")

"""The example driver through the public API, beyond the contract kit: the seam from a driver's side."""

from __future__ import annotations

import ast
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, DomainState, LifecycleEvent, LifecycleEventType
from virtabs.spi import (
    Driver,
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    OperationInvalidError,
    VirtabsError,
)

from virtabs_example import driver, host

MiB = 1 << 20
PACKAGE = Path(driver.__file__).parent


@pytest.fixture
def conn() -> Iterator[virtabs.Connection]:
    """A connection to a host of its own (``example:///unit-<random>``)."""
    with virtabs.open(f"example:///unit-{uuid.uuid4().hex[:8]}") as c:
        yield c


def define(conn: virtabs.Connection, name: str = "vm", **extra: object) -> virtabs.Domain:
    spec = DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, extra={"example": extra} if extra else {})
    return conn.define_domain(spec)


def test_found_only_through_its_entry_point() -> None:
    entry = {d.name: d for d in virtabs.installed_drivers()}["example"]
    assert (entry.distribution, entry.target) == ("virtabs-example", "virtabs_example.driver:ExampleDriver")
    with virtabs.open("example:///") as c:
        assert c.driver_name == "example"
        assert c.host_info().hostname == "example-default"


def test_the_driver_imports_only_virtabs_spi_and_the_host_nothing_of_virtabs() -> None:
    def virtabs_imports(path: Path) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found |= {n for n in names if n == "virtabs" or n.startswith("virtabs.")}
        return found

    assert virtabs_imports(PACKAGE / "driver.py") == {"virtabs.spi"}
    assert virtabs_imports(PACKAGE / "host.py") == set()


def test_remote_uris_are_refused() -> None:
    with pytest.raises(virtabs.ConnectError, match="local only"):
        virtabs.open("example://elsewhere/")


def test_every_connection_to_one_uri_shares_the_host() -> None:
    name = f"example:///unit-{uuid.uuid4().hex[:8]}"
    with virtabs.open(name) as a, virtabs.open(name) as b:
        dom = define(a, "shared")
        b.lookup_domain("shared").start()
        assert dom.state() == DomainState.RUNNING


def test_the_error_map_translates_every_host_exception() -> None:
    cases: list[tuple[Exception, type[VirtabsError]]] = [
        (host.NotFound("machine", "u"), virtabs.NoDomainError),
        (host.NotFound("snapshot", "m/s"), virtabs.NoSnapshotError),
        (host.NotFound("pool", "p"), virtabs.NoStoragePoolError),
        (host.NotFound("volume", "/p/v"), virtabs.NoStorageVolumeError),
        (host.AlreadyExists("taken"), OperationInvalidError),
        (host.InvalidState("busy"), OperationInvalidError),
        (host.BadRequest("odd"), InvalidArgumentError),
        (ZeroDivisionError("boom"), OperationFailedError),
    ]
    for native_exc, expected in cases:
        error = driver.ERRORS.translate(native_exc, "start of domain 'web'")
        assert type(error) is expected, native_exc
        assert isinstance(error, VirtabsError)
        assert error.message == f"start of domain 'web': {native_exc}"
        assert error.__cause__ is native_exc
    already = NoDomainError("x")
    assert driver.ERRORS.translate(already, "anything") is already


def test_a_refusal_only_the_host_knows_is_mapped_not_reimplemented(conn: virtabs.Connection) -> None:
    dom = define(conn)
    dom.start(paused=True)
    # The gate lets a graceful shutdown of a paused domain through (the row says "active");
    # this host refuses it itself, and ERRORS turns that into the error the gate would raise.
    with pytest.raises(OperationInvalidError, match=r"shutdown of domain 'vm': machine 'vm' is paused"):
        dom.shutdown()
    assert dom.state() == DomainState.PAUSED
    pool = conn.lookup_storage_pool("default")
    vol = pool.create_volume("a.raw", 8 * MiB, format="raw")
    with pytest.raises(InvalidArgumentError, match="cannot shrink"):
        vol.resize(MiB)
    with pytest.raises(InvalidArgumentError, match="not a volume of this host"):
        pool.create_volume("b.qcow2", MiB, backing="/elsewhere/base.qcow2")


def test_shutdown_only_asks_and_the_core_waits(conn: virtabs.Connection) -> None:
    slow = define(conn, "slow", shutdown_seconds=3600)
    slow.start()
    slow.shutdown()  # returns at once: the guest has been asked
    assert slow.info().native_state == "stopping" and slow.state() == DomainState.SHUTDOWN
    deaf = define(conn, "deaf", shutdown_seconds=None)
    deaf.start()
    with pytest.raises(virtabs.OperationTimeoutError, match="'deaf' not shut off"):
        deaf.shutdown(timeout=0.2)
    assert deaf.state() == DomainState.RUNNING
    deaf.shutdown(timeout=0.2, on_timeout="destroy")
    assert deaf.state() == DomainState.SHUTOFF
    quick = define(conn, "quick")  # the default guest powers off 0.1 s after the button
    quick.start()
    quick.shutdown(timeout=30)
    assert quick.state() == DomainState.SHUTOFF


def test_reboot_is_observable(conn: virtabs.Connection) -> None:
    dom = define(conn)
    dom.start()

    def boots() -> object:
        (record,) = [r for r in conn.domain_records() if r.uuid == dom.uuid]
        return record.extra["boot_count"]

    assert boots() == 1
    dom.reboot()
    dom.reboot()
    assert boots() == 3
    assert dom.state() == DomainState.RUNNING


def test_spec_round_trip_with_the_driver_extras(conn: virtabs.Connection) -> None:
    spec = DomainSpec(
        name="full",
        memory_bytes=96 * MiB,
        vcpus=2,
        disks=(DiskSpec("vda", "/srv/full.qcow2", format="qcow2"),),
        nics=({"network": "lan"},),
        extra={"example": {"shutdown_seconds": 2.5}},
    )
    back = conn.define_domain(spec).spec()
    assert (back.memory_bytes, back.vcpus, back.disks) == (spec.memory_bytes, 2, spec.disks)
    assert back.nics[0].network == "lan" and back.nics[0].mac is not None
    assert back.extra == {"example": {"shutdown_seconds": 2.5}}
    with pytest.raises(InvalidArgumentError, match="shutdown_seconds"):
        define(conn, "bad", shutdown_seconds="soon")


def test_disks_of_volumes_carry_size_pool_and_chain(conn: virtabs.Connection) -> None:
    pool = conn.lookup_storage_pool("default")
    base = pool.create_volume("base.qcow2", 64 * MiB)
    top = pool.create_volume("top.qcow2", 64 * MiB, backing=base.path)
    spec = DomainSpec(
        name="chained", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", top.path, format="qcow2"),)
    )
    (disk,) = conn.define_domain(spec).disks()
    assert (disk.pool, disk.capacity_bytes, disk.backing_chain) == ("default", 64 * MiB, (base.path,))
    assert top.info().backing_chain == (base.path,)
    assert pool.info().allocation_bytes == base.info().allocation_bytes + top.info().allocation_bytes


def test_events_are_polled_and_reach_every_connection_of_the_host() -> None:
    name = f"example:///unit-{uuid.uuid4().hex[:8]}"
    seen: list[LifecycleEvent] = []
    arrived = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, LifecycleEvent) and event.type == LifecycleEventType.STARTED:
            seen.append(event)
            arrived.set()

    with virtabs.open(name) as watcher, virtabs.open(name) as actor, watcher.subscribe(on_event):
        define(actor, "evented").start()  # through another connection
        assert arrived.wait(10), "no STARTED event within 10 s"
    assert (seen[0].domain, seen[0].detail) == ("evented", "polled")


def test_undeclared_capabilities_never_reach_the_driver(conn: virtabs.Connection) -> None:
    dom = define(conn)
    with pytest.raises(virtabs.NotSupportedError, match=r"does not support domain\.save"):
        dom.save("/tmp/never-written.save")
    with pytest.raises(virtabs.NotSupportedError, match=r"block\.copy"):
        dom.block_copy("vda", "/tmp/never-written.qcow2")
    assert driver.ExampleDriver.save is Driver.save  # not implemented, so nothing to refuse in the driver


def test_the_targets_boot_id_changes_with_every_boot() -> None:
    from virtabs_example.testing import ExampleTarget

    target = ExampleTarget()
    with virtabs.open(f"example:///unit-{uuid.uuid4().hex[:8]}") as c:
        dom = target.make_domain(c, running=True)
        first = target.boot_id(c, dom)
        dom.reboot()
        assert target.boot_id(c, dom) != first
        target.cleanup(c)
        assert c.list_domains() == []

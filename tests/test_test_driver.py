"""Direct tests of the in-memory reference driver (``virtabs.drivers.test``), below the public API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import virtabs
from virtabs._errors import (
    BlockCopyActiveError,
    ConnectError,
    InvalidArgumentError,
    NoDomainError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationDeniedError,
    OperationFailedError,
    OperationInvalidError,
)
from virtabs._flags import BlockJobStatus, BlockJobType, DomainState, LifecycleEventType
from virtabs._models import (
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobEvent,
    DiskSpec,
    DomainRef,
    DomainSpec,
    Event,
    LifecycleEvent,
    NicSpec,
)
from virtabs._uri import parse_uri
from virtabs.drivers.test import TestDriver, get_node, reset_all_nodes, reset_default_node
from virtabs.spi import SPI_METHODS, ConnectOptions, Driver, missing_methods

MiB = 1024 * 1024
GiB = 1024 * MiB
FAST = 4 * GiB  # bytes/s: a few MiB move in a millisecond or two
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


class Sink:
    """Collects events from any thread."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def lifecycle(self) -> list[tuple[LifecycleEventType, str]]:
        with self.lock:
            return [(e.type, e.detail) for e in self.events if isinstance(e, LifecycleEvent)]

    def jobs(self) -> list[tuple[str, BlockJobType, BlockJobStatus]]:
        with self.lock:
            return [(e.disk, e.job_type, e.status) for e in self.events if isinstance(e, BlockJobEvent)]

    def clear(self) -> None:
        with self.lock:
            self.events.clear()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def connect(uri: str = "test:///default", **options: Any) -> tuple[TestDriver, Sink]:
    sink = Sink()
    drv = TestDriver(parse_uri(uri), ConnectOptions(event_sink=sink, **options))
    return drv, sink


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()


@pytest.fixture
def conn() -> Iterator[tuple[TestDriver, Sink]]:
    drv, sink = connect()
    yield drv, sink
    drv.close()


@pytest.fixture
def drv(conn: tuple[TestDriver, Sink]) -> TestDriver:
    return conn[0]


@pytest.fixture
def sink(conn: tuple[TestDriver, Sink]) -> Sink:
    return conn[1]


@pytest.fixture
def test_dom(drv: TestDriver) -> DomainRef:
    return drv.lookup_domain("test")


CHAIN_NODE: dict[str, Any] = {
    "images": [{"path": "/img/base.qcow2", "format": "qcow2", "capacity_bytes": 64 * MiB, "allocation_bytes": 8 * MiB}],
    "pools": [{"name": "p", "path": "/pool", "capacity_bytes": GiB, "volumes": []}],
    "domains": [
        {
            "name": "vm",
            "uuid": "11111111-2222-3333-4444-555555555555",
            "memory_bytes": GiB,
            "vcpus": 1,
            "state": "running",
            "disks": [
                {
                    "target": "vda",
                    "path": "/guest/top.qcow2",
                    "format": "qcow2",
                    "capacity_bytes": 64 * MiB,
                    "allocation_bytes": 1 * MiB,
                    "backing_chain": [
                        {"path": "/guest/mid.qcow2", "format": "qcow2", "allocation_bytes": 2 * MiB},
                        "/img/base.qcow2",
                    ],
                }
            ],
            "nics": [{"mac": "52:54:00:00:00:01", "network": "lan", "ips": ["10.0.0.5"]}],
        }
    ],
}


@pytest.fixture
def chain_node(tmp_path: Path) -> Iterator[tuple[TestDriver, Sink, DomainRef]]:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(CHAIN_NODE))
    drv, sink = connect(f"test://{path}")
    yield drv, sink, drv.lookup_domain("vm")
    drv.close()


def small_disk(drv: TestDriver, dom: DomainRef, size: int = 16 * MiB) -> str:
    """Attach a raw volume of ``size`` bytes as vdb; returns its path."""
    vol = drv.create_volume("default-pool", "small.img", size, "raw", None)
    drv.attach_disk(dom, DiskSpec(target="vdb", path=vol.path, format="raw"))
    return vol.path


# --------------------------------------------------------------------------- driver shape


def test_every_spi_method_is_overridden() -> None:
    # domain_status keeps the base class's default (domain_info + block_jobs) and inventory_networks its
    # (list_networks, whose attachments are in memory): nothing to add in memory
    kept = ("domain_status", "inventory_networks")
    missing = [m for m in SPI_METHODS if m not in kept and getattr(TestDriver, m) is getattr(Driver, m)]
    assert missing == []
    assert missing_methods(TestDriver, TestDriver.capabilities) == {}
    assert TestDriver.name == "test"
    assert set(TestDriver.capabilities.supported) == set(TestDriver.capabilities.all().supported)


def test_default_node(drv: TestDriver, test_dom: DomainRef) -> None:
    assert test_dom == DomainRef("test", TEST_UUID)
    assert drv.lookup_domain(TEST_UUID) == test_dom
    assert drv.lookup_domain(TEST_UUID.upper()) == test_dom
    info = drv.domain_info(test_dom)
    assert info.state == DomainState.RUNNING and info.native_state == "running"
    assert (info.vcpus, info.memory_bytes, info.max_memory_bytes) == (2, 2 * GiB, 8 * GiB)
    spec = drv.domain_spec(test_dom)
    assert spec.os_type == "hvm" and spec.uuid == TEST_UUID
    (disk,) = drv.disks(test_dom)
    assert (disk.target, disk.path, disk.format, disk.capacity_bytes) == ("vda", "/guest/diskimage1", "raw", GiB)
    assert disk.backing_chain == () and disk.pool is None
    (nic,) = drv.nics(test_dom)
    assert nic.network == "default" and nic.model == "virtio" and nic.ips == ("192.168.122.2",)
    assert nic.mac is not None and nic.mac.startswith("52:54:00:")
    (pool,) = drv.list_storage_pools()
    assert (pool.name, pool.type, pool.path, pool.capacity_bytes) == ("default-pool", "dir", "/default-pool", 100 * GiB)
    assert drv.lookup_storage_pool("default-pool") == pool
    vols = {v.name: v for v in drv.list_volumes("default-pool")}
    assert vols["overlay.qcow2"].backing_chain == ("/default-pool/base.qcow2",)
    assert drv.autostart(test_dom) is False


def test_host_info(drv: TestDriver) -> None:
    host = drv.host_info()
    assert host.hostname == "test-host" and host.hypervisor == "test"
    assert host.cpus == 16 and host.memory_bytes == 16 * GiB
    assert host.hypervisor_version


def test_lookup_errors_name_the_object(drv: TestDriver) -> None:
    with pytest.raises(NoDomainError, match="nosuch"):
        drv.lookup_domain("nosuch")
    with pytest.raises(NoDomainError, match="ghost"):
        drv.domain_info(DomainRef("ghost", "00000000-0000-0000-0000-000000000000"))
    with pytest.raises(NoStoragePoolError, match="nopool"):
        drv.lookup_storage_pool("nopool")
    with pytest.raises(NoStorageVolumeError, match="novol"):
        drv.lookup_volume("default-pool", "novol")
    with pytest.raises(NoStoragePoolError):
        drv.list_volumes("nopool")


# --------------------------------------------------------------------------- shared state


def test_state_and_events_are_shared_between_connections(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    other, other_sink = connect()
    other.destroy(test_dom)
    assert drv.domain_info(test_dom).state == DomainState.SHUTOFF
    assert sink.lifecycle() == [(LifecycleEventType.STOPPED, "destroyed")]
    assert other_sink.lifecycle() == sink.lifecycle()
    other.close()
    drv.start(test_dom, paused=False)
    assert other_sink.lifecycle() == [(LifecycleEventType.STOPPED, "destroyed")]  # closed: no more events


def test_reset_default_node_in_place(drv: TestDriver, test_dom: DomainRef) -> None:
    drv.destroy(test_dom)
    drv.define_domain(DomainSpec(name="extra", memory_bytes=GiB, vcpus=1))
    reset_default_node()
    assert [r.name for r in drv.list_domains()] == ["test"]
    assert drv.domain_info(test_dom).state == DomainState.RUNNING


def test_failing_event_sink_does_not_break_the_driver(test_dom: DomainRef) -> None:
    def boom(_event: Event) -> None:
        raise RuntimeError("subscriber bug")

    drv = TestDriver(parse_uri("test:///default"), ConnectOptions(event_sink=boom))
    drv.suspend(test_dom)
    assert drv.domain_info(test_dom).state == DomainState.PAUSED
    drv.close()


def test_readonly_connection_refuses_writes_before_the_driver() -> None:
    # Read-only mode is the gate's: the driver has no check of its own, and the domain is untouched.
    with virtabs.open("test:///default", readonly=True) as conn:
        dom = conn.lookup_domain("test")
        with pytest.raises(OperationDeniedError):
            dom.destroy()
        with pytest.raises(OperationDeniedError):
            conn.lookup_storage_pool("default-pool").create_volume("x.img", MiB, format="raw")
        assert dom.state() == DomainState.RUNNING
        assert [v.name for v in conn.lookup_storage_pool("default-pool").list_volumes()].count("x.img") == 0


# --------------------------------------------------------------------------- lifecycle


def test_lifecycle_transitions_and_events(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    def state() -> tuple[DomainState, str]:
        info = drv.domain_info(test_dom)
        return info.state, info.native_state

    drv.suspend(test_dom)
    assert state() == (DomainState.PAUSED, "paused")
    drv.resume(test_dom)
    assert state() == (DomainState.RUNNING, "running")
    drv.shutdown(test_dom)
    assert state() == (DomainState.SHUTOFF, "shut off")
    assert drv.nics(test_dom)[0].ips == ()
    drv.start(test_dom, paused=True)
    assert state() == (DomainState.PAUSED, "paused")
    drv.resume(test_dom)
    drv.reboot(test_dom)
    assert state() == (DomainState.RUNNING, "running")
    drv.destroy(test_dom)
    assert sink.lifecycle() == [
        (LifecycleEventType.SUSPENDED, "paused"),
        (LifecycleEventType.RESUMED, "unpaused"),
        (LifecycleEventType.SHUTDOWN, "finished"),
        (LifecycleEventType.STOPPED, "shutdown"),
        (LifecycleEventType.STARTED, "booted"),
        (LifecycleEventType.SUSPENDED, "paused"),
        (LifecycleEventType.RESUMED, "unpaused"),
        (LifecycleEventType.STOPPED, "destroyed"),
    ]
    assert all(isinstance(e, LifecycleEvent) and e.domain == "test" and e.uuid == TEST_UUID for e in sink.events)


def test_cpu_time_grows_while_running_only(drv: TestDriver, test_dom: DomainRef) -> None:
    first = drv.domain_info(test_dom).cpu_time_ns
    wait_for(lambda: drv.domain_info(test_dom).cpu_time_ns >= first + 10_000_000)
    drv.suspend(test_dom)
    paused = drv.domain_info(test_dom).cpu_time_ns
    dom = get_node("test:///default").domains[test_dom.uuid]
    assert dom.cpu_time_ns(time.monotonic() + 3600) == paused, "an hour later a paused domain used no CPU"
    assert drv.domain_info(test_dom).cpu_time_ns == paused
    drv.destroy(test_dom)
    assert drv.domain_info(test_dom).cpu_time_ns == 0


def test_define_and_undefine(drv: TestDriver, sink: Sink) -> None:
    spec = DomainSpec(
        name="web",
        memory_bytes=GiB,
        vcpus=2,
        disks=(DiskSpec("vda", "/var/lib/web.qcow2", format="qcow2"),),
        nics=(NicSpec(network="default"),),
        extra={"test": {"max_memory_bytes": 2 * GiB}},
    )
    ref = drv.define_domain(spec)
    assert ref.name == "web" and ref.uuid
    assert drv.lookup_domain(ref.uuid) == ref
    info = drv.domain_info(ref)
    assert (info.state, info.native_state, info.max_memory_bytes) == (DomainState.SHUTOFF, "shut off", 2 * GiB)
    defined = drv.domain_spec(ref)
    assert defined.uuid == ref.uuid and defined.nics[0].mac is not None  # a MAC is assigned at define time
    (disk,) = drv.disks(ref)
    assert disk.format == "qcow2" and disk.capacity_bytes == GiB  # a made-up image in the store
    with pytest.raises(OperationInvalidError, match="'web' already exists"):
        drv.define_domain(spec)
    with pytest.raises(OperationInvalidError, match=TEST_UUID):
        drv.define_domain(DomainSpec(name="other", memory_bytes=GiB, vcpus=1, uuid=TEST_UUID))
    drv.start(ref, paused=False)
    assert drv.nics(ref)[0].ips[0].startswith("192.168.122.")
    drv.destroy(ref)
    drv.undefine(ref)
    with pytest.raises(NoDomainError):
        drv.domain_info(ref)
    assert [r.name for r in drv.list_domains()] == ["test"]
    assert sink.lifecycle() == [
        (LifecycleEventType.DEFINED, "added"),
        (LifecycleEventType.STARTED, "booted"),
        (LifecycleEventType.STOPPED, "destroyed"),
        (LifecycleEventType.UNDEFINED, "removed"),
    ]


def test_concurrent_defines_are_safe(drv: TestDriver) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            ref = drv.define_domain(DomainSpec(name=f"vm{i}", memory_bytes=GiB, vcpus=1, nics=(NicSpec(),)))
            drv.start(ref, paused=False)
            drv.domain_info(ref)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(drv.list_domains()) == 21
    ips = [ip for r in drv.list_domains() for n in drv.nics(r) for ip in n.ips]
    assert len(ips) == len(set(ips)) == 21


# --------------------------------------------------------------------------- save / restore


def test_save_and_restore(drv: TestDriver, sink: Sink, test_dom: DomainRef, tmp_path: Path) -> None:
    path = tmp_path / "test.save"
    drv.suspend(test_dom)
    drv.save(test_dom, str(path))
    assert drv.domain_info(test_dom).state == DomainState.SHUTOFF
    data = json.loads(path.read_text())
    assert data["state"] == "paused" and data["domain"]["name"] == "test"
    ref = drv.restore(str(path))
    assert ref == test_dom
    assert drv.domain_info(test_dom).state == DomainState.PAUSED
    with pytest.raises(OperationInvalidError, match="already active"):
        drv.restore(str(path))
    assert sink.lifecycle()[-3:] == [
        (LifecycleEventType.STOPPED, "saved"),
        (LifecycleEventType.STARTED, "restored"),
        (LifecycleEventType.SUSPENDED, "paused"),
    ]


def test_restore_defines_an_unknown_domain(drv: TestDriver, test_dom: DomainRef, tmp_path: Path) -> None:
    path = tmp_path / "test.save"
    drv.save(test_dom, str(path))
    drv.undefine(test_dom)
    ref = drv.restore(str(path))
    assert ref == test_dom
    info = drv.domain_info(ref)
    assert info.state == DomainState.RUNNING and info.max_memory_bytes == 8 * GiB
    assert drv.nics(ref)[0].ips == ("192.168.122.2",)


def test_restore_errors(drv: TestDriver, tmp_path: Path) -> None:
    with pytest.raises(OperationFailedError, match="missing.save"):
        drv.restore(str(tmp_path / "missing.save"))
    bad = tmp_path / "bad.save"
    bad.write_text("not json")
    with pytest.raises(InvalidArgumentError, match="bad.save"):
        drv.restore(str(bad))
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InvalidArgumentError):
        drv.restore(str(bad))
    bad.write_text(json.dumps({"format": "virtabs-test-save", "domain": {"name": "x"}}))
    with pytest.raises(InvalidArgumentError, match="corrupt"):
        drv.restore(str(bad))


def test_save_to_unwritable_path(drv: TestDriver, test_dom: DomainRef, tmp_path: Path) -> None:
    with pytest.raises(OperationFailedError, match="cannot save"):
        drv.save(test_dom, str(tmp_path / "no" / "such" / "dir" / "x.save"))
    assert drv.domain_info(test_dom).state == DomainState.RUNNING


# --------------------------------------------------------------------------- snapshots and devices


def test_snapshots(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    s1 = drv.create_snapshot(test_dom, "s1")
    assert (s1.name, s1.domain, s1.state, s1.parent) == ("s1", "test", DomainState.RUNNING, None)
    assert s1.created_at.tzinfo is not None
    with pytest.raises(OperationInvalidError, match="s1"):
        drv.create_snapshot(test_dom, "s1")
    drv.destroy(test_dom)
    drv.attach_disk(test_dom, DiskSpec("vdb", "/guest/extra.img"))
    s2 = drv.create_snapshot(test_dom, "s2")
    assert (s2.state, s2.parent) == (DomainState.SHUTOFF, "s1")
    sink.clear()
    drv.revert_to_snapshot(test_dom, "s1")
    assert drv.domain_info(test_dom).state == DomainState.RUNNING
    assert [d.target for d in drv.disks(test_dom)] == ["vda"]
    drv.revert_to_snapshot(test_dom, "s2")
    assert drv.domain_info(test_dom).state == DomainState.SHUTOFF
    assert [d.target for d in drv.disks(test_dom)] == ["vda", "vdb"]
    assert sink.lifecycle() == [
        (LifecycleEventType.STARTED, "from_snapshot"),
        (LifecycleEventType.STOPPED, "from_snapshot"),
    ]
    drv.delete_snapshot(test_dom, "s1")
    assert [(s.name, s.parent) for s in drv.list_snapshots(test_dom)] == [("s2", None)]
    with pytest.raises(NoSnapshotError, match="s1"):
        drv.revert_to_snapshot(test_dom, "s1")
    with pytest.raises(NoSnapshotError, match="nope"):
        drv.delete_snapshot(test_dom, "nope")


def test_attach_and_detach_disk(drv: TestDriver, test_dom: DomainRef) -> None:
    drv.attach_disk(test_dom, DiskSpec("vdb", "/default-pool/base.qcow2", format="qcow2"))
    disks = {d.target: d for d in drv.disks(test_dom)}
    assert disks["vdb"].pool == "default-pool" and disks["vdb"].allocation_bytes == 512 * MiB
    with pytest.raises(InvalidArgumentError, match="vdb"):
        drv.attach_disk(test_dom, DiskSpec("vdb", "/x.img"))
    drv.detach_disk(test_dom, "vdb")
    assert [d.target for d in drv.disks(test_dom)] == ["vda"]
    with pytest.raises(InvalidArgumentError, match="vdb"):
        drv.detach_disk(test_dom, "vdb")


# --------------------------------------------------------------------------- block copy


def _job(dom: DomainRef, disk: str) -> Any:
    """The simulated job on ``disk`` (white box: its rate and its READY timer)."""
    node = get_node("test:///default")
    return node, node.jobs[(dom.uuid, disk)]


def test_unlimited_copy_of_the_default_disk_is_ready_in_about_half_a_second(
    drv: TestDriver, sink: Sink, test_dom: DomainRef
) -> None:
    drv.block_copy(test_dom, "vda", BlockCopyRequest(dest="/guest/copy.img"))
    info = drv.block_job_info(test_dom, "vda")
    assert info is not None and info.type == BlockJobType.COPY and not info.ready and info.end == GiB
    node, job = _job(test_dom, "vda")
    # "about half a second": an unlimited job moves 2 GiB/s, so READY is armed ~0.5 s after the start
    assert node.rate(job) == 2 * GiB and job.base_cur == 0
    assert (job.end - job.base_cur) / node.rate(job) == 0.5  # READY is due half a second after the start
    assert node.raw_cur(job, job.base_time + 0.25) == GiB // 2
    assert job.timer is not None or job.ready  # armed (or already fired)
    wait_for(lambda: ("vda", BlockJobType.COPY, BlockJobStatus.READY) in sink.jobs(), timeout=60)


def test_slow_copy_is_far_from_ready(drv: TestDriver, test_dom: DomainRef) -> None:
    drv.block_copy(test_dom, "vda", BlockCopyRequest(dest="/guest/copy.img", bandwidth_bytes=MiB))
    wait_for(lambda: (i := drv.block_job_info(test_dom, "vda")) is not None and i.cur > 0)
    info = drv.block_job_info(test_dom, "vda")
    assert info is not None and not info.ready
    assert info.bandwidth == MiB and info.end == GiB
    node, job = _job(test_dom, "vda")
    assert node.rate(job) == MiB
    assert node.raw_cur(job, job.base_time + 0.2) == int(0.2 * MiB)  # 1 MiB/s: 0.2 MiB in 0.2 s
    assert job.timer is not None and job.timer.interval > 1000  # 1 GiB at 1 MiB/s: READY ~17 min away
    assert drv.block_job_info(test_dom, "vda").cur < info.end / 100  # type: ignore[union-attr]


def test_copy_ready_then_pivot(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    src = small_disk(drv, test_dom)
    drv.block_copy(
        test_dom, "vdb", BlockCopyRequest(dest="/default-pool/copy.qcow2", format="qcow2", bandwidth_bytes=FAST)
    )
    wait_for(lambda: sink.jobs())
    info = drv.block_job_info(test_dom, "vdb")
    assert info is not None and info.ready and info.cur == info.end == 16 * MiB
    assert sink.jobs() == [("vdb", BlockJobType.COPY, BlockJobStatus.READY)]
    assert drv.disks(test_dom)[1].path == src  # mirroring: still on the source
    drv.block_job_abort(test_dom, "vdb", pivot=True)
    assert drv.block_job_info(test_dom, "vdb") is None
    disk = drv.disks(test_dom)[1]
    assert (disk.path, disk.format, disk.pool, disk.backing_chain) == (
        "/default-pool/copy.qcow2",
        "qcow2",
        "default-pool",
        (),
    )
    assert drv.domain_spec(test_dom).disks[1].path == "/default-pool/copy.qcow2"
    assert sink.jobs()[-1] == ("vdb", BlockJobType.COPY, BlockJobStatus.COMPLETED)
    assert drv.lookup_volume("default-pool", "copy.qcow2").allocation_bytes == 16 * MiB


def test_copy_abort_stays_on_source_and_removes_the_new_destination(
    drv: TestDriver, sink: Sink, test_dom: DomainRef
) -> None:
    src = small_disk(drv, test_dom)
    drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/default-pool/copy.img", bandwidth_bytes=MiB))
    assert drv.lookup_volume("default-pool", "copy.img").format == "raw"
    drv.block_job_abort(test_dom, "vdb", pivot=False)
    assert drv.block_job_info(test_dom, "vdb") is None
    assert drv.disks(test_dom)[1].path == src
    assert sink.jobs() == [("vdb", BlockJobType.COPY, BlockJobStatus.CANCELED)]
    with pytest.raises(NoStorageVolumeError):
        drv.lookup_volume("default-pool", "copy.img")
    with pytest.raises(OperationInvalidError, match="no active block job"):
        drv.block_job_abort(test_dom, "vdb", pivot=False)
    with pytest.raises(OperationInvalidError, match="no active block job"):
        drv.block_job_set_speed(test_dom, "vdb", MiB)


def test_progress_never_reports_cur_equal_end_before_ready(drv: TestDriver, test_dom: DomainRef) -> None:
    small_disk(drv, test_dom, size=MiB)
    drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/guest/c.img", bandwidth_bytes=20 * MiB))
    seen = []
    while True:
        info = drv.block_job_info(test_dom, "vdb")
        assert info is not None
        seen.append(info.cur)
        if info.ready:
            assert info.cur == info.end
            break
        assert info.cur < info.end
        time.sleep(0.001)
    assert seen == sorted(seen) and len(seen) > 3


def test_set_speed_rebases_progress(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    small_disk(drv, test_dom, size=64 * MiB)
    drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/guest/c.img", bandwidth_bytes=MiB))
    before = wait_for(lambda: (i := drv.block_job_info(test_dom, "vdb")) is not None and i.cur > 0 and i)
    assert before is not None and not before.ready
    drv.block_job_set_speed(test_dom, "vdb", FAST)
    after = drv.block_job_info(test_dom, "vdb")
    assert after is not None and after.bandwidth == FAST
    assert after.cur >= before.cur
    node, job = _job(test_dom, "vdb")
    # re-based: the rest moves at the new rate (64 MiB at 4 GiB/s: READY armed within 16 ms, not 64 s)
    assert node.rate(job) == FAST and job.base_cur >= before.cur
    assert (job.end - job.base_cur) / node.rate(job) < 0.02
    assert job.ready or (job.timer is not None and job.timer.interval < 0.03)  # re-armed, or already READY
    wait_for(lambda: sink.jobs(), timeout=60)
    assert sink.jobs() == [("vdb", BlockJobType.COPY, BlockJobStatus.READY)]
    # and back down: a ready job stays ready
    drv.block_job_set_speed(test_dom, "vdb", MiB)
    info = drv.block_job_info(test_dom, "vdb")
    assert info is not None and info.ready


def test_copy_host_level_errors(drv: TestDriver, test_dom: DomainRef) -> None:
    small_disk(drv, test_dom)
    with pytest.raises(InvalidArgumentError, match="vdz"):
        drv.block_copy(test_dom, "vdz", BlockCopyRequest(dest="/x.img"))
    with pytest.raises(InvalidArgumentError, match="already exists"):
        drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/default-pool/base.qcow2"))
    with pytest.raises(OperationFailedError, match="does not exist"):
        drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/nowhere.img", reuse_existing=True))
    with pytest.raises(OperationFailedError, match="does not exist"):
        drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/dev/sdz", dest_is_block_device=True))
    with pytest.raises(OperationInvalidError, match="in use"):  # the overlay's backing file
        drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/default-pool/base.qcow2", reuse_existing=True))
    drv.destroy(test_dom)
    assert drv.block_job_info(test_dom, "vdb") is None  # an inactive domain has no jobs
    assert drv.block_jobs(test_dom) == []
    with pytest.raises(OperationInvalidError, match="no active block job"):  # native: nothing to abort
        drv.block_job_abort(test_dom, "vdb", pivot=False)


def test_copy_by_disk_path_and_reuse_existing(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    src = small_disk(drv, test_dom)
    drv.create_volume("default-pool", "pre.qcow2", 16 * MiB, "qcow2", None)
    drv.block_copy(
        test_dom, src, BlockCopyRequest(dest="/default-pool/pre.qcow2", reuse_existing=True, bandwidth_bytes=FAST)
    )
    wait_for(lambda: sink.jobs())
    drv.block_job_abort(test_dom, "vdb", pivot=True)
    disk = drv.disks(test_dom)[1]
    assert (disk.path, disk.format) == ("/default-pool/pre.qcow2", "qcow2")  # format probed from the image


def test_destroy_fails_running_jobs(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    drv.block_copy(test_dom, "vda", BlockCopyRequest(dest="/guest/c.img", bandwidth_bytes=MiB))
    drv.destroy(test_dom)
    (event,) = [e for e in sink.events if isinstance(e, BlockJobEvent)]
    assert event.status == BlockJobStatus.FAILED and event.error and "stopped" in event.error
    drv.start(test_dom, paused=False)
    assert drv.block_job_info(test_dom, "vda") is None
    assert drv.disks(test_dom)[0].path == "/guest/diskimage1"


def test_detach_refused_during_a_job() -> None:
    # BLOCK_COPY_ACTIVE on detach is the gate's rule; the driver reports the job, the gate refuses.
    with virtabs.open("test:///default") as conn:
        dom = conn.lookup_domain("test")
        dom.block_copy("vda", "/guest/c.img", bandwidth=1)
        with pytest.raises(BlockCopyActiveError, match="vda"):
            dom.detach_disk("vda")
        assert [d.target for d in dom.disks()] == ["vda"]
        dom.block_job_abort("vda")


# --------------------------------------------------------------------------- chains: pull, commit, shallow copy


def test_json_node_with_backing_chain(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, _, vm = chain_node
    (disk,) = drv.disks(vm)
    assert disk.backing_chain == ("/guest/mid.qcow2", "/img/base.qcow2")
    assert (disk.capacity_bytes, disk.allocation_bytes, disk.format) == (64 * MiB, MiB, "qcow2")
    assert drv.nics(vm)[0].ips == ("10.0.0.5",)
    assert drv.domain_info(vm).state == DomainState.RUNNING
    assert drv.list_volumes("p") == []
    assert [r.name for r in drv.list_domains()] == ["vm"]


def test_deep_and_shallow_copy_of_a_chain(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, sink, vm = chain_node
    drv.block_copy(vm, "vda", BlockCopyRequest(dest="/pool/deep.qcow2", bandwidth_bytes=MiB))
    info = drv.block_job_info(vm, "vda")
    assert info is not None and info.end == 11 * MiB  # 1 + 2 + 8 MiB: the whole chain
    drv.block_job_set_speed(vm, "vda", FAST)
    wait_for(lambda: sink.jobs())
    drv.block_job_abort(vm, "vda", pivot=True)
    disk = drv.disks(vm)[0]
    assert (disk.path, disk.format, disk.backing_chain, disk.pool) == ("/pool/deep.qcow2", "qcow2", (), "p")

    drv.block_copy(vm, "vda", BlockCopyRequest(dest="/pool/raw.img", format="raw", bandwidth_bytes=FAST))
    wait_for(lambda: len(sink.jobs()) == 3)
    drv.block_job_abort(vm, "vda", pivot=True)
    assert drv.disks(vm)[0].format == "raw"


def test_shallow_copy_keeps_the_backing_chain(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, sink, vm = chain_node
    drv.block_copy(vm, "vda", BlockCopyRequest(dest="/pool/s.qcow2", shallow=True, bandwidth_bytes=MiB))
    info = drv.block_job_info(vm, "vda")
    assert info is not None and info.end == MiB  # the top layer only
    drv.block_job_set_speed(vm, "vda", FAST)
    wait_for(lambda: sink.jobs())
    drv.block_job_abort(vm, "vda", pivot=True)
    disk = drv.disks(vm)[0]
    assert disk.path == "/pool/s.qcow2" and disk.backing_chain == ("/guest/mid.qcow2", "/img/base.qcow2")


def test_pull_flattens_the_chain(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, sink, vm = chain_node
    drv.block_pull(vm, "vda", None, MiB)
    info = drv.block_job_info(vm, "vda")
    assert info is not None and info.type == BlockJobType.PULL and info.end == 10 * MiB and not info.ready
    drv.block_job_set_speed(vm, "vda", FAST)
    wait_for(lambda: sink.jobs())
    assert sink.jobs() == [("vda", BlockJobType.PULL, BlockJobStatus.COMPLETED)]
    assert drv.block_job_info(vm, "vda") is None
    disk = drv.disks(vm)[0]
    assert disk.backing_chain == () and disk.allocation_bytes == 11 * MiB


def test_pull_with_base_and_index_syntax(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, sink, vm = chain_node
    with pytest.raises(InvalidArgumentError, match="/nope"):
        drv.block_pull(vm, "vda", "/nope", FAST)
    drv.block_pull(vm, "vda", "vda[2]", FAST)  # keep base.qcow2, pull mid.qcow2
    wait_for(lambda: sink.jobs())
    assert drv.disks(vm)[0].backing_chain == ("/img/base.qcow2",)


def test_commit_below_the_active_layer(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, sink, vm = chain_node
    drv.block_commit(vm, "vda", BlockCommitRequest(base=None, top="/guest/mid.qcow2", active=False, delete=True))
    wait_for(lambda: sink.jobs())
    assert sink.jobs() == [("vda", BlockJobType.COMMIT, BlockJobStatus.COMPLETED)]
    disk = drv.disks(vm)[0]
    assert disk.path == "/guest/top.qcow2" and disk.backing_chain == ("/img/base.qcow2",)
    with pytest.raises(InvalidArgumentError, match="ACTIVE"):
        drv.block_commit(vm, "vda", BlockCommitRequest(base=None, top="/guest/top.qcow2", active=False))
    with pytest.raises(InvalidArgumentError, match="no backing file"):
        drv.block_commit(vm, "vda", BlockCommitRequest(base=None, top="/img/base.qcow2", active=False))


def test_active_commit_is_two_phase(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, sink, vm = chain_node
    with pytest.raises(InvalidArgumentError, match="not below"):
        drv.block_commit(vm, "vda", BlockCommitRequest(base="/guest/top.qcow2", top=None, active=True))
    drv.block_commit(vm, "vda", BlockCommitRequest(base="/guest/mid.qcow2", top=None, active=True, bandwidth_bytes=MiB))
    info = drv.block_job_info(vm, "vda")
    assert info is not None and info.type == BlockJobType.ACTIVE_COMMIT and info.end == MiB
    with pytest.raises(BlockCopyActiveError):
        drv.block_commit(vm, "vda", BlockCommitRequest(base=None, top=None, active=True))
    drv.block_job_set_speed(vm, "vda", FAST)
    wait_for(lambda: sink.jobs())
    assert sink.jobs() == [("vda", BlockJobType.ACTIVE_COMMIT, BlockJobStatus.READY)]
    drv.block_job_abort(vm, "vda", pivot=True)
    disk = drv.disks(vm)[0]
    assert disk.path == "/guest/mid.qcow2" and disk.backing_chain == ("/img/base.qcow2",)
    assert sink.jobs()[-1] == ("vda", BlockJobType.ACTIVE_COMMIT, BlockJobStatus.COMPLETED)


def test_block_jobs_and_inventory(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    drv, _, vm = chain_node
    drv.block_pull(vm, "vda", None, 1)
    (job,) = drv.block_jobs(vm)
    assert job.disk == "vda" and job.type == BlockJobType.PULL
    (record,) = drv.inventory()
    assert (record.name, record.state, record.native_state, record.vcpus) == ("vm", DomainState.RUNNING, "running", 1)
    assert record.os_type == "hvm" and record.autostart is False and record.snapshot_count == 0
    assert record.disks[0].backing_chain == ("/guest/mid.qcow2", "/img/base.qcow2")
    assert record.nics[0].ips == ("10.0.0.5",)
    assert [j.type for j in record.block_jobs] == [BlockJobType.PULL]
    assert record.field_errors == {}


# --------------------------------------------------------------------------- JSON nodes


def test_json_node_is_shared_per_path(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(CHAIN_NODE))
    a, _ = connect(f"test://{path}")
    b, _ = connect(f"test://{path}")
    vm = a.lookup_domain("vm")
    a.destroy(vm)
    assert b.domain_info(vm).state == DomainState.SHUTOFF
    assert get_node(f"test://{path}") is a.node is b.node
    default, _ = connect()
    assert [r.name for r in default.list_domains()] == ["test"]


def test_json_node_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="missing.json"):
        connect(f"test://{tmp_path}/missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="bad.json"):
        connect(f"test://{bad}")
    bad.write_text(json.dumps({"domains": [{"name": "x", "memory_bytes": 1, "vcpus": 1, "colour": "red"}]}))
    with pytest.raises(InvalidArgumentError, match="colour"):
        connect(f"test://{bad}")
    bad.write_text(json.dumps({"images": [{"path": "/a", "format": "qcow2", "backing": "/missing"}]}))
    with pytest.raises(InvalidArgumentError, match="/missing"):
        connect(f"test://{bad}")
    with pytest.raises(ConnectError):
        connect("test://somehost/default")


def test_default_node_description_round_trips_through_the_loader(tmp_path: Path) -> None:
    from virtabs.drivers.test import DEFAULT_NODE

    path = tmp_path / "default.json"
    path.write_text(json.dumps(DEFAULT_NODE))
    drv, _ = connect(f"test://{path}")
    assert drv.domain_info(drv.lookup_domain("test")).max_memory_bytes == 8 * GiB


# --------------------------------------------------------------------------- storage


def test_volume_lifecycle(drv: TestDriver) -> None:
    vol = drv.create_volume("default-pool", "new.qcow2", GiB, "qcow2", "base.qcow2")
    assert vol.path == "/default-pool/new.qcow2" and vol.backing_chain == ("/default-pool/base.qcow2",)
    assert vol.allocation_bytes is not None and vol.allocation_bytes < MiB
    with pytest.raises(OperationInvalidError, match="new.qcow2"):
        drv.create_volume("default-pool", "new.qcow2", GiB, "qcow2", None)
    with pytest.raises(InvalidArgumentError, match="raw"):
        drv.create_volume("default-pool", "r.img", GiB, "raw", "base.qcow2")
    with pytest.raises(InvalidArgumentError, match="/nope"):
        drv.create_volume("default-pool", "n.qcow2", GiB, "qcow2", "/nope")
    with pytest.raises(OperationFailedError, match="space"):
        drv.create_volume("default-pool", "huge.img", 200 * GiB, "raw", None)
    grown = drv.resize_volume("default-pool", "new.qcow2", 2 * GiB)
    assert grown.capacity_bytes == 2 * GiB
    with pytest.raises(InvalidArgumentError, match="shrink"):
        drv.resize_volume("default-pool", "new.qcow2", GiB)
    with pytest.raises(OperationInvalidError, match="in use"):
        drv.delete_volume("default-pool", "base.qcow2")
    before = drv.lookup_storage_pool("default-pool").allocation_bytes
    raw = drv.create_volume("default-pool", "r.img", 10 * MiB, "raw", None)
    assert raw.allocation_bytes == 10 * MiB
    assert drv.lookup_storage_pool("default-pool").allocation_bytes == (before or 0) + 10 * MiB
    drv.delete_volume("default-pool", "new.qcow2")
    with pytest.raises(NoStorageVolumeError, match="new.qcow2"):
        drv.delete_volume("default-pool", "new.qcow2")
    assert {v.name for v in drv.list_volumes("default-pool")} == {"base.qcow2", "overlay.qcow2", "r.img"}


def test_reuse_ext_onto_a_real_file(drv: TestDriver, sink: Sink, test_dom: DomainRef, tmp_path: Path) -> None:
    small_disk(drv, test_dom)
    real = tmp_path / "pre.qcow2"
    header = b"QFI\xfb" + bytes(20) + (16 * MiB).to_bytes(8, "big")
    real.write_bytes(header)
    drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest=str(real), reuse_existing=True, bandwidth_bytes=FAST))
    wait_for(lambda: sink.jobs())
    drv.block_job_abort(test_dom, "vdb", pivot=True)
    disk = drv.disks(test_dom)[1]
    assert (disk.path, disk.format, disk.capacity_bytes) == (str(real), "qcow2", 16 * MiB)
    assert real.read_bytes() == header  # the real file is only probed, never written


def test_bulk_inventory_matches_the_generic_one(chain_node: tuple[TestDriver, Sink, DomainRef]) -> None:
    from virtabs._inventory_fallback import records_one_by_one

    drv, _, vm = chain_node
    drv.define_domain(DomainSpec(name="off", memory_bytes=GiB, vcpus=1, nics=(NicSpec(),)))
    drv.create_snapshot(vm, "s")
    assert drv.inventory() == records_one_by_one(drv)


# --------------------------------------------------------------------------- through the public API


def test_through_the_public_api() -> None:
    import virtabs

    with virtabs.open("test:///default") as conn:
        assert conn.driver_name == "test"
        dom = conn.lookup_domain("test")
        events: list[Event] = []
        conn.subscribe(events.append)
        job = dom.block_copy("vda", "/guest/copy.qcow2", format="qcow2", bandwidth=FAST)
        job.wait_ready(timeout=10)
        job.pivot()
        assert dom.disks()[0].path == "/guest/copy.qcow2"
        statuses = [e.status for e in events if isinstance(e, BlockJobEvent)]
        assert statuses == [BlockJobStatus.READY, BlockJobStatus.COMPLETED]
        slow = dom.block_copy("vda", "/guest/slow.img", bandwidth=MiB)
        with pytest.raises(BlockCopyActiveError):
            dom.save("/tmp/never-written.save")
        with pytest.raises(BlockCopyActiveError):
            slow.pivot()
        slow.abort()
        assert slow.info() is None


def test_capabilities_declared_away_are_refused_at_the_gate(tmp_path: Path) -> None:
    from virtabs._capabilities import Capability
    from virtabs._errors import NotSupportedError

    drv, sink = connect("test:///default?without=block.copy.pivot,domain.save,events")
    caps = drv.connection_capabilities()
    assert Capability.BLOCK_COPY in caps and Capability.BLOCK_COPY_PIVOT not in caps
    assert Capability.DOMAIN_SAVE not in caps and Capability.EVENTS not in caps
    drv.close()
    with virtabs.open("test:///default?without=block.copy.pivot,domain.save,events") as conn:
        dom = conn.lookup_domain("test")
        with pytest.raises(NotSupportedError):
            dom.save(tmp_path / "x.save")
        with pytest.raises(NotSupportedError):
            conn.restore(tmp_path / "x.save")
        assert not (tmp_path / "x.save").exists()
        job = dom.block_copy("vda", "/guest/c.img", bandwidth=FAST)
        job.wait_ready(timeout=10)
        with pytest.raises(NotSupportedError):
            job.pivot()
        job.abort()
        assert dom.disks()[0].path == "/guest/diskimage1"
        with pytest.raises(NotSupportedError):
            conn.subscribe(lambda _e: None)
    with pytest.raises(InvalidArgumentError, match="block.cpy"):
        connect("test:///default?without=block.cpy")
    no_copy, _ = connect("test:///default?without=block.copy")
    assert Capability.BLOCK_COPY_SHALLOW not in no_copy.connection_capabilities()
    no_copy.close()


def test_reuse_ext_with_an_explicit_raw_format(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    small_disk(drv, test_dom)
    drv.create_volume("default-pool", "pre.qcow2", 16 * MiB, "qcow2", None)
    request = BlockCopyRequest(dest="/default-pool/pre.qcow2", reuse_existing=True, format="raw", bandwidth_bytes=FAST)
    drv.block_copy(test_dom, "vdb", request)
    wait_for(lambda: sink.jobs())
    drv.block_job_abort(test_dom, "vdb", pivot=False)
    assert drv.lookup_volume("default-pool", "pre.qcow2").format == "qcow2"  # cancel: the image is untouched
    drv.block_copy(test_dom, "vdb", request)
    wait_for(lambda: len(sink.jobs()) == 3)
    drv.block_job_abort(test_dom, "vdb", pivot=True)
    assert drv.disks(test_dom)[1].format == "raw"


def test_jobs_under_concurrent_pollers(drv: TestDriver, sink: Sink, test_dom: DomainRef) -> None:
    small_disk(drv, test_dom, size=64 * MiB)
    drv.block_copy(test_dom, "vdb", BlockCopyRequest(dest="/guest/c.img", bandwidth_bytes=16 * MiB))
    errors: list[BaseException] = []
    stop = threading.Event()
    polls = [0] * 4

    def poll(index: int) -> None:
        try:
            while not stop.is_set():
                info = drv.block_job_info(test_dom, "vdb")
                assert info is not None
                assert info.cur < info.end or info.ready
                drv.inventory()
                polls[index] += 1
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for speed in (32 * MiB, 8 * MiB, FAST):
        seen = list(polls)
        # every poller has polled (twice) since the last change: the change lands among running polls
        wait_for(lambda seen=seen: stop.is_set() or all(p >= s + 2 for p, s in zip(polls, seen, strict=True)))
        drv.block_job_set_speed(test_dom, "vdb", speed)
    wait_for(lambda: sink.jobs())
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert sink.jobs() == [("vdb", BlockJobType.COPY, BlockJobStatus.READY)]  # exactly one READY

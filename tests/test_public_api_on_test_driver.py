"""The public API end to end on the in-memory reference driver (test:///default)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

import virtabs
import virtabs.aio
from virtabs import BlockJobStatus, BlockJobType, BlockRebaseFlags, DomainState, LifecycleEventType
from virtabs.drivers.test import reset_default_node

F = BlockRebaseFlags
CHAIN_SPEC = {
    "name": "chain",
    "memory_bytes": 256 << 20,
    "vcpus": 1,
    "disks": [{"target": "vda", "path": "/default-pool/overlay.qcow2", "format": "qcow2"}],
}


@pytest.fixture
def conn() -> Iterator[virtabs.Connection]:
    reset_default_node()
    with virtabs.open("test:///default") as c:
        yield c
    reset_default_node()


@pytest.fixture
def chain(conn: virtabs.Connection) -> virtabs.Domain:
    dom = conn.define_domain(CHAIN_SPEC)
    dom.start()
    return dom


def test_default_node(conn: virtabs.Connection) -> None:
    (dom,) = conn.list_domains()
    assert dom.name == "test" and dom.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    info = dom.info()
    assert (info.state, info.vcpus, info.memory_bytes) == (DomainState.RUNNING, 2, 2 << 30)
    assert [d.path for d in dom.disks()] == ["/guest/diskimage1"]
    assert len(dom.nics()) == 1
    assert [p.name for p in conn.list_storage_pools()] == ["default-pool"]
    assert conn.lookup_domain(dom.uuid) == dom


def test_state_is_shared_between_connections(conn: virtabs.Connection) -> None:
    with virtabs.open("test:///default") as other:
        other.lookup_domain("test").suspend()
    assert conn.lookup_domain("test").state() == DomainState.PAUSED


def test_missing_objects_have_codes(conn: virtabs.Connection) -> None:
    with pytest.raises(virtabs.NoDomainError) as err:
        conn.lookup_domain("nope")
    assert err.value.code == 42 and "nope" in err.value.message
    with pytest.raises(virtabs.NoStoragePoolError):
        conn.lookup_storage_pool("nope")
    with pytest.raises(virtabs.NoStorageVolumeError):
        conn.lookup_storage_pool("default-pool").lookup_volume("nope")


def test_lifecycle_events(conn: virtabs.Connection) -> None:
    seen: list[virtabs.Event] = []
    dom = conn.lookup_domain("test")
    with conn.subscribe(seen.append, domain=dom):
        dom.suspend()
        dom.resume()
        dom.destroy()
        dom.start()
    types = [e.type for e in seen if isinstance(e, virtabs.LifecycleEvent)]
    assert types == [
        LifecycleEventType.SUSPENDED, LifecycleEventType.RESUMED, LifecycleEventType.STOPPED, LifecycleEventType.STARTED,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "fmt", "backing"),
    [
        (F.COPY, "qcow2", ()),
        (F.COPY | F.COPY_RAW, "raw", ()),
        (F.COPY | F.SHALLOW, "qcow2", ("/default-pool/base.qcow2",)),
    ],
)
def test_seed_copy_then_pivot(
    conn: virtabs.Connection, chain: virtabs.Domain, flags: F, fmt: str, backing: tuple[str, ...]
) -> None:
    events: list[virtabs.Event] = []
    conn.subscribe(events.append, domain=chain)
    job = chain.block_rebase("vda", "/default-pool/copy", flags=flags)
    info = job.wait_ready(timeout=10)
    assert info.ready and info.cur == info.end and info.type == BlockJobType.COPY
    job.pivot()
    (disk,) = chain.disks()
    assert (disk.path, disk.format, disk.backing_chain) == ("/default-pool/copy", fmt, backing)
    statuses = [e.status for e in events if isinstance(e, virtabs.BlockJobEvent)]
    assert statuses == [BlockJobStatus.READY, BlockJobStatus.COMPLETED]
    assert chain.block_job_info("vda") is None


def test_reuse_ext_shallow_into_a_precreated_file(conn: virtabs.Connection, chain: virtabs.Domain) -> None:
    pool = conn.lookup_storage_pool("default-pool")
    dest = pool.create_volume("top.qcow2", 1 << 30, backing="/default-pool/base.qcow2")
    job = chain.block_rebase("vda", dest.path, flags=F.COPY | F.REUSE_EXT | F.SHALLOW)
    job.wait_ready(timeout=10)
    job.pivot()
    (disk,) = chain.disks()
    assert disk.path == dest.path and disk.backing_chain == ("/default-pool/base.qcow2",)


def test_abort_stays_on_the_source(conn: virtabs.Connection, chain: virtabs.Domain) -> None:
    job = chain.block_rebase("vda", "/default-pool/copy", flags=F.COPY)
    job.wait_ready(timeout=10)
    job.abort()
    assert chain.disks()[0].path == "/default-pool/overlay.qcow2"


def test_slow_copy_is_not_ready_and_refuses_pivot_save_snapshot(conn: virtabs.Connection) -> None:
    dom = conn.lookup_domain("test")
    job = dom.block_rebase("vda", "/tmp/copy.img", bandwidth=1, flags=F.COPY)  # 1 MiB/s of 1 GiB
    deadline = time.monotonic() + 60
    while (info := job.info()) is not None and info.cur == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # poll until the copy has moved data (a hang guard, not a timing assertion)
    assert info is not None and not info.ready and 0 < info.cur < info.end and info.bandwidth == 1 << 20
    with pytest.raises(virtabs.BlockCopyActiveError, match="not ready for pivot"):
        job.pivot()
    with pytest.raises(virtabs.BlockCopyActiveError):
        dom.save("/tmp/never-written.save")
    with pytest.raises(virtabs.BlockCopyActiveError):
        dom.create_snapshot("s1")
    with pytest.raises(virtabs.BlockCopyActiveError):
        dom.block_pull("vda")
    dom.block_job_set_speed("vda", 0)  # unlimited: ready soon
    job.wait_ready(timeout=10)
    job.abort()


def test_pull_completes_by_itself(conn: virtabs.Connection, chain: virtabs.Domain) -> None:
    job = chain.block_pull("vda")
    job.wait(timeout=10)
    assert chain.block_job_info("vda") is None
    assert chain.disks()[0].backing_chain == ()


def test_active_commit_two_phase(conn: virtabs.Connection, chain: virtabs.Domain) -> None:
    job = chain.block_commit("vda", flags=virtabs.BlockCommitFlags.ACTIVE)
    assert job.type == BlockJobType.ACTIVE_COMMIT
    job.wait_ready(timeout=10)
    job.pivot()
    assert chain.disks()[0].path == "/default-pool/base.qcow2"


def test_save_and_restore_through_a_real_file(conn: virtabs.Connection, tmp_path: object) -> None:
    path = f"{tmp_path}/test.save"
    dom = conn.lookup_domain("test")
    dom.save(path)
    assert dom.state() == DomainState.SHUTOFF
    restored = conn.restore(path)
    assert restored.name == "test" and restored.state() == DomainState.RUNNING


def test_one_connection_shared_between_threads(conn: virtabs.Connection) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                conn.lookup_domain("test").info()
                conn.list_domains()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_asyncio_facade_runs_the_same_implementation(conn: virtabs.Connection) -> None:
    async def main() -> tuple[list[str], DomainState]:
        async with await virtabs.aio.open("test:///default") as aconn:
            doms = await aconn.list_domains()
            state = await doms[0].state()
            return [d.name for d in doms], state

    names, state = asyncio.run(main())
    assert names == ["test"] and state == DomainState.RUNNING

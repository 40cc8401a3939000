"""Contract tests of events (one per state transition) and of storage pools and volumes."""

from __future__ import annotations

import threading

import pytest

from ..._api import Domain, StoragePool, Volume
from ..._errors import NoStoragePoolError, NoStorageVolumeError
from ..._flags import LifecycleEventType
from ..._models import DIRECTORY_FORMAT, Event, LifecycleEvent, PoolInfo, VolumeInfo
from ..contract import Contract
from ..markers import requires

__all__ = ["EventLog", "TestEvents", "TestStoragePools", "TestStorageVolumes"]

MiB = 1 << 20


class EventLog:
    """Collects events (from any thread) and waits for the lifecycle events of one domain."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def lifecycle(self, dom: Domain) -> list[LifecycleEventType]:
        """The lifecycle event types seen for ``dom`` so far."""
        with self._cond:
            return [e.type for e in self.events if isinstance(e, LifecycleEvent) and e.uuid == dom.uuid]

    def wait_for(self, dom: Domain, kind: LifecycleEventType, timeout: float = 10.0) -> None:
        """Block until a ``kind`` event for ``dom`` arrived; AssertionError otherwise."""
        with self._cond:
            ok = self._cond.wait_for(lambda: kind in self.lifecycle(dom), timeout)
        assert ok, f"no {kind.name} event for domain {dom.name!r} within {timeout}s; got {self.lifecycle(dom)}"


class TestEvents:
    """events: every lifecycle transition is delivered to subscribers."""

    @requires("events", "domain.define")
    def test_define_and_undefine_events(self, virtabs_contract: Contract) -> None:
        log = EventLog()
        with virtabs_contract.conn.subscribe(log):
            dom = virtabs_contract.conn.define_domain(virtabs_contract.spec())
            log.wait_for(dom, LifecycleEventType.DEFINED)
            dom.undefine()
            log.wait_for(dom, LifecycleEventType.UNDEFINED)

    @requires("events", "domain.start")
    def test_start_event(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=False)
        log = EventLog()
        with virtabs_contract.conn.subscribe(log, domain=dom):
            dom.start()
            log.wait_for(dom, LifecycleEventType.STARTED)

    @requires("events", "domain.suspend")
    def test_suspend_and_resume_events(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        log = EventLog()
        with virtabs_contract.conn.subscribe(log, domain=dom.uuid):
            dom.suspend()
            log.wait_for(dom, LifecycleEventType.SUSPENDED)
            dom.resume()
            log.wait_for(dom, LifecycleEventType.RESUMED)

    @requires("events", "domain.destroy")
    def test_destroy_event(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        log = EventLog()
        with virtabs_contract.conn.subscribe(log, domain=dom):
            dom.destroy()
            log.wait_for(dom, LifecycleEventType.STOPPED)

    @requires("events", "domain.shutdown")
    def test_shutdown_event(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        log = EventLog()
        with virtabs_contract.conn.subscribe(log, domain=dom):
            dom.shutdown()
            log.wait_for(dom, LifecycleEventType.STOPPED, timeout=virtabs_contract.shutdown_timeout)

    @requires("events", "domain.suspend")
    def test_filter_and_unsubscribe(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        dom = virtabs_contract.domain(running=True)
        mine, others, closed = EventLog(), EventLog(), EventLog()
        sub = conn.subscribe(mine, domain=dom)
        other_sub = conn.subscribe(others, domain="virtabs-contract-no-such-domain")
        gone = conn.subscribe(closed)
        gone.close()
        gone.unsubscribe()  # idempotent
        assert gone.closed
        try:
            dom.suspend()
            mine.wait_for(dom, LifecycleEventType.SUSPENDED)
            dom.resume()
            mine.wait_for(dom, LifecycleEventType.RESUMED)
        finally:
            sub.close()
            other_sub.close()
        assert others.events == [], "a subscription for another domain received events"
        assert closed.events == [], "a closed subscription received events"

    @requires("events", "domain.define")
    def test_events_keep_coming_after_unsubscribe_and_resubscribe(self, virtabs_contract: Contract) -> None:
        """The last subscriber leaving (stop_events) must not end the stream for the next one."""
        conn = virtabs_contract.conn
        for round_ in range(2):
            first = EventLog()
            with conn.subscribe(first):
                dom = conn.define_domain(virtabs_contract.spec(f"ev{round_}"))
                first.wait_for(dom, LifecycleEventType.DEFINED)
            again = EventLog()
            with conn.subscribe(again):
                dom.undefine()
                again.wait_for(dom, LifecycleEventType.UNDEFINED)
            assert LifecycleEventType.UNDEFINED not in first.lifecycle(dom), "an unsubscribed callback got events"


class TestStoragePools:
    """storage.pool: list and look up pools and volumes; missing ones are errors 49 and 50."""

    @requires("storage.pool")
    def test_pools_and_volumes_can_be_listed_and_looked_up(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        pools = conn.list_storage_pools()
        names = [p.name for p in pools]
        assert len(names) == len(set(names)), f"list_storage_pools has duplicates: {names}"
        assert sorted(p.name for p in virtabs_contract.other_door().list_storage_pools()) == sorted(names)
        for pool in pools:
            vols = [v.name for v in pool.list_volumes()]
            assert len(vols) == len(set(vols)), f"pool {pool.name!r} lists duplicate volumes: {vols}"
            assert pool.last_info.name == pool.name  # the listing's facts, without a host call
            info = pool.info()
            assert isinstance(info, PoolInfo) and info.name == pool.name
            assert pool.last_info == info
            assert conn.lookup_storage_pool(pool.name).name == pool.name
            assert repr(pool)
            for vol in pool.list_volumes():
                found = pool.lookup_volume(vol.name)
                assert (found.name, found.pool, found.path) == (vol.name, pool.name, vol.path)
                assert (vol.last_info.name, vol.last_info.path) == (vol.name, vol.path)
                fresh = found.info()
                assert isinstance(fresh, VolumeInfo)
                if fresh.capacity_bytes is None and fresh.format != DIRECTORY_FORMAT:
                    # an image has a capacity; a host that does not report it must say so (checked, and
                    # reported "not observable", by TestStorageVolumes::test_created_capacity_is_read_back)
                    assert virtabs_contract.unobservable_reason("volume.capacity"), (
                        f"volume {vol.name!r} ({fresh.format}) reports no capacity: only a directory volume ('dir') "
                        "has none"
                    )
                assert repr(found)

    @requires("storage.pool")
    def test_missing_pool_and_volume_errors(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        with pytest.raises(NoStoragePoolError) as exc:
            conn.lookup_storage_pool("virtabs-contract-no-such-pool")
        assert int(exc.value.code) == 49 and "virtabs-contract-no-such-pool" in exc.value.message
        pools = conn.list_storage_pools()
        if pools:
            with pytest.raises(NoStorageVolumeError) as vexc:
                pools[0].lookup_volume("virtabs-contract-no-such-volume")
            assert int(vexc.value.code) == 50 and "virtabs-contract-no-such-volume" in vexc.value.message


def _fresh_volume(c: Contract, stem: str, *, capacity: bool = True) -> tuple[StoragePool, StoragePool, Volume]:
    """A new volume, in a format the target says the pool makes, in the first pool with a path, checked through
    another connection: (the pool, the pool as another connection sees it, the volume). An image (qcow2, vhdx,
    ...) is made with 16 MiB and must report them (``capacity=False``: unless the target declares
    ``volume.capacity`` unobservable; the caller then checks it); a directory volume (``dir``: a Docker named
    volume) is made without a size and must report none it was not given. Its name is the one the API gives it,
    never one split out of a path."""
    pool = next((p for p in c.conn.list_storage_pools() if p.info().path), None)
    assert pool is not None, "no storage pool with a path to create a volume in"
    fmt = c.volume_format(pool.name)
    if fmt == DIRECTORY_FORMAT:
        vol = pool.create_volume(c.target.new_name(stem), format=fmt)
    else:
        vol = pool.create_volume(f"{c.target.new_name(stem)}.{fmt}", 16 * MiB, format=fmt)
    assert vol.pool == pool.name
    name = vol.name
    other_pool = c.other_door().lookup_storage_pool(pool.name)
    assert [v.name for v in other_pool.list_volumes()].count(name) == 1
    info = other_pool.lookup_volume(name).info()
    assert info.format == fmt
    if fmt == DIRECTORY_FORMAT:
        assert info.capacity_bytes is None and not info.backing_chain, (
            f"a directory volume made without a size reports capacity {info.capacity_bytes} and backing "
            f"{info.backing_chain}: it has neither"
        )
        return pool, other_pool, vol
    if capacity or not c.unobservable_reason("volume.capacity"):
        _check_created_capacity(info)
    return pool, other_pool, vol


def _check_created_capacity(info: VolumeInfo) -> None:
    assert info.capacity_bytes is not None, f"image volume {info.name!r} ({info.format}) reports no capacity"
    assert 16 * MiB <= info.capacity_bytes < 17 * MiB, (
        f"created with 16 MiB, a fresh lookup reports {info.capacity_bytes} bytes (units: bytes)"
    )


class TestStorageVolumes:
    """storage.volume: create, inspect and delete a volume; storage.volume.resize: grow it."""

    @requires("storage.pool", "storage.volume")
    def test_volume_cycle(self, virtabs_contract: Contract) -> None:
        pool, other_pool, vol = _fresh_volume(virtabs_contract, "vol", capacity=False)
        vol.delete()
        with pytest.raises(NoStorageVolumeError):
            pool.lookup_volume(vol.name)
        with pytest.raises(NoStorageVolumeError):
            other_pool.lookup_volume(vol.name)

    @requires("storage.pool", "storage.volume")
    def test_created_capacity_is_read_back(self, virtabs_contract: Contract) -> None:
        """The size an image volume was created with, through another connection ("not observable" where the
        target declares ``volume.capacity``); a directory volume reports none."""
        _pool, other_pool, vol = _fresh_volume(virtabs_contract, "size", capacity=False)
        try:
            info = other_pool.lookup_volume(vol.name).info()
            if info.format == DIRECTORY_FORMAT:
                assert info.capacity_bytes is None
                return
            try:
                _check_created_capacity(info)
            except AssertionError as exc:
                raise virtabs_contract.effect_missing("volume.capacity", str(exc).splitlines()[0]) from None
        finally:
            vol.delete()

    @requires("storage.pool", "storage.volume", "storage.volume.resize")
    def test_volume_resize(self, virtabs_contract: Contract) -> None:
        _pool, other_pool, vol = _fresh_volume(virtabs_contract, "grow")
        grown = vol.resize(32 * MiB)
        assert grown.capacity_bytes is not None and 32 * MiB <= grown.capacity_bytes < 33 * MiB
        fresh = other_pool.lookup_volume(vol.name).info()
        assert fresh.capacity_bytes is not None and 32 * MiB <= fresh.capacity_bytes < 33 * MiB, (
            f"resized to 32 MiB, a fresh lookup through another connection reports {fresh.capacity_bytes} bytes"
        )
        vol.delete()

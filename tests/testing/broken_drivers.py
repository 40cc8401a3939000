"""Drivers that each break one promise while reporting success, for the kit's self-tests.

Every class here declares what the reference driver declares and keeps every
signature; one method lies about its effect (or tries to leave the test by a
skip). The kit must catch each one, and the reference driver (the honest twin)
must pass the same tests. They are opened through an overridden
``virtabs_open`` fixture (``conftest_source``), never registered.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from virtabs import NotSupportedError, OperationTimeoutError
from virtabs._models import BlockCopyRequest, BlockJobInfo, DomainRecord, DomainRef, DomainSpec, HostInfo, VolumeInfo
from virtabs.drivers.test import TestDriver


class NoOpRebootDriver(TestDriver):
    """reboot returns without rebooting the guest."""

    __test__ = False

    def reboot(self, dom: DomainRef) -> None:
        """Nothing happens."""
        self.node.domain(dom)


class PivotStaysOnSourceDriver(TestDriver):
    """A pivot ends the job (COMPLETED) but the disk stays on the source."""

    __test__ = False

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Pivot is a cancel in disguise."""
        from virtabs._flags import BlockJobStatus

        with self.node.txn() as events:
            d = self.node.domain(dom)
            job = self._live_job(d, disk, events)
            self.node.cancel(job, events, BlockJobStatus.COMPLETED if pivot else BlockJobStatus.CANCELED)


class _BlankImage:
    """An image of the test store that no write reaches: its allocation never grows."""

    def __init__(self, img: Any) -> None:
        self.path, self.format, self.capacity, self.backing = img.path, img.format, img.capacity, img.backing
        self._allocation = img.allocation

    @property
    def allocation(self) -> int:
        """What was there before the copy."""
        return self._allocation

    @allocation.setter
    def allocation(self, value: int) -> None:
        """Writes go nowhere."""


class CopyWritesNothingDriver(TestDriver):
    """The copy job runs, gets READY and pivots, but the destination never receives the data."""

    __test__ = False

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Start the job, then make the destination deaf."""
        super().block_copy(dom, disk, request)
        with self.node.lock:
            self.node.images[request.dest] = _BlankImage(self.node.images[request.dest])  # type: ignore[assignment]


class RevertRestoresNothingDriver(TestDriver):
    """revert_to_snapshot finds the snapshot and returns."""

    __test__ = False

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """Nothing restored."""
        with self.node.lock:
            self._find_snapshot(self.node.domain(dom), name)


class ResizeLiesDriver(TestDriver):
    """resize_volume reports the new capacity without resizing."""

    __test__ = False

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """The answer the caller wants."""
        info = self.lookup_volume(pool, name)
        return attrs.evolve(info, capacity_bytes=capacity_bytes)


class DuplicateListingDriver(TestDriver):
    """list_domains reports the first domain twice."""

    __test__ = False

    def list_domains(self) -> list[DomainRef]:
        """One too many."""
        refs = super().list_domains()
        return refs + refs[:1]


class DuplicateDefineTimesOutDriver(TestDriver):
    """A define of a name already in use times out instead of being refused as a duplicate."""

    __test__ = False

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Any error will do, says this driver."""
        if any(d.name == spec.name or d.uuid == spec.uuid for d in self.node.domains.values()):
            raise OperationTimeoutError("define timed out after 30s")
        return super().define_domain(spec)


def _records(driver: TestDriver, **changes: Any) -> list[DomainRecord]:
    return [attrs.evolve(r, **{k: f(r) for k, f in changes.items()}) for r in TestDriver.inventory(driver)]


class RecordsMemoryInKiBDriver(TestDriver):
    """The bulk records give memory in KiB (the per-domain calls in bytes)."""

    __test__ = False

    def inventory(self) -> list[DomainRecord]:
        """memory_bytes // 1024."""
        return _records(self, memory_bytes=lambda r: None if r.memory_bytes is None else r.memory_bytes // 1024)


class RecordsDropTheLastDiskDriver(TestDriver):
    """The bulk records list every disk but the last."""

    __test__ = False

    def inventory(self) -> list[DomainRecord]:
        """disks[:-1]."""
        return _records(self, disks=lambda r: r.disks[:-1])


class RecordsCountNoSnapshotDriver(TestDriver):
    """The bulk records always count zero snapshots."""

    __test__ = False

    def inventory(self) -> list[DomainRecord]:
        """snapshot_count 0."""
        return _records(self, snapshot_count=lambda r: 0)


class HostMemoryInKiBDriver(TestDriver):
    """host_info gives the host's memory in KiB."""

    __test__ = False

    def host_info(self) -> HostInfo:
        """memory_bytes // 1024."""
        info = super().host_info()
        return attrs.evolve(info, memory_bytes=info.memory_bytes // 1024)


class EventsStopAfterResubscribeDriver(TestDriver):
    """Once the last subscriber leaves (stop_events), no event is delivered again."""

    __test__ = False
    _deaf = False

    def stop_events(self) -> None:
        """Tear the stream down for good."""
        self._deaf = True

    def emit(self, event: Any) -> None:
        """Nothing after stop_events."""
        if not self._deaf:
            super().emit(event)


class IgnoresBandwidthDriver(TestDriver):
    """block_job_set_speed records the number it is given, but the job keeps its old speed."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claimed: dict[tuple[str, str], int] = {}

    def block_job_set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        """Remember, do nothing."""
        self._claimed[(dom.uuid, disk)] = bandwidth_bytes

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """Report the claimed bandwidth."""
        info = super().block_job_info(dom, disk)
        claimed = self._claimed.get((dom.uuid, disk))
        return info if info is None or claimed is None else attrs.evolve(info, bandwidth=claimed)


class SkipsInsideDriver(TestDriver):
    """suspend raises a test-framework skip instead of pausing (an escape hatch)."""

    __test__ = False

    def suspend(self, dom: DomainRef) -> None:
        """Leave the test by the side door."""
        pytest.skip("suspend is flaky on this host")


class XfailsInsideDriver(TestDriver):
    """resume declares itself an expected failure instead of resuming (an escape hatch)."""

    __test__ = False

    def resume(self, dom: DomainRef) -> None:
        """Leave the test as 'expected to fail'."""
        pytest.xfail("resume is known to be broken here")


class ShallowCopiesAllDriver(TestDriver):
    """SHALLOW is accepted and ignored: the whole chain is copied into the destination."""

    __test__ = False

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """A deep copy whatever was asked."""
        super().block_copy(dom, disk, attrs.evolve(request, shallow=False))


class ReuseExtRecreatesDriver(TestDriver):
    """REUSE_EXT throws the pre-created destination away and creates a new one (its backing is lost)."""

    __test__ = False

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Recreate instead of reuse."""
        if request.reuse_existing:
            with self.node.lock:
                self.node.images.pop(request.dest, None)
            request = attrs.evolve(request, reuse_existing=False)
        super().block_copy(dom, disk, request)


class SelfSwitchingCopyDriver(TestDriver):
    """Honest: declares block.copy without block.copy.pivot, and a copy switches over by itself once it
    has caught up (Storage vMotion style)."""

    __test__ = False
    capabilities = TestDriver.capabilities.without("block.copy.pivot")

    def _settle(self, dom: DomainRef, disk: str) -> None:
        with self.node.txn() as events:
            job = self.node.jobs.get((dom.uuid, disk))
            if job is not None and job.dest is not None:
                self.node.tick(job, events)
                if job.ready and not job.ended:
                    self._switch(job, events)

    def _switch(self, job: Any, events: list[Any]) -> None:
        self.node.pivot(job, events)

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """A caught-up copy has switched over (and ended) by the time anyone looks."""
        self._settle(dom, disk)
        return super().block_job_info(dom, disk)

    def block_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        """The same for the job list."""
        for spec in self.node.domain(dom).spec.disks:
            self._settle(dom, spec.target)
        return super().block_jobs(dom)


class SynchronousCopyDriver(SelfSwitchingCopyDriver):
    """Like vcsim's RelocateVM_Task: the copy has moved everything and switched over before the call returns."""

    __test__ = False

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Copy at once, whatever the bandwidth, then switch over."""
        super().block_copy(dom, disk, attrs.evolve(request, bandwidth_bytes=0))
        with self.node.lock:
            self.node.unlimited_rate = float(1 << 62)
            self.node.jobs[(dom.uuid, disk)].base_time -= 1.0
        self._settle(dom, disk)


class SelfSwitchStaysOnSourceDriver(SelfSwitchingCopyDriver):
    """Broken twin: the copy "switches over by itself" by ending, but the disk stays on the source."""

    __test__ = False

    def _switch(self, job: Any, events: list[Any]) -> None:
        from virtabs._flags import BlockJobStatus

        self.node.cancel(job, events, BlockJobStatus.COMPLETED)


class RefusesDeclaredDriver(TestDriver):
    """destroy raises NotSupportedError although domain.destroy is declared."""

    __test__ = False

    def destroy(self, dom: DomainRef) -> None:
        """A declared capability refused at run time."""
        raise NotSupportedError(f"destroy of domain '{dom.name}' is not supported on this host")


#: driver class name -> (-k selection of the tests that must catch it, a line the failure output shows)
CASES: dict[str, tuple[str, str]] = {
    "SelfSwitchStaysOnSourceDriver": ("TestBlockCopyFlags", "*ended by itself but the disk is on*"),
    "NoOpRebootDriver": ("test_reboot_boots_the_guest_again", "*to boot again*"),
    "PivotStaysOnSourceDriver": ("TestBlockCopyFlags", "*after the pivot the disk is on*not the copy*"),
    "CopyWritesNothingDriver": ("TestBlockCopyFlags", "*does not hold the source's content*"),
    "RevertRestoresNothingDriver": ("test_revert_restores_what_the_snapshot_held", "*after the revert*SHUTOFF*"),
    "ResizeLiesDriver": ("test_volume_resize", "*resized to 32 MiB, a fresh lookup*"),
    "DuplicateListingDriver": ("test_list_domains_and_records_agree", "*list_domains reports a domain twice*"),
    "DuplicateDefineTimesOutDriver": (
        "test_define_from_a_mapping_and_duplicate_name or test_identities_stay_unique_across_define",
        "*a duplicate define must raise OperationInvalidError or OperationFailedError*, got OperationTimeoutError*",
    ),
    "RecordsMemoryInKiBDriver": ("test_list_domains_and_records_agree", "*memory_bytes: domain_records says 65536*"),
    "RecordsDropTheLastDiskDriver": ("test_attach_and_detach", "*disks: domain_records says*"),
    "RecordsCountNoSnapshotDriver": ("test_snapshot_cycle", "*snapshot_count: domain_records says 0*says 1*"),
    "HostMemoryInKiBDriver": ("test_host_facts_hold_every_running_guest", "*the host reports 16777216 bytes*"),
    "EventsStopAfterResubscribeDriver": ("test_events_keep_coming_after_unsubscribe_and_resubscribe", "*no UNDEFINED*"),
    "IgnoresBandwidthDriver": ("test_bandwidth_shows_in_the_measured_progress_rate", "*faster than its old bandwidth*"),
    "SkipsInsideDriver": ("test_suspend_and_resume", "*raised Skipped*failure of the capability*"),
    "XfailsInsideDriver": ("test_suspend_and_resume", "*raised XFailed*failure of the capability*"),
    "ShallowCopiesAllDriver": ("test_shallow_copy_keeps_the_backing_chain", "*shallow copy must hold the top layer*"),
    "ReuseExtRecreatesDriver": ("test_reuse_ext_shallow", "*did not keep the destination*own backing*"),
    "RefusesDeclaredDriver": ("test_destroy_makes_it_shutoff", "*declares these capabilities, yet*NotSupportedError*"),
}

TWINS: dict[str, str] = {"SelfSwitchStaysOnSourceDriver": "SelfSwitchingCopyDriver"}
"""Broken driver -> its honest twin, where that is not the reference driver."""

__all__ = ["CASES", "TWINS", "SelfSwitchingCopyDriver", "SynchronousCopyDriver", *CASES]

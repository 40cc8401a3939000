"""Migration between two test nodes (issue 23): both halves of the protocol, simulated in time.

The destination's prepare defines the domain on its node, paused, with an image per copied disk
(same path, format and capacity; NON_SHARED_INC needs the backing image on the destination node
already). The source's perform moves memory (the domain's memory size) and the copied disks'
allocated data at the bandwidth (``settings.unlimited_rate_bytes`` when 0), reporting progress as
it goes, then writes the disks' data into the destination node's images. Finish resumes the
destination (or removes all prepare made); confirm stops the source (and undefines it with
UNDEFINE_SOURCE) or resumes it. The ticket names the destination node by its URI (the cookie), so
the source finds it in this process: both nodes live in one process, as in libvirt's test driver.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import attrs

from .._errors import InvalidArgumentError, OperationFailedError, OperationInvalidError
from .._flags import DomainState, LifecycleEventType, MigrateFlags
from .._models import (
    DiskInfo,
    DomainRef,
    DomainSpec,
    LifecycleEvent,
    MigrationDiskExport,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
)
from ._test_node import DomainData, Image, Node

if TYPE_CHECKING:
    from .._uri import URI

__all__ = ["TestMigration"]


@attrs.define
class _Progress:
    """One migration under way on a source domain."""

    memory_total: int
    disk_total: int
    rate: float
    started: float
    cancel: threading.Event = attrs.field(factory=threading.Event)
    phase: str = "setup"
    finished: float | None = None
    was_running: bool = True

    def info(self, now: float) -> MigrationInfo:
        moved = int(((self.finished or now) - self.started) * self.rate)
        disk_done = min(self.disk_total, moved)
        memory_done = min(self.memory_total, max(0, moved - self.disk_total))
        phase = self.phase
        if phase in ("storage", "memory"):
            phase = "storage" if moved < self.disk_total else "memory"
        return MigrationInfo(
            phase=phase,
            memory_total=self.memory_total,
            memory_processed=memory_done,
            memory_remaining=self.memory_total - memory_done,
            disk_total=self.disk_total,
            disk_processed=disk_done,
            disk_remaining=self.disk_total - disk_done,
            dirty_rate=0,
            expected_downtime_ms=0,
            downtime_ms=0 if phase == "completed" else None,
            elapsed_ms=int(((self.finished or now) - self.started) * 1000),
        )


def _event(d: DomainData, kind: LifecycleEventType, detail: str) -> LifecycleEvent:
    return LifecycleEvent(domain=d.name, uuid=d.uuid, type=kind, detail=detail)


class TestMigration:
    """The migration methods of :class:`~virtabs.drivers.test.TestDriver`."""

    __test__ = False

    _node: Node
    uri: URI
    _migrations: dict[str, _Progress]

    def _progress_table(self) -> dict[str, _Progress]:
        table = self.__dict__.get("_migrations")
        if table is None:
            table = self.__dict__["_migrations"] = {}
        return table

    # --- destination ------------------------------------------------------------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Define the domain here (paused, or shut off for OFFLINE) with an image per copied disk."""
        node = self._node
        created: list[str] = []
        with node.txn() as events:
            node.check_free(spec.name, spec.uuid)
            for disk in disks:
                if request.incremental and disk.backing_chain and disk.backing_chain[0] not in node.images:
                    raise OperationInvalidError(
                        f"disk {disk.target}: the destination lacks the backing image {disk.backing_chain[0]} "
                        "(NON_SHARED_INC copies the top layer only)"
                    )
            for disk in disks:
                if disk.path in node.images:
                    continue  # reused
                backing = disk.backing_chain[0] if request.incremental and disk.backing_chain else None
                capacity = disk.capacity_bytes or 1 << 30
                node.images[disk.path] = Image(disk.path, disk.format, capacity, 0, backing)
                created.append(disk.path)
            d = DomainData(spec=node.with_macs(spec), max_memory=spec.memory_bytes)
            node.add_domain(d)
            events.append(_event(d, LifecycleEventType.DEFINED, "migrated"))
            if not request.offline:
                d.set_state(DomainState.PAUSED, time.monotonic())
                events.append(_event(d, LifecycleEventType.STARTED, "migrated"))
        where = str(self.uri)
        return MigrationTicket(
            domain=d.ref,
            memory_uri=None if request.offline else f"{where}#memory",
            disks=tuple(MigrationDiskExport(disk.target, f"{where}#{disk.target}", disk.path) for disk in disks),
            cookie={"node": where, "created": "\n".join(created)},
        )

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Resume the received domain (unless PAUSED), or remove it and the images prepare created."""
        node = self._node
        with node.txn() as events:
            d = node.domains.get(ticket.domain.uuid)
            if not success:
                if d is not None:
                    if d.state.is_active:
                        d.set_state(DomainState.SHUTOFF, time.monotonic())
                        events.append(_event(d, LifecycleEventType.STOPPED, "failed"))
                    del node.domains[d.uuid]
                    events.append(_event(d, LifecycleEventType.UNDEFINED, "removed"))
                for path in filter(None, ticket.cookie.get("created", "").split("\n")):
                    node.images.pop(path, None)
                return None
            if d is None:
                raise OperationFailedError(f"the migrated domain {ticket.domain.name!r} is gone from the destination")
            if not request.offline and not request.flags & MigrateFlags.PAUSED:
                d.set_state(DomainState.RUNNING, time.monotonic())
                node.lease_ips(d)
                events.append(_event(d, LifecycleEventType.RESUMED, "migrated"))
            return d.ref

    # --- source ---------------------------------------------------------------------------------------

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """Move memory and the copied disks' data at the bandwidth; abortable; the source ends paused."""
        from .test import get_node

        node = self._node
        dest = get_node(ticket.cookie["node"])
        with node.lock:
            d = node.domain(dom)
            sources = {t: node.images[p] for t, p in ((x.target, _disk_path(d, x.target)) for x in ticket.disks)}
            disk_total = sum(img.allocation for img in sources.values())
            rate = float(request.bandwidth_bytes or node.unlimited_rate)
            progress = _Progress(d.spec.memory_bytes, disk_total, rate, time.monotonic())
            progress.was_running = d.state == DomainState.RUNNING
            table = self._progress_table()
            pending = table.get(dom.uuid)
            if pending is not None and pending.phase == "setup" and pending.cancel.is_set():
                progress.cancel.set()  # aborted before it began
            table[dom.uuid] = progress
            progress.phase = "storage" if disk_total else "memory"
            if not request.live and progress.was_running:
                d.set_state(DomainState.PAUSED, time.monotonic())
        total = (progress.memory_total + disk_total) / rate
        if progress.cancel.wait(total):
            progress.phase = "cancelled"
            progress.finished = time.monotonic()
            self._resume_source(dom, progress)
            raise OperationFailedError(f"migration of domain {dom.name!r} was aborted")
        with node.txn() as events:
            d = node.domain(dom)
            if d.state == DomainState.RUNNING:
                d.set_state(DomainState.PAUSED, time.monotonic())
                events.append(_event(d, LifecycleEventType.SUSPENDED, "migrated"))
        with dest.txn():
            for export in ticket.disks:
                src = sources[export.target]
                img = dest.images.get(export.path)
                if img is None:
                    raise OperationFailedError(f"disk {export.target}: the destination image {export.path} is gone")
                img.allocation = src.allocation
                img.capacity = src.capacity
        progress.phase = "completed"
        progress.finished = time.monotonic()

    def _resume_source(self, dom: DomainRef, progress: _Progress) -> None:
        with self._node.txn() as events:
            d = self._node.domains.get(dom.uuid)
            if d is not None and progress.was_running and d.state == DomainState.PAUSED:
                d.set_state(DomainState.RUNNING, time.monotonic())
                events.append(_event(d, LifecycleEventType.RESUMED, "migration failed"))

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """Progress of the migration of ``dom`` (kept after it ended, until the next one)."""
        progress = self._progress_table().get(dom.uuid)
        return None if progress is None else progress.info(time.monotonic())

    def migrate_abort(self, dom: DomainRef) -> None:
        """Cancel the migration of ``dom`` (also one about to begin)."""
        table = self._progress_table()
        progress = table.get(dom.uuid)
        if progress is None or progress.phase in ("completed", "failed", "cancelled"):
            progress = table[dom.uuid] = _Progress(0, 0, 1.0, time.monotonic())
        progress.cancel.set()

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Success: stop the source (undefine it with UNDEFINE_SOURCE). Failure: resume it."""
        progress = self._progress_table().get(dom.uuid)
        if not success:
            if progress is not None:
                self._resume_source(dom, progress)
            return
        with self._node.txn() as events:
            d = self._node.domains.get(dom.uuid)
            if d is None:
                return
            if d.state.is_active:
                self._node.fail_jobs(d, events, f"domain '{d.name}' migrated")
                d.set_state(DomainState.SHUTOFF, time.monotonic())
                events.append(_event(d, LifecycleEventType.STOPPED, "migrated"))
            if request.flags & MigrateFlags.UNDEFINE_SOURCE:
                del self._node.domains[d.uuid]
                events.append(_event(d, LifecycleEventType.UNDEFINED, "migrated"))


def _disk_path(d: DomainData, target: str) -> str:
    disk = d.disk(target)
    if disk is None:
        raise InvalidArgumentError(f"domain {d.name!r} has no disk {target}")
    return disk.path

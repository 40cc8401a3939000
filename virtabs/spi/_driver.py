"""The :class:`Driver` base class and :class:`ConnectOptions` (re-exported by :mod:`virtabs.spi`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs

from .._capabilities import Capabilities
from .._config import Credentials
from .._errors import NotSupportedError
from .._models import (
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobInfo,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    DomainStatus,
    Event,
    HostInfo,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NetworkInfo,
    NicInfo,
    PoolInfo,
    Snapshot,
    VolumeInfo,
)
from .._uri import URI

__all__ = ["ConnectOptions", "Driver", "EventSink"]

EventSink = Callable[[Event], None]


def _discard(_event: Event) -> None:
    return None


@attrs.frozen
class ConnectOptions:
    """What :func:`virtabs.open` hands a driver besides the URI."""

    credentials: Credentials | None = None
    readonly: bool = False
    timeout: float | None = None
    """Seconds any single host call may take; ``None`` means the driver's default."""
    event_sink: EventSink = _discard


class Driver:
    """Base class of every driver. One instance serves one connection.

    Class attributes describe the driver without instantiating it (this is
    what ``virtabs drivers`` reads); instance methods do the work.
    """

    name: ClassVar[str] = ""
    """The URI scheme (the entry-point name)."""
    description: ClassVar[str] = ""
    """One line for ``virtabs drivers``."""
    capabilities: ClassVar[Capabilities] = Capabilities.of()
    """What this driver can do, before connecting."""
    uri_examples: ClassVar[tuple[str, ...]] = ()
    """Example URIs for documentation."""
    install_hint: ClassVar[str] = ""
    """How to install what the driver needs, for DriverUnavailableError."""
    local_reads: ClassVar[bool] = False
    """True when reading a host is work on this machine (files, local sockets), not network round trips.

    The inventory then reads such hosts one after another instead of on parallel threads: threads
    only add contention for the interpreter lock when nothing waits on a network (measured: 50 QEMU
    embed roots took four times as long on 16 threads as on one).
    """

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        self.uri = uri
        self.options = options

    # --- connection -------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Deliver an event to the connection's subscribers (any thread)."""
        self.options.event_sink(event)

    def connection_capabilities(self) -> Capabilities:
        """The capabilities of this connection; refine :attr:`capabilities` after connecting."""
        return type(self).capabilities

    def close(self) -> None:
        """Release everything the connection holds. Called once."""

    def start_events(self) -> None:
        """The first subscriber arrived: start listening to the host if that costs anything."""

    def stop_events(self) -> None:
        """The last subscriber left."""

    def host_info(self) -> HostInfo:
        """Facts about the host."""
        raise self._unsupported("host_info")

    # --- domains: lookups and reads (no capability needed) ------------------

    def list_domains(self) -> list[DomainRef]:
        """Every domain, defined or running, in one call."""
        raise self._unsupported("list_domains")

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """A domain by name or UUID; raise NoDomainError when there is none.

        The default searches :meth:`list_domains`; override it when the host can look one up directly.
        """
        from ._toolkit import find_domain

        return find_domain(self.list_domains(), name_or_uuid)

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State, vCPUs, memory and CPU time of a domain."""
        raise self._unsupported("domain_info")

    def domain_status(self, dom: DomainRef) -> DomainStatus:
        """The domain's state and its active block jobs, in one call if the host allows.

        The gate asks this once before an operation whose rules depend on state
        or jobs. The default combines :meth:`domain_info` and :meth:`block_jobs`
        (jobs only for an active domain of a driver with block jobs); override it
        when one native query answers both.
        """
        from ._operations import ANY_BLOCK_JOB

        state = self.domain_info(dom).state
        if not state.is_active or not self.connection_capabilities().supported & ANY_BLOCK_JOB:
            return DomainStatus(state)
        return DomainStatus(state, tuple(self.block_jobs(dom)))

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The persistent definition of a domain."""
        raise self._unsupported("domain_spec")

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """The domain's disks as they are now (after a pivot: the copy)."""
        raise self._unsupported("disks")

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """The domain's network interfaces."""
        raise self._unsupported("nics")

    def autostart(self, dom: DomainRef) -> bool | None:
        """Whether the domain starts with the host; None when the driver has no such notion."""
        return None

    def inventory(self) -> list[DomainRecord]:
        """Every domain with everything an inventory wants.

        The generic version below costs several calls per domain; drivers
        that can fetch in bulk override it (the contract kit counts calls).
        """
        from .._inventory_fallback import records_one_by_one

        return records_one_by_one(self)

    # --- domain lifecycle ---------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Define (persist) a new domain. Capability ``domain.define``."""
        raise self._unsupported("define_domain")

    def undefine(self, dom: DomainRef) -> None:
        """Remove an inactive domain's definition. Capability ``domain.define``."""
        raise self._unsupported("undefine")

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Start a defined domain. Capability ``domain.start``."""
        raise self._unsupported("start")

    def shutdown(self, dom: DomainRef) -> None:
        """Ask the guest to power off and return; the public layer waits when the caller asked it to.

        Capability ``domain.shutdown``.
        """
        raise self._unsupported("shutdown")

    def destroy(self, dom: DomainRef) -> None:
        """Power off at once. Capability ``domain.destroy``."""
        raise self._unsupported("destroy")

    def reboot(self, dom: DomainRef) -> None:
        """Reboot the guest. Capability ``domain.reboot``."""
        raise self._unsupported("reboot")

    def suspend(self, dom: DomainRef) -> None:
        """Pause the vCPUs. Capability ``domain.suspend``."""
        raise self._unsupported("suspend")

    def resume(self, dom: DomainRef) -> None:
        """Resume paused vCPUs. Capability ``domain.suspend``."""
        raise self._unsupported("resume")

    def save(self, dom: DomainRef, path: str) -> None:
        """Save memory state to ``path`` and stop. Capability ``domain.save``."""
        raise self._unsupported("save")

    def restore(self, path: str) -> DomainRef:
        """Start a domain from a saved file. Capability ``domain.save``."""
        raise self._unsupported("restore")

    # --- managed save (issue 27) ----------------------------------------------

    def managed_save(self, dom: DomainRef) -> None:
        """Save the running (or paused) domain where the host keeps it, and stop it.

        The next :meth:`start` resumes that state (paused when asked to) and discards it;
        until then the domain is shut off with a managed save image. Capability
        ``domain.managed_save``.
        """
        raise self._unsupported("managed_save")

    def has_managed_save(self, dom: DomainRef) -> bool:
        """Whether the domain has a managed save image. Capability ``domain.managed_save``."""
        raise self._unsupported("has_managed_save")

    def managed_save_remove(self, dom: DomainRef) -> None:
        """Discard the managed save image of a shut-off domain (none there: nothing to do, as in libvirt).

        Capability ``domain.managed_save``.
        """
        raise self._unsupported("managed_save_remove")

    # --- snapshots ------------------------------------------------------------

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """Capability ``domain.snapshot``."""
        raise self._unsupported("create_snapshot")

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """Capability ``domain.snapshot``."""
        raise self._unsupported("list_snapshots")

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """Capability ``domain.snapshot``."""
        raise self._unsupported("revert_to_snapshot")

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """Capability ``domain.snapshot``."""
        raise self._unsupported("delete_snapshot")

    # --- devices --------------------------------------------------------------

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """Hot-plug (or, inactive, add) a disk. Capability ``domain.disk_hotplug``."""
        raise self._unsupported("attach_disk")

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """Remove a disk by target. Capability ``domain.disk_hotplug``."""
        raise self._unsupported("detach_disk")

    # --- block jobs -----------------------------------------------------------

    def block_pull(self, dom: DomainRef, disk: str, base: str | None, bandwidth_bytes: int) -> None:
        """Start a pull job (``base`` None: flatten). Capability ``block.pull``."""
        raise self._unsupported("block_pull")

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Start a two-phase copy job. Capability ``block.copy`` (and its sub-capabilities)."""
        raise self._unsupported("block_copy")

    def block_commit(self, dom: DomainRef, disk: str, request: BlockCommitRequest) -> None:
        """Start a commit job. Capability ``block.commit``."""
        raise self._unsupported("block_commit")

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """The job on ``disk``, or None. Must never report ``cur == end`` before ready."""
        raise self._unsupported("block_job_info")

    def block_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        """Every active job of the domain. The generic version asks disk by disk."""
        jobs = []
        for d in self.disks(dom):
            info = self.block_job_info(dom, d.target)
            if info is not None:
                jobs.append(info)
        return jobs

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Cancel the job (a copy stays on the source) or pivot a ready one (the disk names the copy).

        May return before the job has ended; the public layer waits (polling
        :meth:`block_job_info` until None) unless the caller asked for ASYNC.
        The gate has checked that a job exists and, for a pivot, that it is ready.
        """
        raise self._unsupported("block_job_abort")

    def block_job_set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        """Change a running job's bandwidth (bytes/s, 0 = unlimited)."""
        raise self._unsupported("block_job_set_speed")

    # --- migration (issue 23): the destination's half, then the source's -------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Destination: make ``spec`` ready to receive (paused, waiting for the memory stream; for each
        disk of ``disks`` an image of its size and format, exported writable) and name the channels.

        An offline request only defines ``spec``. Whatever this creates, :meth:`migrate_finish` with
        ``success=False`` removes again. Capability ``domain.migrate``.
        """
        raise self._unsupported("migrate_prepare")

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """Source: mirror the disks of ``request.disks`` into the ticket's exports, migrate memory once
        every mirror is ready, end the mirrors consistently at the switch; returns once the destination
        has everything (the source then stays stopped until :meth:`migrate_confirm`).

        Blocks; :meth:`migrate_abort` from another thread ends it early (OperationFailedError "aborted").
        On any failure it leaves the source as it found it (running) before raising.
        """
        raise self._unsupported("migrate_perform")

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """Source: progress of the migration under way on ``dom``, or None."""
        raise self._unsupported("migrate_job_info")

    def migrate_abort(self, dom: DomainRef) -> None:
        """Source: cancel the migration under way on ``dom`` (its :meth:`migrate_perform` then raises).
        Capability ``domain.migrate.abort``."""
        raise self._unsupported("migrate_abort")

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Destination: after success resume the domain (unless PAUSED) and return it; after a failure
        remove all that :meth:`migrate_prepare` made (no process, no definition) and return None."""
        raise self._unsupported("migrate_finish")

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Source: after success stop the source (and undefine it with UNDEFINE_SOURCE; without it the
        definition stays, shut off, which ``domain.migrate.keep_source`` declares); after a failure make
        sure it runs again as before."""
        raise self._unsupported("migrate_confirm")

    # --- storage --------------------------------------------------------------

    def list_storage_pools(self) -> list[PoolInfo]:
        """Capability ``storage.pool``."""
        raise self._unsupported("list_storage_pools")

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """Capability ``storage.pool``; NoStoragePoolError when missing."""
        raise self._unsupported("lookup_storage_pool")

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Capability ``storage.pool``."""
        raise self._unsupported("list_volumes")

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """Capability ``storage.pool``; NoStorageVolumeError when missing."""
        raise self._unsupported("lookup_volume")

    def create_volume(self, pool: str, name: str, capacity_bytes: int, format: str, backing: str | None) -> VolumeInfo:
        """Capability ``storage.volume``."""
        raise self._unsupported("create_volume")

    def delete_volume(self, pool: str, name: str) -> None:
        """Capability ``storage.volume``."""
        raise self._unsupported("delete_volume")

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """Capability ``storage.volume``."""
        raise self._unsupported("resize_volume")

    # --- networks (issue 25) ---------------------------------------------------

    def list_networks(self) -> list[NetworkInfo]:
        """Capability ``network``: every network of the host, with its attachments, in a constant number of
        host calls whatever the number of networks and NICs."""
        raise self._unsupported("list_networks")

    def lookup_network(self, name_or_id: str) -> NetworkInfo:
        """Capability ``network``: a network by name or id; raise NoNetworkError when there is none.

        The default searches :meth:`list_networks`; override it when the host can look one up directly.
        """
        from ._toolkit import find_network

        return find_network(self.list_networks(), name_or_id)

    def inventory_networks(self, records: list[DomainRecord]) -> list[NetworkInfo]:
        """Capability ``network``: the networks for an inventory that has just read ``records`` (this
        connection's :meth:`inventory`, a moment ago).

        The default is :meth:`list_networks`. A driver whose listing reads every guest's devices again to
        find the attachments (vSphere) lists the networks alone here and fills ``attachments`` from
        ``records`` with :func:`networks_with_attachments`, which costs no host call.
        """
        return self.list_networks()

    # --- helpers --------------------------------------------------------------

    def _unsupported(self, method: str) -> NotSupportedError:
        return NotSupportedError(f"the {self.name or type(self).__name__} driver does not implement {method}")


#: Methods that are part of the SPI (the contract kit checks subclass signatures against these).
SPI_METHODS: tuple[str, ...] = tuple(
    name
    for name, value in vars(Driver).items()
    if callable(value) and not name.startswith("_") and name not in ("emit",)
)

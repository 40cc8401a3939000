"""Live migration for the ``hyperv`` driver (issue 23): ``Move-VM -DestinationHost`` mapped onto the four steps.

``dest`` is a ``hyperv://`` connection to the destination host; the source runs ``Move-VM`` with the
destination's computer name (``Get-VMHost``'s ``ComputerName``), so both hosts must have live migration
enabled towards each other (``Enable-VMMigration``, authentication set up: CredSSP or Kerberos
delegation), as ``Move-VM`` requires. Hyper-V moves the VM in that one command, so:

1. destination ``migrate_prepare``: checks no VM with this VMId is here; names its computer name and,
   for NON_SHARED_DISK, its virtual hard disk folder (``VirtualHardDiskPath``) as the storage
   destination; creates nothing;
2. source ``migrate_perform``: ``Move-VM -DestinationHost NAME`` (``-IncludeStorage
   -DestinationStoragePath PATH`` for NON_SHARED_DISK), waited for; a running VM is moved live;
3. destination ``migrate_finish``: reads the VM back by VMId; after a failure there is nothing to discard
   (Move-VM leaves the VM on the source when it fails);
4. source ``migrate_confirm``: nothing: the VM (and with -IncludeStorage its files) left the source.

Refused with NotSupportedError before the host is asked: a running VM without LIVE, PAUSED,
NON_SHARED_INC (Move-VM copies whole disks). Not declared, so the core refuses them before this module
runs (issue 27): a ``bandwidth`` or ``max_downtime`` (Move-VM has neither knob), cancelling
(``domain.migrate.abort``: Move-VM cannot be cancelled from the client), and a migration without
UNDEFINE_SOURCE (``domain.migrate.keep_source``: Move-VM always removes the VM from the source host).
"""

from __future__ import annotations

from typing import Any

from virtabs.spi import (
    DiskInfo,
    DomainRef,
    DomainSpec,
    InvalidArgumentError,
    MigrateFlags,
    MigrationDiskExport,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NoDomainError,
    NotSupportedError,
    OneCommandMigrations,
    OperationFailedError,
    OperationInvalidError,
)

from ._psjson import as_int, as_str

__all__ = ["HypervMigration"]


def _basename(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


class HypervMigration:
    """The migration methods of :class:`~virtabs_hyperv.driver.HypervDriver`."""

    _host: Any
    _run: Any
    _pool_dir: Any

    def _migrations(self) -> OneCommandMigrations:
        """The last Move-VM this connection ran of each domain."""
        log: OneCommandMigrations | None = self.__dict__.get("_migration_log")
        if log is None:
            log = self.__dict__["_migration_log"] = OneCommandMigrations()
        return log

    def _computer_name(self) -> str:
        return as_str((self._host or {}).get("Name"))

    # --- destination ------------------------------------------------------------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Check the VMId is free here; name this host and (NON_SHARED_DISK) its VHD folder. Creates nothing."""
        what = f"migration of domain {spec.name!r} to host {self._computer_name()}"
        if spec.uuid is None:
            raise InvalidArgumentError(f"{what}: the spec carries no UUID")
        if request.incremental:
            raise NotSupportedError(f"{what}: Move-VM -IncludeStorage copies whole disks (NON_SHARED_INC)")
        if request.flags & MigrateFlags.PAUSED:
            raise NotSupportedError(f"{what}: Move-VM leaves the VM in its state (PAUSED is not mapped)")
        try:
            self._run("vm.get", {"id": spec.uuid}, what, NoDomainError)
        except NoDomainError:
            pass
        else:
            raise OperationInvalidError(f"{what}: a virtual machine with VMId {spec.uuid} is already on this host")
        name = self._computer_name()
        if not name:
            raise OperationFailedError(f"{what}: Get-VMHost reported no computer name")
        storage = self._pool_dir() if request.copy_storage else ""
        return MigrationTicket(
            domain=DomainRef(spec.name, spec.uuid),
            memory_uri=f"hyperv-live-migration:{name}",
            disks=tuple(
                MigrationDiskExport(d.target, f"hyperv-live-migration:{name}", f"{storage}\\{_basename(d.path)}")
                for d in disks
            ),
            cookie={"host": name, "storage": storage},
        )

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Success: the VM must now be here (by VMId). Failure: nothing was created here."""
        if not success:
            return None
        what = f"migration of domain {ticket.domain.name!r} to host {self._computer_name()}"
        try:
            v = self._run("vm.get", {"id": ticket.domain.uuid}, what, NoDomainError)
        except NoDomainError:
            raise OperationFailedError(f"{what}: Move-VM ended but the VM is not on the destination") from None
        return DomainRef(as_str(v.get("Name")) or ticket.domain.name, ticket.domain.uuid)

    # --- source ---------------------------------------------------------------------------------------

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """Move-VM to the ticket's host (with -IncludeStorage for NON_SHARED_DISK); blocks until it ends."""
        what = f"migration of domain {dom.name!r} to host {ticket.cookie['host']}"
        v = self._run("vm.get", {"id": dom.uuid}, what, NoDomainError)
        if not request.live:
            raise NotSupportedError(f"{what}: Move-VM moves a running VM live (pass LIVE)")
        memory = as_int(v.get("Assigned"), 0) or as_int(v.get("Mem"), 0) or 0
        args = {"id": dom.uuid, "host": ticket.cookie["host"], "storage": ticket.cookie.get("storage", "")}
        with self._migrations().running(dom.uuid, "storage" if request.copy_storage else "memory", memory):
            self._run("vm.move", args, what, NoDomainError)

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """The phase of the last Move-VM of ``dom`` (Move-VM reports no byte counts to the client)."""
        return self._migrations().info(dom.uuid)

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Nothing to do: the VM left the source (or, after a failure, Move-VM left it where it was)."""

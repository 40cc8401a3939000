""":class:`Domain`: reads, lifecycle, snapshots and devices of one domain.

Block jobs live in :mod:`virtabs._blockjob` (the :class:`BlockJobMethods` Domain
inherits, and :class:`BlockJob`). Every method checks its arguments with
:mod:`virtabs._rules`, then passes the gate with its row of the operation table.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import attrs

from . import _rules
from ._blockjob import BlockJobMethods
from ._capabilities import Capability
from ._errors import InvalidArgumentError, OperationInvalidError, OperationTimeoutError, quote
from ._flags import DomainState, MigrateFlags
from ._models import DiskInfo, DiskSpec, DomainInfo, DomainRef, DomainSpec, NicInfo, Snapshot
from .spi import OPERATIONS, poll_until

if TYPE_CHECKING:
    from ._connection import Connection
    from ._migration import MigrationJob

__all__ = ["Domain"]

ShutdownFallback = Literal["raise", "destroy"]


class Domain(BlockJobMethods):
    """A handle on one domain of a connection. Cheap; holds only its name and UUID."""

    def __init__(self, conn: Connection, ref: DomainRef) -> None:
        self._conn = conn
        self._ref = ref

    @property
    def name(self) -> str:
        """The domain's name."""
        return self._ref.name

    @property
    def uuid(self) -> str:
        """The domain's UUID (canonical lower-case form)."""
        return self._ref.uuid

    @property
    def connection(self) -> Connection:
        """The connection this handle belongs to."""
        return self._conn

    def __repr__(self) -> str:
        return f"<Domain name={self.name!r} uuid={self.uuid!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and other._conn is self._conn and other._ref == self._ref

    def __hash__(self) -> int:
        return hash((id(self._conn), self._ref))

    def _what(self, action: str) -> str:
        return f"{action} of domain {quote(self.name)}"

    # --- reads ----------------------------------------------------------------

    def info(self) -> DomainInfo:
        """State, vCPUs, memory and CPU time; a shut-off domain with a managed save image has
        ``state_reason="saved"`` (libvirt's "shut off (saved)")."""
        gate = self._conn._gate
        info = gate.read(OPERATIONS["domain_info"], lambda: self._what("info"), gate.driver.domain_info, self._ref)
        if (
            info.state == DomainState.SHUTOFF
            and info.state_reason is None
            and Capability.DOMAIN_MANAGED_SAVE in gate.capabilities.supported
            and self.has_managed_save()
        ):
            info = attrs.evolve(info, state_reason="saved")
        return info

    def state(self) -> DomainState:
        """The current :class:`DomainState` (from ``domain_status``: a driver's cheapest state read)."""
        gate = self._conn._gate
        op = OPERATIONS["domain_status"]
        return gate.read(op, lambda: self._what("state"), gate.driver.domain_status, self._ref).state

    def spec(self) -> DomainSpec:
        """The persistent definition."""
        gate = self._conn._gate
        return gate.read(
            OPERATIONS["domain_spec"], lambda: self._what("definition"), gate.driver.domain_spec, self._ref
        )

    def disks(self) -> list[DiskInfo]:
        """The disks as they are now (after a pivot: the copy)."""
        gate = self._conn._gate
        return gate.read(OPERATIONS["disks"], lambda: self._what("disk listing"), gate.driver.disks, self._ref)

    def nics(self) -> list[NicInfo]:
        """The network interfaces."""
        gate = self._conn._gate
        return gate.read(OPERATIONS["nics"], lambda: self._what("interface listing"), gate.driver.nics, self._ref)

    # --- lifecycle --------------------------------------------------------------

    def start(self, paused: bool = False) -> None:
        """Start the domain (with ``paused=True``, its vCPUs stay stopped: that needs ``domain.suspend``).

        A domain with a managed save image resumes from it (and the image is discarded), as in libvirt.
        """
        extra = (Capability.DOMAIN_SUSPEND,) if paused else ()
        with self._conn._gate(OPERATIONS["start"], self._what("start"), dom=self._ref, extra=extra) as call:
            call.driver.start(self._ref, bool(paused))

    def shutdown(self, timeout: float | None = None, *, on_timeout: ShutdownFallback = "raise") -> None:
        """Ask the guest to power off.

        Without ``timeout`` this returns once the guest was asked. With one, it
        waits that long for the domain to stop; then ``on_timeout="raise"``
        raises OperationTimeoutError (the guest keeps running) and
        ``on_timeout="destroy"`` powers it off hard.
        """
        timeout = _rules.require_timeout(timeout)
        if on_timeout not in ("raise", "destroy"):
            raise InvalidArgumentError(f"on_timeout must be 'raise' or 'destroy', got {quote(on_timeout)}")
        what = self._what("shutdown")
        with self._conn._gate(OPERATIONS["shutdown"], what, dom=self._ref) as call:
            call.driver.shutdown(self._ref)
        if timeout is None:
            return
        try:
            poll_until(
                lambda: not self.state().is_active,
                timeout=timeout,
                what=f"{what}: domain {quote(self.name)} not shut off",
                interval=0.05,
            )
        except OperationTimeoutError:
            if on_timeout == "raise":
                raise
            self.destroy()

    def destroy(self) -> None:
        """Power off at once (like pulling the plug)."""
        with self._conn._gate(OPERATIONS["destroy"], self._what("destroy"), dom=self._ref) as call:
            call.driver.destroy(self._ref)

    def reboot(self) -> None:
        """Reboot the guest."""
        with self._conn._gate(OPERATIONS["reboot"], self._what("reboot"), dom=self._ref) as call:
            call.driver.reboot(self._ref)

    def suspend(self) -> None:
        """Pause the vCPUs (memory stays)."""
        with self._conn._gate(OPERATIONS["suspend"], self._what("suspend"), dom=self._ref) as call:
            call.driver.suspend(self._ref)

    def resume(self) -> None:
        """Resume paused vCPUs."""
        with self._conn._gate(OPERATIONS["resume"], self._what("resume"), dom=self._ref) as call:
            call.driver.resume(self._ref)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save memory state to ``path`` and stop; refused while a block copy runs."""
        path = _rules.require_host_path(os.fspath(path), "save file")
        with self._conn._gate(OPERATIONS["save"], self._what("save"), dom=self._ref) as call:
            call.driver.save(self._ref, path)

    def undefine(self) -> None:
        """Remove the definition of an inactive domain; refused while it has a managed save image (as libvirt
        refuses it without VIR_DOMAIN_UNDEFINE_MANAGED_SAVE): remove that first."""
        what = self._what("undefine")
        with self._conn._gate(OPERATIONS["undefine"], what, dom=self._ref) as call:
            if (
                Capability.DOMAIN_MANAGED_SAVE in self._conn._gate.capabilities.supported
                and call.driver.has_managed_save(self._ref)
            ):
                raise OperationInvalidError(
                    f"{what}: domain {self.name!r} has a managed save image; remove it first (managed_save_remove)"
                )
            call.driver.undefine(self._ref)

    # --- managed save ------------------------------------------------------------------
    # libvirt's virDomainManagedSave, virDomainHasManagedSaveImage and virDomainManagedSaveRemove.

    def managed_save(self) -> None:
        """Save the running (or paused) domain where the host keeps it, and stop it; :meth:`start` resumes it.

        Refused on a transient domain and while a block copy runs. Until the next start the domain is shut
        off with ``info().state_reason == "saved"``.
        """
        with self._conn._gate(OPERATIONS["managed_save"], self._what("managed save"), dom=self._ref) as call:
            call.driver.managed_save(self._ref)

    def has_managed_save(self) -> bool:
        """Whether the domain has a managed save image (the next start resumes it)."""
        gate = self._conn._gate
        op = OPERATIONS["has_managed_save"]
        return bool(gate.read(op, lambda: self._what("managed save query"), gate.driver.has_managed_save, self._ref))

    def managed_save_remove(self) -> None:
        """Discard the managed save image of a shut-off domain (the next start boots); none there: no-op."""
        what = self._what("managed save removal")
        with self._conn._gate(OPERATIONS["managed_save_remove"], what, dom=self._ref) as call:
            call.driver.managed_save_remove(self._ref)

    # --- snapshots ------------------------------------------------------------------

    def create_snapshot(self, name: str) -> Snapshot:
        """Take a snapshot called ``name``; refused while a block copy runs."""
        _rules.require_name(name, "snapshot name")
        what = self._what(f"snapshot {quote(name)}")
        with self._conn._gate(OPERATIONS["create_snapshot"], what, dom=self._ref) as call:
            return call.driver.create_snapshot(self._ref, name)

    def list_snapshots(self) -> list[Snapshot]:
        """The domain's snapshots, oldest first."""
        with self._conn._gate(OPERATIONS["list_snapshots"], self._what("snapshot listing")) as call:
            return call.driver.list_snapshots(self._ref)

    def revert_to_snapshot(self, name: str) -> None:
        """Go back to snapshot ``name``; refused while a block copy runs."""
        _rules.require_lookup_name(name, "snapshot name")
        what = self._what(f"revert to snapshot {quote(name)}")
        with self._conn._gate(OPERATIONS["revert_to_snapshot"], what, dom=self._ref) as call:
            call.driver.revert_to_snapshot(self._ref, name)

    def delete_snapshot(self, name: str) -> None:
        """Delete snapshot ``name``."""
        _rules.require_lookup_name(name, "snapshot name")
        what = self._what(f"delete of snapshot {quote(name)}")
        with self._conn._gate(OPERATIONS["delete_snapshot"], what) as call:
            call.driver.delete_snapshot(self._ref, name)

    # --- devices ---------------------------------------------------------------------

    def attach_disk(self, disk: DiskSpec) -> None:
        """Attach a disk (hot-plug when running)."""
        if not isinstance(disk, DiskSpec):
            raise InvalidArgumentError("attach_disk needs a DiskSpec")
        _rules.require_host_path(disk.path, f"path of disk {quote(disk.target)}")
        what = self._what(f"attach of disk {quote(disk.target)}")
        op = OPERATIONS["attach_disk"]
        self._conn._gate.check(op, what)
        if any(d.target == disk.target for d in self.disks()):
            raise InvalidArgumentError(f"{what}: target {quote(disk.target)} is already in use")
        with self._conn._gate(op, what) as call:
            call.driver.attach_disk(self._ref, disk)

    def detach_disk(self, target: str) -> None:
        """Detach the disk ``target``; refused while that disk is in a block copy."""
        what = self._what(f"detach of disk {quote(target)}")
        op = OPERATIONS["detach_disk"]
        self._conn._gate.check(op, what)
        info = _rules.find_disk(self.disks(), target, what, self.name)
        with self._conn._gate(op, what, dom=self._ref, disk=info.target) as call:
            call.driver.detach_disk(self._ref, info.target)

    # --- migration (issue 23) ---------------------------------------------------------------------

    def migrate(
        self,
        dest: Connection | str,
        *,
        flags: MigrateFlags | int = MigrateFlags.LIVE,
        bandwidth: int = 0,
        max_downtime: int | None = None,
        disks: list[str] | tuple[str, ...] | None = None,
    ) -> MigrationJob:
        """Move this domain to ``dest`` (an open Connection of the same driver, or a URI); returns the job.

        ``flags`` are libvirt's ``VIR_MIGRATE_*`` (:class:`MigrateFlags`); ``bandwidth`` is MiB/s (0: the
        hypervisor's default), ``max_downtime`` milliseconds; ``disks`` chooses which disks
        NON_SHARED_DISK/NON_SHARED_INC copy (default: every writable one). Every rule, and both
        connections' capabilities, are checked before either host is touched; the steps then run on a
        thread: ``job.wait()`` returns the domain on the destination, ``job.abort()`` cancels.

        The source's declaration decides what else may be asked: a non-zero ``bandwidth``
        (``domain.migrate.bandwidth``), a ``max_downtime`` (``domain.migrate.max_downtime``),
        ``job.abort()`` (``domain.migrate.abort``), and migrating a persistent domain without
        UNDEFINE_SOURCE, after which the source keeps its definition shut off
        (``domain.migrate.keep_source``); each is refused with NotSupportedError where not declared.
        See ``docs/migration.md``.
        """
        from ._migration import start_migration

        return start_migration(self, dest, flags=flags, bandwidth=bandwidth, max_downtime=max_downtime, disks=disks)

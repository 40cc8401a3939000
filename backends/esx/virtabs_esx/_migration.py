"""vMotion for the ``vpx`` driver (issue 23): ``RelocateVM_Task`` mapped onto the four migration steps.

What ``dest`` means: another ``vpx://`` connection to the **same vCenter** (same ``about.instanceUuid``)
whose path names the destination: a host (``vpx://vc/DC0/Cluster/esx2``), or a cluster/compute resource
(its first host). With a path naming no host (a datacenter or the whole vCenter) the first host in scope is
the destination. vCenter moves the VM itself, from one task started by the source, so:

1. destination ``migrate_prepare``: resolves the destination host and its compute resource's root resource
   pool, checks the VM is in this vCenter's inventory; creates nothing (the ticket carries the morefs).
2. source ``migrate_perform``: ``RelocateVM_Task(spec={host, pool})`` and waits for it (vMotion is always
   live: the guest keeps running). Cancelling it (``CancelTask``, ``domain.migrate.abort``) is not
   declared: vcsim 0.24.2's tasks have no CancelTask and its RelocateVM_Task ends at once, so no test
   here could show a cancelled vMotion leaving the VM on its source.
3. destination ``migrate_finish``: success reads the VM back (it must now run on the destination host);
   failure has nothing to discard (vCenter rolls a failed vMotion back itself).
4. source ``migrate_confirm``: nothing to stop or undefine: the VM is one object that moved; with
   UNDEFINE_SOURCE or without, no definition is left on the source host.

Refused (NotSupportedError, in prepare, before the task): a migration that is not LIVE (vMotion cannot
pause the guest for the copy), PAUSED, and NON_SHARED_* (storage vMotion to another datastore is not
mapped yet). Not declared, so the core refuses them first (issue 27): a bandwidth or max_downtime
(vMotion has neither knob) and a migration without UNDEFINE_SOURCE (``domain.migrate.keep_source``: the
one VM moves, no definition stays on the source host). A standalone ``esx://`` host cannot
vMotion without a vCenter: that driver does not declare ``domain.migrate``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from virtabs.spi import (
    DiskInfo,
    DomainRef,
    DomainSpec,
    InvalidArgumentError,
    MigrateFlags,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NotSupportedError,
    OperationFailedError,
    OperationInvalidError,
)

if TYPE_CHECKING:
    from virtabs.spi import URI

__all__ = ["VpxMigration"]


class _Relocation:
    """One vMotion under way on a source VM: its task, its phase, when it started and ended."""

    def __init__(self, memory_total: int) -> None:
        self.memory_total = memory_total
        self.task: Any = None
        self.phase = "setup"
        self.progress = 0
        self.started = time.monotonic()
        self.finished: float | None = None

    def info(self) -> MigrationInfo:
        """The progress as vCenter reports it (a task percentage, scaled onto the VM's memory)."""
        done = self.memory_total if self.phase == "completed" else self.memory_total * self.progress // 100
        return MigrationInfo(
            phase=self.phase,
            memory_total=self.memory_total,
            memory_processed=done,
            memory_remaining=self.memory_total - done,
            elapsed_ms=int(((self.finished or time.monotonic()) - self.started) * 1000),
        )


class VpxMigration:
    """The migration methods of :class:`~virtabs_esx.driver.VpxDriver`."""

    uri: URI
    _vim: Any
    _root: Any
    _session: Any
    _errors: Any
    _what: str
    _vm: Any

    def _relocations(self) -> dict[str, _Relocation]:
        table = self.__dict__.get("_vmotions")
        if table is None:
            table = self.__dict__["_vmotions"] = {}
        return table

    def _instance(self) -> str:
        return str(self._session.content.about.instanceUuid or "")

    def _destination_host(self) -> tuple[Any, Any]:
        """(HostSystem, ResourcePool) this connection's path names: the host itself, or the first in scope."""
        vim = self._vim
        root = self._root
        if isinstance(root, vim.HostSystem):
            host = root
        else:
            with self._errors(f"{self._what}: hosts in scope"):
                hosts = self._session.objects(root, vim.HostSystem, ["name"])
            if not hosts:
                raise OperationInvalidError(f"{self._what}: no host in scope to migrate to")
            host = hosts[0][0]
        with self._errors(f"{self._what}: destination host"):
            parent = self._session.properties(host, ["parent"]).get("parent")
            pool = self._session.properties(parent, ["resourcePool"]).get("resourcePool") if parent else None
        if pool is None:
            raise OperationInvalidError(f"{self._what}: the destination host has no resource pool")
        return host, pool

    # --- destination ------------------------------------------------------------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Resolve the destination host and pool; the VM must be in this vCenter. Nothing is created."""
        what = f"migration of domain {spec.name!r} to {self._what}"
        if request.copy_storage:
            raise NotSupportedError(f"{what}: vMotion with a datastore change (NON_SHARED_*) is not mapped yet")
        if not request.live or request.flags & MigrateFlags.PAUSED:
            raise NotSupportedError(f"{what}: vMotion is always live and resumes the guest (pass LIVE, not PAUSED)")
        if spec.uuid is None:
            raise InvalidArgumentError(f"{what}: the spec carries no UUID")
        with self._errors(what):
            vm = self._session.content.searchIndex.FindByUuid(None, spec.uuid, True)
        if vm is None:
            raise OperationInvalidError(
                f"{what}: the VM is not in this vCenter's inventory (the destination must be the source's vCenter)"
            )
        host, pool = self._destination_host()
        return MigrationTicket(
            domain=DomainRef(spec.name, spec.uuid),
            memory_uri=f"vmotion:{host._moId}",
            cookie={"instance": self._instance(), "host": host._moId, "pool": pool._moId},
        )

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Success: the VM must now run on the destination host. Failure: nothing was created here."""
        if not success:
            return None
        what = f"migration of domain {ticket.domain.name!r} to {self._what}"
        vm = self._vm(ticket.domain)
        with self._errors(what):
            props = self._session.properties(vm, ["name", "runtime.host"])
        host = props.get("runtime.host")
        if host is None or host._moId != ticket.cookie["host"]:
            raise OperationFailedError(f"{what}: the VM runs on {getattr(host, '_moId', None)}, not on the destination")
        return DomainRef(props.get("name") or ticket.domain.name, ticket.domain.uuid)

    # --- source ---------------------------------------------------------------------------------------

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """RelocateVM_Task onto the ticket's host and pool, waited for."""
        what = f"migration of domain {dom.name!r}"
        if ticket.cookie.get("instance") != self._instance():
            raise InvalidArgumentError(
                f"{what}: the destination is another vCenter (cross-vCenter vMotion is not mapped)"
            )
        vim = self._vim
        stub = self._session.content.rootFolder._stub
        host = vim.HostSystem(ticket.cookie["host"], stub)
        pool = vim.ResourcePool(ticket.cookie["pool"], stub)
        vm = self._vm(dom)
        with self._errors(what):
            memory = int(
                self._session.properties(vm, ["config.hardware.memoryMB"]).get("config.hardware.memoryMB") or 0
            )
        relocation = self._relocations()[dom.uuid] = _Relocation(memory << 20)
        with self._errors(what):
            relocation.task = vm.RelocateVM_Task(
                spec=vim.vm.RelocateSpec(host=host, pool=pool), priority="highPriority"
            )
        relocation.phase = "memory"
        delay = 0.005
        while True:
            with self._errors(what):
                info = self._session.task_info(relocation.task)
            state = info.get("info.state")
            if state == "success":
                relocation.phase, relocation.finished = "completed", time.monotonic()
                return
            if state == "error":
                relocation.finished = time.monotonic()
                fault = info.get("info.error")
                relocation.phase = "failed"
                raise self._errors.translate(fault if isinstance(fault, BaseException) else RuntimeError(state), what)
            relocation.progress = int(info.get("info.progress") or relocation.progress)
            time.sleep(delay)  # the task's state is only polled (no property-collector wait on vcsim 0.24)
            delay = min(delay * 2, 0.25)

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """The vMotion task's progress (kept after it ended, until the next one)."""
        relocation = self._relocations().get(dom.uuid)
        return None if relocation is None else relocation.info()

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Nothing to do: the VM itself moved (no source copy to stop or undefine; a failed vMotion is
        rolled back by vCenter, the guest running on the source as before)."""

"""The generic (one domain at a time) inventory used when a driver has no bulk hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._capabilities import BLOCK_JOB_CAPABILITIES, Capability
from ._errors import NotSupportedError, VirtabsError
from ._flags import DomainState
from ._models import DomainRecord

if TYPE_CHECKING:
    from .spi import Driver

__all__ = ["records_one_by_one"]


def _try(errors: dict[str, str], field: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except VirtabsError as exc:
        errors[field] = f"{exc.code.name}: {exc.message}"
        return None


def records_one_by_one(driver: Driver) -> list[DomainRecord]:
    """Build :class:`DomainRecord` for every domain with per-domain calls; failures become ``field_errors``."""
    caps = driver.connection_capabilities()
    records = []
    for ref in driver.list_domains():
        errors: dict[str, str] = {}
        info = _try(errors, "info", driver.domain_info, ref)
        spec = _try(errors, "os_type", driver.domain_spec, ref)
        disks = _try(errors, "disks", driver.disks, ref)
        nics = _try(errors, "nics", driver.nics, ref)
        snapshots = None
        if Capability.DOMAIN_SNAPSHOT in caps:
            snaps = _try(errors, "snapshot_count", driver.list_snapshots, ref)
            snapshots = None if snaps is None else len(snaps)
        jobs: list[Any] = []
        if caps.supported & BLOCK_JOB_CAPABILITIES and info is not None and info.state.is_active:
            jobs = _try(errors, "block_jobs", driver.block_jobs, ref) or []
        try:
            autostart = driver.autostart(ref)
        except NotSupportedError:
            autostart = None
        managed_save = None
        if Capability.DOMAIN_MANAGED_SAVE in caps:
            managed_save = _try(errors, "managed_save", driver.has_managed_save, ref)
        records.append(
            DomainRecord(
                name=ref.name,
                uuid=ref.uuid,
                state=info.state if info else DomainState.NOSTATE,
                native_state=info.native_state if info else "unknown",
                vcpus=info.vcpus if info else None,
                memory_bytes=info.memory_bytes if info else None,
                os_type=spec.os_type if spec else None,
                autostart=autostart,
                disks=disks or (),
                nics=nics or (),
                snapshot_count=snapshots,
                block_jobs=jobs,
                field_errors=errors,
                managed_save=managed_save,
            )
        )
    return records

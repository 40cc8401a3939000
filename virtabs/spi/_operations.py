"""The operation table: every driver operation, once, with what the gate checks before it runs.

libvirt keeps one table of driver entry points and generates its support matrix
from it; this is virtabs' equivalent. For each SPI method it says

* which capability a driver must declare for it (``capability``; ``None`` for the
  reads every driver serves, :data:`ANY_BLOCK_JOB` for the job controls that any
  block-job capability brings);
* whether it writes (refused on a read-only connection);
* which domain state it needs (:class:`StateRule`);
* which running-block-job rule applies (:class:`JobRule`).

The public layer's gate (``virtabs/_gate.py``) reads these rows and nothing else
to decide whether a call may reach a driver, so a driver never checks a
capability, read-only mode or a state precondition itself.
:func:`methods_for` and :func:`missing_methods` turn the table into "capability →
methods you implement", which ``virtabs drivers``, ``docs/capabilities.md``, the
driver guide and the registration check all use.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

from .._capabilities import Capabilities, Capability

__all__ = [
    "ANY_BLOCK_JOB",
    "MANDATORY",
    "OPERATIONS",
    "JobRule",
    "Operation",
    "StateRule",
    "methods_for",
    "missing_methods",
]


class StateRule(enum.Enum):
    """The domain state an operation needs (checked from one ``domain_status`` call)."""

    ANY = "any"
    """No precondition."""
    ACTIVE = "active"
    """Running or paused (``OperationInvalidError`` "is not running")."""
    ACTIVE_OR_CRASHED = "active-or-crashed"
    """Running, paused, or crashed with its remains still there (destroy cleans those up)."""
    INACTIVE = "inactive"
    """Shut off or crashed (``OperationInvalidError`` "is already running" / "is running")."""
    RUNNING = "running"
    """Active and not paused (suspend)."""
    PAUSED = "paused"
    """Paused (resume)."""


class JobRule(enum.Enum):
    """What a block job on the domain means for an operation (libvirt's BLOCK_COPY_ACTIVE rules)."""

    NONE = "none"
    """Jobs do not matter."""
    NO_COPY = "no-copy"
    """Refused while any disk of the domain is in a block copy (save, snapshot, revert)."""
    NO_COPY_ON_DISK = "no-copy-on-disk"
    """Refused while the named disk is in a block copy (detach)."""
    NO_JOB_ON_DISK = "no-job-on-disk"
    """Starts a job: refused while the disk already has one (``BlockCopyActiveError``)."""
    JOB_ON_DISK = "job-on-disk"
    """Controls a job: the disk must have one (``OperationInvalidError``)."""
    NO_JOB = "no-job"
    """Refused while any disk of the domain has a block job of any kind (migration: ``BlockCopyActiveError``)."""


ANY_BLOCK_JOB = frozenset({Capability.BLOCK_PULL, Capability.BLOCK_COPY, Capability.BLOCK_COMMIT})
"""The capabilities that bring block jobs; job controls need any one of them."""


@attrs.frozen
class Operation:
    """One row of the table: an SPI method and the gate's rules for it."""

    method: str
    """The :class:`~virtabs.spi.Driver` method the public layer calls."""
    summary: str
    """What the operation does, for generated docs."""
    capability: Capability | frozenset[Capability] | None = None
    """The capability it needs; a set means any one of them; None: every driver serves it."""
    writes: bool = False
    """Refused on a read-only connection."""
    state: StateRule = StateRule.ANY
    """The domain state it needs."""
    jobs: JobRule = JobRule.NONE
    """The block-job rule that applies."""
    persistent_only: bool = False
    """Refused on a transient domain (one that has no persistent definition), as libvirt refuses it."""

    @property
    def needs_status(self) -> bool:
        """Whether the gate must read the domain's state and jobs before this operation."""
        return self.state is not StateRule.ANY or self.jobs is not JobRule.NONE or self.persistent_only

    def required_capabilities(self) -> frozenset[Capability]:
        """The capabilities of which a driver must declare at least one (empty: none needed)."""
        if self.capability is None:
            return frozenset()
        if isinstance(self.capability, Capability):
            return frozenset({self.capability})
        return self.capability


def _op(method: str, summary: str, **kwargs: object) -> tuple[str, Operation]:
    return method, Operation(method, summary, **kwargs)  # type: ignore[arg-type]


_C = Capability
_S = StateRule
_J = JobRule

OPERATIONS: Mapping[str, Operation] = dict(
    [
        # --- reads every driver serves
        _op("host_info", "facts about the host"),
        _op("list_domains", "every domain, defined or running, in one call"),
        _op("lookup_domain", "a domain by name or UUID"),
        _op("domain_info", "state, vCPUs, memory and CPU time"),
        _op("domain_status", "state and active block jobs together (the gate's one question)"),
        _op("domain_spec", "the persistent definition"),
        _op("disks", "the disks as they are now"),
        _op("nics", "the network interfaces"),
        _op("inventory", "every domain with disks, NICs, snapshots and jobs, in bulk"),
        # --- lifecycle
        _op("define_domain", "define a persistent domain", capability=_C.DOMAIN_DEFINE, writes=True),
        _op(
            "undefine",
            "remove an inactive domain's definition",
            capability=_C.DOMAIN_DEFINE,
            writes=True,
            state=_S.INACTIVE,
        ),
        _op("start", "start a defined domain", capability=_C.DOMAIN_START, writes=True, state=_S.INACTIVE),
        _op(
            "shutdown",
            "ask the guest to power off (the core waits)",
            capability=_C.DOMAIN_SHUTDOWN,
            writes=True,
            state=_S.ACTIVE,
        ),
        _op(
            "destroy",
            "power off at once (also clears a crashed domain)",
            capability=_C.DOMAIN_DESTROY,
            writes=True,
            state=_S.ACTIVE_OR_CRASHED,
        ),
        _op("reboot", "reboot the guest", capability=_C.DOMAIN_REBOOT, writes=True, state=_S.ACTIVE),
        _op("suspend", "pause the vCPUs", capability=_C.DOMAIN_SUSPEND, writes=True, state=_S.RUNNING),
        _op("resume", "resume paused vCPUs", capability=_C.DOMAIN_SUSPEND, writes=True, state=_S.PAUSED),
        _op(
            "save",
            "save memory to a file and stop",
            capability=_C.DOMAIN_SAVE,
            writes=True,
            state=_S.ACTIVE,
            jobs=_J.NO_COPY,
        ),
        _op("restore", "start a domain from a saved file", capability=_C.DOMAIN_SAVE, writes=True),
        # --- managed save (issue 27): libvirt's virDomainManagedSave, HasManagedSaveImage, ManagedSaveRemove.
        # The hypervisor keeps the state; the next ``start`` resumes it. Kept together for an easy merge.
        _op(
            "managed_save",
            "save the running domain where the host keeps it and stop; start resumes it",
            capability=_C.DOMAIN_MANAGED_SAVE,
            writes=True,
            state=_S.ACTIVE,
            jobs=_J.NO_COPY,
            persistent_only=True,
        ),
        _op("has_managed_save", "whether a managed save image exists", capability=_C.DOMAIN_MANAGED_SAVE),
        _op(
            "managed_save_remove",
            "discard the managed save image (the next start boots)",
            capability=_C.DOMAIN_MANAGED_SAVE,
            writes=True,
            state=_S.INACTIVE,
        ),
        # --- end of managed save
        # --- snapshots
        _op(
            "create_snapshot",
            "take a snapshot",
            capability=_C.DOMAIN_SNAPSHOT,
            writes=True,
            jobs=_J.NO_COPY,
        ),
        _op("list_snapshots", "the domain's snapshots, oldest first", capability=_C.DOMAIN_SNAPSHOT),
        _op(
            "revert_to_snapshot",
            "go back to a snapshot",
            capability=_C.DOMAIN_SNAPSHOT,
            writes=True,
            jobs=_J.NO_COPY,
        ),
        _op("delete_snapshot", "delete a snapshot", capability=_C.DOMAIN_SNAPSHOT, writes=True),
        # --- devices
        _op("attach_disk", "attach a disk (hot-plug when running)", capability=_C.DOMAIN_DISK_HOTPLUG, writes=True),
        _op(
            "detach_disk",
            "detach a disk",
            capability=_C.DOMAIN_DISK_HOTPLUG,
            writes=True,
            jobs=_J.NO_COPY_ON_DISK,
        ),
        # --- block jobs
        _op(
            "block_pull",
            "fill a disk from its backing chain",
            capability=_C.BLOCK_PULL,
            writes=True,
            state=_S.ACTIVE,
            jobs=_J.NO_JOB_ON_DISK,
        ),
        _op(
            "block_copy",
            "copy a disk, then mirror until pivot or abort",
            capability=_C.BLOCK_COPY,
            writes=True,
            state=_S.ACTIVE,
            jobs=_J.NO_JOB_ON_DISK,
        ),
        _op(
            "block_commit",
            "merge layers of a disk's chain down",
            capability=_C.BLOCK_COMMIT,
            writes=True,
            state=_S.ACTIVE,
            jobs=_J.NO_JOB_ON_DISK,
        ),
        _op("block_job_info", "the job on a disk, or None", capability=ANY_BLOCK_JOB),
        _op("block_jobs", "every active job of a domain", capability=ANY_BLOCK_JOB),
        _op(
            "block_job_abort",
            "cancel a job or pivot a ready one (the core waits)",
            capability=ANY_BLOCK_JOB,
            writes=True,
            jobs=_J.JOB_ON_DISK,
        ),
        # issue 27: a job's bandwidth is a capability of its own (Move-VMStorage and Storage vMotion have none);
        # a non-zero bandwidth when a job starts needs it too (the public layer adds it as an extra capability).
        _op(
            "block_job_set_speed",
            "change a running job's bandwidth",
            capability=_C.BLOCK_BANDWIDTH,
            writes=True,
            jobs=_J.JOB_ON_DISK,
        ),
        # --- migration (issue 23): libvirt's v3 protocol, one row per half. The core runs prepare on the
        # destination, perform on the source, then finish on the destination and confirm on the source
        # (an offline migration skips perform); a remote transport forwards each call to its host.
        _op(
            "migrate_prepare",
            "destination: receive a domain (paused, incoming; storage exported) and name the channels",
            capability=_C.DOMAIN_MIGRATE,
            writes=True,
        ),
        _op(
            "migrate_perform",
            "source: copy storage and memory into the destination's channels, up to the switch",
            capability=_C.DOMAIN_MIGRATE,
            writes=True,
            state=_S.ACTIVE,
            jobs=_J.NO_JOB,
        ),
        _op("migrate_job_info", "source: progress of the migration under way, or None", capability=_C.DOMAIN_MIGRATE),
        # issue 27: cancelling is a capability of its own (a Move-VM cannot be cancelled from the client)
        _op(
            "migrate_abort",
            "source: cancel the migration under way",
            capability=_C.DOMAIN_MIGRATE_ABORT,
            writes=True,
        ),
        _op(
            "migrate_finish",
            "destination: run the received domain, or discard it after a failure",
            capability=_C.DOMAIN_MIGRATE,
            writes=True,
        ),
        _op(
            "migrate_confirm",
            "source: end the source after success (stop, undefine), or resume it after a failure",
            capability=_C.DOMAIN_MIGRATE,
            writes=True,
        ),
        # --- storage
        _op("list_storage_pools", "every storage pool", capability=_C.STORAGE_POOL),
        _op("lookup_storage_pool", "a pool by name", capability=_C.STORAGE_POOL),
        _op("list_volumes", "a pool's volumes", capability=_C.STORAGE_POOL),
        _op("lookup_volume", "a volume by name", capability=_C.STORAGE_POOL),
        _op("create_volume", "create a volume", capability=_C.STORAGE_VOLUME, writes=True),
        _op("delete_volume", "delete a volume", capability=_C.STORAGE_VOLUME, writes=True),
        # issue 27: resizing is its own capability (a host may create and delete volumes but not grow them)
        _op("resize_volume", "grow a volume", capability=_C.STORAGE_VOLUME_RESIZE, writes=True),
        # --- networks (issue 25): read-only, libvirt's virConnectListAllNetworks and virNetworkLookupBy*
        _op("list_networks", "every network with its subnets, VLANs and attached NICs", capability=_C.NETWORK),
        _op("lookup_network", "a network by name or id", capability=_C.NETWORK),
    ]
)
"""Every operation a driver may implement, by SPI method name."""

MANDATORY: tuple[str, ...] = ("host_info", "list_domains", "domain_info", "domain_spec", "disks", "nics")
"""Methods every driver overrides, whatever it declares (the base class has no default for them)."""

# Methods that have a working default in the base class, built on other methods.
_HAS_DEFAULT = frozenset({"lookup_domain", "domain_status", "inventory", "block_jobs", "lookup_network"})


def methods_for(capability: Capability) -> tuple[str, ...]:
    """The SPI methods a driver declaring ``capability`` must override.

    Sub-capabilities (``block.copy.shallow``, ``block.copy.pivot`` ...) and
    ``events`` add no method: they change what the parent's methods accept.
    """
    return tuple(
        op.method
        for op in OPERATIONS.values()
        if capability in op.required_capabilities() and op.method not in _HAS_DEFAULT
    )


def missing_methods(driver_class: type, capabilities: Capabilities | Iterable[Capability]) -> dict[str, str]:
    """``{method: why}`` for every method ``driver_class`` must override but does not.

    A driver that declares ``block.copy`` but inherits the base ``block_copy``
    would refuse at run time an operation it advertised; the registry calls
    this when it loads a driver, the way pluggy verifies implementations
    against their specs.
    """
    from ._driver import Driver

    declared = capabilities.supported if isinstance(capabilities, Capabilities) else frozenset(capabilities)
    wanted: dict[str, str] = {name: "every driver serves it" for name in MANDATORY}
    for cap in sorted(declared, key=lambda c: c.value):
        for method in methods_for(cap):
            wanted.setdefault(method, f"declared {cap.value}")
    return {
        method: why
        for method, why in wanted.items()
        if getattr(driver_class, method, None) is getattr(Driver, method, None)
    }

"""Flags and enumerations: libvirt's numeric values where libvirt has them, stable words otherwise."""

from __future__ import annotations

import enum

__all__ = [
    "BlockCommitFlags",
    "BlockCopyFlags",
    "BlockJobAbortFlags",
    "BlockJobSetSpeedFlags",
    "BlockJobStatus",
    "BlockJobType",
    "BlockPullFlags",
    "BlockRebaseFlags",
    "DomainState",
    "LifecycleEventType",
    "MigrateFlags",
    "NetworkKind",
]


class BlockRebaseFlags(enum.IntFlag):
    """``virDomainBlockRebaseFlags``: flags of :meth:`Domain.block_rebase`."""

    SHALLOW = 1 << 0
    """Copy only the top layer; the destination keeps the source's backing."""
    REUSE_EXT = 1 << 1
    """Reuse an existing destination instead of creating it."""
    COPY_RAW = 1 << 2
    """Force the destination to be raw (never probe its format)."""
    COPY = 1 << 3
    """Start a copy job into ``base`` instead of a pull."""
    RELATIVE = 1 << 4
    """Keep relative backing names (pull only)."""
    COPY_DEV = 1 << 5
    """The destination is a block device."""
    BANDWIDTH_BYTES = 1 << 6
    """``bandwidth`` is in bytes/s instead of MiB/s."""
    MOVE_CHAIN = 1 << 16
    """virtabs' own (libvirt has no such flag): move the chain as it is, every layer kept (block.copy.move_chain)."""


class BlockCopyFlags(enum.IntFlag):
    """``virDomainBlockCopyFlags``: flags of :meth:`Domain.block_copy`."""

    SHALLOW = 1 << 0
    """Copy only the top layer."""
    REUSE_EXT = 1 << 1
    """Reuse an existing destination."""
    TRANSIENT_JOB = 1 << 2
    """Do not persist the job across a manager restart."""
    SYNCHRONOUS_WRITES = 1 << 3
    """Guest writes complete only once mirrored to the destination."""
    MOVE_CHAIN = 1 << 16
    """virtabs' own (libvirt has no such flag): move the chain as it is, every layer kept (block.copy.move_chain)."""


class BlockPullFlags(enum.IntFlag):
    """``virDomainBlockPullFlags`` (a subset of the rebase flags)."""

    BANDWIDTH_BYTES = 1 << 6
    """``bandwidth`` is in bytes/s instead of MiB/s."""


class BlockCommitFlags(enum.IntFlag):
    """``virDomainBlockCommitFlags``: flags of :meth:`Domain.block_commit`."""

    SHALLOW = 1 << 0
    """``base`` must be the image directly below ``top``."""
    DELETE = 1 << 1
    """Delete the committed images once the job ends."""
    ACTIVE = 1 << 2
    """Commit the active layer: a two-phase job ended by pivot or abort."""
    RELATIVE = 1 << 3
    """Keep relative backing names."""
    BANDWIDTH_BYTES = 1 << 4
    """``bandwidth`` is in bytes/s instead of MiB/s."""


class BlockJobAbortFlags(enum.IntFlag):
    """``virDomainBlockJobAbortFlags``: flags of :meth:`Domain.block_job_abort`."""

    ASYNC = 1 << 0
    """Return at once instead of waiting for the job to end."""
    PIVOT = 1 << 1
    """Switch to the copy (or committed base) instead of cancelling."""


class BlockJobSetSpeedFlags(enum.IntFlag):
    """``virDomainBlockJobSetSpeedFlags``."""

    BANDWIDTH_BYTES = 1 << 0
    """``bandwidth`` is in bytes/s instead of MiB/s."""


# --- migration (issue 23) ------------------------------------------------------------------


class MigrateFlags(enum.IntFlag):
    """``virDomainMigrateFlags``: flags of :meth:`Domain.migrate`, with libvirt's values.

    The rules between them are in :mod:`virtabs._rules` (``migration_flags``, ``migration_disks``, ``check_keep_source``).
    """

    LIVE = 1 << 0
    """Keep the guest running while its memory is copied (without it: paused during the copy)."""
    TUNNELLED = 1 << 2
    """Carry the migration streams through the connection's own channel (the remote transport)."""
    PERSIST_DEST = 1 << 3
    """Define the domain persistently on the destination."""
    UNDEFINE_SOURCE = 1 << 4
    """Remove the source's definition once the migration succeeded."""
    PAUSED = 1 << 5
    """Leave the domain paused on the destination."""
    NON_SHARED_DISK = 1 << 6
    """Copy every disk whole to the destination (storage is not shared)."""
    NON_SHARED_INC = 1 << 7
    """Copy only each disk's top layer; the destination already has the backing chain."""
    OFFLINE = 1 << 10
    """Migrate the definition only (no running domain moves); needs PERSIST_DEST."""
    ABORT_ON_ERROR = 1 << 12
    """Cancel the migration when a disk reports an I/O error during it."""
    AUTO_CONVERGE = 1 << 13
    """Slow the guest's vCPUs down when memory does not converge."""


class BlockJobType(enum.IntEnum):
    """``virDomainBlockJobType``."""

    UNKNOWN = 0
    PULL = 1
    COPY = 2
    COMMIT = 3
    ACTIVE_COMMIT = 4


class BlockJobStatus(enum.IntEnum):
    """``virConnectDomainEventBlockJobStatus``: how a block job event ended."""

    COMPLETED = 0
    FAILED = 1
    CANCELED = 2
    READY = 3


class DomainState(enum.IntEnum):
    """``virDomainState``. Records keep the backend's own word in ``native_state``."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6
    PMSUSPENDED = 7

    @property
    def is_active(self) -> bool:
        """True while the domain has a running (or paused) process."""
        return self in (
            DomainState.RUNNING,
            DomainState.BLOCKED,
            DomainState.PAUSED,
            DomainState.SHUTDOWN,
            DomainState.PMSUSPENDED,
        )


class LifecycleEventType(enum.IntEnum):
    """``virDomainEventType``: what a lifecycle event reports."""

    DEFINED = 0
    UNDEFINED = 1
    STARTED = 2
    SUSPENDED = 3
    RESUMED = 4
    STOPPED = 5
    SHUTDOWN = 6
    PMSUSPENDED = 7
    CRASHED = 8


class NetworkKind(enum.StrEnum):
    """What a virtual network is, over every backend: a closed set; ``NetworkInfo.native_kind`` keeps the host's word.

    Values are stable; never rename one. A backend maps each native kind to exactly one member and
    says which in its README; what fits none is :attr:`OTHER` (never a guess).
    """

    BRIDGE = "bridge"
    """Guests share a host bridge that is on the host's own network (a Linux or Open vSwitch bridge;
    libvirt's forward mode ``bridge``; Xen's ``vif`` bridge; LXC's ``lxc.net.N.link``)."""
    NAT = "nat"
    """A private subnet behind the host, masqueraded to the outside (libvirt's forward mode ``nat``;
    Docker's and Podman's ``bridge`` driver; Hyper-V's NAT switch)."""
    ROUTED = "routed"
    """A subnet the host routes without NAT (libvirt's forward modes ``route`` and ``open``)."""
    ISOLATED = "isolated"
    """Guests and the host talk, nothing leaves the host (a libvirt network without ``<forward>``;
    a Docker or Podman ``--internal`` network)."""
    EXTERNAL_SWITCH = "external_switch"
    """A Hyper-V external switch: bound to a physical adapter."""
    INTERNAL_SWITCH = "internal_switch"
    """A Hyper-V internal switch: guests and the host, no physical adapter."""
    PRIVATE_SWITCH = "private_switch"
    """A Hyper-V private switch: guests only, not even the host."""
    PORT_GROUP = "port_group"
    """A vSphere standard port group on a host's vSwitch (``device`` is the vSwitch)."""
    DISTRIBUTED_PORT_GROUP = "distributed_port_group"
    """A vSphere distributed port group (``device`` is the distributed switch)."""
    HOST_ONLY = "host_only"
    """VirtualBox's host-only network (``list hostonlyifs``): guests and the host."""
    NAT_NETWORK = "nat_network"
    """VirtualBox's NAT network (``list natnets``): guests share one NAT service and see each other."""
    INTERNAL_NETWORK = "internal_network"
    """VirtualBox's internal network (``list intnets``): guests only, by name."""
    OVERLAY = "overlay"
    """A multi-host overlay (Docker's ``overlay`` driver, VXLAN)."""
    MACVLAN = "macvlan"
    """Guests get their own MAC on a host device (Docker's ``macvlan``; libvirt's ``direct`` / macvtap
    forward modes ``private``, ``vepa``, ``passthrough``)."""
    IPVLAN = "ipvlan"
    """Guests share the host device's MAC with their own IPs (Docker's ``ipvlan``)."""
    USER = "user"
    """User-mode networking in the hypervisor process (QEMU's ``-netdev user`` / passt; Podman's
    slirp4netns and pasta)."""
    HOST = "host"
    """No separate network: the guest uses the host's stack (Docker's ``host`` network)."""
    NONE = "none"
    """No network at all, only loopback (Docker's ``none`` network)."""
    OTHER = "other"
    """A kind this set has no word for; ``native_kind`` says what it is."""

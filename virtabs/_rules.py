"""Every rule the public layer enforces, each written once.

The gate (:mod:`virtabs._gate`) applies the state and job rules of the
operation table; the public methods call the argument and flag rules below
before they reach the gate. No driver repeats any of them. The block-copy
rules come from libvirt's "blockjob: add new API flags" commit:

=====================================================  ===================================
rule                                                   error
=====================================================  ===================================
COPY without a destination                              InvalidArgumentError
SHALLOW/REUSE_EXT/COPY_RAW/COPY_DEV/MOVE_CHAIN w/o COPY  InvalidArgumentError
MOVE_CHAIN with SHALLOW, REUSE_EXT, COPY_DEV or raw      InvalidArgumentError
a kind of copy the driver does not declare              NotSupportedError (flatten, shallow, move_chain)
relative destination                                    InvalidArgumentError
SHALLOW into a new raw file over a backing chain        InvalidArgumentError
destination inside the disk's own chain                 InvalidArgumentError
a second job on a disk that has one                     BlockCopyActiveError
pivot before ready                                      BlockCopyActiveError
pivot of a pull or non-active commit                    OperationInvalidError
save/snapshot/revert/detach during a copy               BlockCopyActiveError
managed save of a transient domain                      OperationInvalidError
bandwidth negative or overflowing 64-bit bytes/s        InvalidArgumentError
a bandwidth limit without block.bandwidth               NotSupportedError
cur == end before ready                                 never reported (capped at end - 1)
=====================================================  ===================================

Migration (issue 23; libvirt's ``virDomainMigrate*`` and ``qemuMigrationSrcBegin`` checks):

=====================================================  ===================================
rule                                                   error
=====================================================  ===================================
NON_SHARED_DISK with NON_SHARED_INC                     InvalidArgumentError
OFFLINE with LIVE                                       InvalidArgumentError
OFFLINE without PERSIST_DEST                            InvalidArgumentError
OFFLINE with NON_SHARED_DISK/NON_SHARED_INC             InvalidArgumentError
OFFLINE with PAUSED                                     InvalidArgumentError
disks chosen without NON_SHARED_DISK/INC                InvalidArgumentError
a chosen disk the domain lacks, or read-only            InvalidArgumentError
destination is the source's own connection              InvalidArgumentError
destination of another driver                           NotSupportedError
a capability either connection lacks                    NotSupportedError (before either host is touched)
live migration of an inactive domain                    OperationInvalidError
any disk under a block job                              BlockCopyActiveError
bandwidth negative or overflowing; max_downtime <= 0    InvalidArgumentError
a bandwidth limit without domain.migrate.bandwidth      NotSupportedError (the source's declaration)
a max_downtime without domain.migrate.max_downtime      NotSupportedError (the source's declaration)
a persistent domain without UNDEFINE_SOURCE, the        NotSupportedError (before either host is changed;
source not declaring domain.migrate.keep_source           one domain_status read on the source)
MigrationJob.abort without domain.migrate.abort         NotSupportedError (the migration goes on)
=====================================================  ===================================
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import attrs

from ._capabilities import Capabilities, Capability
from ._errors import BlockCopyActiveError, InvalidArgumentError, NotSupportedError, OperationInvalidError, quote
from ._flags import BlockJobType, BlockRebaseFlags, DomainState, MigrateFlags
from ._models import (
    BlockCopyRequest,
    BlockJobInfo,
    DiskInfo,
    DomainStatus,
    MigrationRequest,
    refuse_control_characters,
)
from .spi._operations import JobRule, Operation, StateRule

MiB = 1 << 20
LLONG_MAX = (1 << 63) - 1
TWO_PHASE = (BlockJobType.COPY, BlockJobType.ACTIVE_COMMIT)
COPY_ONLY_FLAGS = (
    BlockRebaseFlags.SHALLOW
    | BlockRebaseFlags.REUSE_EXT
    | BlockRebaseFlags.COPY_RAW
    | BlockRebaseFlags.COPY_DEV
    | BlockRebaseFlags.MOVE_CHAIN
)

T = TypeVar("T")
FlagT = TypeVar("FlagT", bound=Any)


# --- arguments ---------------------------------------------------------------------------


def is_int(value: object) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_DATASTORE_PATH = re.compile(r"^\[[^\]/\\]+\] \S")
MAX_TEXT = 1024
MAX_COMPONENT = 255


def require_text(value: object, what: str) -> str:
    """``value`` as a non-empty string without NUL or control characters, at most 1,024 characters."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {quote(value)}")
    if len(value) > MAX_TEXT:
        raise InvalidArgumentError(f"invalid {what} {quote(value)}: at most {MAX_TEXT} characters")
    return refuse_control_characters(value, what)


def require_lookup_name(value: object, what: str) -> str:
    """The name of an existing object that may become one path component: no '/', '\\', '.' or '..'.

    Names the host made (a checkpoint called "Before upgrade") may hold spaces; they still cannot climb
    out of the directory a backend resolves them in.
    """
    text = require_text(value, what)
    if "/" in text or "\\" in text or text in (".", "..") or len(text) > MAX_COMPONENT:
        raise InvalidArgumentError(
            f"invalid {what} {quote(text)}: a name is one path component (no '/', '\\', '.' or '..', "
            f"at most {MAX_COMPONENT} characters)"
        )
    return text


def require_name(value: object, what: str) -> str:
    """A name virtabs creates, which may become a file name: one path component and no whitespace."""
    text = require_lookup_name(value, what)
    if any(c.isspace() for c in text):
        raise InvalidArgumentError(f"invalid {what} {quote(text)}: no slashes, spaces, '.' or '..'")
    return text


def require_volume_name(value: object, what: str = "volume name", *, new: bool = False) -> str:
    """A volume name: one or more path components relative to its pool (``dir/disk.vmdk`` on a datastore).

    Never absolute, never ``..``: a backend resolves it under the pool's root and it stays there.
    """
    text = require_text(value, what)
    if text.startswith("/") or _WINDOWS_ABSOLUTE.match(text):
        raise InvalidArgumentError(f"invalid {what} {quote(text)}: it is relative to its pool, not an absolute path")
    for part in text.split("/"):
        (require_name if new else require_lookup_name)(part, f"{what} component" if "/" in text else what)
    return text


def looks_relative(path: str) -> bool:
    """True for a host path that would be resolved against some working directory.

    Absolute POSIX paths, Windows paths (``C:\\``, ``\\\\server``) and datastore paths (``[ds] dir/x``)
    are not; ``disk.img`` and ``./disk.img`` are.
    """
    return not (path.startswith("/") or _WINDOWS_ABSOLUTE.match(path) or _DATASTORE_PATH.match(path))


def require_host_path(value: object, what: str) -> str:
    """A path on the host given by the caller: no control characters and never relative."""
    text = require_text(value, what)
    if looks_relative(text):
        raise InvalidArgumentError(
            f"invalid {what} {quote(text)}: give an absolute path (a relative one would be resolved against "
            "some later working directory)"
        )
    return text


def require_positive_size(value: object, what: str) -> int:
    """A positive integer number of bytes."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgumentError(f"{what} must be a positive integer, got {quote(value)}")
    return value


def require_timeout(value: object, what: str = "timeout", *, allow_zero: bool = True) -> float | None:
    """None, or a non-negative (positive unless ``allow_zero``) number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (not allow_zero and value == 0):
        kind = "non-negative" if allow_zero else "positive"
        raise InvalidArgumentError(f"{what} must be a {kind} number of seconds, got {quote(value)}")
    return float(value)


def flags(kind: type[FlagT], value: int) -> FlagT:
    """``value`` as flags of ``kind``; unknown bits are InvalidArgumentError (libvirt's virCheckFlags)."""
    if not is_int(value):
        raise InvalidArgumentError(f"flags must be {kind.__name__} or int, got {quote(value)}")
    known = 0
    for member in kind:
        known |= int(member)
    unknown = int(value) & ~known
    if unknown or value < 0:
        raise InvalidArgumentError(f"unsupported flags 0x{unknown or value:x} for {kind.__name__}")
    result: FlagT = kind(value)
    return result


def bandwidth_bytes(value: int, in_bytes: bool) -> int:
    """Bandwidth in bytes/s from MiB/s (or bytes/s), refusing negatives and 64-bit overflow."""
    if not is_int(value) or value < 0:
        raise InvalidArgumentError(f"bandwidth must be a non-negative integer, got {quote(value)}")
    result = value if in_bytes else value * MiB
    if result > LLONG_MAX:
        unit = "bytes/s" if in_bytes else "MiB/s"
        raise InvalidArgumentError(f"bandwidth {value} {unit} is too large (overflows a 64-bit byte rate)")
    return result


def chain_index(chain: tuple[str, ...], image: str | None, role: str, what: str, allow_top: bool = True) -> int:
    """Where ``image`` sits in ``chain`` (0 = the active layer), else InvalidArgumentError."""
    if image in chain and (allow_top or chain.index(image) > 0):
        return chain.index(image)
    raise InvalidArgumentError(
        f"{what}: {role} {quote(image)} is not in the disk's backing chain ({' <- '.join(chain[::-1])})"
    )


_DISK_TARGET = re.compile(r"[a-z][a-z0-9]{1,15}")


def could_be_disk_target(disk: object) -> bool:
    """Whether ``disk`` has the shape of a plain disk target (``vda``, ``sdb``, ``xvda``, ``hd0``).

    Only a shortcut's guard: a target of another shape, or a path, is resolved through the disk list.
    """
    return isinstance(disk, str) and _DISK_TARGET.fullmatch(disk) is not None


def find_disk(disks: list[DiskInfo], disk: str, what: str, domain: str) -> DiskInfo:
    """The disk named by target (``vda``) or path, else InvalidArgumentError."""
    require_text(disk, "disk")
    for info in disks:
        if disk in (info.target, info.path):
            return info
    raise InvalidArgumentError(f"{what}: domain {quote(domain)} has no disk {quote(disk)}")


def evolve(inst: T, **changes: Any) -> T:
    """attrs.evolve, typed."""
    return attrs.evolve(inst, **changes)  # type: ignore[misc]


# --- the gate's rules: state and jobs -------------------------------------------------------


def check_state(op: Operation, state: DomainState, what: str, domain: str) -> None:
    """The operation's :class:`StateRule` against the domain's state."""
    rule = op.state
    if rule is StateRule.ANY:
        return
    if rule is StateRule.INACTIVE and state.is_active:
        tail = "destroy it first" if op.method == "undefine" else "it must be shut off"
        raise OperationInvalidError(f"{what}: domain {quote(domain)} is already running ({tail})")
    if rule is StateRule.ACTIVE_OR_CRASHED and not (state.is_active or state == DomainState.CRASHED):
        raise OperationInvalidError(f"{what}: domain {quote(domain)} is not running")
    if rule in (StateRule.ACTIVE, StateRule.RUNNING) and not state.is_active:
        raise OperationInvalidError(f"{what}: domain {quote(domain)} is not running")
    if rule is StateRule.RUNNING and state == DomainState.PAUSED:
        raise OperationInvalidError(f"{what}: domain {quote(domain)} is already paused")
    if rule is StateRule.PAUSED and state != DomainState.PAUSED:
        raise OperationInvalidError(f"{what}: domain {quote(domain)} is not paused")


def check_persistent(op: Operation, status: DomainStatus, what: str, domain: str) -> None:
    """libvirt's "cannot do managed save for transient domain": the operation needs a persistent definition."""
    if op.persistent_only and not status.persistent:
        raise OperationInvalidError(f"{what}: domain {domain!r} is transient (it has no persistent definition)")


def check_jobs(op: Operation, status: DomainStatus, disk: str | None, what: str) -> BlockJobInfo | None:
    """The operation's :class:`JobRule`; returns the disk's job for rules that need one."""
    rule = op.jobs
    if rule is JobRule.NONE:
        return None
    if rule is JobRule.NO_JOB:
        if status.jobs:
            running = status.jobs[0]
            raise BlockCopyActiveError(
                f"{what}: disk {running.disk!r} has an active block job ({running.type.name.lower()}); "
                "end it first (block_job_abort)"
            )
        return None
    if rule in (JobRule.NO_COPY, JobRule.NO_COPY_ON_DISK):
        for running in status.jobs:
            if rule is JobRule.NO_COPY_ON_DISK and running.disk != disk:
                continue
            if running.type == BlockJobType.COPY:
                raise BlockCopyActiveError(
                    f"{what}: disk {quote(running.disk)} is in an active block copy job; "
                    "pivot or abort it first (block_job_abort)"
                )
            raise OperationInvalidError(f"{what}: disk {quote(running.disk)} has an active block job")
        return None
    assert disk is not None, f"{op.method}: the gate needs the disk for {rule}"
    job = status.job_on(disk)
    if rule is JobRule.NO_JOB_ON_DISK and job is not None:
        raise BlockCopyActiveError(
            f"{what}: disk {quote(disk)} already has an active block job ({job.type.name.lower()})"
        )
    if rule is JobRule.JOB_ON_DISK and job is None:
        raise OperationInvalidError(f"{what}: disk {quote(disk)} has no active block job")
    return job


def never_done_before_ready(info: BlockJobInfo | None) -> BlockJobInfo | None:
    """libvirt's rule: ``cur == end`` is reported only once a job is ready (capped at ``end - 1``)."""
    if info is not None and not info.ready and info.end > 0 and info.cur >= info.end:
        return evolve(info, cur=info.end - 1)
    return info


# --- block copy ----------------------------------------------------------------------------


def copy_kind(request: BlockCopyRequest) -> Capability:
    """The kind of copy ``request`` asks for: flatten (the default), shallow or move_chain."""
    if request.move_chain:
        return Capability.BLOCK_COPY_MOVE_CHAIN
    return Capability.BLOCK_COPY_SHALLOW if request.shallow else Capability.BLOCK_COPY_FLATTEN


def check_copy_kind(request: BlockCopyRequest, what: str) -> None:
    """MOVE_CHAIN keeps every layer as it is, in files the host creates: it has no other kind, no raw
    destination (raw has no backing) and no pre-created destination."""
    if not request.move_chain:
        return
    clash = [
        name
        for name, given in (
            ("SHALLOW", request.shallow),
            ("REUSE_EXT", request.reuse_existing),
            ("COPY_DEV", request.dest_is_block_device),
            ("a raw destination", request.format == "raw"),
        )
        if given
    ]
    if clash:
        raise InvalidArgumentError(
            f"{what}: MOVE_CHAIN moves the chain as it is into files the host creates; "
            f"it cannot be combined with {', '.join(clash)}"
        )


def copy_capabilities(request: BlockCopyRequest) -> list[Capability]:
    """The capabilities a copy request needs beyond ``block.copy``: its kind, then its options."""
    needed = [copy_kind(request)]
    if request.reuse_existing:
        needed.append(Capability.BLOCK_COPY_REUSE_EXT)
    if request.format == "raw":
        needed.append(Capability.BLOCK_COPY_RAW)
    if request.dest_is_block_device:
        needed.append(Capability.BLOCK_COPY_DEV)
    return needed


def bandwidth_capabilities(bandwidth_bytes: int) -> list[Capability]:
    """A job started with a bandwidth limit needs ``block.bandwidth`` (unlimited, 0, needs nothing)."""
    return [Capability.BLOCK_BANDWIDTH] if bandwidth_bytes else []


def copy_request_from_rebase(base: str | None, f: BlockRebaseFlags, bandwidth: int, what: str) -> BlockCopyRequest:
    """virDomainBlockRebase with COPY: the request its flags describe."""
    if not base:
        raise InvalidArgumentError(f"{what}: a copy job needs a destination (base)")
    if f & BlockRebaseFlags.RELATIVE:
        raise InvalidArgumentError(f"{what}: relative backing during copy is not supported")
    return BlockCopyRequest(
        dest=base,
        format="raw" if f & BlockRebaseFlags.COPY_RAW else None,
        shallow=bool(f & BlockRebaseFlags.SHALLOW),
        move_chain=bool(f & BlockRebaseFlags.MOVE_CHAIN),
        reuse_existing=bool(f & BlockRebaseFlags.REUSE_EXT),
        dest_is_block_device=bool(f & BlockRebaseFlags.COPY_DEV),
        bandwidth_bytes=bandwidth,
        transient=True,
    )


def refuse_copy_flags_without_copy(f: BlockRebaseFlags, what: str) -> None:
    """SHALLOW, REUSE_EXT, COPY_RAW, COPY_DEV and MOVE_CHAIN mean nothing without COPY."""
    if f & COPY_ONLY_FLAGS:
        raise InvalidArgumentError(f"{what}: use of flags {(f & COPY_ONLY_FLAGS)!r} requires a copy job")


def check_copy_destination(request: BlockCopyRequest, what: str) -> None:
    """The destination must be an absolute path on the host (POSIX, Windows or a datastore path)."""
    if looks_relative(request.dest):
        raise InvalidArgumentError(f"{what}: the destination must be an absolute path, got {quote(request.dest)}")


def settle_copy_request(request: BlockCopyRequest, disk: DiskInfo, what: str) -> BlockCopyRequest:
    """The copy rules that depend on the disk's chain; returns the request the driver receives."""
    if request.shallow and not disk.backing_chain:
        request = evolve(request, shallow=False)  # libvirt: SHALLOW is a no-op without a backing chain
    if request.shallow and request.format == "raw" and not request.reuse_existing:
        raise InvalidArgumentError(
            f"{what}: a shallow copy of disk {quote(disk.target)} into a new raw file is not possible "
            "(raw has no backing file); flatten it, or reuse a pre-populated destination with REUSE_EXT"
        )
    if request.dest in (disk.path, *disk.backing_chain):
        raise InvalidArgumentError(f"{what}: destination {quote(request.dest)} is part of the disk's chain")
    return request


def pivot_capability(job: BlockJobInfo, what: str) -> Capability:
    """Only two-phase jobs pivot; returns the capability the pivot needs (checked before readiness)."""
    if job.type not in TWO_PHASE:
        raise OperationInvalidError(f"{what}: a {job.type.name.lower()} job does not support pivot")
    return Capability.BLOCK_COPY_PIVOT if job.type == BlockJobType.COPY else Capability.BLOCK_COMMIT


def check_ready_for_pivot(job: BlockJobInfo, what: str) -> None:
    """Pivot before the copy is ready: BLOCK_COPY_ACTIVE "not ready for pivot yet"."""
    if not job.ready:
        raise BlockCopyActiveError(f"{what}: block job on disk {quote(job.disk)} is not ready for pivot yet")


# --- migration (issue 23) ---------------------------------------------------------------------

STORAGE_COPY = MigrateFlags.NON_SHARED_DISK | MigrateFlags.NON_SHARED_INC


def migration_flags(f: MigrateFlags, what: str) -> MigrateFlags:
    """The rules between the flags alone (libvirt's exclusive pairs and the offline rules)."""
    if f & MigrateFlags.NON_SHARED_DISK and f & MigrateFlags.NON_SHARED_INC:
        raise InvalidArgumentError(f"{what}: NON_SHARED_DISK and NON_SHARED_INC are mutually exclusive")
    if f & MigrateFlags.OFFLINE:
        if f & MigrateFlags.LIVE:
            raise InvalidArgumentError(f"{what}: OFFLINE and LIVE are mutually exclusive")
        if not f & MigrateFlags.PERSIST_DEST:
            raise InvalidArgumentError(f"{what}: offline migration must be specified with the PERSIST_DEST flag set")
        if f & STORAGE_COPY:
            raise InvalidArgumentError(f"{what}: offline migration cannot handle non-shared storage")
        if f & MigrateFlags.PAUSED:
            raise InvalidArgumentError(f"{what}: offline migration cannot leave a domain paused (it does not run)")
    return f


def migration_capabilities(f: MigrateFlags) -> list[Capability]:
    """The capabilities a migration with flags ``f`` needs, on the source and on the destination alike."""
    needed = [Capability.DOMAIN_MIGRATE]
    if f & MigrateFlags.LIVE:
        needed.append(Capability.DOMAIN_MIGRATE_LIVE)
    if f & MigrateFlags.OFFLINE:
        needed.append(Capability.DOMAIN_MIGRATE_OFFLINE)
    if f & STORAGE_COPY:
        needed.append(Capability.DOMAIN_MIGRATE_COPY_STORAGE)
    if f & MigrateFlags.TUNNELLED:
        needed.append(Capability.DOMAIN_MIGRATE_TUNNELLED)
    return needed


def migration_source_capabilities(bandwidth_bytes: int, max_downtime_ms: int | None) -> list[Capability]:
    """What the source must declare for the knobs a migration asks for (the source runs the copy, so the
    destination's declaration does not matter): a bandwidth limit and a downtime bound. 0 and None ask
    for nothing."""
    needed = []
    if bandwidth_bytes:
        needed.append(Capability.DOMAIN_MIGRATE_BANDWIDTH)
    if max_downtime_ms is not None:
        needed.append(Capability.DOMAIN_MIGRATE_MAX_DOWNTIME)
    return needed


def needs_keep_source(f: MigrateFlags, source: Capabilities) -> bool:
    """Whether the source must be asked if its domain is persistent: a migration without UNDEFINE_SOURCE
    from a source that does not declare ``domain.migrate.keep_source``."""
    return not f & MigrateFlags.UNDEFINE_SOURCE and Capability.DOMAIN_MIGRATE_KEEP_SOURCE not in source.supported


def check_keep_source(persistent: bool, what: str, domain: str) -> None:
    """For a source that cannot keep a migrated domain's definition (:func:`needs_keep_source`; Move-VM and
    vMotion move the one VM): a persistent domain is refused rather than undefined against libvirt's
    semantics (without UNDEFINE_SOURCE the source keeps its definition, shut off)."""
    if persistent:
        raise NotSupportedError(
            f"{what}: the source cannot keep domain {quote(domain)}'s definition after a migration "
            f"({Capability.DOMAIN_MIGRATE_KEEP_SOURCE.value} is not declared); add UNDEFINE_SOURCE"
        )


def require_max_downtime(value: object) -> int | None:
    """None, or a positive number of milliseconds."""
    if value is None:
        return None
    if not is_int(value) or value <= 0 or value > LLONG_MAX:  # type: ignore[operator]
        raise InvalidArgumentError(f"max_downtime must be a positive number of milliseconds, got {quote(value)}")
    return int(value)  # type: ignore[call-overload, no-any-return]


def migration_disks(f: MigrateFlags, chosen: object, disks: list[DiskInfo], what: str, domain: str) -> tuple[str, ...]:
    """The targets whose storage is copied: every writable disk, or the caller's choice (which needs
    NON_SHARED_DISK or NON_SHARED_INC, and only names writable disks of the domain)."""
    if not f & STORAGE_COPY:
        if chosen:
            raise InvalidArgumentError(f"{what}: choosing disks to copy needs NON_SHARED_DISK or NON_SHARED_INC")
        return ()
    if chosen is None:
        return tuple(d.target for d in disks if not d.readonly)
    if isinstance(chosen, str) or not isinstance(chosen, list | tuple):
        raise InvalidArgumentError(f"{what}: disks must be a list of disk targets, got {quote(chosen)}")
    targets = []
    for name in chosen:
        info = find_disk(disks, name, what, domain)
        if info.readonly:
            raise InvalidArgumentError(
                f"{what}: disk {quote(info.target)} is read-only; only writable disks are copied"
            )
        if info.target not in targets:
            targets.append(info.target)
    return tuple(targets)


def migration_request(
    f: MigrateFlags, bandwidth_mib: int, max_downtime: object, disks: tuple[str, ...]
) -> MigrationRequest:
    """The request both halves receive (``bandwidth`` given in MiB/s as libvirt's, handed on in bytes/s)."""
    return MigrationRequest(
        flags=f,
        bandwidth_bytes=bandwidth_bytes(bandwidth_mib, False),
        max_downtime_ms=require_max_downtime(max_downtime),
        disks=disks,
    )

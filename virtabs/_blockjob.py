"""Block jobs: the :class:`Domain` methods that start and control them, and :class:`BlockJob`.

The heart of the seed commit ("blockjob: add new API flags"): a copy runs in
two phases, copy then mirror, until the caller pivots or aborts. The flag
rules are in :mod:`virtabs._rules`; this module only orders them: flags and
arguments, the gate (capability, state, the one-job-per-disk rule), the
rules that need the disk's chain, then the driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from . import _rules
from ._capabilities import Capability
from ._errors import InvalidArgumentError, OperationFailedError, OperationInvalidError, quote
from ._flags import (
    BlockCommitFlags,
    BlockCopyFlags,
    BlockJobAbortFlags,
    BlockJobSetSpeedFlags,
    BlockJobStatus,
    BlockJobType,
    BlockPullFlags,
    BlockRebaseFlags,
)
from ._models import DISK_FORMATS, BlockCommitRequest, BlockCopyRequest, BlockJobEvent, BlockJobInfo, DiskInfo, Event
from .spi import OPERATIONS, DomainRef, poll_until
from .spi._operations import Operation

if TYPE_CHECKING:
    from ._connection import Connection
    from ._domain import Domain

__all__ = ["BlockJob", "BlockJobMethods"]

MiB = _rules.MiB
JOB_END_TIMEOUT = 300.0
"""How long an abort or pivot waits for the job to end when the connection sets no timeout."""


class BlockJobMethods:
    """The block-job half of :class:`~virtabs.Domain`."""

    _conn: Connection
    _ref: DomainRef

    @property
    def name(self) -> str:  # provided by Domain
        raise NotImplementedError

    def _what(self, action: str) -> str:  # provided by Domain
        raise NotImplementedError

    def disks(self) -> list[DiskInfo]:  # provided by Domain
        raise NotImplementedError

    def _resolve_disk(self, op: Operation, disk: str, what: str, extra: Iterable[Capability] = ()) -> DiskInfo:
        """Steps 1 and 3 of the gate (so a refused call costs no host call), then the disk by target or path."""
        self._conn._gate.check(op, what, extra=extra)
        return _rules.find_disk(self.disks(), disk, what, self.name)

    # --- starting jobs ----------------------------------------------------------------

    def block_pull(self, disk: str, *, base: str | None = None, bandwidth: int = 0, flags: int = 0) -> BlockJob:
        """Fill ``disk`` from its backing chain down to ``base`` (None: flatten completely).

        ``bandwidth`` is MiB/s unless ``BlockPullFlags.BANDWIDTH_BYTES``.
        """
        f = _rules.flags(BlockPullFlags, flags)
        bw = _rules.bandwidth_bytes(bandwidth, bool(f & BlockPullFlags.BANDWIDTH_BYTES))
        return self._start_pull(disk, base, bw)

    def block_rebase(
        self, disk: str, base: str | None, *, bandwidth: int = 0, flags: BlockRebaseFlags | int = 0
    ) -> BlockJob:
        """libvirt's ``virDomainBlockRebase``: a pull to ``base``, or with ``COPY`` a copy into ``base``.

        SHALLOW, REUSE_EXT, COPY_RAW and COPY_DEV require COPY. ``bandwidth`` is MiB/s
        unless ``BANDWIDTH_BYTES``.
        """
        f = _rules.flags(BlockRebaseFlags, flags)
        bw = _rules.bandwidth_bytes(bandwidth, bool(f & BlockRebaseFlags.BANDWIDTH_BYTES))
        if f & BlockRebaseFlags.COPY:
            return self._start_copy(disk, _rules.copy_request_from_rebase(base, f, bw, self._what("block copy")))
        _rules.refuse_copy_flags_without_copy(f, self._what("block rebase"))
        return self._start_pull(disk, base, bw)

    def block_copy(
        self,
        disk: str,
        dest: str,
        *,
        flags: BlockCopyFlags | int = 0,
        format: str | None = None,
        bandwidth: int = 0,
        granularity: int | None = None,
        buf_size: int | None = None,
    ) -> BlockJob:
        """libvirt's ``virDomainBlockCopy``: copy ``disk`` into the file ``dest``, then mirror until pivot or abort.

        ``bandwidth`` is in bytes/s here (as libvirt's typed parameter). ``format``
        None keeps the source's format for a new file, or reads an existing
        file's metadata with REUSE_EXT; pass ``format="raw"`` to forbid probing.
        """
        f = _rules.flags(BlockCopyFlags, flags)
        bw = _rules.bandwidth_bytes(bandwidth, True)
        if format is not None and format not in DISK_FORMATS:
            raise InvalidArgumentError(
                f"unknown destination format {quote(format)} (known: {', '.join(sorted(DISK_FORMATS))})"
            )
        _check_copy_tuning(granularity, buf_size)
        _rules.require_text(dest, "destination")
        request = BlockCopyRequest(
            dest=dest,
            format=format,
            shallow=bool(f & BlockCopyFlags.SHALLOW),
            move_chain=bool(f & BlockCopyFlags.MOVE_CHAIN),
            reuse_existing=bool(f & BlockCopyFlags.REUSE_EXT),
            bandwidth_bytes=bw,
            granularity=granularity,
            buf_size=buf_size,
            synchronous_writes=bool(f & BlockCopyFlags.SYNCHRONOUS_WRITES),
            transient=bool(f & BlockCopyFlags.TRANSIENT_JOB),
        )
        return self._start_copy(disk, request)

    def block_commit(
        self,
        disk: str,
        *,
        base: str | None = None,
        top: str | None = None,
        bandwidth: int = 0,
        flags: BlockCommitFlags | int = 0,
    ) -> BlockJob:
        """Merge ``top`` (default: the active layer, which needs ``ACTIVE``) down into ``base`` (default: the deepest)."""
        f = _rules.flags(BlockCommitFlags, flags)
        bw = _rules.bandwidth_bytes(bandwidth, bool(f & BlockCommitFlags.BANDWIDTH_BYTES))
        what = self._what(f"block commit on disk {quote(disk)}")
        op = OPERATIONS["block_commit"]
        extra = _rules.bandwidth_capabilities(bw)
        info = self._resolve_disk(op, disk, what, extra)
        request = _commit_request(info, base, top, f, bw, what)
        with self._conn._gate(op, what, dom=self._ref, disk=info.target, extra=extra) as call:
            call.driver.block_commit(self._ref, info.target, request)
        return BlockJob(self, info.target, BlockJobType.ACTIVE_COMMIT if request.active else BlockJobType.COMMIT)

    def _start_pull(self, disk: str, base: str | None, bandwidth_bytes: int) -> BlockJob:
        what = self._what(f"block pull on disk {quote(disk)}")
        op = OPERATIONS["block_pull"]
        extra = _rules.bandwidth_capabilities(bandwidth_bytes)
        info = self._resolve_disk(op, disk, what, extra)
        if base is not None:
            _rules.require_text(base, "base")
            _rules.chain_index((info.path, *info.backing_chain), base, "base", what, allow_top=False)
        with self._conn._gate(op, what, dom=self._ref, disk=info.target, extra=extra) as call:
            call.driver.block_pull(self._ref, info.target, base, bandwidth_bytes)
        return BlockJob(self, info.target, BlockJobType.PULL)

    def _start_copy(self, disk: str, request: BlockCopyRequest) -> BlockJob:
        what = self._what(f"block copy of disk {quote(disk)}")
        op = OPERATIONS["block_copy"]
        _rules.check_copy_kind(request, what)
        extra = _rules.copy_capabilities(request) + _rules.bandwidth_capabilities(request.bandwidth_bytes)
        self._conn._gate.check(op, what, extra=extra)
        _rules.check_copy_destination(request, what)
        info = _rules.find_disk(self.disks(), disk, what, self.name)
        request = _rules.settle_copy_request(request, info, what)
        with self._conn._gate(op, what, dom=self._ref, disk=info.target, extra=extra) as call:
            call.driver.block_copy(self._ref, info.target, request)
        return BlockJob(self, info.target, BlockJobType.COPY)

    # --- controlling jobs ------------------------------------------------------------

    def block_job_info(self, disk: str) -> BlockJobInfo | None:
        """The block job on ``disk``, or None. ``cur == end`` is never reported before the job is ready."""
        op = OPERATIONS["block_job_info"]
        gate = self._conn._gate
        asked = False
        if _rules.could_be_disk_target(disk):
            # The common query ("vda" during a copy) costs one driver call: a job found on a
            # target proves the disk exists. Otherwise (no job, or the driver knows no such
            # target) the disk is resolved as below, so an unknown disk gets the core's error.
            with contextlib.suppress(InvalidArgumentError):
                job = gate.read(op, lambda: self._what(f"block job query on disk {quote(disk)}"),
                                gate.driver.block_job_info, self._ref, disk)  # fmt: skip
                if job is not None:
                    return _rules.never_done_before_ready(job)
                asked = True
        what = self._what(f"block job query on disk {quote(disk)}")
        info = self._resolve_disk(op, disk, what)
        if asked and info.target == disk:
            return None
        with gate(op, what) as call:
            return _rules.never_done_before_ready(call.driver.block_job_info(self._ref, info.target))

    def block_job_abort(self, disk: str, flags: BlockJobAbortFlags | int = 0) -> None:
        """End the job on ``disk``: cancel (stay on the source) or, with PIVOT, switch to the copy.

        Waits for the job to end unless ASYNC (at most the connection's timeout,
        or 300 s). Pivot before the job is ready raises BlockCopyActiveError.
        """
        f = _rules.flags(BlockJobAbortFlags, flags)
        pivot = bool(f & BlockJobAbortFlags.PIVOT)
        what = self._what(f"block job {'pivot' if pivot else 'abort'} on disk {quote(disk)}")
        op = OPERATIONS["block_job_abort"]
        if pivot:
            # Which capability a pivot needs depends on the job; with neither, refuse before any host call.
            self._conn._gate.require((Capability.BLOCK_COPY_PIVOT, Capability.BLOCK_COMMIT), what)
        info = self._resolve_disk(op, disk, what)
        call = self._conn._gate.check(op, what, dom=self._ref, disk=info.target)
        if pivot:
            assert call.job is not None  # JOB_ON_DISK guarantees it
            self._conn._gate.require(_rules.pivot_capability(call.job, what), what)
            _rules.check_ready_for_pivot(call.job, what)
        with self._conn._gate.translate(what):
            call.driver.block_job_abort(self._ref, info.target, pivot)
        if f & BlockJobAbortFlags.ASYNC:
            return
        timeout = self._conn.timeout or JOB_END_TIMEOUT
        with self._conn._gate.translate(what):
            poll_until(
                lambda: call.driver.block_job_info(self._ref, info.target) is None,
                timeout=timeout,
                what=f"{what}: the job has not ended",
            )

    def block_job_set_speed(self, disk: str, bandwidth: int, flags: BlockJobSetSpeedFlags | int = 0) -> None:
        """Change the bandwidth of the job on ``disk`` (MiB/s unless BANDWIDTH_BYTES; 0 = unlimited).

        Needs ``block.bandwidth``, like a non-zero bandwidth when a job starts.
        """
        f = _rules.flags(BlockJobSetSpeedFlags, flags)
        bw = _rules.bandwidth_bytes(bandwidth, bool(f & BlockJobSetSpeedFlags.BANDWIDTH_BYTES))
        what = self._what(f"block job speed on disk {quote(disk)}")
        op = OPERATIONS["block_job_set_speed"]
        info = self._resolve_disk(op, disk, what)
        with self._conn._gate(op, what, dom=self._ref, disk=info.target) as call:
            call.driver.block_job_set_speed(self._ref, info.target, bw)


def _check_copy_tuning(granularity: int | None, buf_size: int | None) -> None:
    if granularity is not None and (
        not _rules.is_int(granularity) or granularity < 512 or granularity > 64 * MiB or granularity & (granularity - 1)
    ):
        raise InvalidArgumentError(
            f"granularity must be a power of two between 512 and 64 MiB, got {quote(granularity)}"
        )
    if buf_size is not None and (not _rules.is_int(buf_size) or buf_size <= 0):
        raise InvalidArgumentError(f"buf_size must be a positive number of bytes, got {quote(buf_size)}")


def _commit_request(
    info: DiskInfo, base: str | None, top: str | None, f: BlockCommitFlags, bw: int, what: str
) -> BlockCommitRequest:
    chain = (info.path, *info.backing_chain)
    if len(chain) < 2:
        raise InvalidArgumentError(f"{what}: disk {quote(info.target)} has no backing image to commit into")
    top_index = 0 if top in (None, info.path) else _rules.chain_index(chain, top, "top", what)
    active = top_index == 0
    if active and not f & BlockCommitFlags.ACTIVE:
        raise InvalidArgumentError(
            f"{what}: commit of the active layer of disk {quote(info.target)} requires the ACTIVE flag"
        )
    if not active and f & BlockCommitFlags.ACTIVE:
        raise InvalidArgumentError(f"{what}: the ACTIVE flag requires top to be the active layer")
    if top_index >= len(chain) - 1:
        raise InvalidArgumentError(f"{what}: top {quote(top)} has no backing image below it")
    if base is None:
        base_index = top_index + 1 if f & BlockCommitFlags.SHALLOW else len(chain) - 1
    else:
        base_index = _rules.chain_index(chain, base, "base", what)
        if base_index <= top_index:
            raise InvalidArgumentError(f"{what}: base {quote(base)} is not below top in the backing chain")
        if f & BlockCommitFlags.SHALLOW and base_index != top_index + 1:
            raise InvalidArgumentError(f"{what}: SHALLOW requires base directly below top")
    return BlockCommitRequest(
        base=chain[base_index],
        top=None if active else chain[top_index],
        active=active,
        bandwidth_bytes=bw,
        delete=bool(f & BlockCommitFlags.DELETE),
        relative=bool(f & BlockCommitFlags.RELATIVE),
    )


class BlockJob:
    """A handle on the block job of one disk: poll it, wait for it, pivot or abort it."""

    def __init__(self, domain: Domain | BlockJobMethods, disk: str, type: BlockJobType) -> None:
        self.domain: Domain = domain  # type: ignore[assignment]
        self.disk = disk
        self.type = type

    def __repr__(self) -> str:
        return f"<BlockJob {self.type.name} domain={self.domain.name!r} disk={self.disk!r}>"

    @property
    def two_phase(self) -> bool:
        """True for jobs that mirror until the caller pivots or aborts: active commits, and copies on a
        connection that declares ``block.copy.pivot``. A copy that switches over by itself (Storage
        vMotion, Move-VMStorage) is one phase: :meth:`wait` returns when it has ended."""
        if self.type == BlockJobType.COPY:
            return self.domain.connection.supports(Capability.BLOCK_COPY_PIVOT)
        return self.type in _rules.TWO_PHASE

    def info(self) -> BlockJobInfo | None:
        """Current progress, or None once the job has ended."""
        return self.domain.block_job_info(self.disk)

    def wait_ready(
        self, timeout: float | None = None, *, progress: Callable[[BlockJobInfo], None] | None = None
    ) -> BlockJobInfo:
        """Wait until a copy or active commit is ready to pivot; OperationTimeoutError after ``timeout`` seconds.

        A copy that switches over by itself (no ``block.copy.pivot``) may end instead of becoming
        ready: that raises OperationFailedError; use :meth:`wait` for those.
        """
        if self.type not in _rules.TWO_PHASE:
            raise OperationInvalidError(f"a {self.type.name.lower()} job has no ready phase; use wait()")
        result = self._wait(timeout, progress, until_ready=True)
        assert result is not None
        return result

    def wait(self, timeout: float | None = None, *, progress: Callable[[BlockJobInfo], None] | None = None) -> None:
        """Wait for the job: a pull or commit until it ends; a copy or active commit until it is ready
        (those never end by themselves: call :meth:`pivot` or :meth:`abort`)."""
        self._wait(timeout, progress, until_ready=self.two_phase)

    def pivot(self, *, wait: bool = True) -> None:
        """Switch the disk to the copy (or committed base). BlockCopyActiveError if not ready."""
        flags = BlockJobAbortFlags.PIVOT | (BlockJobAbortFlags(0) if wait else BlockJobAbortFlags.ASYNC)
        self.domain.block_job_abort(self.disk, flags)

    def abort(self, *, wait: bool = True) -> None:
        """Cancel the job; a copy stays on the source."""
        self.domain.block_job_abort(self.disk, BlockJobAbortFlags(0) if wait else BlockJobAbortFlags.ASYNC)

    def _wait(
        self, timeout: float | None, progress: Callable[[BlockJobInfo], None] | None, until_ready: bool
    ) -> BlockJobInfo | None:
        conn = self.domain.connection
        failures: list[BlockJobEvent] = []
        sub = None
        if conn.supports("events"):

            def on_event(event: Event) -> None:
                if (
                    isinstance(event, BlockJobEvent)
                    and event.disk == self.disk
                    and event.status == BlockJobStatus.FAILED
                ):
                    failures.append(event)

            sub = conn.subscribe(on_event, domain=self.domain)
        where = f"block job on disk {quote(self.disk)} of domain {quote(self.domain.name)}"
        last: list[BlockJobInfo] = []
        ended = object()

        def check() -> BlockJobInfo | object | None:
            info = self.info()
            if info is None:
                if failures:
                    raise OperationFailedError(f"{where} failed: {failures[-1].error or 'no reason given'}")
                if until_ready:
                    raise OperationFailedError(f"{where} ended before it was ready")
                return ended
            last[:] = [info]
            if progress is not None:
                progress(info)
            return info if until_ready and info.ready else None

        def describe() -> str:
            return f"{last[0].cur}/{last[0].end} bytes" if last else "no progress reported"

        try:
            goal = "ready" if until_ready else "finished"
            result = poll_until(check, timeout=timeout, what=f"{where} not {goal}", describe=describe)
        finally:
            if sub is not None:
                sub.close()
        return None if result is ended else result  # type: ignore[return-value]

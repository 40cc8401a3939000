"""Block jobs: ``block-stream``, ``drive-mirror`` and ``block-commit``, and settling them when QEMU concludes.

Every job runs with ``auto-dismiss: false`` under the id ``vtb-<disk>`` and has a
:class:`~virtabs_qemu._records.JobRecord` in the domain's ``run.json``, written *before* QEMU
gets the command. Whoever next talks to the QEMU (any process: a later call, the event poller)
reconciles: a concluded job is settled from what QEMU's block graph shows (after a pivot the
definition names the copy), dismissed, and reported as a :class:`BlockJobEvent`.

The core has checked the rules (capability, state, one job per disk, pivot only when ready,
copy destination and flags); this room does native work. Where QEMU alone can refuse
atomically (a second job on a disk, completing a job that is not ready, a job that has gone)
its refusal leaves as the same error class (``_session.QMP_ERRORS``).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from virtabs.spi import (
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobEvent,
    BlockJobInfo,
    BlockJobStatus,
    DomainRef,
    DomainSpec,
    InvalidArgumentError,
    NotSupportedError,
    OperationFailedError,
    OperationInvalidError,
    VirtabsError,
    quote,
)

from . import _img
from ._cmdline import file_node_name
from ._copydest import check_device_destination, check_file_destination
from ._events import Events
from ._live import Lease, LiveView
from ._process import Processes
from ._qmp import QMPClient, QMPError
from ._records import JobRecord, job_id
from ._session import QMP_ERRORS, Sessions, device_node, image_chain, node_for_path
from ._store import DefinitionStore

__all__ = ["BlockJobs"]

MIRROR_BUF_SIZE = 16 << 20
"""QEMU's default ``buf-size`` of ``drive-mirror`` (16 in-flight requests of 1 MiB)."""
MIN_MIRROR_BUF = 64 << 10
"""The smallest buffer this driver asks for (QEMU rounds it up to the copy's granularity)."""


class BlockJobs:
    """The block jobs of one state root."""

    def __init__(
        self,
        store: DefinitionStore,
        processes: Processes,
        sessions: Sessions,
        events: Events,
        timeout: float,
        live: LiveView,
    ) -> None:
        self.live = live
        self.store = store
        self.processes = processes
        self.sessions = sessions
        self.events = events
        self.timeout = timeout

    # --- starting ------------------------------------------------------------------------------

    def pull(self, dom: DomainRef, disk: str, base: str | None, bandwidth_bytes: int) -> None:
        """``block-stream`` (``base-node`` when ``base`` is given)."""
        with self.sessions.open(dom.name) as q:
            top = self._top(q, dom.name, disk)
            args: dict[str, Any] = {"job-id": job_id(disk), "device": top["node-name"], "auto-dismiss": False}
            if base:
                args["base-node"] = node_for_path(q, base)
            if bandwidth_bytes:
                args["speed"] = bandwidth_bytes
            self._start(dom.name, disk, JobRecord("pull", job_id(disk), base=base), "block-stream", args, q)

    def copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """``drive-mirror`` into ``request.dest`` with an explicit format.

        The core has settled the request: ``shallow`` only with a backing chain, never into a new
        raw file, the destination absolute and outside the chain. A format is probed only for a
        REUSE_EXT file destination without one (COPY_RAW passes ``format="raw"``); never on a device.
        The destination is checked first (:mod:`._copydest`): a file must be a regular file; a COPY_DEV
        device a block device under ``/dev`` that is free and fits. QEMU opens a block device path
        with its ``host_device`` protocol driver (and formats it, unless REUSE_EXT).
        """
        dest = request.dest
        what = f"block copy of disk {disk}"
        with self.sessions.open(dom.name) as q:
            disks = self.store.get(dom).spec.disks
            src = next((d for d in disks if d.target == disk), None)
            if src is None:
                raise InvalidArgumentError(f"domain {quote(dom.name)} has no disk {disk} in its definition")
            top = self._top(q, dom.name, disk)
            if request.dest_is_block_device:
                # an existing device: formatted by QEMU (mode absolute-paths) unless REUSE_EXT; never unlinked
                fmt = request.format or (None if request.reuse_existing else src.format)
                image = top.get("image")
                size = image.get("virtual-size") if isinstance(image, dict) else None
                check_device_destination(
                    dest,
                    fmt=fmt,
                    reuse=request.reuse_existing,
                    virtual_size=int(size) if isinstance(size, int) else None,
                    own_disks=disks,
                    what=what,
                )
                assert fmt is not None  # a reused device without a format was refused above
                mode = "existing" if request.reuse_existing else "absolute-paths"
            else:
                check_file_destination(dest, what)
                exists = os.path.exists(dest)
                if request.reuse_existing:
                    if not exists:
                        raise InvalidArgumentError(f"{what}: reused destination {dest} does not exist")
                    fmt = request.format or _img.probe_format(dest, self.processes.host_timeout)
                    mode = "existing"
                else:
                    if exists and os.path.getsize(dest) > 0:
                        raise OperationInvalidError(
                            f"{what}: destination {dest} exists and is not empty (use REUSE_EXT)"
                        )
                    fmt = request.format or src.format
                    mode = "absolute-paths"
                    if exists:
                        os.unlink(dest)
            node = f"mirror{int(time.time() * 1000) % 10**9}-{disk}"[:31]
            args: dict[str, Any] = {
                "job-id": job_id(disk),
                "device": top["node-name"],
                "target": dest,
                "format": fmt,
                "sync": "top" if request.shallow else "full",
                "mode": mode,
                "node-name": node,
                "auto-dismiss": False,
            }
            if request.bandwidth_bytes:
                args["speed"] = request.bandwidth_bytes
            if request.granularity:
                args["granularity"] = request.granularity
            buf_size = request.buf_size
            if not buf_size and 0 < request.bandwidth_bytes < MIRROR_BUF_SIZE:
                # QEMU's mirror puts up to buf-size (16 MiB by default) in flight before its rate limit
                # applies: a throttled copy would move that much at once. Bound it by the bandwidth.
                buf_size = max(request.bandwidth_bytes, MIN_MIRROR_BUF)
            if buf_size:
                args["buf-size"] = buf_size
            if request.synchronous_writes:
                args["copy-mode"] = "write-blocking"
            job = JobRecord(
                "copy",
                job_id(disk),
                dest=dest,
                dest_format=fmt,
                source=src.path,
                source_node=str(top["node-name"]),
                target_node=node,
            )
            self._start(dom.name, disk, job, "drive-mirror", args, q)

    def commit(self, dom: DomainRef, disk: str, request: BlockCommitRequest) -> None:
        """``block-commit`` (``top-node``/``base-node``); the active layer is two-phase (pivot: ``job-complete``).

        The layers and their formats come from QEMU's open graph (query-block), not from the files.
        """
        if request.relative:
            raise NotSupportedError(f"the qemu driver cannot keep relative backing names (disk {disk})")
        with self.sessions.open(dom.name) as q:
            top_entry = self._top(q, dom.name, disk)
            layers = image_chain(top_entry)
            paths = [p for p, _ in layers]
            ib = _layer(paths, request.base, disk)
            it = 0 if request.active or request.top is None else _layer(paths, request.top, disk)
            args: dict[str, Any] = {
                "job-id": job_id(disk),
                "device": top_entry["node-name"],
                "base-node": node_for_path(q, paths[ib]),
                "auto-dismiss": False,
            }
            if it > 0:
                args["top-node"] = node_for_path(q, paths[it])
            if request.bandwidth_bytes:
                args["speed"] = request.bandwidth_bytes
            job = JobRecord(
                "commit" if it > 0 else "active_commit",
                job_id(disk),
                base=paths[ib],
                base_format=layers[ib][1],
                top=paths[it],
                delete=paths[it:ib] if request.delete else [],
                source_node=str(top_entry["node-name"]),
            )
            self._start(dom.name, disk, job, "block-commit", args, q)

    def _top(self, q: QMPClient, name: str, disk: str) -> dict[str, Any]:
        top = device_node(q, disk)
        if top is None:
            raise OperationFailedError(f"domain {quote(name)}: disk {disk} has no medium")
        return top

    def _start(self, name: str, target: str, job: JobRecord, command: str, args: dict[str, Any], q: QMPClient) -> None:
        """Record the job, then start it; QEMU's refusal of a second job on the disk is BlockCopyActiveError.

        The record is written before QEMU knows the job (a crash leaves a record, never a lost job).
        A record that is still there after reconciling belongs to a job QEMU still runs under the
        same id, so QEMU refuses the new one; that record is kept.
        """
        self.reconcile(name, q)
        run = self.store.run(name)
        fresh = target not in run.jobs
        if fresh:
            run.jobs[target] = job
            run.pivot_failures.pop(target, None)
            self.store.save_run(name, run)
        try:
            with QMP_ERRORS(f"block job on disk {quote(target)} of domain {quote(name)}"):
                q.execute(command, args)
        except BaseException:
            if fresh:
                run = self.store.run(name)
                run.jobs.pop(target, None)
                self.store.save_run(name, run)
            raise

    # --- settling ---------------------------------------------------------------------------------

    def reconcile(self, name: str, q: QMPClient) -> dict[str, dict[str, Any]]:
        """Settle concluded jobs (definition, dismiss, event); return QEMU's live jobs by id."""
        run = self.store.run(name)
        live = {str(j["id"]): j for j in q.execute("query-jobs")}
        changed = False
        for target, job in list(run.jobs.items()):
            qjob = live.get(job.id)
            if qjob is not None and qjob.get("status") not in ("concluded", "null"):
                if qjob.get("status") in ("ready", "standby"):
                    self.events.job_ready(name, target)
                continue
            error = qjob.get("error") if qjob else None
            status = self._finish(name, q, target, job, error)
            if qjob is not None:
                with contextlib.suppress(QMPError):
                    q.execute("job-dismiss", {"id": job.id})
                live.pop(job.id, None)
            del run.jobs[target]
            if status == BlockJobStatus.FAILED and job.intent == "pivot":
                run.pivot_failures[target] = error or "QEMU gave no reason"
            changed = True
            defn = self.store.load(name)
            self.events.emit(
                BlockJobEvent(domain=name, uuid=defn.uuid, disk=target, job_type=job.type, status=status, error=error)
            )
        if changed:
            self.store.save_run(name, run)
        return live

    def _finish(self, name: str, q: QMPClient, target: str, job: JobRecord, error: str | None) -> BlockJobStatus:
        """How a concluded job ended, from what QEMU's graph shows; the definition follows a pivot."""
        inserted = device_node(q, target) or {}
        current = os.path.realpath(str(inserted.get("file", "")))
        new: tuple[str, str] | None = None
        if job.kind in ("copy", "active_commit"):
            path, fmt = (job.dest, job.dest_format) if job.kind == "copy" else (job.base, job.base_format)
            if path and fmt and current == os.path.realpath(path):
                status, new = BlockJobStatus.COMPLETED, (path, fmt)
            elif error and job.intent != "abort":
                status = BlockJobStatus.FAILED
            else:
                status = BlockJobStatus.CANCELED
        elif job.intent == "abort":
            status = BlockJobStatus.CANCELED
        else:
            status = BlockJobStatus.FAILED if error else BlockJobStatus.COMPLETED
        if new is not None:
            defn = self.store.load(name)
            spec = defn.spec.to_dict()
            for d in spec["disks"]:
                if d["target"] == target:
                    d["path"], d["format"] = new
            self.store.save(defn.with_spec(DomainSpec.from_dict(spec)))
            for node in (job.source_node, file_node_name(target)):
                if node and node != inserted.get("node-name"):
                    with contextlib.suppress(QMPError, VirtabsError):
                        q.execute("blockdev-del", {"node-name": node})
        if status == BlockJobStatus.COMPLETED:
            for path in job.delete:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return status

    # --- reading -----------------------------------------------------------------------------------

    def infos(self, name: str, q: QMPClient) -> list[BlockJobInfo]:
        """Every job of a running domain, in the caller's session (reconcile, then ``query-block-jobs``).

        ``cur`` is held at ``end - 1`` until a job is ready (QEMU starts at 0/0, which would read as done).
        """
        self.reconcile(name, q)
        jobs = self.store.run(name).jobs
        if not jobs:
            return []
        return describe(jobs, q.execute("query-block-jobs"))

    def conversation(self, name: str, lease: Lease | None) -> contextlib.AbstractContextManager[QMPClient]:
        """The leased connection when there is a lease (no new connection), else a fresh session."""
        return self.live.conversation(lease, self.sessions) if lease is not None else self.sessions.open(name)

    def live_infos(self, name: str, lease: Lease) -> list[BlockJobInfo] | None:
        """The jobs from the leased view (``lease`` is up to date: :meth:`LiveView.lease`), with one
        ``query-block-jobs`` on the leased connection for the progress, or None: take a session.

        None whenever reconciling would have work (a recorded job QEMU has concluded, dismissed or not
        started yet; a pivot failure to report once): the session settles it under the domain lock.
        """
        run = self.store.run_view(name)
        if run.pivot_failures:
            return None
        if not run.jobs:
            return []
        for job in run.jobs.values():
            if lease.jobs.get(job.id) in (None, "concluded", "null"):
                return None
        raw = self.live.query(lease, "query-block-jobs")
        if not isinstance(raw, list):
            return None
        for target, job in run.jobs.items():
            if lease.jobs.get(job.id) in ("ready", "standby"):
                self.events.job_ready(name, target, job.started)
        return describe(run.jobs, raw)

    def all(self, dom: DomainRef) -> list[BlockJobInfo]:
        """Every job of the domain, in one session (none when it is not running)."""
        order = [d.target for d in self.store.view(dom).spec.disks]
        lease = self.live.lease(dom.name)
        jobs = self.live_infos(dom.name, lease) if lease is not None else None
        if jobs is None:
            if lease is None and self.processes.pid(dom.name) is None:
                return []
            with self.conversation(dom.name, lease) as q:
                jobs = self.infos(dom.name, q)
        return sorted(jobs, key=lambda j: order.index(j.disk) if j.disk in order else len(order))

    def info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """The job on ``disk``, or None; a pivot QEMU failed raises OperationFailedError, once.

        That is how the core's abort-and-wait (polling this until None) learns that a pivot failed:
        the job is gone either way, but the disk stayed on the source.
        """
        self.store.view(dom)
        lease = self.live.lease(dom.name)
        if lease is not None:
            jobs = self.live_infos(dom.name, lease)
            if jobs is not None:
                return next((j for j in jobs if j.disk == disk), None)
        elif self.processes.pid(dom.name) is None:
            return None
        with self.conversation(dom.name, lease) as q:
            jobs = self.infos(dom.name, q)
            run = self.store.run(dom.name)
            failure = run.pivot_failures.pop(disk, None)
            if failure is not None:
                self.store.save_run(dom.name, run)
                raise OperationFailedError(
                    f"block job on disk {disk} of domain {quote(dom.name)} failed while pivoting "
                    f"(the disk stays on its source): {failure}"
                )
        return next((j for j in jobs if j.disk == disk), None)

    # --- controlling -------------------------------------------------------------------------------

    def abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Pivot: ``job-complete``. Cancel: ``block-job-cancel`` (the disk stays on the source).

        Both return once QEMU has the command; the core waits by polling :meth:`info` until None,
        and :meth:`info` raises once if QEMU failed the pivot. A job QEMU no longer has is
        OperationInvalidError (QEMU's "not found"); one not ready to complete is
        BlockCopyActiveError (QEMU's refusal).
        """
        name = dom.name
        with self.sessions.open(name) as q:
            live = self.reconcile(name, q)
            run = self.store.run(name)
            job = run.jobs.get(disk)
            qjob = live.get(job_id(disk))
            # An intent whose command QEMU never got (the asking process died in between) may be retried.
            ending = qjob is None or qjob.get("status") in ("aborting", "waiting", "pending")
            if job is not None and job.intent and ending:
                raise OperationInvalidError(f"block job on disk {disk} of domain {quote(name)} is still being ended")
            if job is not None:
                job.intent = "pivot" if pivot else "abort"
                run.pivot_failures.pop(disk, None)
                self.store.save_run(name, run)
            try:
                with QMP_ERRORS(f"block job on disk {quote(disk)} of domain {quote(name)}"):
                    if pivot:
                        q.execute("job-complete", {"id": job_id(disk)})
                    else:
                        try:
                            q.execute("block-job-cancel", {"device": job_id(disk), "force": False})
                        except QMPError:
                            if job is None or qjob is None:
                                raise
                            # concluding by itself already: reconciling settles it
            except BaseException:
                run = self.store.run(name)
                if pivot and disk in run.jobs:
                    run.jobs[disk].intent = None
                    self.store.save_run(name, run)
                raise

    def set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        """``block-job-set-speed`` (a job QEMU no longer has: OperationInvalidError)."""
        with self.sessions.open(dom.name) as q:
            self.reconcile(dom.name, q)
            with QMP_ERRORS(f"block job on disk {quote(disk)} of domain {quote(dom.name)}"):
                q.execute("block-job-set-speed", {"device": job_id(disk), "speed": bandwidth_bytes})


def describe(jobs: dict[str, JobRecord], block_jobs: list[dict[str, Any]]) -> list[BlockJobInfo]:
    """The recorded jobs as :class:`BlockJobInfo`, progress from ``query-block-jobs``.

    ``cur`` is held at ``end - 1`` until a job is ready (QEMU starts at 0/0, which would read as done).
    """
    by_id = {str(bj.get("device")): bj for bj in block_jobs}
    out = []
    for target, job in jobs.items():
        bj = by_id.get(job.id)
        if bj is None:  # recorded but not (yet/anymore) in QEMU: just starting
            out.append(BlockJobInfo(type=job.type, cur=0, end=1, bandwidth=0, ready=False, disk=target))
            continue
        cur, end, ready = int(bj.get("offset", 0)), int(bj.get("len", 0)), bool(bj.get("ready"))
        if not ready:
            end = max(end, 1)
            cur = min(cur, end - 1)
        out.append(
            BlockJobInfo(type=job.type, cur=cur, end=end, bandwidth=int(bj.get("speed", 0)), ready=ready, disk=target)
        )
    return out


def _layer(paths: list[str], image: str | None, disk: str) -> int:
    """Where ``image`` sits in the chain QEMU has open (0 = the active layer)."""
    real = [os.path.realpath(p) for p in paths]
    if image is not None and os.path.realpath(image) in real:
        return real.index(os.path.realpath(image))
    raise InvalidArgumentError(f"image {image} is not part of the open backing chain of disk {disk}")

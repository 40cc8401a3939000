"""The state of one simulated ``test`` node and its block-job engine.

A :class:`Node` is shared by every connection to the same ``test:///`` URI in
one process. Everything in it is guarded by :attr:`Node.lock` (an ``RLock``);
:meth:`Node.txn` takes the lock, collects the events an operation produces
and delivers them to every open connection *after* releasing the lock, so an
event callback may call back into the driver.

The format of a node description (the JSON of ``test:///PATH.json``) is
documented in :mod:`virtabs.drivers.test`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os.path
import random
import threading
import time
import uuid as _uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import attrs

from .._errors import (
    BlockCopyActiveError,
    InvalidArgumentError,
    NoDomainError,
    OperationInvalidError,
)
from .._flags import BlockJobStatus, BlockJobType, DomainState
from .._models import (
    DISK_FORMATS,
    BlockJobEvent,
    BlockJobInfo,
    DiskInfo,
    DiskSpec,
    DomainRef,
    DomainSpec,
    Event,
    NetworkAttachment,
    NetworkInfo,
    NicInfo,
    NicSpec,
)

__all__ = ["NATIVE_STATE", "GiB", "KiB", "MiB", "Node", "as_tuple"]

_log = logging.getLogger("virtabs.drivers.test")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

UNLIMITED_RATE = 2 * GiB
"""Bytes/s a block job moves when its bandwidth is 0 ("unlimited")."""
QCOW2_EMPTY_ALLOCATION = 192 * KiB
"""What a freshly created, empty non-raw image occupies (its metadata)."""
DEFAULT_IMAGE_CAPACITY = GiB
"""Capacity of an image made up for a disk whose path is not in the store."""

NATIVE_STATE: Mapping[DomainState, str] = {
    DomainState.NOSTATE: "no state",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "idle",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "in shutdown",
    DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed",
    DomainState.PMSUSPENDED: "pmsuspended",
}
"""virsh's words for the states (what ``native_state`` reports)."""


class NodeLock(Protocol):
    """What guards a node: an ``RLock``, or a file node's :class:`~virtabs.drivers._test_file.FileSync`."""

    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool:
        """Take the lock."""

    def release(self) -> None:
        """Release the lock."""

    def __enter__(self) -> bool:
        """Take the lock."""

    def __exit__(self, *exc: Any) -> None:
        """Release the lock."""


class Listener(Protocol):
    """Something that receives the node's events (a :class:`TestDriver`)."""

    def emit(self, event: Event) -> None:
        """Deliver one event."""


def parse_state(value: Any) -> DomainState:
    """A state from a description: a :class:`DomainState` name or virsh's word."""
    if isinstance(value, DomainState):
        return value
    text = str(value).strip().lower()
    for state, word in NATIVE_STATE.items():
        if text in (state.name.lower(), word, word.replace(" ", "")):
            return state
    known = ", ".join(s.name.lower() for s in DomainState)
    raise InvalidArgumentError(f"unknown domain state {value!r} (known: {known})")


# --------------------------------------------------------------------------- data


@dataclass
class Image:
    """An image in the node's virtual store."""

    path: str
    format: str
    capacity: int
    allocation: int
    backing: str | None = None


@dataclass
class SnapshotData:
    """A snapshot: the definition and run state at the time it was taken."""

    name: str
    created_at: _dt.datetime
    state: DomainState
    parent: str | None
    spec: DomainSpec
    max_memory: int


@dataclass
class ManagedSaveData:
    """A managed save image: the run state the next start resumes (the guest's run clock included)."""

    paused: bool
    cpu_ns: int


@dataclass
class DomainData:
    """A domain of the node."""

    spec: DomainSpec
    max_memory: int
    state: DomainState = DomainState.SHUTOFF
    autostart: bool = False
    ips: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cpu_ns: int = 0
    running_since: float | None = None
    snapshots: dict[str, SnapshotData] = field(default_factory=dict)
    current_snapshot: str | None = None
    managed_save: ManagedSaveData | None = None

    @property
    def name(self) -> str:
        """The domain's name."""
        return self.spec.name

    @property
    def uuid(self) -> str:
        """The domain's UUID (always set once defined)."""
        assert self.spec.uuid is not None
        return self.spec.uuid

    @property
    def ref(self) -> DomainRef:
        """The reference the public layer uses."""
        return DomainRef(self.name, self.uuid)

    def cpu_time_ns(self, now: float) -> int:
        """CPU time so far: grows with wall time while running."""
        if self.running_since is None:
            return self.cpu_ns
        return self.cpu_ns + int((now - self.running_since) * 1e9)

    def set_state(self, state: DomainState, now: float) -> None:
        """Change state, keeping the CPU-time clock right."""
        if self.running_since is not None:
            self.cpu_ns += int((now - self.running_since) * 1e9)
            self.running_since = None
        if not state.is_active:
            self.cpu_ns = 0
        if state == DomainState.RUNNING:
            self.running_since = now
        self.state = state

    def disk(self, name: str) -> DiskSpec | None:
        """The disk with target or current path ``name``."""
        for d in self.spec.disks:
            if name in (d.target, d.path):
                return d
        return None


@dataclass
class Pool:
    """A storage pool: its volumes are the store's images in directory :attr:`path`."""

    name: str
    type: str
    path: str
    capacity: int
    uuid: str
    active: bool = True


@dataclass(eq=False)
class Job:
    """A simulated block job. Progress is ``base_cur + (now - base_time) * rate``."""

    domain_uuid: str
    domain_name: str
    disk: str
    type: BlockJobType
    end: int
    bandwidth: int
    base_time: float
    base_cur: float = 0.0
    ready: bool = False
    ended: bool = False
    two_phase: bool = False
    timer: threading.Timer | None = None
    # what the job acts on
    top: str = ""
    """The image the job works from (pull: the active image; commit: top; copy: the source)."""
    base: str | None = None
    """Pull: the image that stays as backing; commit: the image committed into."""
    child: str | None = None
    """Non-active commit: the image right above ``top``."""
    delete: bool = False
    dest: str | None = None
    dest_created: bool = False
    dest_format: str | None = None
    """Copy: the destination's format (REUSE_EXT with an explicit format overrides the probed one at pivot)."""
    moved: tuple[tuple[str, str], ...] = ()
    """MOVE_CHAIN copy: (source layer, its moved copy) for every layer, the top first."""


# --------------------------------------------------------------------------- node


class Node:
    """One simulated host: domains, pools, an image store and block jobs."""

    def __init__(self, description: Mapping[str, Any], source: str) -> None:
        self.lock: NodeLock = threading.RLock()
        self.source = source
        self.listeners: weakref.WeakSet[Any] = weakref.WeakSet()
        self.domains: dict[str, DomainData] = {}
        self.images: dict[str, Image] = {}
        self.pools: dict[str, Pool] = {}
        self.networks: dict[str, NetworkInfo] = {}
        """The node's networks by name, without attachments (those come from the domains' NICs when read)."""
        self.jobs: dict[tuple[str, str], Job] = {}
        self.host: dict[str, Any] = {}
        self.unlimited_rate = UNLIMITED_RATE
        from ._test_json import load_description

        with self.lock:
            load_description(self, description, source)

    def reset(self, description: Mapping[str, Any]) -> None:
        """Forget everything (cancelling timers) and load ``description`` again, in place."""
        from ._test_json import load_description

        with self.lock:
            self.drop_jobs()
            self.domains.clear()
            self.images.clear()
            self.pools.clear()
            self.networks.clear()
            self.host = {}
            self.unlimited_rate = UNLIMITED_RATE
            load_description(self, description, self.source)

    def drop_jobs(self) -> None:
        """End every job silently and stop its timer (reset; no events)."""
        with self.lock:
            for job in self.jobs.values():
                job.ended = True
                self._cancel_timer(job)
            self.jobs.clear()

    # --- locking and events -------------------------------------------------

    def mark_dirty(self) -> None:
        """Say the node changed (call with the lock held): a file node saves itself when the lock is released.

        :meth:`txn` marks every transaction; methods that change the node under the plain lock call it.
        """
        mark = getattr(self.lock, "mark_dirty", None)
        if mark is not None:
            mark()

    @contextlib.contextmanager
    def txn(self) -> Iterator[list[Event]]:
        """Hold the lock (marking the node changed); deliver the events appended to the yielded list
        once it is released."""
        events: list[Event] = []
        self.lock.acquire()
        self.mark_dirty()
        try:
            yield events
        finally:
            listeners = list(self.listeners) if events else []
            self.lock.release()
            self.deliver(listeners, events)

    @staticmethod
    def deliver(listeners: Sequence[Listener], events: Sequence[Event]) -> None:
        """Hand events to every listener; a failing sink never breaks the node."""
        for event in events:
            for listener in listeners:
                try:
                    listener.emit(event)
                except Exception:  # a subscriber's bug must not break the driver
                    _log.exception("event sink failed on %r", event)

    # --- domains ----------------------------------------------------------------

    def domain(self, ref: DomainRef) -> DomainData:
        """The domain ``ref`` names; NoDomainError when it is gone."""
        dom = self.domains.get(ref.uuid)
        if dom is None:
            raise NoDomainError(f"domain '{ref.name}' does not exist (uuid {ref.uuid})")
        return dom

    def find_domain(self, name_or_uuid: str) -> DomainData:
        """A domain by name, then by UUID; NoDomainError when there is none."""
        for dom in self.domains.values():
            if dom.name == name_or_uuid:
                return dom
        try:
            key = str(_uuid.UUID(name_or_uuid))
        except ValueError:
            key = ""
        if key in self.domains:
            return self.domains[key]
        raise NoDomainError(f"no domain with matching name or uuid '{name_or_uuid}'")

    def add_domain(self, dom: DomainData) -> None:
        """Add a domain (name and UUID already checked to be free)."""
        for disk in dom.spec.disks:
            self.ensure_image(disk.path, disk.format)
        self.domains[dom.uuid] = dom

    def check_free(self, name: str, uuid: str | None) -> None:
        """OperationInvalidError when a domain already has this name or UUID."""
        for dom in self.domains.values():
            if dom.name == name:
                raise OperationInvalidError(f"domain '{name}' already exists (uuid {dom.uuid})")
            if uuid is not None and dom.uuid == uuid:
                raise OperationInvalidError(f"domain with uuid {uuid} already exists as '{dom.name}'")

    def new_mac(self) -> str:
        """An unused 52:54:00:xx:xx:xx address."""
        used = {n.mac for d in self.domains.values() for n in d.spec.nics}
        while True:
            mac = "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
            if mac not in used:
                return mac

    def with_macs(self, spec: DomainSpec) -> DomainSpec:
        """The spec with a MAC address on every NIC (libvirt assigns one at define time)."""
        if all(n.mac for n in spec.nics):
            return spec
        nics = tuple(n if n.mac else attrs.evolve(n, mac=self.new_mac()) for n in spec.nics)
        return attrs.evolve(spec, nics=nics)

    def lease_ips(self, dom: DomainData) -> None:
        """Give NICs on network ``default`` an address in 192.168.122.0/24 when they have none."""
        used = {ip for d in self.domains.values() for ips in d.ips.values() for ip in ips}
        for nic in dom.spec.nics:
            if nic.mac is None or dom.ips.get(nic.mac) or nic.network != "default":
                continue
            for host in range(2, 255):
                ip = f"192.168.122.{host}"
                if ip not in used:
                    dom.ips[nic.mac] = (ip,)
                    used.add(ip)
                    break

    def set_disk(self, dom: DomainData, target: str, path: str, format: str) -> None:
        """Point disk ``target`` at another image (after a pivot)."""
        disks = tuple(attrs.evolve(d, path=path, format=format) if d.target == target else d for d in dom.spec.disks)
        dom.spec = attrs.evolve(dom.spec, disks=disks)

    def disk_infos(self, dom: DomainData) -> list[DiskInfo]:
        """The domain's disks as they are now."""
        out = []
        for d in dom.spec.disks:
            img = self.images.get(d.path)
            out.append(
                DiskInfo(
                    target=d.target,
                    path=d.path,
                    format=img.format if img else d.format,
                    bus=d.bus,
                    readonly=d.readonly,
                    capacity_bytes=img.capacity if img else None,
                    allocation_bytes=img.allocation if img else None,
                    backing_chain=as_tuple(self.chain(d.path)[1:]),
                    pool=self.pool_of(d.path),
                )
            )
        return out

    def nic_infos(self, dom: DomainData) -> list[NicInfo]:
        """The domain's NICs; addresses only while it runs."""
        active = dom.state.is_active
        return [
            NicInfo(
                mac=n.mac,
                network=n.network,
                model=n.model,
                ips=as_tuple(dom.ips.get(n.mac or "", ()) if active else ()),
            )
            for n in dom.spec.nics
        ]

    def network_infos(self) -> list[NetworkInfo]:
        """The node's networks sorted by name, each with the NICs of every domain that name it, in one pass."""
        attached: dict[str, list[NetworkAttachment]] = {}
        for dom in sorted(self.domains.values(), key=lambda d: d.name):
            for nic in dom.spec.nics:
                attached.setdefault(nic.network, []).append(NetworkAttachment(dom.uuid, dom.name, nic.mac))
        return [
            attrs.evolve(net, attachments=tuple(attached.get(net.name, ())))
            for net in sorted(self.networks.values(), key=lambda n: n.name)
        ]

    # --- images -----------------------------------------------------------------

    def chain(self, path: str) -> list[str]:
        """``path`` and the images below it, nearest first (stops at a missing image or a loop)."""
        out: list[str] = []
        current: str | None = path
        while current is not None and current not in out:
            out.append(current)
            img = self.images.get(current)
            current = img.backing if img else None
        return out

    def ensure_image(self, path: str, format: str) -> Image:
        """The image at ``path``; made up (1 GiB, empty unless raw) when the store has none."""
        img = self.images.get(path)
        if img is None:
            alloc = DEFAULT_IMAGE_CAPACITY if format == "raw" else QCOW2_EMPTY_ALLOCATION
            img = Image(path, format, DEFAULT_IMAGE_CAPACITY, alloc)
            self.images[path] = img
        return img

    def pool_of(self, path: str) -> str | None:
        """The name of the pool holding ``path``, if any."""
        directory = os.path.dirname(path)
        for pool in self.pools.values():
            if pool.path.rstrip("/") == directory.rstrip("/"):
                return pool.name
        return None

    def image_users(self, path: str) -> list[str]:
        """Who needs ``path``: domain disks (whole chains) and images backed by it."""
        users = []
        for dom in self.domains.values():
            for d in dom.spec.disks:
                if path in self.chain(d.path):
                    users.append(f"disk '{d.target}' of domain '{dom.name}'")
        for img in self.images.values():
            if img.backing == path:
                users.append(f"image '{img.path}'")
        for job in self.jobs.values():
            if job.dest == path:
                users.append(f"the block job on disk '{job.disk}' of domain '{job.domain_name}'")
        return users

    # --- block jobs ---------------------------------------------------------------

    def job(self, dom: DomainData, disk: str) -> Job | None:
        """The job on ``disk`` (a target), brought up to date."""
        job = self.jobs.get((dom.uuid, disk))
        return job

    def rate(self, job: Job) -> float:
        """Bytes/s the job moves."""
        return float(job.bandwidth or self.unlimited_rate)

    def raw_cur(self, job: Job, now: float) -> int:
        """Bytes moved by ``now`` (not capped below ``end``)."""
        if job.ready:
            return job.end
        moved = job.base_cur + max(0.0, now - job.base_time) * self.rate(job)
        return min(job.end, int(moved))

    def job_info(self, job: Job, events: list[Event]) -> BlockJobInfo | None:
        """What ``block_job_info`` reports; None once the job has ended."""
        self.tick(job, events)
        if job.ended:
            return None
        cur = self.raw_cur(job, time.monotonic())
        if not job.ready and job.end > 0:
            cur = min(cur, job.end - 1)
        return BlockJobInfo(
            type=job.type, cur=cur, end=job.end, bandwidth=job.bandwidth, ready=job.ready, disk=job.disk
        )

    def start_job(self, job: Job, events: list[Event]) -> None:
        """Register a new job and let it run (a job with no data is ready/complete at once)."""
        key = (job.domain_uuid, job.disk)
        if key in self.jobs:
            raise BlockCopyActiveError(f"disk '{job.disk}' already in active block job")
        self.jobs[key] = job
        self.tick(job, events)

    def set_speed(self, job: Job, bandwidth: int, events: list[Event]) -> None:
        """Re-base progress at now and continue at the new bandwidth."""
        now = time.monotonic()
        job.base_cur = float(self.raw_cur(job, now))
        job.base_time = now
        job.bandwidth = bandwidth
        self.tick(job, events)

    def tick(self, job: Job, events: list[Event]) -> None:
        """Bring ``job`` up to date: become ready, complete, or (re)arm the timer."""
        if job.ended or job.ready:
            return
        now = time.monotonic()
        cur = self.raw_cur(job, now)
        if cur >= job.end:
            self._cancel_timer(job)
            if job.two_phase:
                job.ready = True
                self._on_ready(job)
                events.append(self._event(job, BlockJobStatus.READY))
            else:
                self._apply_completion(job)
                self._end(job, BlockJobStatus.COMPLETED, events)
            return
        self._schedule(job, (job.end - cur) / self.rate(job))

    def pivot(self, job: Job, events: list[Event]) -> None:
        """End a ready two-phase job by switching the disk to the copy (or the commit base)."""
        dom = self.domains[job.domain_uuid]
        if job.type == BlockJobType.COPY:
            assert job.dest is not None
            dest = self.images[job.dest]
            dest.format = job.dest_format or dest.format
            self.set_disk(dom, job.disk, dest.path, dest.format)
        else:  # active commit
            assert job.base is not None
            base = self.images[job.base]
            self.set_disk(dom, job.disk, base.path, base.format)
            if job.delete:
                self._delete_between(job.top, job.base)
        self._end(job, BlockJobStatus.COMPLETED, events)

    def cancel(self, job: Job, events: list[Event], status: BlockJobStatus, error: str | None = None) -> None:
        """End a job without its final effect (abort, or the domain went away)."""
        if job.type == BlockJobType.COPY and job.dest_created and job.dest is not None:
            self.images.pop(job.dest, None)
            for _layer, copy in job.moved:
                self.images.pop(copy, None)
        self._end(job, status, events, error)

    def fail_jobs(self, dom: DomainData, events: list[Event], reason: str) -> None:
        """End every job of ``dom`` with FAILED (the domain stopped)."""
        for job in [j for j in self.jobs.values() if j.domain_uuid == dom.uuid]:
            self.cancel(job, events, BlockJobStatus.FAILED, reason)

    def domain_jobs(self, dom: DomainData) -> list[Job]:
        """The domain's jobs, in disk order."""
        order = [d.target for d in dom.spec.disks]
        jobs = [j for j in self.jobs.values() if j.domain_uuid == dom.uuid]
        return sorted(jobs, key=lambda j: order.index(j.disk) if j.disk in order else len(order))

    # internals

    def _event(self, job: Job, status: BlockJobStatus, error: str | None = None) -> BlockJobEvent:
        return BlockJobEvent(
            domain=job.domain_name, uuid=job.domain_uuid, disk=job.disk, job_type=job.type, status=status, error=error
        )

    def _end(self, job: Job, status: BlockJobStatus, events: list[Event], error: str | None = None) -> None:
        self._cancel_timer(job)
        job.ended = True
        key = (job.domain_uuid, job.disk)
        if self.jobs.get(key) is job:
            del self.jobs[key]
        events.append(self._event(job, status, error))

    def _cancel_timer(self, job: Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    def _schedule(self, job: Job, delay: float) -> None:
        self._cancel_timer(job)
        timer = threading.Timer(max(0.0, delay) + 0.002, self._fire, args=(job,))
        timer.daemon = True
        timer.name = f"virtabs-test-blockjob-{job.domain_name}-{job.disk}"
        job.timer = timer
        timer.start()

    def _fire(self, job: Job) -> None:
        with self.txn() as events:
            if job.ended or self.jobs.get((job.domain_uuid, job.disk)) is not job:
                return
            if job.timer is not None and job.timer is not threading.current_thread():
                # re-armed (set_speed) after this timer fired but before it got the lock
                return
            job.timer = None
            self.tick(job, events)

    def _grow(self, path: str | None, data: int) -> None:
        img = self.images.get(path or "")
        if img is not None:
            img.allocation = min(img.capacity, img.allocation + data)

    def _on_ready(self, job: Job) -> None:
        if job.type == BlockJobType.COPY and job.moved:
            for layer, copy in job.moved:  # each layer lands as it is
                if layer in self.images and copy in self.images:
                    self.images[copy].allocation = self.images[layer].allocation
        elif job.type == BlockJobType.COPY and job.dest is not None:
            dest = self.images.get(job.dest)
            if dest is not None:
                dest.allocation = min(dest.capacity, max(dest.allocation, job.end))
        elif job.type == BlockJobType.ACTIVE_COMMIT:
            self._grow(job.base, job.end)

    def _apply_completion(self, job: Job) -> None:
        if job.type == BlockJobType.PULL:
            img = self.images.get(job.top)
            if img is not None:
                img.backing = job.base
                img.allocation = min(img.capacity, img.allocation + job.end)
        elif job.type == BlockJobType.COMMIT:
            self._grow(job.base, job.end)
            child = self.images.get(job.child or "")
            if child is not None:
                child.backing = job.base
            if job.delete and job.base is not None:
                self._delete_between(job.top, job.base)

    def _delete_between(self, top: str, base: str) -> None:
        """Remove ``top`` and the images below it down to (not including) ``base``."""
        for path in self.chain(top):
            if path == base:
                break
            self.images.pop(path, None)


def new_job(
    dom: DomainData,
    disk: str,
    type: BlockJobType,
    end: int,
    bandwidth: int,
    **kwargs: Any,
) -> Job:
    """A job starting now."""
    return Job(
        domain_uuid=dom.uuid,
        domain_name=dom.name,
        disk=disk,
        type=type,
        end=max(0, end),
        bandwidth=bandwidth,
        base_time=time.monotonic(),
        **kwargs,
    )


def as_tuple(values: Iterable[Any]) -> Any:
    """``tuple(values)`` typed ``Any``: attrs fields with ``converter=tuple`` confuse mypy's attrs plugin."""
    return tuple(values)


def make_spec(data: Mapping[str, Any]) -> DomainSpec:
    """A DomainSpec from plain data (DomainSpec.from_dict without the unknown-key check)."""
    disks = tuple(d if isinstance(d, DiskSpec) else DiskSpec(**d) for d in data.get("disks", ()))
    nics = tuple(n if isinstance(n, NicSpec) else NicSpec(**n) for n in data.get("nics", ()))
    rest = {k: v for k, v in data.items() if k not in ("disks", "nics")}
    return DomainSpec(disks=disks, nics=nics, **rest)


def check_format(format: str, what: str) -> None:
    """InvalidArgumentError for an unknown image format."""
    if format not in DISK_FORMATS:
        raise InvalidArgumentError(f"{what}: unknown format {format!r} (known: {', '.join(sorted(DISK_FORMATS))})")

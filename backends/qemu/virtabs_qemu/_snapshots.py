"""Internal qcow2 snapshots: ``savevm``/``loadvm``/``delvm`` while QEMU runs, ``qemu-img snapshot`` when not.

Metadata (name, time, state, parent) lives in the definition; the data lives in the qcow2
images. The core has refused these operations during a block copy (the gate's NO_COPY rule).
"""

from __future__ import annotations

import contextlib

from virtabs.spi import (
    DiskSpec,
    DomainRef,
    DomainSpec,
    DomainState,
    InvalidArgumentError,
    NoSnapshotError,
    OperationFailedError,
    OperationInvalidError,
    Snapshot,
    VirtabsError,
    quote,
)

from . import _img
from ._lifecycle import Lifecycle
from ._process import Processes
from ._records import Definition, SnapshotMeta, now_iso
from ._session import Sessions
from ._store import DefinitionStore

__all__ = ["Snapshots"]


def _writable_disks(spec: DomainSpec) -> list[DiskSpec]:
    disks = [d for d in spec.disks if not d.readonly]
    bad = [d.target for d in disks if d.format != "qcow2"]
    if bad:
        raise OperationFailedError(
            f"domain {quote(spec.name)}: internal snapshots need qcow2 disks; {', '.join(bad)} is not qcow2"
        )
    return disks


def _meta(defn: Definition, name: str) -> SnapshotMeta:
    meta = defn.snapshot(name)
    if meta is None:
        raise NoSnapshotError(f"domain {quote(defn.name)} has no snapshot named {quote(name)}")
    return meta


class Snapshots:
    """Snapshots of the domains of one state root."""

    def __init__(
        self, store: DefinitionStore, processes: Processes, sessions: Sessions, lifecycle: Lifecycle, timeout: float
    ) -> None:
        self.store = store
        self.processes = processes
        self.sessions = sessions
        self.lifecycle = lifecycle
        self.hmp_timeout = max(600.0, timeout)

    def _hmp(self, dom: DomainRef, command: str) -> None:
        with self.sessions.open(dom.name) as q:
            out = q.hmp(command, timeout=self.hmp_timeout).strip()
        if out:
            raise OperationFailedError(f"domain {quote(dom.name)}: {command} failed: {out}")

    def create(self, dom: DomainRef, name: str) -> Snapshot:
        """``savevm`` (running: disks + RAM) or ``qemu-img snapshot -c`` on every disk (inactive: disks only)."""
        if any(c in name for c in "\0\n\"'"):
            raise InvalidArgumentError(f"invalid snapshot name {quote(name)}: the QEMU monitor cannot quote it")
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            if defn.snapshot(name) is not None:
                raise OperationInvalidError(f"domain {quote(dom.name)} already has a snapshot named {quote(name)}")
            disks = _writable_disks(defn.spec)
            if self.processes.pid(dom.name) is not None:
                with self.sessions.open(dom.name) as q:
                    running = bool(q.execute("query-status").get("running"))
                    out = q.hmp(f"savevm {name}", timeout=self.hmp_timeout).strip()
                if out:
                    raise OperationFailedError(f"domain {quote(dom.name)}: savevm {name} failed: {out}")
                state = DomainState.RUNNING if running else DomainState.PAUSED
            else:
                state = DomainState.SHUTOFF
                done: list[DiskSpec] = []
                try:
                    for d in disks:
                        _img.snapshot("-c", d.path, d.format, name, self.processes.host_timeout)
                        done.append(d)
                except VirtabsError:
                    for d in done:
                        with contextlib.suppress(VirtabsError):
                            _img.snapshot("-d", d.path, d.format, name, self.processes.host_timeout)
                    raise
            meta = SnapshotMeta(name, now_iso(), state, defn.current_snapshot)
            defn.snapshots.append(meta)
            defn.current_snapshot = name
            self.store.save(defn)
            return meta.snapshot(defn.name)

    def list(self, dom: DomainRef) -> list[Snapshot]:
        """From the definition's snapshot metadata, oldest first."""
        defn = self.store.get(dom)
        return [m.snapshot(defn.name) for m in defn.snapshots]

    def revert(self, dom: DomainRef, name: str) -> None:
        """``loadvm`` (running snapshot), ``-loadvm`` at start, or ``qemu-img snapshot -a`` (disk-only)."""
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            meta = _meta(defn, name)
            active = self.processes.pid(dom.name) is not None
            if meta.state == DomainState.SHUTOFF:
                if active:
                    raise OperationInvalidError(
                        f"snapshot {quote(name)} of domain {quote(dom.name)} is disk-only; stop the domain before reverting"
                    )
                for d in _writable_disks(defn.spec):
                    _img.snapshot("-a", d.path, d.format, name, self.processes.host_timeout)
            elif active:
                with self.sessions.open(dom.name) as q:
                    out = q.hmp(f"loadvm {name}", timeout=self.hmp_timeout).strip()
                    if out:
                        raise OperationFailedError(f"domain {quote(dom.name)}: loadvm {name} failed: {out}")
                    q.execute("cont" if meta.state == DomainState.RUNNING else "stop")
            else:
                self.lifecycle.state_after_revert(defn, meta.state, name)
            defn = self.store.get(dom)
            defn.current_snapshot = name
            self.store.save(defn)

    def delete(self, dom: DomainRef, name: str) -> None:
        """``delvm`` (running) or ``qemu-img snapshot -d`` (inactive); children are re-parented."""
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            meta = _meta(defn, name)
            if self.processes.pid(dom.name) is not None:
                self._hmp(dom, f"delvm {name}")
            else:
                for d in _writable_disks(defn.spec):
                    with contextlib.suppress(VirtabsError):
                        _img.snapshot("-d", d.path, d.format, name, self.processes.host_timeout)
            kept = []
            for s in defn.snapshots:
                if s.name == name:
                    continue
                if s.parent == name:
                    s.parent = meta.parent
                kept.append(s)
            defn.snapshots = kept
            if defn.current_snapshot == name:
                defn.current_snapshot = meta.parent
            self.store.save(defn)

"""Live migration with storage between two state roots (issue 23), as libvirt's qemu driver does it.

Destination (:meth:`Migrations.prepare`): the domain defined with its new image paths and a token of
this migration (a discard removes only what carries its own token), an image per copied disk in the
``default`` pool (the source's size and format; with NON_SHARED_INC backed by the source's backing
file, which the destination must already have; an existing image of the right size is reused), QEMU
started paused with ``-incoming defer``, an NBD server on a unix socket with
a writable export of each disk's format node, and ``migrate-incoming`` listening on another socket.

Source (:meth:`Migrations.perform`): ``pause-before-switchover``; per disk an NBD client node and a
``blockdev-mirror`` into it (``sync: full``, or ``top`` for NON_SHARED_INC); once every mirror is
READY ``migrate``; at ``pre-switchover`` (vCPUs stopped) each mirror is ended consistently with
``block-job-cancel`` (no force: BLOCK_JOB_COMPLETED), its node deleted, then ``migrate-continue``
until ``completed``. Any failure: ``migrate_cancel``, the mirrors cancelled with force, the NBD
nodes deleted, the guest resumed if it ran. The destination's finish waits for the incoming
migration, stops the NBD server and sends ``cont`` (unless PAUSED); after a failure it kills its
QEMU and removes the definition and the images it created. The QMP sequence is the one verified in
the project's migration reference (QEMU 7.2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
from virtabs.spi import (
    DiskInfo,
    DomainRef,
    DomainSpec,
    InvalidArgumentError,
    LifecycleEventType,
    MigrateFlags,
    MigrationDiskExport,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NoDomainError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    VirtabsError,
)

from . import _img
from ._cmdline import fmt_node_name
from ._events import Events
from ._guard import Guard
from ._lifecycle import Lifecycle
from ._process import Processes
from ._qmp import QMPClient, QMPError
from ._session import Sessions, device_node
from ._store import DefinitionStore

__all__ = ["Migrations", "check_listen_address"]

_log = logging.getLogger(__name__)

POLL = 0.05
"""Seconds between two looks at the mirrors or the migration."""
INCOMING_TIMEOUT = 600.0
DEFAULT_BANDWIDTH = 134217728
"""QEMU 7.2's default ``max-bandwidth`` (128 MiB/s), used when the request gives none."""
DEFAULT_DOWNTIME_MS = 300
"""QEMU 7.2's default ``downtime-limit``."""
"""How long the destination's finish waits for the memory stream to complete."""


@attrs.define
class _Progress:
    """A migration under way on a source domain: the last figures and the abort request."""

    cancel: threading.Event = attrs.field(factory=threading.Event)
    info: MigrationInfo = attrs.field(factory=lambda: MigrationInfo("setup"))
    started: float = attrs.field(factory=time.monotonic)
    active: bool = False
    pending: bool = False
    """Made by an abort that came before perform began: perform takes it over (and stops at once)."""


def _nbd_server(uri: str) -> tuple[dict[str, str], str]:
    """``nbd+unix:///EXPORT?socket=PATH`` or ``nbd://HOST:PORT/EXPORT`` -> (the NBD client's ``server``, EXPORT)."""
    parts = urlsplit(uri)
    export = parts.path.lstrip("/")
    sockets = parse_qs(parts.query).get("socket")
    if parts.scheme == "nbd+unix" and sockets:
        return {"type": "unix", "path": sockets[0]}, export
    if parts.scheme == "nbd" and parts.hostname and parts.port:
        return {"type": "inet", "host": parts.hostname, "port": str(parts.port)}, export
    raise InvalidArgumentError(
        f"the qemu driver cannot mirror into {uri!r} (it needs nbd+unix:///EXPORT?socket= or nbd://HOST:PORT/EXPORT)"
    )


ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
"""A ``migrate_address``: a host name or an IPv4 address (what QEMU's ``tcp:HOST:PORT`` takes as is)."""


def check_listen_address(value: str | None) -> str | None:
    """The URI's ``migrate_address`` checked (InvalidArgumentError otherwise); None when not given."""
    if value is None:
        return None
    if not ADDRESS.fullmatch(value):
        raise InvalidArgumentError(
            f"migrate_address must be a host name or an IPv4 address the source can reach, got {value!r}"
        )
    return value


def _free_port(host: str) -> int:
    """A TCP port free on ``host`` now (bound and released: QEMU binds it next; a lost race fails prepare,
    which leaves nothing behind, as libvirt's own port allocation may)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise OperationFailedError(f"cannot listen for the migration on {host!r}: {exc.strerror or exc}") from None
        return int(probe.getsockname()[1])


class Migrations:
    """Both halves of a migration, for one state root."""

    def __init__(
        self,
        store: DefinitionStore,
        processes: Processes,
        sessions: Sessions,
        events: Events,
        lifecycle: Lifecycle,
        timeout: float,
        listen_address: str | None = None,
        guard_uri: str | None = None,
    ) -> None:
        self.guard_uri = guard_uri
        """The connection's URI, which a step's guard (``_guard``) opens if this process dies inside the step;
        None: no guards."""
        self._guards: dict[str, Guard] = {}
        """The guards of the destinations this process prepared and has not finished, by token."""
        self.listen_address = listen_address
        """Where the destination listens (TCP) when the URI gives ``migrate_address``; None: unix sockets."""
        self.store = store
        self.processes = processes
        self.sessions = sessions
        self.events = events
        self.lifecycle = lifecycle
        self.timeout = timeout
        self._progress: dict[str, _Progress] = {}
        self._lock = threading.Lock()

    # --- destination ------------------------------------------------------------------------------

    def prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Definition, images, paused ``-incoming defer`` QEMU, NBD exports and the incoming socket.

        The definition comes first and carries a new token (``Definition.migration_token``, also in the
        ticket's cookie): it claims the name on this root, and :meth:`discard` removes only a destination
        that carries its own token. The rest is made under the domain lock, which a discard holds
        throughout: a discard of an earlier migration of the same name, arriving late (its client died,
        its helper discards on EOF), either ends before this prepare defines (the name was still taken:
        the define is refused and nothing is touched) or finds this prepare's token and leaves it alone.
        """
        dirs = self.store.dirs
        copied = {d.target: d for d in disks}
        token = secrets.token_hex(16)
        new_disks = []
        for disk in spec.disks:
            info = copied.get(disk.target)
            if info is None:
                new_disks.append(disk)
                continue
            path = os.path.join(dirs.images, os.path.basename(info.path))
            if os.path.realpath(path) == os.path.realpath(info.path):
                raise OperationInvalidError(
                    f"disk {disk.target}: the destination image would be the source's own file {path}"
                )
            new_disks.append(attrs.evolve(disk, path=path))
        ref = self.lifecycle.define(attrs.evolve(spec, disks=tuple(new_disks)), migration_token=token)
        guard = None if request.offline else self._guard(["destination", ref.name, token])
        created: list[str] = []
        with self.store.lock(ref.name).hold():
            try:
                ticket = self._prepare(ref, request, copied, token, created, guard)
            except BaseException:
                self.discard(ref.name, created, token)
                if guard is not None:
                    guard.done()
                raise
        if guard is not None:
            self._guards[token] = guard
        return ticket

    def _guard(self, args: list[str]) -> Guard | None:
        """The guard of a step (see ``_guard``), or None without a URI to give it."""
        return None if self.guard_uri is None else Guard.start(self.guard_uri, self.timeout, args)

    def _prepare(
        self,
        ref: DomainRef,
        request: MigrationRequest,
        copied: dict[str, DiskInfo],
        token: str,
        created: list[str],
        guard: Guard | None,
    ) -> MigrationTicket:
        """The rest of :meth:`prepare`, under the domain lock: ``created`` (and ``guard``) get each image made."""
        dirs = self.store.dirs
        defn = self.store.get(ref)
        for disk in defn.spec.disks:
            info = copied.get(disk.target)
            if info is not None:
                self._create_image(info, disk.path, request, created)
                if guard is not None and created and created[-1] == disk.path:
                    guard.note(f"created {disk.path}")
        cookie = {"name": ref.name, "created": "\n".join(created), "token": token}
        if request.offline:
            return MigrationTicket(domain=ref, cookie=cookie)
        ticket_disks = []
        self.lifecycle.launch(defn, paused=True, incoming="defer")
        run = dirs.run_dir(ref.name)
        host = self.listen_address
        if host is None:
            nbd, mem = os.path.join(run, "nbd.sock"), os.path.join(run, "mig.sock")
            nbd_addr: dict[str, Any] = {"type": "unix", "data": {"path": nbd}}
            memory_uri = f"unix:{mem}"
        else:
            nbd_port, mem_port = _free_port(host), _free_port(host)
            nbd_addr = {"type": "inet", "data": {"host": host, "port": str(nbd_port)}}
            memory_uri = f"tcp:{host}:{mem_port}"
        with self.sessions.open(ref.name) as q:
            if copied:
                q.execute("nbd-server-start", {"addr": nbd_addr})
                for target in copied:
                    q.execute(
                        "block-export-add",
                        {
                            "type": "nbd",
                            "id": f"mig-{target}",
                            "node-name": fmt_node_name(target),
                            "name": target,
                            "writable": True,
                        },
                    )
                    path = next(d.path for d in defn.spec.disks if d.target == target)
                    export = (
                        f"nbd+unix:///{target}?socket={nbd}"
                        if host is None
                        else f"nbd://{host}:{nbd_addr['data']['port']}/{target}"
                    )
                    ticket_disks.append(MigrationDiskExport(target, export, path))
            q.execute(
                "migrate-set-capabilities",
                {
                    "capabilities": [
                        {"capability": "events", "state": True},
                        {"capability": "late-block-activate", "state": True},
                    ]
                },
            )
            q.execute("migrate-incoming", {"uri": memory_uri})
        return MigrationTicket(domain=ref, memory_uri=memory_uri, disks=tuple(ticket_disks), cookie=cookie)

    def _create_image(self, info: DiskInfo, path: str, request: MigrationRequest, created: list[str]) -> None:
        """The destination image: reused when one of the right size is there, else created."""
        limit = self.processes.host_timeout
        size = info.capacity_bytes
        if os.path.exists(path):
            layers = _img.chain(path, info.format, force_share=True, timeout=limit)
            have = layers[0].get("virtual-size") if layers else None
            if size is not None and have != size:
                raise OperationInvalidError(
                    f"disk {info.target}: the existing destination image {path} has {have} bytes, the source {size}"
                )
            return
        backing = backing_fmt = None
        if request.incremental and info.backing_chain:
            backing = info.backing_chain[0]
            if not os.path.exists(backing):
                raise OperationInvalidError(
                    f"disk {info.target}: NON_SHARED_INC copies the top layer only; the destination lacks the "
                    f"backing image {backing}"
                )
            backing_fmt = _img.probe_format(backing, limit)
        _img.create(path, info.format, size, backing=backing, backing_fmt=backing_fmt, timeout=limit)
        created.append(path)

    def finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Success: wait for the memory stream, stop the NBD server, ``cont`` unless PAUSED.
        Failure: :meth:`discard`."""
        name = ticket.cookie.get("name", ticket.domain.name)
        created = [p for p in ticket.cookie.get("created", "").split("\n") if p]
        token = ticket.cookie.get("token")
        guard = self._guards.pop(token, None) if token is not None else None
        try:
            return self._finish(ticket, request, success, name, created, token)
        finally:
            if guard is not None:
                guard.done()

    def _finish(
        self,
        ticket: MigrationTicket,
        request: MigrationRequest,
        success: bool,
        name: str,
        created: list[str],
        token: str | None,
    ) -> DomainRef | None:
        if not success:
            self.discard(name, created, token)
            return None
        if request.offline:
            self._settle(name, token)
            return ticket.domain
        deadline = time.monotonic() + INCOMING_TIMEOUT
        try:
            with self.sessions.open(name) as q:
                while True:
                    status = q.execute("query-status")["status"]
                    if status != "inmigrate":
                        break
                    failed = q.execute("query-migrate").get("status") in ("failed", "cancelled")
                    if failed or time.monotonic() > deadline:
                        raise OperationFailedError(f"domain {name!r}: the incoming migration did not complete")
                    time.sleep(POLL)
                mig = q.execute("query-migrate")
                if mig.get("status") not in ("completed", None):
                    raise OperationFailedError(f"domain {name!r}: incoming migration {mig.get('status')}")
                if ticket.disks:
                    q.execute("nbd-server-stop")
                if not request.flags & MigrateFlags.PAUSED:
                    q.execute("cont")
        except BaseException:
            # The destination never ran (the core resumes the source after a failed finish): nothing of it
            # may stay, neither a QEMU whose incoming migration failed nor a definition without one.
            self.discard(name, created, token)
            raise
        self._settle(name, token)
        defn = self.store.load(name)
        self.events.lifecycle(defn, LifecycleEventType.STARTED, "migrated")
        if request.flags & MigrateFlags.PAUSED:
            self.events.lifecycle(defn, LifecycleEventType.SUSPENDED, "migrated")
        return ticket.domain

    def _settle(self, name: str, token: str | None) -> None:
        """The migration's finish succeeded: its definition is an ordinary one from now on (token dropped)."""
        with self.store.lock(name).hold():
            defn = self.store.load(name)
            if token is not None and defn.migration_token == token:
                self.store.save(dataclasses.replace(defn, migration_token=None))

    def discard(self, name: str, created: list[str], token: str | None) -> None:
        """Kill the destination's QEMU (if any), remove the images it created, then its definition.

        Only the destination its own prepare made (the definition carries ``token``): one that is gone,
        or that another prepare of the same name made since, is left alone. All of it happens under the
        domain lock (a prepare makes its part under it too), and the definition goes last: once the
        domain is not listed, nothing of the discard is left to run.
        """
        with self.store.lock(name).hold():
            try:
                defn = self.store.load(name)
            except NoDomainError:
                return
            if defn.migration_token is None or defn.migration_token != token:
                _log.info("domain %r: not discarded (another migration's, or no longer an incoming one)", name)
                return
            with contextlib.suppress(VirtabsError):
                self.sessions.quit(name)
            pid = self.processes.pid(name)
            if pid is not None and not self.processes.wait_gone(pid, 3.0):
                self.processes.kill(name, pid)
            self.processes.reap(name)
            self.store.cleanup_runtime(name)
            _remove(created)
            # Under the domain lock, not the definitions' lock (undefine takes that one first, then this):
            # removing a name cannot clash with a define, which refuses a name while its file is there.
            self.store.remove(name)
        self.events.lifecycle(defn, LifecycleEventType.UNDEFINED, "removed")

    # --- source -----------------------------------------------------------------------------------

    def perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """Mirror, migrate, switch (see the module docstring); abortable; rolls back before raising."""
        name = dom.name
        with self._lock:
            progress = self._progress.get(name)
            if progress is None or not progress.pending:
                progress = _Progress()  # a fresh run (an abort asked before it began is kept)
            progress.active, progress.pending = True, False
            self._progress[name] = progress
        q = QMPClient(self.store.dirs.qmp_socket(name), timeout=self.timeout, what=f"domain {name!r}")
        owner = os.path.join(self.store.dirs.run_dir(name), OWNER_FILE)
        guard = self._guard(["source", name, *[export.target for export in ticket.disks]])
        try:
            with self.sessions.translated(name):
                q.connect()
                self._perform(q, name, request, ticket, progress, owner, guard)
        finally:
            if guard is not None:
                guard.done()
            progress.active = False
            q.close()
            with contextlib.suppress(OSError):
                if _read_owner(owner) == _process_token(os.getpid()):
                    os.unlink(owner)

    def _perform(
        self,
        q: QMPClient,
        name: str,
        request: MigrationRequest,
        ticket: MigrationTicket,
        progress: _Progress,
        owner: str,
        guard: Guard | None,
    ) -> None:
        running = bool(q.execute("query-status").get("running"))
        if guard is not None:
            guard.note(f"running {int(running)}")
        mirrors: list[str] = []
        migrating = False
        try:
            caps = [
                {"capability": "events", "state": True},
                {"capability": "pause-before-switchover", "state": True},
                {"capability": "auto-converge", "state": bool(request.flags & MigrateFlags.AUTO_CONVERGE)},
            ]
            q.execute("migrate-set-capabilities", {"capabilities": caps})
            # Always both: QEMU keeps parameters between migrations (an earlier attempt's limit would stay).
            params: dict[str, Any] = {
                "max-bandwidth": request.bandwidth_bytes or DEFAULT_BANDWIDTH,
                "downtime-limit": DEFAULT_DOWNTIME_MS if request.max_downtime_ms is None else request.max_downtime_ms,
            }
            q.execute("migrate-set-parameters", params)
            self._clear_leftovers(q, name, [export.target for export in ticket.disks], owner)
            with open(owner, "w") as fh:  # whose mirrors these are, while they run
                fh.write(_process_token(os.getpid()) or "")
            for export in ticket.disks:
                server, export_name = _nbd_server(export.uri)
                node = f"mig-{export.target}"
                q.execute(
                    "blockdev-add",
                    {"driver": "nbd", "node-name": node, "server": server, "export": export_name},
                )
                mirrors.append(export.target)
                top = device_node(q, export.target)
                if top is None:
                    raise OperationFailedError(f"domain {name!r}: disk {export.target} has no medium")
                args: dict[str, Any] = {
                    "job-id": node,
                    "device": top["node-name"],
                    "target": node,
                    "sync": "top" if request.incremental else "full",
                    "auto-dismiss": False,
                }
                if request.bandwidth_bytes:
                    args["speed"] = request.bandwidth_bytes
                q.execute("blockdev-mirror", args)
            progress.info = attrs.evolve(progress.info, phase="storage" if mirrors else "memory")
            while mirrors and not self._mirrors_ready(q, name, mirrors, progress):
                self._check_cancel(progress, name)
                time.sleep(POLL)
            self._check_cancel(progress, name)
            if running and not request.live:
                q.execute("stop")
            q.execute("migrate", {"uri": ticket.memory_uri})
            migrating = True
            while True:
                mig = q.execute("query-migrate")
                status = mig.get("status")
                self._record_memory(progress, mig, "memory")
                if status == "pre-switchover":
                    break
                if status in ("failed", "cancelled"):
                    raise OperationFailedError(
                        f"domain {name!r}: migration {status}: {mig.get('error-desc', 'QEMU gave no reason')}"
                    )
                if mirrors:
                    self._mirrors_ready(q, name, mirrors, progress, phase="memory")
                self._check_cancel(progress, name)
                time.sleep(POLL)
            progress.info = attrs.evolve(progress.info, phase="switchover")
            done = total = 0
            for target in list(mirrors):
                moved, length = self._end_mirror(q, name, target, force=False)
                done, total = done + moved, total + length
                mirrors.remove(target)
            if ticket.disks:  # the mirrors' last figures: what the destination holds now
                progress.info = attrs.evolve(
                    progress.info, disk_total=total, disk_processed=done, disk_remaining=total - done
                )
            q.execute("migrate-continue", {"state": "pre-switchover"})
            while True:
                mig = q.execute("query-migrate")
                status = mig.get("status")
                if status == "completed":
                    self._record_memory(progress, mig, "completed")
                    return
                if status in ("failed", "cancelled"):
                    raise OperationFailedError(
                        f"domain {name!r}: migration {status}: {mig.get('error-desc', 'QEMU gave no reason')}"
                    )
                time.sleep(POLL)
        except BaseException as exc:
            progress.info = attrs.evolve(
                progress.info, phase="cancelled" if progress.cancel.is_set() else "failed", error=str(exc)
            )
            self._roll_back(q, mirrors, migrating, running)
            raise

    def _clear_leftovers(self, q: QMPClient, name: str, targets: list[str], owner: str) -> None:
        """What an earlier migration whose process died left on the source (daemonless QEMU keeps it):
        its mirror jobs cancelled (with force) or dismissed, their NBD nodes deleted. Mirrors whose
        process (the owner file's pid and start time) still lives are a migration under way: refused."""
        jobs = {str(j.get("id")): j for j in q.execute("query-jobs")}
        left = [t for t in targets if f"mig-{t}" in jobs]
        recorded = _read_owner(owner)
        if left and recorded is not None and recorded == _process_token(int(recorded.split()[0])):
            raise OperationInvalidError(
                f"domain {name!r}: disk {left[0]} is being migrated already (process {recorded.split()[0]})"
            )
        for target in targets:
            if f"mig-{target}" in jobs:
                self._end_mirror(q, name, target, force=True)
            else:
                with contextlib.suppress(QMPError):  # no such node: nothing was left
                    q.execute("blockdev-del", {"node-name": f"mig-{target}"})

    def _check_cancel(self, progress: _Progress, name: str) -> None:
        if progress.cancel.is_set():
            raise OperationFailedError(f"migration of domain {name!r} was aborted")

    def _mirrors_ready(
        self, q: QMPClient, name: str, mirrors: list[str], progress: _Progress, phase: str = "storage"
    ) -> bool:
        """Whether every mirror is READY; a concluded (failed) mirror fails the migration."""
        jobs = {str(j.get("id")): j for j in q.execute("query-jobs")}
        for target in mirrors:
            job = jobs.get(f"mig-{target}")
            if job is None or job.get("status") in ("concluded", "null", "aborting"):
                error = (job or {}).get("error", "the job is gone")
                raise OperationFailedError(f"domain {name!r}: migration of disk {target} failed: {error}")
        blocks = {str(b.get("device")): b for b in q.execute("query-block-jobs")}
        total = processed = 0
        ready = True
        for target in mirrors:
            bj = blocks.get(f"mig-{target}", {})
            total += int(bj.get("len", 0))
            processed += int(bj.get("offset", 0))
            ready = ready and bool(bj.get("ready"))
        progress.info = attrs.evolve(
            progress.info,
            phase=phase,
            disk_total=total,
            disk_processed=processed,
            disk_remaining=max(0, total - processed),
            elapsed_ms=int((time.monotonic() - progress.started) * 1000),
        )
        return ready

    def _record_memory(self, progress: _Progress, mig: dict[str, Any], phase: str) -> None:
        ram = mig.get("ram") or {}
        page = int(ram.get("page-size", 4096) or 4096)
        progress.info = attrs.evolve(
            progress.info,
            phase=phase,
            memory_total=int(ram.get("total", 0)),
            memory_processed=int(ram.get("transferred", 0)),
            memory_remaining=int(ram.get("remaining", 0)),
            dirty_rate=int(ram.get("dirty-pages-rate", 0)) * page,
            expected_downtime_ms=mig.get("expected-downtime"),
            downtime_ms=mig.get("downtime"),
            elapsed_ms=int((time.monotonic() - progress.started) * 1000),
        )

    def _end_mirror(self, q: QMPClient, name: str, target: str, force: bool) -> tuple[int, int]:
        """``block-job-cancel`` (forced when rolling back), wait until concluded, dismiss, delete the node.

        Without force a READY mirror ends with BLOCK_JOB_COMPLETED and no error: the destination then
        holds every write; any error there fails the migration.
        """
        job_id = f"mig-{target}"
        with contextlib.suppress(QMPError):  # already concluded: treated as ended
            q.execute("block-job-cancel", {"device": job_id, "force": force})
        deadline = time.monotonic() + self.timeout
        error: str | None = None
        figures = (0, 0)
        while True:
            job = next((j for j in q.execute("query-jobs") if j.get("id") == job_id), None)
            if job is None or job.get("status") in ("concluded", "null"):
                error = None if job is None else job.get("error")
                if job is not None:
                    figures = (int(job.get("current-progress", 0)), int(job.get("total-progress", 0)))
                break
            if time.monotonic() > deadline:
                raise OperationTimeoutError(f"domain {name!r}: the mirror of disk {target} did not end")
            time.sleep(0.01)
        with contextlib.suppress(QMPError):
            q.execute("job-dismiss", {"id": job_id})
        with contextlib.suppress(QMPError):
            q.execute("blockdev-del", {"node-name": job_id})
        if error and not force:
            raise OperationFailedError(f"domain {name!r}: migration of disk {target} failed: {error}")
        return figures

    def _roll_back(self, q: QMPClient, mirrors: list[str], migrating: bool, running: bool) -> None:
        """Best effort, in libvirt's order: cancel the migration, force-cancel the mirrors, resume."""
        with contextlib.suppress(Exception):
            if migrating:
                q.execute("migrate_cancel")
                deadline = time.monotonic() + self.timeout
                while q.execute("query-migrate").get("status") in ("cancelling", "active", "pre-switchover", "device"):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
        for target in mirrors:
            with contextlib.suppress(Exception):
                self._end_mirror(q, "", target, force=True)
        with contextlib.suppress(Exception):
            if running and not q.execute("query-status").get("running"):
                q.execute("cont")

    def recover_source(self, name: str, running: bool, targets: list[str]) -> None:
        """Perform's rollback, for a perform whose process died (its guard calls this): the migration
        cancelled if QEMU still runs it, the mirrors of ``targets`` cancelled with force and their nodes
        deleted, the guest resumed if it ran before (``running``); the dead process's owner file removed."""
        q = QMPClient(self.store.dirs.qmp_socket(name), timeout=self.timeout, what=f"domain {name!r}")
        with self.sessions.translated(name):
            q.connect()
        try:
            status = q.execute("query-migrate").get("status")
            migrating = status in ("setup", "active", "pre-switchover", "device", "cancelling")
            _log.warning("domain %r: the process migrating it died (migration %s); rolling back", name, status)
            self._roll_back(q, targets, migrating, running)
        finally:
            q.close()
        owner = os.path.join(self.store.dirs.run_dir(name), OWNER_FILE)
        recorded = _read_owner(owner)
        if recorded is not None and _process_token(int(recorded.split()[0])) != recorded:
            with contextlib.suppress(OSError):
                os.unlink(owner)

    def job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """The figures of the last look (kept after the end, until the next migration)."""
        progress = self._progress.get(dom.name)
        return None if progress is None else progress.info

    def abort(self, dom: DomainRef) -> None:
        """Ask the migration under way (or about to begin) to stop; perform rolls back and raises."""
        with self._lock:
            progress = self._progress.get(dom.name)
            if progress is None or not progress.active:
                progress = self._progress[dom.name] = _Progress(pending=True)
            progress.cancel.set()

    def confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Success: stop the source's QEMU, undefine with UNDEFINE_SOURCE. Failure: resume it if it stopped."""
        name = dom.name
        if not success:
            with contextlib.suppress(VirtabsError), self.sessions.open(name) as q:
                status = q.execute("query-status").get("status")
                if status in ("postmigrate", "finish-migrate"):
                    q.execute("cont")
            return
        if self.processes.pid(name) is not None:
            self.lifecycle.destroy(dom)
        if request.flags & MigrateFlags.UNDEFINE_SOURCE:
            self.lifecycle.undefine(dom)


OWNER_FILE = "migration.owner"
"""In the source domain's runtime directory while a perform runs: the pid and start time of its process."""


def _process_token(pid: int) -> str | None:
    """``PID STARTTIME`` of a live process (its start time tells a reused pid apart); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid} {fields[19]}"


def _read_owner(path: str) -> str | None:
    """The owner file's ``PID STARTTIME``; None when there is none (or it is not one)."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    parts = text.split()
    return text if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def _remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)

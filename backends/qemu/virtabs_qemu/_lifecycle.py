"""Domain lifecycle: define, start (launch QEMU), shutdown, destroy, reboot, suspend, resume, save, restore,
managed save.

A managed save is a :meth:`Lifecycle.save` into ``<data>/save/<name>.save`` (written under a temporary name
and renamed once complete, so a crash never leaves a half image that start would try); ``start`` finds it,
launches QEMU with ``-incoming`` from it and deletes it once the guest runs again, as libvirt's qemu driver
does with ``/var/lib/libvirt/qemu/save``.

The core's gate has checked the state each operation needs (from one ``domain_status``) before
any of this runs. What the gate cannot see atomically is left to QEMU: a start racing another
start of the same domain is refused by QEMU's pidfile lock (mapped to OperationInvalidError
"is already running"), and undefine asks that same lock before deleting anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid as _uuid

from virtabs.spi import (
    DomainRef,
    DomainSpec,
    DomainState,
    InvalidArgumentError,
    LifecycleEventType,
    NoDomainError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    VirtabsError,
    poll_until,
    quote,
)

from . import _img
from ._cmdline import build_argv, incoming_from_file, outgoing_to_file
from ._events import Events
from ._process import PIDFILE_LOCKED, Emulator, Processes, trim
from ._qmp import QMPClient
from ._records import Definition, RunState, SaveHeader, now_iso
from ._session import Sessions
from ._store import DefinitionStore

__all__ = ["SAVE_HEADER_SIZE", "SAVE_MAGIC", "Lifecycle"]

SAVE_MAGIC = b"VIRTABS-QEMU-SAVE-1\n"
SAVE_HEADER_SIZE = 65536
"""A saved-state file: this many bytes of header (magic + JSON, NUL padded), then QEMU's migration stream."""


class Lifecycle:
    """Lifecycle operations of one state root."""

    def __init__(
        self,
        store: DefinitionStore,
        processes: Processes,
        sessions: Sessions,
        events: Events,
        emulator: Emulator,
        timeout: float,
    ) -> None:
        self.store = store
        self.processes = processes
        self.sessions = sessions
        self.events = events
        self.emulator = emulator
        self.timeout = timeout

    def _argv(
        self,
        defn: Definition,
        qmp_socket: str,
        pidfile: str,
        console_log: str | None = None,
        incoming: str | None = None,
        loadvm: str | None = None,
    ) -> list[str]:
        return build_argv(
            defn.spec,
            uuid=defn.uuid,
            emulator=self.emulator.path,
            accel=self.emulator.accel,
            qmp_socket=qmp_socket,
            pidfile=pidfile,
            console_log=console_log,
            incoming=incoming,
            loadvm=loadvm,
        )

    # --- definitions ------------------------------------------------------------------------------

    def define(self, spec: DomainSpec, migration_token: str | None = None) -> DomainRef:
        """Persist a new definition; what the command line cannot express is refused now, not at start.

        ``migration_token``: the definition is an incoming migration's (see ``Definition.migration_token``)."""
        uid = spec.uuid or str(_uuid.uuid4())
        data = spec.to_dict()
        data["uuid"] = uid
        defn = Definition(uuid=uid, spec=DomainSpec.from_dict(data), migration_token=migration_token)
        self._argv(defn, qmp_socket="s", pidfile="p")
        self.store.add(defn)
        self.events.lifecycle(defn, LifecycleEventType.DEFINED, "added")
        return defn.ref

    def undefine(self, dom: DomainRef) -> None:
        """Remove the definition; a QEMU still holding the domain's pidfile is QEMU saying it runs."""
        with self.store.global_lock(), self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            if self.processes.pidfile_held(dom.name):
                raise OperationInvalidError(f"domain {quote(dom.name)} is running; destroy it before undefining")
            self.store.remove(dom.name)
        self.events.lifecycle(defn, LifecycleEventType.UNDEFINED, "removed")

    # --- starting ---------------------------------------------------------------------------------

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Launch QEMU (daemonized, ``-S``), then ``cont`` unless ``paused``; resume a managed save if there is one.

        The definition is read under the domain lock (which undefine also takes): a concurrent undefine and
        define of the name cannot leave this QEMU running under another domain's definition.
        """
        image = self.store.dirs.managed_save(dom.name)
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            meta = self._managed_save_header(defn, image)
            if meta is None:
                self.launch(defn, paused=paused)
            else:
                paused = paused or not meta.running  # libvirt: a domain saved paused resumes paused
                incoming = incoming_from_file(image, SAVE_HEADER_SIZE)
                self.launch(defn.with_spec(meta.spec), paused=paused, incoming=incoming)
                os.unlink(image)
        self.events.lifecycle(defn, LifecycleEventType.STARTED, "booted" if meta is None else "restored")
        if paused:
            self.events.lifecycle(defn, LifecycleEventType.SUSPENDED, "paused")

    def launch(self, defn: Definition, paused: bool, incoming: str | None = None, loadvm: str | None = None) -> None:
        """Start QEMU for ``defn`` under the domain lock; a failed start leaves no process and no runtime files."""
        name = defn.name
        dirs = self.store.dirs
        with self.store.lock(name).hold():
            for disk in defn.spec.disks:
                if not os.path.exists(disk.path):
                    raise OperationFailedError(
                        f"domain {quote(name)}: disk {disk.target} image {disk.path} does not exist"
                    )
                try:
                    _img.chain(disk.path, disk.format, force_share=True, timeout=self.processes.host_timeout)
                except OperationTimeoutError as exc:
                    raise OperationTimeoutError(f"domain {quote(name)}: disk {disk.target}: {exc}") from None
                except VirtabsError as exc:
                    raise OperationFailedError(f"domain {quote(name)}: disk {disk.target}: {exc}") from None
            try:
                os.makedirs(dirs.run_dir(name), mode=0o700, exist_ok=True)
                sock = dirs.socket_dir(name)
            except OSError as exc:
                raise OperationFailedError(f"domain {quote(name)}: cannot make its runtime directory: {exc}") from None
            argv = self._argv(
                defn,
                qmp_socket=sock,
                pidfile=dirs.pidfile(name),
                console_log=dirs.console_log(name),
                incoming=incoming,
                loadvm=loadvm,
            )
            if self.processes.pidfile_held(name):  # under the domain lock: nothing else can be starting it
                raise OperationInvalidError(f"domain {quote(name)} is already running")
            try:
                failure = self.processes.spawn(name, argv)
            except BaseException:  # interrupted (SIGINT): the daemon QEMU may already run; it is ours to stop
                self.processes.reap(name)
                raise
            if failure is not None and PIDFILE_LOCKED in failure:
                # QEMU's own refusal: another QEMU holds this domain's pidfile. Touch nothing of it.
                raise OperationInvalidError(f"domain {quote(name)} is already running")
            if failure is not None:
                self.processes.reap(name)
                raise OperationFailedError(f"domain {quote(name)} failed to start: {trim(failure)}")
            try:
                try:
                    self.store.save_run(name, RunState(started=now_iso(), pid=self.processes.pid(name)))
                except VirtabsError as exc:  # a full disk, an I/O error: no QEMU is left unaccounted for
                    raise OperationFailedError(
                        f"domain {quote(name)} was not started: its runtime state cannot be written ({exc}); "
                        "the QEMU process just started was stopped"
                    ) from None
                with self.sessions.open(name) as q:
                    if incoming and incoming != "defer":  # "defer": migrate-incoming comes later (migration)
                        self._await_incoming(name, q)
                    if not paused:
                        q.execute("cont")
            except BaseException:
                self.processes.reap(name)
                raise

    def _await_incoming(self, name: str, q: QMPClient) -> None:
        poll_until(
            lambda: q.execute("query-status")["status"] != "inmigrate",
            timeout=max(600.0, self.timeout),
            what=f"domain {quote(name)}: restoring the saved state",
            interval=0.05,
        )
        mig = q.execute("query-migrate")
        if mig.get("status") == "failed":
            raise OperationFailedError(f"domain {quote(name)}: restore failed: {mig.get('error-desc', '')}")

    # --- running domains --------------------------------------------------------------------------

    def shutdown(self, dom: DomainRef) -> None:
        """``system_powerdown`` (the ACPI power button); the core waits for QEMU to exit."""
        with self.sessions.open(dom.name) as q:
            q.execute("system_powerdown")

    def destroy(self, dom: DomainRef) -> None:
        """``quit``, then SIGTERM/SIGKILL if needed; always reaps and removes the runtime files."""
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            pid = self.processes.pid(dom.name)
            if pid is not None:
                self.sessions.quit(dom.name)
                if not self.processes.wait_gone(pid, 3.0):
                    self.processes.kill(dom.name, pid)
            self.store.cleanup_runtime(dom.name)
        if pid is not None:
            self.events.lifecycle(defn, LifecycleEventType.STOPPED, "destroyed")

    def reboot(self, dom: DomainRef) -> None:
        """``system_reset``: a hard reset of the vCPUs and devices (not an ACPI reboot)."""
        with self.sessions.open(dom.name) as q:
            q.execute("system_reset")

    def suspend(self, dom: DomainRef) -> None:
        """``stop``."""
        defn = self.store.get(dom)
        with self.sessions.open(dom.name) as q:
            q.execute("stop")
        self.events.lifecycle(defn, LifecycleEventType.SUSPENDED, "paused")

    def resume(self, dom: DomainRef) -> None:
        """``cont``."""
        defn = self.store.get(dom)
        with self.sessions.open(dom.name) as q:
            q.execute("cont")
        self.events.lifecycle(defn, LifecycleEventType.RESUMED, "unpaused")

    # --- save and restore ---------------------------------------------------------------------------

    def save(self, dom: DomainRef, path: str) -> None:
        """Stop the vCPUs, stream the migration state after a header into ``path``, then quit QEMU."""
        defn = self.store.get(dom)
        path = os.path.abspath(path)
        with self.sessions.open(dom.name) as q:
            running = bool(q.execute("query-status").get("running", False))
            header = json.dumps(SaveHeader(dom.name, defn.uuid, defn.spec, running).to_json()).encode()
            if len(SAVE_MAGIC) + len(header) > SAVE_HEADER_SIZE:
                raise OperationFailedError(f"domain {quote(dom.name)}: definition too large for the save header")
            try:
                # Guest memory: 0600 like libvirt's, also when the file existed; a planted symlink is not followed.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(SAVE_MAGIC + header)
                    fh.write(b"\0" * (SAVE_HEADER_SIZE - len(SAVE_MAGIC) - len(header)))
            except OSError as exc:
                raise OperationFailedError(f"domain {quote(dom.name)}: cannot write {path}: {exc}") from None
            if running:
                q.execute("stop")
            try:
                q.execute("migrate", {"uri": outgoing_to_file(path)})
                poll_until(
                    lambda: self._migrated(q, dom.name, path),
                    timeout=max(600.0, self.timeout),
                    what=f"domain {quote(dom.name)}: saving to {path}",
                    interval=0.05,
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    q.execute("migrate_cancel")
                with contextlib.suppress(Exception):
                    if running:
                        q.execute("cont")
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
            pid = self.processes.pid(dom.name)
            with contextlib.suppress(Exception):
                q.execute("quit")
        if pid is not None and not self.processes.wait_gone(pid, 5.0):
            self.processes.kill(dom.name, pid)
        with self.store.lock(dom.name).hold():
            self.store.cleanup_runtime(dom.name)
        self.events.lifecycle(defn, LifecycleEventType.STOPPED, "saved")

    @staticmethod
    def _migrated(q: QMPClient, name: str, path: str) -> bool:
        mig = q.execute("query-migrate")
        status = mig.get("status")
        if status in ("failed", "cancelled"):
            raise OperationFailedError(
                f"domain {quote(name)}: saving to {path} failed: {mig.get('error-desc', status)}"
            )
        return bool(status == "completed")

    @staticmethod
    def _read_header(path: str) -> SaveHeader:
        try:
            with open(path, "rb") as fh:
                head = fh.read(SAVE_HEADER_SIZE)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read saved state {path}: {exc}") from None
        if not head.startswith(SAVE_MAGIC) or len(head) < SAVE_HEADER_SIZE:
            raise InvalidArgumentError(f"{path} is not a virtabs qemu saved-state file")
        try:
            return SaveHeader.from_json(json.loads(head[len(SAVE_MAGIC) :].rstrip(b"\0")))
        except (ValueError, KeyError, TypeError):
            raise InvalidArgumentError(f"{path}: corrupt saved-state header") from None

    def restore(self, path: str) -> DomainRef:
        """Start QEMU with ``-incoming`` from a file written by :meth:`save` (defines the domain if needed)."""
        path = os.path.abspath(path)
        meta = self._read_header(path)
        try:
            self.store.load(meta.name)
        except NoDomainError:
            try:
                self.define(meta.spec)
            except OperationInvalidError:
                if not os.path.lexists(self.store.dirs.domain_file(meta.name)):
                    raise
                # defined meanwhile by another caller: its UUID is checked below
        incoming = incoming_from_file(path, SAVE_HEADER_SIZE)
        with self.store.lock(meta.name).hold():  # the definition read and the launch see one state
            defn = self.store.load(meta.name)
            if defn.uuid != meta.uuid:
                raise OperationInvalidError(
                    f"{path} belongs to another domain named {quote(meta.name)} (UUID {meta.uuid})"
                )
            self.launch(defn.with_spec(meta.spec), paused=not meta.running, incoming=incoming)
        self.events.lifecycle(defn, LifecycleEventType.STARTED, "restored")
        return defn.ref

    # --- managed save --------------------------------------------------------------------------------

    def managed_save(self, dom: DomainRef) -> None:
        """:meth:`save` into the domain's managed save image (complete, or not there at all)."""
        image = self.store.dirs.managed_save(dom.name)
        partial = f"{image}.part"
        try:
            os.makedirs(os.path.dirname(image), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise OperationFailedError(f"domain {dom.name!r}: cannot make the managed save directory: {exc}") from None
        self.save(dom, partial)
        try:
            os.replace(partial, image)
        except OSError as exc:
            raise OperationFailedError(
                f"domain {dom.name!r} was saved to {partial} but could not be renamed to {image}: {exc}"
            ) from None

    def has_managed_save(self, dom: DomainRef) -> bool:
        """Whether the domain's managed save image is there (and is this domain's, not a namesake's)."""
        return self.has_managed_save_of(self.store.get(dom))

    def has_managed_save_of(self, defn: Definition) -> bool:
        """:meth:`has_managed_save` for a definition already read (the bulk inventory)."""
        return self._managed_save_header(defn, self.store.dirs.managed_save(defn.name)) is not None

    def managed_save_remove(self, dom: DomainRef) -> None:
        """Delete the managed save image; none there is nothing to do."""
        image = self.store.dirs.managed_save(dom.name)
        with self.store.lock(dom.name).hold():
            self.store.get(dom)
            try:
                os.unlink(image)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise OperationFailedError(f"domain {dom.name!r}: cannot remove {image}: {exc}") from None

    def _managed_save_header(self, defn: Definition, image: str) -> SaveHeader | None:
        """The header of ``defn``'s managed save image; None when there is none. An image of another domain of
        that name (a UUID that differs) is refused rather than resumed."""
        if not os.path.lexists(image):
            return None
        meta = self._read_header(image)
        if meta.uuid != defn.uuid:
            raise OperationInvalidError(
                f"domain {defn.name!r}: the managed save image {image} belongs to another domain of that name "
                f"(UUID {meta.uuid}); remove it"
            )
        return meta

    def state_after_revert(self, defn: Definition, state: DomainState, snapshot: str) -> None:
        """Start a shut-off domain from a snapshot taken while it ran (``-loadvm``)."""
        self.launch(defn, paused=state != DomainState.RUNNING, loadvm=snapshot)
        self.events.lifecycle(defn, LifecycleEventType.STARTED, "from-snapshot")

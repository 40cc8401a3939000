"""Migration (issue 23): :func:`start_migration` behind :meth:`Domain.migrate`, and :class:`MigrationJob`.

The protocol is libvirt's v3 one, with the core in the middle (as libvirt's client-managed
migration): every step is one SPI call through a gate, so a remote transport forwards each one
to its host::

    destination  migrate_prepare(spec, request, disks) -> ticket   (paused, incoming, disks exported)
    source       migrate_perform(dom, request, ticket)             (mirror, memory, switch; blocks)
    destination  migrate_finish(ticket, request, success)          (resume, or discard all it made)
    source       migrate_confirm(dom, request, success)            (stop/undefine, or resume)

An offline migration skips perform. Every rule is checked, and both connections' capabilities,
before either host is touched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import _rules
from ._capabilities import Capability
from ._errors import InvalidArgumentError, NotSupportedError, OperationFailedError, OperationInvalidError, VirtabsError
from ._flags import MigrateFlags
from ._models import DomainRef, MigrationInfo, MigrationRequest, MigrationTicket
from .remote._tunnel import StreamForward, route_ticket
from .spi import OPERATIONS

if TYPE_CHECKING:
    from ._connection import Connection
    from ._domain import Domain

__all__ = ["MigrationJob", "start_migration"]


def start_migration(
    domain: Domain,
    dest: Connection | str,
    *,
    flags: MigrateFlags | int,
    bandwidth: int,
    max_downtime: int | None,
    disks: list[str] | tuple[str, ...] | None,
) -> MigrationJob:
    """The checks of :meth:`Domain.migrate`, in order, then the job (its steps run on a thread)."""
    from ._connection import Connection
    from ._connection import open as open_connection

    what = domain._what("migration")
    f = _rules.migration_flags(_rules.flags(MigrateFlags, flags), what)
    bw = _rules.bandwidth_bytes(bandwidth, False)
    downtime = _rules.require_max_downtime(max_downtime)
    src_conn = domain.connection
    extra = _rules.migration_capabilities(f)
    src_extra = extra
    if f & MigrateFlags.TUNNELLED and _tunnel_carried_by(dest, src_conn):
        # The destination's transport carries the tunnel: checked on the destination below, not here.
        src_extra = [c for c in extra if c is not Capability.DOMAIN_MIGRATE_TUNNELLED]
    src_extra = [*src_extra, *_rules.migration_source_capabilities(bw, downtime)]
    src_gate = src_conn._gate
    # The source's capabilities and read-only mode first: a refusal costs no host call on either side.
    src_gate.check(OPERATIONS["migrate_perform" if not f & MigrateFlags.OFFLINE else "migrate_confirm"], what,
                   extra=src_extra)  # fmt: skip
    if _rules.needs_keep_source(f, src_gate.capabilities):
        # Only a persistent domain has a definition to keep: one read of the source, nothing changed anywhere.
        with src_gate.translate(what):
            persistent = src_gate.driver.domain_status(domain._ref).persistent
        _rules.check_keep_source(persistent, what, domain.name)
    if isinstance(dest, str):
        if dest == str(src_conn.uri):
            raise InvalidArgumentError(f"{what}: the destination is the source's own connection")
        dest_conn = open_connection(_rules.require_text(dest, "destination URI"), timeout=src_conn.timeout)
        owned = True
    elif isinstance(dest, Connection):
        dest_conn, owned = dest, False
    else:
        raise InvalidArgumentError(f"{what}: the destination must be an open Connection or a URI, got {dest!r}")
    try:
        if dest_conn is src_conn or str(dest_conn.uri) == str(src_conn.uri):
            raise InvalidArgumentError(f"{what}: the destination is the source's own connection")
        dest_gate = dest_conn._gate
        if src_gate.driver_name != dest_gate.driver_name:
            raise NotSupportedError(
                f"{what}: cannot migrate from a {src_gate.driver_name} host to a {dest_gate.driver_name} host"
            )
        # The destination's capabilities and read-only mode, before either host is touched.
        dest_gate.check(OPERATIONS["migrate_prepare"], f"{what} (destination {dest_conn.uri})", extra=extra)
        spec = _rules.evolve(domain.spec(), uuid=domain.uuid)
        disk_infos = domain.disks()
        targets = _rules.migration_disks(f, disks, disk_infos, what, domain.name)
        if f & MigrateFlags.OFFLINE:
            if f & MigrateFlags.UNDEFINE_SOURCE and domain.state().is_active:
                raise OperationInvalidError(
                    f"{what}: an offline migration cannot undefine the source while it runs; shut it down first"
                )
        else:  # the state and block-job rules of the perform row (one domain_status call)
            src_gate.check(OPERATIONS["migrate_perform"], what, dom=domain._ref, extra=src_extra)
        request = MigrationRequest(flags=f, bandwidth_bytes=bw, max_downtime_ms=downtime, disks=targets)
        copied = [d for d in disk_infos if d.target in targets]
        job = MigrationJob(domain, dest_conn, request, owned)
        job._start(lambda: dest_gate.driver.migrate_prepare(spec, request, copied))
        return job
    except BaseException:
        if owned:
            dest_conn.close()
        raise


def _tunnel_carried_by(dest: object, src_conn: Connection) -> bool:
    """Whether the destination's own transport carries a TUNNELLED migration's streams: an open
    connection (not the source's) declaring ``domain.migrate.tunnelled``, or a URI over ssh. Its
    declaration is then checked on the destination alone."""
    from ._connection import Connection
    from ._uri import parse_uri

    if isinstance(dest, Connection):
        return dest is not src_conn and dest.supports(Capability.DOMAIN_MIGRATE_TUNNELLED)
    if isinstance(dest, str):
        try:
            return parse_uri(dest).transport == "ssh" and dest != str(src_conn.uri)
        except VirtabsError:
            return False
    return False


class MigrationJob:
    """A migration under way: its progress, :meth:`wait` for the domain on the destination, :meth:`abort`.

    When :meth:`Domain.migrate` was given a URI, the job opened :attr:`destination` and closes it
    with :meth:`close` (the domain :meth:`wait` returns belongs to it).
    """

    def __init__(self, domain: Domain, destination: Connection, request: MigrationRequest, owned: bool) -> None:
        self.domain = domain
        """The domain on the source."""
        self.destination = destination
        """The destination connection."""
        self.request = request
        """What was asked, validated."""
        self._owned = owned
        self._lock = threading.Lock()
        self._phase = "setup"
        self._final: MigrationInfo | None = None
        self._result: DomainRef | None = None
        self._error: BaseException | None = None
        self._aborted = False
        self._performing = False
        self._done = threading.Event()
        self._started = time.monotonic()
        self._thread: threading.Thread | None = None
        self._forwards: list[StreamForward] = []
        timeout = destination.timeout
        self._connect_timeout = 30.0 if timeout is None else float(timeout)

    def __repr__(self) -> str:
        return f"<MigrationJob domain={self.domain.name!r} to={str(self.destination.uri)!r} phase={self._phase!r}>"

    @property
    def done(self) -> bool:
        """True once the migration has ended, either way."""
        return self._done.is_set()

    # --- the steps ------------------------------------------------------------------------------

    def _start(self, prepare: Callable[[], MigrationTicket]) -> None:
        self._thread = threading.Thread(target=self._run, args=(prepare,), name="virtabs-migrate", daemon=True)
        self._thread.start()

    def _run(self, prepare: Callable[[], MigrationTicket]) -> None:
        try:
            self._result = self._steps(prepare)
            with self._lock:
                self._phase = "completed"
        except BaseException as exc:  # reported by wait()
            with self._lock:
                self._error = exc
                self._phase = "cancelled" if self._aborted else "failed"
        finally:
            self._done.set()

    def _steps(self, prepare: Callable[[], MigrationTicket]) -> DomainRef:
        src, dest = self.domain.connection._gate, self.destination._gate
        dom, request = self.domain._ref, self.request
        what = self.domain._what("migration")
        dest_what = f"{what} (destination {self.destination.uri})"
        with dest.translate(dest_what):
            ticket = prepare()
        try:
            if self._aborted:
                raise OperationFailedError(f"{what} was aborted")
            if not request.offline:
                with dest.translate(dest_what):  # a remote destination's sockets: forwarded here over ssh
                    routed, self._forwards = route_ticket(
                        src.driver, dest.driver, ticket, request, self._connect_timeout
                    )
                with self._lock:
                    self._performing = True
                    self._phase = "storage" if request.copy_storage else "memory"
                try:
                    with src.translate(what):
                        src.driver.migrate_perform(dom, request, routed)
                    with src.translate(what):
                        self._final = src.driver.migrate_job_info(dom)
                    with self._lock:  # the destination resumes next: never "storage" again in info()
                        self._phase = "switchover"
                finally:
                    with self._lock:
                        self._performing = False
                    self._close_forward()
                if self._aborted:
                    raise OperationFailedError(f"{what} was aborted")
        except BaseException as exc:
            self._close_forward()
            self._roll_back(ticket, exc)
            raise
        try:
            with dest.translate(dest_what):
                result = dest.driver.migrate_finish(ticket, request, True)
        except BaseException as exc:
            # The destination never ran: the source may resume (libvirt's only rollback after completion).
            self._roll_back(ticket, exc, finish_done=True)
            raise
        with src.translate(what):
            src.driver.migrate_confirm(dom, request, True)
        if result is None:
            raise OperationFailedError(f"{dest_what}: the destination reported no domain")
        return result

    def _close_forward(self) -> None:
        forwards, self._forwards = self._forwards, []
        for forward in forwards:
            forward.close()

    def _roll_back(self, ticket: MigrationTicket, cause: BaseException, finish_done: bool = False) -> None:
        """Discard the destination, resume the source; the first failure stays the one reported."""
        src, dest = self.domain.connection._gate, self.destination._gate
        steps: list[Callable[[], object]] = [
            lambda: src.driver.migrate_confirm(self.domain._ref, self.request, False),
        ]
        if not finish_done:
            steps.insert(0, lambda: dest.driver.migrate_finish(ticket, self.request, False))
        for step in steps:
            try:
                step()
            except Exception as exc:
                cause.add_note(f"while rolling back: {exc}")

    # --- the caller's side ----------------------------------------------------------------------

    def info(self) -> MigrationInfo:
        """Progress now (memory and disk bytes, dirty rate, downtime); the final figures once done."""
        with self._lock:
            phase, final, performing = self._phase, self._final, self._performing
        elapsed = int((time.monotonic() - self._started) * 1000)
        if self.done:
            base = final or MigrationInfo(phase)
            error = str(self._error) if self._error is not None else None
            return _rules.evolve(base, phase=phase, error=error)
        if not performing and final is not None:  # perform has ended; the destination is resuming
            return _rules.evolve(final, phase=phase)
        if performing:
            gate = self.domain.connection._gate
            try:
                live = gate.read(
                    OPERATIONS["migrate_job_info"],
                    lambda: self.domain._what("migration progress"),
                    gate.driver.migrate_job_info,
                    self.domain._ref,
                )
            except VirtabsError:
                live = None
            if live is not None:
                return live
        return MigrationInfo(phase, elapsed_ms=elapsed)

    def wait(self, timeout: float | None = None, *, progress: Callable[[MigrationInfo], None] | None = None) -> Domain:
        """Wait for the end; the domain on the destination, or the failure raised (after the rollback).

        ``progress`` is called with :meth:`info` about every 0.2 s. OperationTimeoutError after
        ``timeout`` seconds (the migration goes on; :meth:`abort` ends it).
        """
        from ._domain import Domain
        from ._errors import OperationTimeoutError

        timeout = _rules.require_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.wait(0.2 if progress is not None else 0.5):
            if progress is not None:
                progress(self.info())
            if deadline is not None and time.monotonic() >= deadline:
                raise OperationTimeoutError(f"{self.domain._what('migration')} has not ended after {timeout:g}s")
        if progress is not None:
            progress(self.info())
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return Domain(self.destination, self._result)

    def abort(self) -> None:
        """Cancel the migration: the destination is discarded and the source keeps running.

        Returns at once; :meth:`wait` then raises the abort (OperationFailedError). After the
        switch has happened there is nothing left to abort and this does nothing. NotSupportedError
        where the source does not declare ``domain.migrate.abort`` (the migration goes on).
        """
        gate = self.domain.connection._gate
        what = self.domain._what("migration abort")
        gate.check_open()
        gate.require(OPERATIONS["migrate_abort"].required_capabilities(), what)  # the migration goes on
        with self._lock:
            if self._done.is_set():
                return
            self._aborted = True
            performing = self._performing
        if performing:
            with gate(OPERATIONS["migrate_abort"], what) as call:
                call.driver.migrate_abort(self.domain._ref)

    def close(self) -> None:
        """Close the destination connection if this job opened it (from a URI)."""
        if self._owned:
            self.destination.close()

"""The driver toolkit: the loops and translations every backend would otherwise write again.

* :class:`ErrorMap` turns native exceptions into virtabs errors by a table, in
  one place per driver (httpx's single error translator, for drivers).
* :class:`Deadline` and :func:`poll_until` wait for a condition with a bound,
  backing off between checks; the public layer's waits use them too.
* :func:`find_domain` is lookup by name or UUID over a listing; :func:`find_network`
  the same for networks, and :func:`networks_with_attachments` fills a listing's
  attachments from the domains' NICs.
* :func:`image_volume_capacity` is the refusal of a directory volume by a pool that makes disk images.
* :class:`EventPoller` gives a driver without a native event stream lifecycle
  events, by diffing periodic state snapshots on a background thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import attrs

from .._errors import (
    InvalidArgumentError,
    NoDomainError,
    NoNetworkError,
    OperationFailedError,
    OperationTimeoutError,
    VirtabsError,
    quote,
)
from .._flags import DomainState, LifecycleEventType
from .._models import (
    DIRECTORY_FORMAT,
    DomainRecord,
    DomainRef,
    Event,
    LifecycleEvent,
    MigrationInfo,
    NetworkAttachment,
    NetworkInfo,
)

__all__ = [
    "Deadline",
    "ErrorMap",
    "EventPoller",
    "find_domain",
    "OneCommandMigrations",
    "find_network",
    "image_volume_capacity",
    "networks_with_attachments",
    "poll_until",
]

log = logging.getLogger("virtabs.spi")


def image_volume_capacity(pool: str, name: str, capacity_bytes: int | None, format: str) -> int:
    """The capacity of a disk image volume to create in ``pool``; InvalidArgumentError for a directory volume
    (format ``"dir"``, no capacity), which a pool of disk images does not make. The first line of the
    ``create_volume`` of a driver whose pools hold image files."""
    if format == DIRECTORY_FORMAT or capacity_bytes is None:
        raise InvalidArgumentError(
            f"volume {quote(name)}: pool {quote(pool)} holds disk images, not directory volumes "
            f"(format {quote(format)}): give an image format and a capacity"
        )
    return capacity_bytes


T = TypeVar("T")

ExceptionMatcher = type[BaseException] | Callable[[BaseException], bool]


class ErrorMap:
    """Translate native exceptions into virtabs errors, by a table checked in order.

    >>> errors = ErrorMap(
    ...     [(FileNotFoundError, NoDomainError), (TimeoutError, OperationTimeoutError)],
    ...     default=OperationFailedError,
    ... )
    >>> with errors("start of domain 'web'"):  # doctest: +SKIP
    ...     native_start("web")

    A row's matcher is an exception class or a predicate on the exception (for
    SDKs that put the reason in a field: ``lambda e: e.faultCode == 404``).
    The message is ``"<what>: <native message>"``; the native exception stays
    as ``__cause__``. A :class:`VirtabsError` passes through untouched, so a
    driver's own native exception classes must not subclass it, or the table
    never sees them.
    """

    def __init__(
        self,
        table: Iterable[tuple[ExceptionMatcher, type[VirtabsError]]],
        *,
        default: type[VirtabsError] | None = OperationFailedError,
        describe: Callable[[BaseException], str] = str,
    ) -> None:
        self._table = tuple(table)
        self._default = default
        self._describe = describe

    def classify(self, exc: BaseException) -> type[VirtabsError] | None:
        """The virtabs class for ``exc``, or None when no row matches and there is no default."""
        for matcher, error in self._table:
            if isinstance(matcher, type):
                if isinstance(exc, matcher):
                    return error
            elif matcher(exc):
                return error
        return self._default

    def translate(self, exc: BaseException, what: str) -> BaseException:
        """The virtabs error for ``exc`` (``exc`` itself if it is one or nothing matches)."""
        if isinstance(exc, VirtabsError):
            return exc
        cls = self.classify(exc)
        if cls is None:
            return exc
        detail = self._describe(exc).strip() or type(exc).__name__
        error = cls(f"{what}: {detail}" if what else detail)
        error.__cause__ = exc
        return error

    @contextlib.contextmanager
    def __call__(self, what: str = "") -> Iterator[None]:
        try:
            yield
        except VirtabsError:
            raise
        except Exception as exc:
            translated = self.translate(exc, what)
            if translated is exc:
                raise
            raise translated from exc


class Deadline:
    """A point in time a wait must not pass. ``Deadline(None)`` never expires."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self._end is not None and time.monotonic() >= self._end

    def remaining(self, cap: float | None = None) -> float | None:
        """Seconds left (never negative), at most ``cap``; None when unbounded and no cap."""
        if self._end is None:
            return cap
        left = max(0.0, self._end - time.monotonic())
        return left if cap is None else min(left, cap)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` or until the deadline, whichever comes first."""
        left = self.remaining(seconds)
        if left:
            time.sleep(left)


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float | None,
    what: str,
    interval: float = 0.01,
    max_interval: float = 0.25,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something other than None or False, and return that.

    Backs off from ``interval`` to ``max_interval``. After ``timeout`` seconds
    raises :class:`~virtabs.OperationTimeoutError` "``<what> after <timeout>s``"
    (plus ``describe()``, the last observed state, when given), so ``what``
    says what is still not so: ``"domain 'web' not shut off"``. ``check`` may raise
    to end the wait early (a job that failed, a process that died).
    """
    deadline = Deadline(timeout)
    delay = interval
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if deadline.expired:
            suffix = f" ({describe()})" if describe is not None else ""
            raise OperationTimeoutError(f"{what} after {timeout}s{suffix}")
        deadline.sleep(delay)
        delay = min(delay * 1.5, max_interval)


@attrs.frozen
class _OneCommandMigration:
    phase: str
    started: float
    finished: float | None
    memory_bytes: int


class OneCommandMigrations:
    """The progress a driver can give of migrations its host runs as one blocking command (Hyper-V's
    ``Move-VM``, ``VBoxManage controlvm teleport``, ``xl migrate``): such a command reports no byte counts to
    the caller, so a job is its phase, the domain's memory size (all of it processed once the command
    succeeded) and the time it has run. Keeps the last migration of each domain UUID, for
    ``migrate_job_info``; one per connection.

    ``perform`` runs the command inside :meth:`running` (or calls :meth:`begin` and :meth:`end`), and
    ``migrate_job_info`` returns :meth:`info`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, _OneCommandMigration] = {}

    def begin(self, uuid: str, phase: str, memory_bytes: int) -> None:
        """A migration of ``uuid`` starts, in ``phase`` (``"memory"``, or ``"storage"`` when disks move too)."""
        with self._lock:
            self._last[uuid] = _OneCommandMigration(phase, time.monotonic(), None, memory_bytes)

    def end(self, uuid: str, succeeded: bool) -> None:
        """The command has ended: ``completed`` or ``failed``."""
        with self._lock:
            move = self._last[uuid]
            phase = "completed" if succeeded else "failed"
            self._last[uuid] = attrs.evolve(move, phase=phase, finished=time.monotonic())

    @contextlib.contextmanager
    def running(self, uuid: str, phase: str, memory_bytes: int) -> Iterator[None]:
        """:meth:`begin`, then :meth:`end`: failed when the block raises (the exception goes on), else completed."""
        self.begin(uuid, phase, memory_bytes)
        try:
            yield
        except BaseException:
            self.end(uuid, False)
            raise
        self.end(uuid, True)

    def info(self, uuid: str) -> MigrationInfo | None:
        """The last migration of ``uuid`` this connection ran, or None."""
        with self._lock:
            move = self._last.get(uuid)
        if move is None:
            return None
        done = move.memory_bytes if move.phase == "completed" else 0
        return MigrationInfo(
            phase=move.phase,
            memory_total=move.memory_bytes,
            memory_processed=done,
            memory_remaining=move.memory_bytes - done,
            elapsed_ms=int(((move.finished or time.monotonic()) - move.started) * 1000),
        )


def find_domain(refs: Iterable[DomainRef], name_or_uuid: str) -> DomainRef:
    """The domain called ``name_or_uuid``, or whose UUID it is (any case); NoDomainError otherwise.

    A name wins over a UUID when both match different domains (libvirt's order).
    """
    wanted = name_or_uuid.lower()
    by_uuid = None
    for ref in refs:
        if ref.name == name_or_uuid:
            return ref
        if by_uuid is None and ref.uuid.lower() == wanted:
            by_uuid = ref
    if by_uuid is not None:
        return by_uuid
    raise NoDomainError(f"domain {quote(name_or_uuid)} not found")


def find_network(networks: Iterable[NetworkInfo], name_or_id: str) -> NetworkInfo:
    """The network called ``name_or_id``, or whose id it is (any case); NoNetworkError otherwise.

    A name wins over an id when both match different networks (as :func:`find_domain`).
    """
    wanted = name_or_id.lower()
    by_id = None
    for network in networks:
        if network.name == name_or_id:
            return network
        if by_id is None and network.id is not None and network.id.lower() == wanted:
            by_id = network
    if by_id is not None:
        return by_id
    raise NoNetworkError(f"network {quote(name_or_id)} not found")


def networks_with_attachments(networks: Iterable[NetworkInfo], records: Iterable[DomainRecord]) -> list[NetworkInfo]:
    """``networks`` with ``attachments`` set from the domains' NICs: one per NIC whose ``network`` names it.

    For a backend whose host knows a network's members only through its guests' NICs (a Linux bridge);
    ``records`` come from one bulk read (:meth:`Driver.inventory`), so the cost does not grow per network.
    A network's attachments the listing already had are replaced.
    """
    by_network: dict[str, list[NetworkAttachment]] = {}
    for record in records:
        for nic in record.nics:
            if nic.network is not None:
                attachment = NetworkAttachment(record.uuid, record.name, nic.mac)
                by_network.setdefault(nic.network, []).append(attachment)
    return [attrs.evolve(net, attachments=tuple(by_network.get(net.name, ()))) for net in networks]


def _lifecycle_type(before: DomainState | None, after: DomainState | None) -> LifecycleEventType | None:
    if before == after:
        return None
    if after is None:
        return LifecycleEventType.UNDEFINED
    if before is None:
        return LifecycleEventType.DEFINED if not after.is_active else LifecycleEventType.STARTED
    if after == DomainState.PAUSED:
        # from shut off straight to paused is a start (a domain started paused, or one the host builds paused
        # before it runs, as Xen's xl create does): libvirt reports STARTED there too, not SUSPENDED
        return LifecycleEventType.SUSPENDED if before.is_active else LifecycleEventType.STARTED
    if before == DomainState.PAUSED and after == DomainState.RUNNING:
        return LifecycleEventType.RESUMED
    if after.is_active and not before.is_active:
        return LifecycleEventType.STARTED
    if before.is_active and not after.is_active:
        return LifecycleEventType.CRASHED if after == DomainState.CRASHED else LifecycleEventType.STOPPED
    return None


class EventPoller:
    """Lifecycle events for a driver whose host has no event stream.

    ``snapshot`` returns every domain's current state keyed by DomainRef (one
    bulk host call); every ``interval`` seconds the poller diffs it against the
    previous one and calls ``emit`` with a :class:`~virtabs.LifecycleEvent` per
    change (defined, undefined, started, stopped, crashed, suspended, resumed).
    A failing snapshot is logged and retried; it never kills the thread.

    Typical use::

        def start_events(self) -> None:
            self._poller = EventPoller(self._states, self.emit, interval=1.0)
            self._poller.start()

        def stop_events(self) -> None:
            self._poller.stop()
    """

    def __init__(
        self,
        snapshot: Callable[[], Mapping[DomainRef, DomainState]],
        emit: Callable[[Event], None],
        *,
        interval: float = 1.0,
        name: str = "virtabs-event-poller",
    ) -> None:
        self._snapshot = snapshot
        self._emit = emit
        self._interval = interval
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[DomainRef, DomainState] | None = None

    def start(self) -> None:
        """Take the first snapshot (the baseline: no events for it) and start polling."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._last = self._take()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for the thread. Idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self._interval * 2))

    def poll_once(self) -> list[Event]:
        """Diff one snapshot against the last one, emit and return the events (used by the thread)."""
        current = self._take()
        if current is None:
            return []
        previous = self._last if self._last is not None else current
        self._last = current
        events: list[Event] = []
        for ref in sorted(set(previous) | set(current), key=lambda r: r.name):
            kind = _lifecycle_type(previous.get(ref), current.get(ref))
            if kind is not None:
                events.append(LifecycleEvent(ref.name, ref.uuid, kind, detail="polled"))
        for event in events:
            try:
                self._emit(event)
            except Exception:
                log.exception("event sink raised for %r", event)
        return events

    def _take(self) -> dict[DomainRef, DomainState] | None:
        try:
            return dict(self._snapshot())
        except Exception as exc:
            log.warning("event poller: state snapshot failed: %s", exc)
            return None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll_once()

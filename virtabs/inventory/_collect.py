"""Collecting many hosts in parallel, each bounded by its own timeout."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import math
import queue
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from .._api import Connection, StoragePool
from .._api import open as _open
from .._capabilities import Capability
from .._config import Config, default_uri, load_config
from .._connection import driver_class_for, resolve_uri
from .._errors import (
    ConnectError,
    ErrorCode,
    InvalidArgumentError,
    OperationTimeoutError,
    VirtabsError,
    quote,
)
from .._models import DomainRecord, NetworkInfo, VolumeInfo
from .._uri import parse_uri, redact_uri_text
from ._model import HostError, HostInventory, Inventory, PoolInventory, utcnow

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "HostTarget",
    "collect",
    "collect_batch",
    "collect_stream",
    "connect_failure",
    "host_key",
    "plan",
    "redact_uri",
]

log = logging.getLogger("virtabs.inventory")

DEFAULT_CONCURRENCY = 16
"""Hosts collected at the same time unless told otherwise."""
DEFAULT_TIMEOUT = 60.0
"""Seconds one host's whole collection may take unless told otherwise."""
DEFAULT_BATCH_SIZE = 32
"""Hosts per task when an executor runs the collection (see :func:`collect`)."""

_SECRET_PARAM_RE = re.compile(
    r"^(.*[_-])?(password|passwd|pass|pwd|secret|token|api[_-]?key|access[_-]?key|auth)$", re.IGNORECASE
)


@attrs.frozen
class HostTarget:
    """One host to inventory: a URI (or config alias; ``None`` = the default URI), an optional
    display ``name`` and an optional ``timeout`` (seconds) overriding the run's."""

    uri: str | None = None
    name: str | None = None
    timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.uri is not None and (not isinstance(self.uri, str) or not self.uri.strip()):
            raise InvalidArgumentError(f"a host URI must be a non-empty string, got {quote(self.uri)}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise InvalidArgumentError(f"a host name must be a non-empty string, got {quote(self.name)}")
        if self.timeout is not None:
            _check_timeout(self.timeout, "host timeout")


def _check_timeout(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{what} must be a positive number of seconds, got {quote(value)}")


def redact_uri(text: str) -> str:
    """A URI safe to print, echoed as given: the text (stripped) with any password (``user:secret@``)
    and secret-looking query parameters (``password=``, ``api_token=``...) replaced by ``***``;
    nothing is re-encoded or reordered."""
    shown = redact_uri_text(text.strip())
    return _QUERY_PARAM_RE.sub(
        lambda m: f"{m[1]}{m[2]}=***" if _SECRET_PARAM_RE.match(urllib.parse.unquote(m[2])) else m[0], shown
    )


_QUERY_PARAM_RE = re.compile(r"([?&])([^=&#]+)=([^&#]*)")


def _driver_of(text: str) -> str | None:
    try:
        return parse_uri(text).driver
    except VirtabsError:
        return None


def _as_target(item: str | HostTarget | None) -> HostTarget:
    if isinstance(item, HostTarget):
        return item
    if item is None or isinstance(item, str):
        return HostTarget(uri=item)
    raise InvalidArgumentError(f"a host must be a URI string or a HostTarget, got {quote(item)}")


def _display_uri(target: HostTarget) -> str:
    if target.uri is not None:
        try:
            text = load_config().resolve_alias(target.uri)
        except VirtabsError:
            text = target.uri
        return redact_uri(text)
    try:
        return redact_uri(default_uri(load_config()))
    except VirtabsError:
        return "<default URI>"


_OPEN_ERRORS_KEPT = frozenset(
    {
        ErrorCode.NO_CONNECT,
        ErrorCode.INVALID_ARG,
        ErrorCode.AUTH_FAILED,
        ErrorCode.OPERATION_TIMEOUT,
        ErrorCode.OPERATION_DENIED,
        ErrorCode.NO_SUPPORT,
        ErrorCode.DRIVER_NOT_FOUND,
        ErrorCode.DRIVER_UNAVAILABLE,
    }
)
"""Codes an error raised while opening a connection keeps; any other becomes NO_CONNECT (5)."""


def connect_failure(exc: VirtabsError) -> VirtabsError:
    """The error a host that could not be opened reports: a failure to reach or set up the connection
    (libvirt's "operation failed", a system error, an internal error of the driver's handshake) is
    NO_CONNECT (5), as the docs promise; bad URIs, credentials, timeouts and missing drivers keep their code."""
    if exc.code in _OPEN_ERRORS_KEPT:
        return exc
    return ConnectError(exc.message)


def _host_name(target: HostTarget, shown: str) -> str | None:
    """The ``name`` a host's output carries: the target's, else the config alias it was given as."""
    if target.name is None and target.uri is not None and target.uri.strip() != shown and "://" not in target.uri:
        return target.uri  # a config alias names the host
    return target.name


def host_key(target: HostTarget) -> tuple[str, str | None]:
    """``(uri, name)`` as the output shows them for ``target``: what ties a saved host to its target
    (``--resume``), whether the host was inventoried or failed."""
    shown = _display_uri(target)
    return shown, _host_name(target, shown)


def _failed(target: HostTarget, exc: BaseException, uri: str | None = None) -> HostInventory:
    shown = uri or _display_uri(target)
    return HostInventory(
        uri=shown,
        name=_host_name(target, shown),
        driver=_driver_of(shown),
        collected_at=utcnow(),
        error=HostError.from_exception(exc),
    )


def _try(errors: dict[str, str], key: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except VirtabsError as exc:
        errors[key] = f"{exc.code.name}: {exc.message}"
        return None


def _volume_reader(pool: StoragePool) -> Callable[[], list[VolumeInfo]]:
    def read() -> list[VolumeInfo]:
        # the listing already carries each volume's facts: no per-volume round trip
        return [v.last_info for v in pool.list_volumes()]

    return read


def _pools(conn: Connection, errors: dict[str, str]) -> tuple[PoolInventory, ...] | None:
    if not conn.supports(Capability.STORAGE_POOL):
        errors["pools"] = f"NO_SUPPORT: the {conn.driver_name} driver has no storage pools"
        return None
    pools = _try(errors, "pools", conn.list_storage_pools)
    if pools is None:
        return None
    result = []
    for pool in pools:
        pool_errors: dict[str, str] = {}
        volumes = _try(pool_errors, "volumes", _volume_reader(pool))
        result.append(
            PoolInventory(
                info=pool.last_info,  # the listing's facts; info() would cost a round trip per pool
                volumes=None if volumes is None else tuple(volumes),
                field_errors=pool_errors,
            )
        )
    return tuple(result)


def _networks(conn: Connection, errors: dict[str, str], records: list[DomainRecord]) -> tuple[NetworkInfo, ...] | None:
    """The host's networks from one listing (its attachments included: no call per network or NIC); the
    driver may take the attachments from the domain records just read instead of reading the guests again."""
    if not conn.supports(Capability.NETWORK):
        errors["networks"] = f"NO_SUPPORT: the {conn.driver_name} driver does not list networks"
        return None
    networks = _try(errors, "networks", lambda: conn._networks_for_inventory(records))
    return None if networks is None else tuple(networks)


def _reads_locally(target: HostTarget, config: Config | None) -> bool:
    """Whether the target's driver declares :attr:`~virtabs.spi.Driver.local_reads` (False when unsure)."""
    if config is None:  # an unreadable config file: each host's worker reports it
        return False
    try:
        return driver_class_for(resolve_uri(target.uri, config)).local_reads
    except Exception:  # an unknown scheme or a bad URI: the worker reports it; a thread of its own is fine
        return False


def _collect_host(target: HostTarget, timeout: float | None, pools: bool) -> HostInventory:
    # ``timeout`` here bounds each single call to the host (virtabs.open's meaning)
    """Inventory one host, on the calling thread. Never raises a VirtabsError: it becomes ``error``."""
    started = time.monotonic()
    try:
        conn = _open(target.uri, readonly=True, timeout=timeout)
    except VirtabsError as exc:
        return _failed(target, connect_failure(exc))
    try:
        return _read_host(conn, target, started, pools)
    finally:
        try:
            conn.close()
        except Exception:  # the data is read: a failing close must not turn it into an error
            log.debug("closing %s failed", conn.uri, exc_info=True)


def _read_host(conn: Connection, target: HostTarget, started: float, pools: bool) -> HostInventory:
    """Read one open connection: host facts, domains (bulk hook), pools, networks."""
    uri = _display_uri(target)  # as the user gave it (an alias resolved), not re-encoded by the parser
    name = _host_name(target, uri)
    errors: dict[str, str] = {}
    info = _try(errors, "host_info", conn.host_info)
    if info is None:
        reason = errors.pop("host_info")
        for key in ("hypervisor", "hypervisor_version", "hostname", "cpus", "memory_bytes"):
            errors[key] = reason
    common: dict[str, Any] = {
        "uri": uri,
        "name": name,
        "driver": conn.driver_name,
        "hypervisor": info.hypervisor if info else None,
        "hypervisor_version": info.hypervisor_version if info else None,
        "hostname": info.hostname if info else None,
        "cpus": info.cpus if info else None,
        "memory_bytes": info.memory_bytes if info else None,
    }
    try:
        records = conn.domain_records()
    except VirtabsError as exc:
        return HostInventory(
            **common,
            collected_at=utcnow(),
            error=HostError.from_exception(exc),
            field_errors=errors,
            duration_seconds=time.monotonic() - started,
        )
    collected_at = utcnow()
    pool_data = _pools(conn, errors) if pools else None
    if not pools:
        errors["pools"] = "NOT_REPORTED: pool collection was turned off"
    network_data = _networks(conn, errors, records)
    return HostInventory(
        **common,
        collected_at=collected_at,
        domains=tuple(records),
        pools=pool_data,
        networks=network_data,
        field_errors=errors,
        duration_seconds=time.monotonic() - started,
    )


def _worker(
    index: int,
    target: HostTarget,
    timeout: float | None,
    pools: bool,
    results: queue.SimpleQueue[tuple[int, HostInventory]],
) -> None:
    try:
        try:
            host = _collect_host(target, timeout, pools)
        except BaseException as exc:  # a driver bug must not take the run down: it becomes this host's error
            host = _failed(target, exc)
    except BaseException as exc:  # even reporting failed: still answer, or collect() would wait for nothing
        host = HostInventory(
            uri=redact_uri(target.uri or "<default URI>"),
            name=target.name,
            driver=None,
            collected_at=utcnow(),
            error=HostError.from_exception(exc),
        )
    results.put((index, host))


def plan(hosts: Iterable[str | HostTarget | None] | str | HostTarget | None = None) -> list[HostTarget]:
    """The hosts :func:`collect` reads, in order: each item as a :class:`HostTarget`, exact duplicates
    dropped, ``None`` (or nothing) the default URI. :func:`collect_stream` numbers hosts by this list."""
    if hosts is None or isinstance(hosts, str | HostTarget):
        hosts = [hosts]
    targets: list[HostTarget] = []
    seen: set[HostTarget] = set()
    for item in hosts:
        target = _as_target(item)
        if target not in seen:
            seen.add(target)
            targets.append(target)
    return targets or [HostTarget()]


def _check_run(concurrency: object, timeout: object, call_timeout: object, batch_size: object = 1) -> None:
    for value, what in ((concurrency, "concurrency"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{what} must be a positive integer, got {quote(value)}")
    if timeout is not None:
        _check_timeout(timeout, "timeout")
    if call_timeout is not None:
        _check_timeout(call_timeout, "call_timeout")


def collect_stream(
    hosts: Iterable[str | HostTarget | None] | str | HostTarget | None = None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float | None = DEFAULT_TIMEOUT,
    call_timeout: float | None = None,
    pools: bool = True,
    executor: concurrent.futures.Executor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[int, HostInventory]]:
    """Each host's result the moment it is done: ``(position in plan(hosts), HostInventory)``, in
    completion order. Nothing is kept once yielded, so memory is bounded by the hosts in flight.

    The arguments are :func:`collect`'s and are checked at once (not at the first ``next()``).
    Closing the iterator early (``break``) abandons the hosts still running.
    """
    targets = plan(hosts)
    _check_run(concurrency, timeout, call_timeout, batch_size)
    if executor is None:
        return _local_stream(targets, concurrency, timeout, call_timeout, pools)
    return _executor_stream(targets, executor, batch_size, concurrency, timeout, call_timeout, pools)


def collect(
    hosts: Iterable[str | HostTarget | None] | str | HostTarget | None = None,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float | None = DEFAULT_TIMEOUT,
    call_timeout: float | None = None,
    pools: bool = True,
    on_host_done: Callable[[HostInventory], None] | None = None,
    executor: concurrent.futures.Executor | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Inventory:
    """Inventory every host in ``hosts``: domains (with disks, NICs, snapshots, block jobs) and pools.

    ``hosts`` holds URIs, config aliases or :class:`HostTarget` objects; ``None``
    (or nothing) means the default URI, as :func:`virtabs.open` resolves it.
    Connections are read-only; credentials come from the virtabs config file or
    the environment, exactly as for :func:`virtabs.open`.

    Up to ``concurrency`` hosts are collected at once, each on a thread of its own
    while it runs (never more than ``concurrency`` running threads, whatever the
    host count). Each host's whole collection is bounded by ``timeout`` seconds
    (a :class:`HostTarget` may set its own; ``None`` waits forever): past it the
    host is reported failed with ``OPERATION_TIMEOUT`` (68) and its thread is
    abandoned (a daemon thread, so it never holds up the process's exit).
    ``call_timeout`` bounds each single call to a host (``virtabs.open(timeout=)``);
    by default it is the host's ``timeout``.
    A failing host never stops the others: it is reported with its error code
    and message. ``on_host_done(host)`` is called on the calling thread as each
    host finishes (write it out there to stream; :func:`collect_stream` does the
    same without keeping the results). Hosts come back in the order given; exact
    duplicate entries are collected once.

    ``executor`` (any :class:`concurrent.futures.Executor`: a process pool,
    ``distributed.Client(...).get_executor()`` for a Dask cluster) runs the hosts
    elsewhere, in batches of ``batch_size`` (each batch read there with this
    function's ``concurrency`` and timeouts); results come back batch by batch as
    they finish. A batch whose task fails (a lost worker the executor does not
    retry, a broken pool) reports each of its hosts failed with ``NO_CONNECT`` and
    the reason; every other batch is unaffected. Credentials never travel with the
    tasks: each worker reads them itself, as :func:`virtabs.open` does.

    Hosts whose driver reads locally (:attr:`virtabs.spi.Driver.local_reads`, e.g.
    QEMU embed roots) are read one at a time beside the others: their work is
    CPU and local I/O, where more threads only contend for the interpreter lock.
    A host's ``timeout`` starts when its collection starts.

    Domains are read through the drivers' bulk hook
    (:meth:`virtabs.Connection.domain_records`): one call per host.
    """
    targets = plan(hosts)
    generated_at = utcnow()
    results: list[HostInventory | None] = [None] * len(targets)
    for index, host in collect_stream(
        targets,
        concurrency=concurrency,
        timeout=timeout,
        call_timeout=call_timeout,
        pools=pools,
        executor=executor,
        batch_size=batch_size,
    ):
        results[index] = host
        if on_host_done is not None:
            on_host_done(host)
    return Inventory(generated_at=generated_at, hosts=tuple(h for h in results if h is not None))


def collect_batch(
    targets: list[HostTarget],
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float | None = DEFAULT_TIMEOUT,
    call_timeout: float | None = None,
    pools: bool = True,
) -> list[HostInventory]:
    """One batch of hosts, read on this machine, in the order given: what an executor's worker runs.

    Module-level (picklable by reference) and free of secrets: its arguments are host targets
    (URIs without credentials) and settings; the worker reads credentials as :func:`virtabs.open` does.
    """
    results: list[HostInventory | None] = [None] * len(targets)
    for index, host in _local_stream(list(targets), min(concurrency, len(targets)), timeout, call_timeout, pools):
        results[index] = host
    return [h for h in results if h is not None]


def _executor_stream(
    targets: list[HostTarget],
    executor: concurrent.futures.Executor,
    batch_size: int,
    concurrency: int,
    timeout: float | None,
    call_timeout: float | None,
    pools: bool,
) -> Iterator[tuple[int, HostInventory]]:
    pending: dict[concurrent.futures.Future[list[HostInventory]], range] = {}
    try:
        for first in range(0, len(targets), batch_size):
            batch = range(first, min(first + batch_size, len(targets)))
            future = executor.submit(
                collect_batch, [targets[i] for i in batch], concurrency, timeout, call_timeout, pools
            )
            pending[future] = batch
        for future in concurrent.futures.as_completed(list(pending)):
            batch = pending.pop(future)
            try:
                hosts = future.result()
                if len(hosts) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} hosts came back with {len(hosts)}")
            except BaseException as exc:  # the batch's task failed: only its hosts are lost
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                lost = ConnectError(f"the executor lost the batch holding this host ({reason})")
                hosts = [_failed(targets[i], lost) for i in batch]
            yield from zip(batch, hosts, strict=True)
    finally:
        for future in pending:  # interrupted, or the consumer stopped early: drop what has not started
            future.cancel()


def _local_stream(
    targets: list[HostTarget],
    concurrency: int,
    timeout: float | None,
    call_timeout: float | None,
    pools: bool,
) -> Iterator[tuple[int, HostInventory]]:
    done: queue.SimpleQueue[tuple[int, HostInventory]] = queue.SimpleQueue()
    waiting = collections.deque(range(len(targets)))
    running: dict[int, float] = {}  # index -> deadline (monotonic; inf = none)
    config: Config | None = None  # read once for every target, not once per host
    with contextlib.suppress(VirtabsError):
        config = load_config()
    local = {index for index, target in enumerate(targets) if _reads_locally(target, config)}
    while waiting or running:
        while waiting and len(running) < concurrency:
            index = _next_host(waiting, local, running)
            if index is None:
                break
            target = targets[index]
            host_timeout = target.timeout if target.timeout is not None else timeout
            running[index] = math.inf if host_timeout is None else time.monotonic() + host_timeout
            threading.Thread(
                target=_worker,
                args=(index, target, call_timeout or host_timeout, pools, done),
                name=f"virtabs-inventory-{index}",
                daemon=True,
            ).start()
        next_deadline = min(running.values())
        wait = None if next_deadline == math.inf else max(0.0, next_deadline - time.monotonic())
        try:
            index, host = done.get(timeout=wait)
        except queue.Empty:
            now = time.monotonic()
            for index, deadline in sorted(running.items()):
                if deadline <= now:
                    del running[index]
                    target = targets[index]
                    limit = target.timeout if target.timeout is not None else timeout
                    shown = _display_uri(target)
                    exc = OperationTimeoutError(f"inventory of {shown} did not finish within {limit:g}s")
                    yield index, _failed(target, exc, shown)
            continue
        if index in running:  # else: a late answer from a host already reported as timed out
            del running[index]
            yield index, host


def _next_host(waiting: collections.deque[int], local: set[int], running: dict[int, float]) -> int | None:
    """The next host to start: the first waiting one, except that one local reader runs at a time."""
    local_busy = any(index in local for index in running)
    for position, index in enumerate(waiting):
        if index not in local or not local_busy:
            del waiting[position]
            return index
    return None

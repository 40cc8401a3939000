"""The public API layer: check once, then dispatch to the driver.

Every public method follows libvirt's entry-point recipe:

1. the connection is open, and writable if the call writes;
2. arguments and flag combinations are valid (``InvalidArgumentError``);
3. the driver declares the capability (``NotSupportedError``, host untouched);
4. the object is in a state that allows the call (``OperationInvalidError``,
   ``BlockCopyActiveError``);
5. the driver method runs; anything it raises that is not a
   ``VirtabsError`` becomes ``OperationFailedError``, and every message has
   the connection's secrets redacted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ._capabilities import BLOCK_JOB_CAPABILITIES, Capabilities, Capability
from ._config import (
    Credentials,
    coerce_credentials,
    credentials_from_env,
    default_uri,
    load_config,
)
from ._errors import (
    BlockCopyActiveError,
    ConnectError,
    InternalError,
    InvalidArgumentError,
    NotSupportedError,
    OperationDeniedError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    VirtabsError,
)
from ._flags import (
    BlockCommitFlags,
    BlockCopyFlags,
    BlockJobAbortFlags,
    BlockJobSetSpeedFlags,
    BlockJobStatus,
    BlockJobType,
    BlockPullFlags,
    BlockRebaseFlags,
    DomainState,
)
from ._models import (
    DISK_FORMATS,
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobEvent,
    BlockJobInfo,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    Event,
    HostInfo,
    NicInfo,
    PoolInfo,
    Snapshot,
    VolumeInfo,
)
from ._registry import load_driver_class
from ._uri import URI, parse_uri
from .spi import ConnectOptions, Driver

__all__ = ["BlockJob", "Connection", "Domain", "StoragePool", "Subscription", "Volume", "open"]

log = logging.getLogger("virtabs")

T = TypeVar("T")
MiB = 1 << 20
_LLONG_MAX = (1 << 63) - 1
_TWO_PHASE = (BlockJobType.COPY, BlockJobType.ACTIVE_COMMIT)


def open(
    uri: str | None = None,
    *,
    credentials: Credentials | Mapping[str, str] | tuple[str, str] | None = None,
    readonly: bool = False,
    timeout: float | None = None,
) -> Connection:
    """Open a connection to a hypervisor.

    ``uri`` follows libvirt's grammar (``qemu:///session``, ``esx://host/?no_verify=1``)
    or is an alias from the config file. Without one: ``$VIRTABS_DEFAULT_URI``,
    the config file's ``default_uri``, then ``test:///default``.
    ``timeout`` bounds every single call to the host (seconds).
    """
    config = load_config()
    text = config.resolve_alias(uri) if uri is not None else config.resolve_alias(default_uri(config))
    parsed = parse_uri(text)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
    creds = coerce_credentials(credentials) or credentials_from_env() or config.credentials_for(parsed)
    driver_class = load_driver_class(parsed.driver)
    if not (isinstance(driver_class, type) and issubclass(driver_class, Driver)):
        raise InternalError(f"the entry point for {parsed.driver!r} is not a virtabs.spi.Driver subclass")
    return Connection._open(driver_class, parsed, creds, readonly, timeout)


class _Redactor:
    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _EventHub:
    """Fans driver events out to subscriptions; callbacks run on the driver's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def add(self, sub: Subscription) -> bool:
        with self._lock:
            self._subs.append(sub)
            return len(self._subs) == 1

    def remove(self, sub: Subscription) -> bool:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
                return not self._subs
            return False

    def deliver(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if sub._matches(event):
                try:
                    sub._callback(event)
                except Exception:
                    log.exception("event callback %r raised; event dropped for it", sub._callback)


class Subscription:
    """A registered event callback; ``close()`` (or leaving the ``with`` block) removes it."""

    def __init__(self, conn: Connection, callback: Callable[[Event], None], domain: str | None) -> None:
        self._conn = conn
        self._callback = callback
        self._domain = domain
        self.closed = False

    def _matches(self, event: Event) -> bool:
        return self._domain is None or self._domain in (event.domain, event.uuid)

    def close(self) -> None:
        """Stop delivering events to this callback. Idempotent."""
        if not self.closed:
            self.closed = True
            self._conn._unsubscribe(self)

    unsubscribe = close

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Connection:
    """An open connection to one hypervisor host. Thread-safe; use as a context manager."""

    _uri: URI
    _readonly: bool
    _timeout: float | None
    _redact: _Redactor
    _hub: _EventHub
    _lock: threading.RLock
    _closed: bool
    _driver: Driver
    _capabilities: Capabilities

    def __init__(self) -> None:
        raise TypeError("use virtabs.open(uri) to get a Connection")

    @classmethod
    def _open(
        cls,
        driver_class: type[Driver],
        uri: URI,
        credentials: Credentials | None,
        readonly: bool,
        timeout: float | None,
    ) -> Connection:
        self = object.__new__(cls)
        self._uri = uri
        self._readonly = readonly
        self._timeout = timeout
        self._redact = _Redactor(credentials.secrets() if credentials else ())
        self._hub = _EventHub()
        self._lock = threading.RLock()
        self._closed = False
        options = ConnectOptions(
            credentials=credentials, readonly=readonly, timeout=timeout, event_sink=self._hub.deliver
        )
        with self._translate(f"connecting to {uri}", ConnectError):
            self._driver = driver_class(uri, options)
        with self._translate(f"reading capabilities of {uri}"):
            self._capabilities = self._driver.connection_capabilities()
        log.debug("opened %s with driver %s", uri, driver_class.__name__)
        return self

    # --- plumbing ------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, what: str, wrap: type[VirtabsError] = OperationFailedError) -> Iterator[None]:
        try:
            yield
        except VirtabsError as exc:
            redacted = self._redact(exc.message)
            if redacted != exc.message:
                exc.message = redacted
                exc.args = (redacted,)
            raise
        except Exception as exc:
            detail = self._redact(str(exc)) or type(exc).__name__
            raise wrap(f"{what} failed: {detail}") from exc

    def _call(self, method: str, *args: Any, what: str, cap: Capability | None = None, write: bool = False) -> Any:
        self._check_open()
        if write and self._readonly:
            raise OperationDeniedError(f"{what}: connection {self._uri} is read-only")
        if cap is not None:
            self._require(cap, what)
        log.debug("%s: %s.%s", what, self.driver_name, method)
        with self._translate(what):
            return getattr(self._driver, method)(*args)

    def _require(self, cap: Capability, what: str) -> None:
        if cap not in self._capabilities.supported:
            raise NotSupportedError(f"{what}: the {self.driver_name} driver does not support {cap.value}")

    def _check_open(self) -> None:
        if self._closed:
            raise OperationInvalidError(f"connection {self._uri} is closed")

    def _unsubscribe(self, sub: Subscription) -> None:
        if self._hub.remove(sub) and not self._closed:
            with self._translate("stopping events"):
                self._driver.stop_events()

    # --- public --------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The connection URI (never contains credentials)."""
        return str(self._uri)

    @property
    def parsed_uri(self) -> URI:
        """The parsed connection URI."""
        return self._uri

    @property
    def driver_name(self) -> str:
        """The driver's name (the URI scheme)."""
        return type(self._driver).name or self._uri.driver

    @property
    def readonly(self) -> bool:
        """True when write operations are refused."""
        return self._readonly

    @property
    def capabilities(self) -> Capabilities:
        """What this connection's driver can do (refined after connecting)."""
        return self._capabilities

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def supports(self, cap: Capability | str) -> bool:
        """Whether the driver declares ``cap``; a misspelt name raises InvalidArgumentError."""
        return Capability.parse(cap) in self._capabilities.supported

    def host_info(self) -> HostInfo:
        """Facts about the host."""
        result: HostInfo = self._call("host_info", what=f"host info of {self._uri}")
        return result

    def list_domains(self) -> list[Domain]:
        """Every domain, active or not, in one driver call."""
        refs: list[DomainRef] = self._call("list_domains", what="listing domains")
        return [Domain(self, ref) for ref in refs]

    def lookup_domain(self, name_or_uuid: str) -> Domain:
        """A domain by name or UUID; NoDomainError when there is none."""
        _require_text(name_or_uuid, "domain name or UUID")
        ref: DomainRef = self._call("lookup_domain", name_or_uuid, what=f"lookup of domain {name_or_uuid!r}")
        return Domain(self, ref)

    def define_domain(self, spec: DomainSpec | Mapping[str, Any]) -> Domain:
        """Define a new persistent domain from a :class:`DomainSpec` (or its dict form)."""
        if isinstance(spec, Mapping):
            spec = DomainSpec.from_dict(spec)
        if not isinstance(spec, DomainSpec):
            raise InvalidArgumentError("define_domain needs a DomainSpec")
        what = f"define of domain {spec.name!r}"
        ref = self._call("define_domain", spec, what=what, cap=Capability.DOMAIN_DEFINE, write=True)
        return Domain(self, ref)

    def restore(self, path: str | os.PathLike[str]) -> Domain:
        """Start a domain from a file written by :meth:`Domain.save`."""
        path = os.fspath(path)
        _require_text(path, "path")
        ref = self._call("restore", path, what=f"restore from {path!r}", cap=Capability.DOMAIN_SAVE, write=True)
        return Domain(self, ref)

    def list_storage_pools(self) -> list[StoragePool]:
        """Every storage pool."""
        pools: list[PoolInfo] = self._call(
            "list_storage_pools", what="listing storage pools", cap=Capability.STORAGE_POOL
        )
        return [StoragePool(self, p) for p in pools]

    def lookup_storage_pool(self, name: str) -> StoragePool:
        """A storage pool by name; NoStoragePoolError when there is none."""
        _require_text(name, "pool name")
        info = self._call("lookup_storage_pool", name, what=f"lookup of pool {name!r}", cap=Capability.STORAGE_POOL)
        return StoragePool(self, info)

    def domain_records(self) -> list[DomainRecord]:
        """Every domain with its disks, NICs, snapshots and jobs, through the driver's bulk hook."""
        records: list[DomainRecord] = self._call("inventory", what=f"inventory of {self._uri}")
        return records

    def subscribe(self, callback: Callable[[Event], None], *, domain: Domain | str | None = None) -> Subscription:
        """Call ``callback(event)`` for lifecycle and block-job events (of one domain, if given).

        Callbacks run on a driver thread and should return quickly.
        """
        self._check_open()
        self._require(Capability.EVENTS, "event subscription")
        if not callable(callback):
            raise InvalidArgumentError("subscribe needs a callable")
        key = domain.uuid if isinstance(domain, Domain) else domain
        sub = Subscription(self, callback, key)
        if self._hub.add(sub):
            with self._translate("starting events"):
                self._driver.start_events()
        return sub

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with self._translate(f"closing {self._uri}"):
            self._driver.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Connection uri={self.uri!r} driver={self.driver_name!r} {state}>"


class Domain:
    """A handle on one domain of a connection. Cheap; holds only its name and UUID."""

    def __init__(self, conn: Connection, ref: DomainRef) -> None:
        self._conn = conn
        self._ref = ref

    @property
    def name(self) -> str:
        """The domain's name."""
        return self._ref.name

    @property
    def uuid(self) -> str:
        """The domain's UUID (canonical lower-case form)."""
        return self._ref.uuid

    @property
    def connection(self) -> Connection:
        """The connection this handle belongs to."""
        return self._conn

    def __repr__(self) -> str:
        return f"<Domain name={self.name!r} uuid={self.uuid!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and other._conn is self._conn and other._ref == self._ref

    def __hash__(self) -> int:
        return hash((id(self._conn), self._ref))

    # --- plumbing -------------------------------------------------------------

    def _what(self, action: str) -> str:
        return f"{action} of domain {self.name!r}"

    def _call(self, method: str, *args: Any, action: str, cap: Capability | None = None, write: bool = False) -> Any:
        return self._conn._call(method, self._ref, *args, what=self._what(action), cap=cap, write=write)

    def _preflight(self, action: str, cap: Capability | None) -> None:
        self._conn._check_open()
        if self._conn._readonly:
            raise OperationDeniedError(f"{self._what(action)}: connection {self._conn.uri} is read-only")
        if cap is not None:
            self._conn._require(cap, self._what(action))

    def _require_active(self, action: str) -> DomainState:
        state = self.state()
        if not state.is_active:
            raise OperationInvalidError(f"{self._what(action)}: domain {self.name!r} is not running")
        return state

    def _disk(self, disk: str, action: str) -> DiskInfo:
        _require_text(disk, "disk")
        for d in self.disks():
            if disk in (d.target, d.path):
                return d
        raise InvalidArgumentError(f"{self._what(action)}: domain {self.name!r} has no disk {disk!r}")

    def _job(self, target: str) -> BlockJobInfo | None:
        if not (self._conn._capabilities.supported & BLOCK_JOB_CAPABILITIES):
            return None
        info: BlockJobInfo | None = self._call("block_job_info", target, action=f"block job query on disk {target!r}")
        return _never_done_before_ready(info)

    def _refuse_during_copy(self, action: str, only_disk: str | None = None) -> None:
        if not (self._conn._capabilities.supported & BLOCK_JOB_CAPABILITIES):
            return
        if not self.state().is_active:
            return
        jobs: list[BlockJobInfo] = self._call("block_jobs", action="block job query")
        for job in jobs:
            if only_disk is not None and job.disk != only_disk:
                continue
            if job.type == BlockJobType.COPY:
                raise BlockCopyActiveError(
                    f"{self._what(action)}: disk {job.disk!r} is in an active block copy job; "
                    "pivot or abort it first (block_job_abort)"
                )
            raise OperationInvalidError(f"{self._what(action)}: disk {job.disk!r} has an active block job")

    # --- reads ----------------------------------------------------------------

    def info(self) -> DomainInfo:
        """State, vCPUs, memory and CPU time."""
        result: DomainInfo = self._call("domain_info", action="info")
        return result

    def state(self) -> DomainState:
        """The current :class:`DomainState`."""
        return self.info().state

    def spec(self) -> DomainSpec:
        """The persistent definition."""
        result: DomainSpec = self._call("domain_spec", action="definition")
        return result

    def disks(self) -> list[DiskInfo]:
        """The disks as they are now (after a pivot: the copy)."""
        result: list[DiskInfo] = self._call("disks", action="disk listing")
        return result

    def nics(self) -> list[NicInfo]:
        """The network interfaces."""
        result: list[NicInfo] = self._call("nics", action="interface listing")
        return result

    # --- lifecycle --------------------------------------------------------------

    def start(self, paused: bool = False) -> None:
        """Start the domain (with ``paused=True``, its vCPUs stay stopped)."""
        self._preflight("start", Capability.DOMAIN_START)
        if self.state().is_active:
            raise OperationInvalidError(f"{self._what('start')}: domain {self.name!r} is already running")
        self._call("start", bool(paused), action="start", cap=Capability.DOMAIN_START, write=True)

    def shutdown(self, timeout: float | None = None) -> None:
        """Ask the guest to power off; with ``timeout``, wait that long for SHUTOFF (else OperationTimeoutError)."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0):
            raise InvalidArgumentError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        self._preflight("shutdown", Capability.DOMAIN_SHUTDOWN)
        self._require_active("shutdown")
        self._call("shutdown", timeout, action="shutdown", cap=Capability.DOMAIN_SHUTDOWN, write=True)

    def destroy(self) -> None:
        """Power off at once (like pulling the plug)."""
        self._preflight("destroy", Capability.DOMAIN_DESTROY)
        self._require_active("destroy")
        self._call("destroy", action="destroy", cap=Capability.DOMAIN_DESTROY, write=True)

    def reboot(self) -> None:
        """Reboot the guest."""
        self._preflight("reboot", Capability.DOMAIN_REBOOT)
        self._require_active("reboot")
        self._call("reboot", action="reboot", cap=Capability.DOMAIN_REBOOT, write=True)

    def suspend(self) -> None:
        """Pause the vCPUs (memory stays)."""
        self._preflight("suspend", Capability.DOMAIN_SUSPEND)
        state = self._require_active("suspend")
        if state == DomainState.PAUSED:
            raise OperationInvalidError(f"{self._what('suspend')}: domain {self.name!r} is already paused")
        self._call("suspend", action="suspend", cap=Capability.DOMAIN_SUSPEND, write=True)

    def resume(self) -> None:
        """Resume paused vCPUs."""
        self._preflight("resume", Capability.DOMAIN_SUSPEND)
        if self.state() != DomainState.PAUSED:
            raise OperationInvalidError(f"{self._what('resume')}: domain {self.name!r} is not paused")
        self._call("resume", action="resume", cap=Capability.DOMAIN_SUSPEND, write=True)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save memory state to ``path`` and stop; refused while a block copy runs."""
        path = os.fspath(path)
        _require_text(path, "path")
        self._preflight("save", Capability.DOMAIN_SAVE)
        self._require_active("save")
        self._refuse_during_copy("save")
        self._call("save", path, action="save", cap=Capability.DOMAIN_SAVE, write=True)

    def undefine(self) -> None:
        """Remove the definition of an inactive domain."""
        self._preflight("undefine", Capability.DOMAIN_DEFINE)
        if self.state().is_active:
            raise OperationInvalidError(f"{self._what('undefine')}: domain {self.name!r} is running; destroy it first")
        self._call("undefine", action="undefine", cap=Capability.DOMAIN_DEFINE, write=True)

    # --- snapshots ------------------------------------------------------------------

    def create_snapshot(self, name: str) -> Snapshot:
        """Take a snapshot called ``name``; refused while a block copy runs."""
        _require_name(name, "snapshot name")
        self._preflight("snapshot", Capability.DOMAIN_SNAPSHOT)
        self._refuse_during_copy(f"snapshot {name!r}")
        result: Snapshot = self._call(
            "create_snapshot", name, action=f"snapshot {name!r}", cap=Capability.DOMAIN_SNAPSHOT, write=True
        )
        return result

    def list_snapshots(self) -> list[Snapshot]:
        """The domain's snapshots, oldest first."""
        result: list[Snapshot] = self._call("list_snapshots", action="snapshot listing", cap=Capability.DOMAIN_SNAPSHOT)
        return result

    def revert_to_snapshot(self, name: str) -> None:
        """Go back to snapshot ``name``; refused while a block copy runs."""
        _require_text(name, "snapshot name")
        self._preflight("revert", Capability.DOMAIN_SNAPSHOT)
        self._refuse_during_copy(f"revert to snapshot {name!r}")
        self._call(
            "revert_to_snapshot",
            name,
            action=f"revert to snapshot {name!r}",
            cap=Capability.DOMAIN_SNAPSHOT,
            write=True,
        )

    def delete_snapshot(self, name: str) -> None:
        """Delete snapshot ``name``."""
        _require_text(name, "snapshot name")
        self._call(
            "delete_snapshot", name, action=f"delete of snapshot {name!r}", cap=Capability.DOMAIN_SNAPSHOT, write=True
        )

    # --- devices ---------------------------------------------------------------------

    def attach_disk(self, disk: DiskSpec) -> None:
        """Attach a disk (hot-plug when running)."""
        if not isinstance(disk, DiskSpec):
            raise InvalidArgumentError("attach_disk needs a DiskSpec")
        action = f"attach of disk {disk.target!r}"
        self._preflight(action, Capability.DOMAIN_DISK_HOTPLUG)
        if any(d.target == disk.target for d in self.disks()):
            raise InvalidArgumentError(f"{self._what(action)}: target {disk.target!r} is already in use")
        self._call("attach_disk", disk, action=action, cap=Capability.DOMAIN_DISK_HOTPLUG, write=True)

    def detach_disk(self, target: str) -> None:
        """Detach the disk ``target``; refused while that disk is in a block copy."""
        action = f"detach of disk {target!r}"
        self._preflight(action, Capability.DOMAIN_DISK_HOTPLUG)
        info = self._disk(target, action)
        self._refuse_during_copy(action, only_disk=info.target)
        self._call("detach_disk", info.target, action=action, cap=Capability.DOMAIN_DISK_HOTPLUG, write=True)

    # --- block jobs --------------------------------------------------------------------

    def block_pull(self, disk: str, *, base: str | None = None, bandwidth: int = 0, flags: int = 0) -> BlockJob:
        """Fill ``disk`` from its backing chain down to ``base`` (None: flatten completely).

        ``bandwidth`` is MiB/s unless ``BlockPullFlags.BANDWIDTH_BYTES``.
        """
        f = _flags(BlockPullFlags, flags)
        bw = _bandwidth_bytes(bandwidth, bool(f & BlockPullFlags.BANDWIDTH_BYTES))
        return self._start_pull(disk, base, bw)

    def block_rebase(
        self, disk: str, base: str | None, *, bandwidth: int = 0, flags: BlockRebaseFlags | int = 0
    ) -> BlockJob:
        """libvirt's ``virDomainBlockRebase``: a pull to ``base``, or with ``COPY`` a copy into ``base``.

        SHALLOW, REUSE_EXT, COPY_RAW and COPY_DEV require COPY. ``bandwidth`` is MiB/s
        unless ``BANDWIDTH_BYTES``.
        """
        f = _flags(BlockRebaseFlags, flags)
        bw = _bandwidth_bytes(bandwidth, bool(f & BlockRebaseFlags.BANDWIDTH_BYTES))
        copy_only = BlockRebaseFlags.SHALLOW | BlockRebaseFlags.REUSE_EXT | BlockRebaseFlags.COPY_RAW
        copy_only |= BlockRebaseFlags.COPY_DEV
        if f & BlockRebaseFlags.COPY:
            if not base:
                raise InvalidArgumentError(f"{self._what('block copy')}: a copy job needs a destination (base)")
            if f & BlockRebaseFlags.RELATIVE:
                raise InvalidArgumentError(f"{self._what('block copy')}: relative backing during copy is not supported")
            request = BlockCopyRequest(
                dest=base,
                format="raw" if f & BlockRebaseFlags.COPY_RAW else None,
                shallow=bool(f & BlockRebaseFlags.SHALLOW),
                reuse_existing=bool(f & BlockRebaseFlags.REUSE_EXT),
                dest_is_block_device=bool(f & BlockRebaseFlags.COPY_DEV),
                bandwidth_bytes=bw,
                transient=True,
            )
            return self._start_copy(disk, request)
        if f & copy_only:
            raise InvalidArgumentError(
                f"{self._what('block rebase')}: use of flags {(f & copy_only)!r} requires a copy job"
            )
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
        f = _flags(BlockCopyFlags, flags)
        bw = _bandwidth_bytes(bandwidth, True)
        if format is not None and format not in DISK_FORMATS:
            raise InvalidArgumentError(
                f"unknown destination format {format!r} (known: {', '.join(sorted(DISK_FORMATS))})"
            )
        if granularity is not None and (
            not _is_int(granularity) or granularity < 512 or granularity > 64 * MiB or granularity & (granularity - 1)
        ):
            raise InvalidArgumentError(
                f"granularity must be a power of two between 512 and 64 MiB, got {granularity!r}"
            )
        if buf_size is not None and (not _is_int(buf_size) or buf_size <= 0):
            raise InvalidArgumentError(f"buf_size must be a positive number of bytes, got {buf_size!r}")
        _require_text(dest, "destination")
        request = BlockCopyRequest(
            dest=dest,
            format=format,
            shallow=bool(f & BlockCopyFlags.SHALLOW),
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
        f = _flags(BlockCommitFlags, flags)
        bw = _bandwidth_bytes(bandwidth, bool(f & BlockCommitFlags.BANDWIDTH_BYTES))
        action = f"block commit on disk {disk!r}"
        self._preflight(action, Capability.BLOCK_COMMIT)
        self._require_active(action)
        info = self._disk(disk, action)
        chain = (info.path, *info.backing_chain)
        if len(chain) < 2:
            raise InvalidArgumentError(
                f"{self._what(action)}: disk {info.target!r} has no backing image to commit into"
            )
        top_index = 0 if top in (None, info.path) else _chain_index(chain, top, "top", self._what(action))
        active = top_index == 0
        if active and not f & BlockCommitFlags.ACTIVE:
            raise InvalidArgumentError(
                f"{self._what(action)}: commit of the active layer of disk {info.target!r} requires the ACTIVE flag"
            )
        if not active and f & BlockCommitFlags.ACTIVE:
            raise InvalidArgumentError(f"{self._what(action)}: the ACTIVE flag requires top to be the active layer")
        if top_index >= len(chain) - 1:
            raise InvalidArgumentError(f"{self._what(action)}: top {top!r} has no backing image below it")
        if base is None:
            base_index = top_index + 1 if f & BlockCommitFlags.SHALLOW else len(chain) - 1
        else:
            base_index = _chain_index(chain, base, "base", self._what(action))
            if base_index <= top_index:
                raise InvalidArgumentError(f"{self._what(action)}: base {base!r} is not below top in the backing chain")
            if f & BlockCommitFlags.SHALLOW and base_index != top_index + 1:
                raise InvalidArgumentError(f"{self._what(action)}: SHALLOW requires base directly below top")
        self._refuse_second_job(info.target, action)
        request = BlockCommitRequest(
            base=chain[base_index],
            top=None if active else chain[top_index],
            active=active,
            bandwidth_bytes=bw,
            delete=bool(f & BlockCommitFlags.DELETE),
            relative=bool(f & BlockCommitFlags.RELATIVE),
        )
        self._call("block_commit", info.target, request, action=action, cap=Capability.BLOCK_COMMIT, write=True)
        return BlockJob(self, info.target, BlockJobType.ACTIVE_COMMIT if active else BlockJobType.COMMIT)

    def block_job_info(self, disk: str) -> BlockJobInfo | None:
        """The block job on ``disk``, or None. ``cur == end`` is never reported before the job is ready."""
        action = f"block job query on disk {disk!r}"
        self._require_any_block_job(action)
        info = self._disk(disk, action)
        return self._job(info.target)

    def block_job_abort(self, disk: str, flags: BlockJobAbortFlags | int = 0) -> None:
        """End the job on ``disk``: cancel (stay on the source) or, with PIVOT, switch to the copy.

        Waits for the job to end unless ASYNC. Pivot before the job is ready
        raises BlockCopyActiveError.
        """
        f = _flags(BlockJobAbortFlags, flags)
        pivot = bool(f & BlockJobAbortFlags.PIVOT)
        action = f"block job {'pivot' if pivot else 'abort'} on disk {disk!r}"
        self._require_any_block_job(action)
        self._preflight(action, None)
        info = self._disk(disk, action)
        job = self._job(info.target)
        if job is None:
            raise OperationInvalidError(f"{self._what(action)}: disk {info.target!r} has no active block job")
        if pivot:
            if job.type not in _TWO_PHASE:
                raise OperationInvalidError(
                    f"{self._what(action)}: a {job.type.name.lower()} job does not support pivot"
                )
            needed = Capability.BLOCK_COPY_PIVOT if job.type == BlockJobType.COPY else Capability.BLOCK_COMMIT
            self._conn._require(needed, self._what(action))
            if not job.ready:
                raise BlockCopyActiveError(
                    f"{self._what(action)}: block job on disk {info.target!r} is not ready for pivot yet"
                )
        self._call("block_job_abort", info.target, pivot, not f & BlockJobAbortFlags.ASYNC, action=action, write=True)

    def block_job_set_speed(self, disk: str, bandwidth: int, flags: BlockJobSetSpeedFlags | int = 0) -> None:
        """Change the bandwidth of the job on ``disk`` (MiB/s unless BANDWIDTH_BYTES; 0 = unlimited)."""
        f = _flags(BlockJobSetSpeedFlags, flags)
        bw = _bandwidth_bytes(bandwidth, bool(f & BlockJobSetSpeedFlags.BANDWIDTH_BYTES))
        action = f"block job speed on disk {disk!r}"
        self._require_any_block_job(action)
        self._preflight(action, None)
        info = self._disk(disk, action)
        if self._job(info.target) is None:
            raise OperationInvalidError(f"{self._what(action)}: disk {info.target!r} has no active block job")
        self._call("block_job_set_speed", info.target, bw, action=action, write=True)

    # --- block job helpers -------------------------------------------------------------

    def _require_any_block_job(self, action: str) -> None:
        self._conn._check_open()
        if not (self._conn._capabilities.supported & BLOCK_JOB_CAPABILITIES):
            raise NotSupportedError(f"{self._what(action)}: the {self._conn.driver_name} driver has no block jobs")

    def _refuse_second_job(self, target: str, action: str) -> None:
        existing = self._job(target)
        if existing is not None:
            raise BlockCopyActiveError(
                f"{self._what(action)}: disk {target!r} already has an active block job ({existing.type.name.lower()})"
            )

    def _start_pull(self, disk: str, base: str | None, bandwidth_bytes: int) -> BlockJob:
        action = f"block pull on disk {disk!r}"
        self._preflight(action, Capability.BLOCK_PULL)
        self._require_active(action)
        info = self._disk(disk, action)
        if base is not None:
            _chain_index((info.path, *info.backing_chain), base, "base", self._what(action), allow_top=False)
        self._refuse_second_job(info.target, action)
        self._call(
            "block_pull", info.target, base, bandwidth_bytes, action=action, cap=Capability.BLOCK_PULL, write=True
        )
        return BlockJob(self, info.target, BlockJobType.PULL)

    def _start_copy(self, disk: str, request: BlockCopyRequest) -> BlockJob:
        action = f"block copy of disk {disk!r}"
        needed = [Capability.BLOCK_COPY]
        if request.shallow:
            needed.append(Capability.BLOCK_COPY_SHALLOW)
        if request.reuse_existing:
            needed.append(Capability.BLOCK_COPY_REUSE_EXT)
        if request.format == "raw":
            needed.append(Capability.BLOCK_COPY_RAW)
        if request.dest_is_block_device:
            needed.append(Capability.BLOCK_COPY_DEV)
        self._preflight(action, None)
        for cap in needed:
            self._conn._require(cap, self._what(action))
        if not os.path.isabs(request.dest):
            raise InvalidArgumentError(
                f"{self._what(action)}: the destination must be an absolute path, got {request.dest!r}"
            )
        self._require_active(action)
        info = self._disk(disk, action)
        if request.shallow and not info.backing_chain:
            request = _evolve(request, shallow=False)  # libvirt: SHALLOW is a no-op without a backing chain
        if request.shallow and request.format == "raw" and not request.reuse_existing:
            raise InvalidArgumentError(
                f"{self._what(action)}: a shallow copy of disk {info.target!r} into a new raw file is not possible "
                "(raw has no backing file); flatten it, or reuse a pre-populated destination with REUSE_EXT"
            )
        if request.dest in (info.path, *info.backing_chain):
            raise InvalidArgumentError(
                f"{self._what(action)}: destination {request.dest!r} is part of the disk's chain"
            )
        self._refuse_second_job(info.target, action)
        self._call("block_copy", info.target, request, action=action, cap=Capability.BLOCK_COPY, write=True)
        return BlockJob(self, info.target, BlockJobType.COPY)


class BlockJob:
    """A handle on the block job of one disk: poll it, wait for it, pivot or abort it."""

    def __init__(self, domain: Domain, disk: str, type: BlockJobType) -> None:
        self.domain = domain
        self.disk = disk
        self.type = type

    def __repr__(self) -> str:
        return f"<BlockJob {self.type.name} domain={self.domain.name!r} disk={self.disk!r}>"

    @property
    def two_phase(self) -> bool:
        """True for copy and active-commit jobs, which mirror until pivot or abort."""
        return self.type in _TWO_PHASE

    def info(self) -> BlockJobInfo | None:
        """Current progress, or None once the job has ended."""
        return self.domain.block_job_info(self.disk)

    def wait_ready(
        self, timeout: float | None = None, *, progress: Callable[[BlockJobInfo], None] | None = None
    ) -> BlockJobInfo:
        """Wait until a two-phase job is ready to pivot; OperationTimeoutError after ``timeout`` seconds."""
        if not self.two_phase:
            raise OperationInvalidError(f"a {self.type.name.lower()} job has no ready phase; use wait()")
        result = self._poll(timeout, progress, until_ready=True)
        assert result is not None
        return result

    def wait(self, timeout: float | None = None, *, progress: Callable[[BlockJobInfo], None] | None = None) -> None:
        """Wait for the job: a pull or commit until it ends; a copy or active commit until it is ready
        (those never end by themselves: call :meth:`pivot` or :meth:`abort`)."""
        self._poll(timeout, progress, until_ready=self.two_phase)

    def pivot(self, *, wait: bool = True) -> None:
        """Switch the disk to the copy (or committed base). BlockCopyActiveError if not ready."""
        flags = BlockJobAbortFlags.PIVOT | (BlockJobAbortFlags(0) if wait else BlockJobAbortFlags.ASYNC)
        self.domain.block_job_abort(self.disk, flags)

    def abort(self, *, wait: bool = True) -> None:
        """Cancel the job; a copy stays on the source."""
        self.domain.block_job_abort(self.disk, BlockJobAbortFlags(0) if wait else BlockJobAbortFlags.ASYNC)

    def _poll(
        self, timeout: float | None, progress: Callable[[BlockJobInfo], None] | None, until_ready: bool
    ) -> BlockJobInfo | None:
        conn = self.domain.connection
        failures: list[BlockJobEvent] = []
        sub = None
        if conn.supports(Capability.EVENTS):

            def on_event(event: Event) -> None:
                if (
                    isinstance(event, BlockJobEvent)
                    and event.disk == self.disk
                    and event.status == BlockJobStatus.FAILED
                ):
                    failures.append(event)

            sub = conn.subscribe(on_event, domain=self.domain)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        try:
            while True:
                info = self.info()
                if info is not None and progress is not None:
                    progress(info)
                if info is None:
                    if failures:
                        raise OperationFailedError(
                            f"block job on disk {self.disk!r} of domain {self.domain.name!r} failed: "
                            f"{failures[-1].error or 'no reason given'}"
                        )
                    if until_ready:
                        raise OperationFailedError(
                            f"block job on disk {self.disk!r} of domain {self.domain.name!r} ended before it was ready"
                        )
                    return None
                if until_ready and info.ready:
                    return info
                if deadline is not None and time.monotonic() >= deadline:
                    goal = "ready" if until_ready else "finished"
                    raise OperationTimeoutError(
                        f"block job on disk {self.disk!r} of domain {self.domain.name!r} not {goal} after {timeout}s "
                        f"({info.cur}/{info.end} bytes)"
                    )
                time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 1.5, 0.25)
        finally:
            if sub is not None:
                sub.close()


class StoragePool:
    """A storage pool of a connection."""

    def __init__(self, conn: Connection, info: PoolInfo) -> None:
        self._conn = conn
        self._info = info

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._info.name

    def __repr__(self) -> str:
        return f"<StoragePool name={self.name!r} type={self._info.type!r}>"

    def info(self) -> PoolInfo:
        """Fresh capacity and allocation figures."""
        self._info = self._conn._call(
            "lookup_storage_pool", self.name, what=f"info of pool {self.name!r}", cap=Capability.STORAGE_POOL
        )
        return self._info

    def list_volumes(self) -> list[Volume]:
        """The pool's volumes."""
        vols: list[VolumeInfo] = self._conn._call(
            "list_volumes", self.name, what=f"volume listing of pool {self.name!r}", cap=Capability.STORAGE_POOL
        )
        return [Volume(self._conn, v) for v in vols]

    def lookup_volume(self, name: str) -> Volume:
        """A volume by name; NoStorageVolumeError when missing."""
        _require_text(name, "volume name")
        info = self._conn._call(
            "lookup_volume",
            self.name,
            name,
            what=f"lookup of volume {name!r} in pool {self.name!r}",
            cap=Capability.STORAGE_POOL,
        )
        return Volume(self._conn, info)

    def create_volume(
        self, name: str, capacity_bytes: int, *, format: str = "qcow2", backing: str | None = None
    ) -> Volume:
        """Create a volume (optionally backed by ``backing``, an absolute path)."""
        _require_name(name, "volume name")
        if not _is_int(capacity_bytes) or capacity_bytes <= 0:
            raise InvalidArgumentError(f"capacity_bytes must be a positive integer, got {capacity_bytes!r}")
        if format not in DISK_FORMATS:
            raise InvalidArgumentError(f"unknown volume format {format!r} (known: {', '.join(sorted(DISK_FORMATS))})")
        if backing is not None and format == "raw":
            raise InvalidArgumentError("a raw volume cannot have a backing image")
        info = self._conn._call(
            "create_volume",
            self.name,
            name,
            capacity_bytes,
            format,
            backing,
            what=f"create of volume {name!r} in pool {self.name!r}",
            cap=Capability.STORAGE_VOLUME,
            write=True,
        )
        return Volume(self._conn, info)


class Volume:
    """A storage volume."""

    def __init__(self, conn: Connection, info: VolumeInfo) -> None:
        self._conn = conn
        self._info = info

    @property
    def name(self) -> str:
        """The volume's name."""
        return self._info.name

    @property
    def pool(self) -> str:
        """The name of the pool it lives in."""
        return self._info.pool

    @property
    def path(self) -> str:
        """The volume's path on the host."""
        return self._info.path

    def __repr__(self) -> str:
        return f"<Volume name={self.name!r} pool={self.pool!r}>"

    def info(self) -> VolumeInfo:
        """Fresh facts (capacity, allocation, backing chain)."""
        self._info = self._conn._call(
            "lookup_volume", self.pool, self.name, what=f"info of volume {self.name!r}", cap=Capability.STORAGE_POOL
        )
        return self._info

    def delete(self) -> None:
        """Delete the volume."""
        self._conn._call(
            "delete_volume",
            self.pool,
            self.name,
            what=f"delete of volume {self.name!r}",
            cap=Capability.STORAGE_VOLUME,
            write=True,
        )

    def resize(self, capacity_bytes: int) -> VolumeInfo:
        """Grow the volume to ``capacity_bytes``."""
        if not _is_int(capacity_bytes) or capacity_bytes <= 0:
            raise InvalidArgumentError(f"capacity_bytes must be a positive integer, got {capacity_bytes!r}")
        self._info = self._conn._call(
            "resize_volume",
            self.pool,
            self.name,
            capacity_bytes,
            what=f"resize of volume {self.name!r}",
            cap=Capability.STORAGE_VOLUME,
            write=True,
        )
        return self._info


# --- helpers ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_text(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {value!r}")


def _require_name(value: object, what: str) -> None:
    _require_text(value, what)
    assert isinstance(value, str)
    if "/" in value or value in (".", "..") or len(value) > 255 or any(c.isspace() for c in value):
        raise InvalidArgumentError(f"invalid {what} {value!r}: no slashes, spaces, '.' or '..'")


FlagT = TypeVar("FlagT", bound=Any)


def _flags(kind: type[FlagT], value: int) -> FlagT:
    if not _is_int(value):
        raise InvalidArgumentError(f"flags must be {kind.__name__} or int, got {value!r}")
    known = 0
    for member in kind:
        known |= int(member)
    unknown = int(value) & ~known
    if unknown or value < 0:
        raise InvalidArgumentError(f"unsupported flags 0x{unknown or value:x} for {kind.__name__}")
    result: FlagT = kind(value)
    return result


def _bandwidth_bytes(value: int, in_bytes: bool) -> int:
    if not _is_int(value) or value < 0:
        raise InvalidArgumentError(f"bandwidth must be a non-negative integer, got {value!r}")
    result = value if in_bytes else value * MiB
    if result > _LLONG_MAX:
        unit = "bytes/s" if in_bytes else "MiB/s"
        raise InvalidArgumentError(f"bandwidth {value} {unit} is too large (overflows a 64-bit byte rate)")
    return result


def _chain_index(chain: tuple[str, ...], image: str | None, role: str, what: str, allow_top: bool = True) -> int:
    if image in chain and (allow_top or chain.index(image) > 0):
        return chain.index(image)
    raise InvalidArgumentError(
        f"{what}: {role} {image!r} is not in the disk's backing chain ({' <- '.join(chain[::-1])})"
    )


def _never_done_before_ready(info: BlockJobInfo | None) -> BlockJobInfo | None:
    if info is not None and not info.ready and info.end > 0 and info.cur >= info.end:
        return _evolve(info, cur=info.end - 1)
    return info


def _evolve(inst: T, **changes: Any) -> T:
    import attrs

    return attrs.evolve(inst, **changes)  # type: ignore[misc]

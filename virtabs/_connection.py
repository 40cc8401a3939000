"""``virtabs.open`` and :class:`Connection`: one hypervisor host, its gate and its events."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _rules
from ._capabilities import Capabilities, Capability
from ._config import Config, Credentials, coerce_credentials, credentials_from_env, default_uri, load_config
from ._errors import ConnectError, InternalError, InvalidArgumentError, quote
from ._gate import Gate, Redactor, translating
from ._models import DomainRecord, DomainSpec, Event, HostInfo, NetworkInfo
from ._registry import load_driver_class
from ._uri import URI, parse_uri
from .spi import OPERATIONS, ConnectOptions, Driver, missing_methods

if TYPE_CHECKING:
    from ._domain import Domain
    from ._network import Network
    from ._storage import StoragePool

__all__ = ["Connection", "Subscription", "open"]

log = logging.getLogger("virtabs")


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
    parsed = resolve_uri(uri, config)
    timeout = _rules.require_timeout(timeout, allow_zero=False)
    creds = coerce_credentials(credentials) or credentials_from_env() or config.credentials_for(parsed)
    driver_class = driver_class_for(parsed)
    check_driver_class(driver_class)
    return Connection._open(driver_class, parsed, creds, readonly, timeout)


def resolve_uri(uri: str | None, config: Config) -> URI:
    """``uri`` (or the default URI when None) with a config alias resolved, parsed."""
    return parse_uri(config.resolve_alias(uri if uri is not None else default_uri(config)))


def driver_class_for(parsed: URI) -> type[Driver]:
    """The driver class registered for the URI's scheme (imports it, connects nothing).

    ``DRIVER+ssh://`` of a driver without an ssh transport of its own is the remote driver (the
    ``virtabs-remote`` helper on that host serves its local driver): nothing of DRIVER is imported here.
    """
    if parsed.transport == "ssh":
        from .remote import NATIVE_SSH

        if parsed.driver not in NATIVE_SSH:
            from .remote._client import remote_driver_class

            return remote_driver_class(parsed.driver)
    driver_class = load_driver_class(parsed.driver)
    if not (isinstance(driver_class, type) and issubclass(driver_class, Driver)):
        raise InternalError(f"the entry point for {quote(parsed.driver)} is not a virtabs.spi.Driver subclass")
    return driver_class


_checked_classes: weakref.WeakKeyDictionary[type[Driver], Capabilities] = weakref.WeakKeyDictionary()
"""Driver classes that passed :func:`check_driver_class`, with the declaration they passed with."""


def check_driver_class(driver_class: type[Driver]) -> None:
    """InternalError when the driver declares a capability whose methods it does not override.

    A class that passed is not checked again while it declares the same capabilities
    (an inventory opens many connections of one driver).
    """
    declared = driver_class.capabilities
    if _checked_classes.get(driver_class) == declared:
        return
    missing = missing_methods(driver_class, declared)
    if missing:
        detail = "; ".join(f"{method} ({why})" for method, why in missing.items())
        raise InternalError(f"driver {driver_class.__qualname__} does not implement what it declares: {detail}")
    _checked_classes[driver_class] = declared


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
    _timeout: float | None
    _hub: _EventHub
    _lock: threading.RLock
    _gate: Gate

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
        self._timeout = timeout
        self._hub = _EventHub()
        self._lock = threading.RLock()
        redact = Redactor(credentials.secrets() if credentials else ())
        options = ConnectOptions(
            credentials=credentials, readonly=readonly, timeout=timeout, event_sink=self._hub.deliver
        )
        with translating(redact, f"connecting to {uri}", ConnectError):
            driver = driver_class(uri, options)
        with translating(redact, f"reading capabilities of {uri}"):
            capabilities = driver.connection_capabilities()
        self._gate = Gate(driver, uri, capabilities, readonly, redact)
        log.debug("opened %s with driver %s", uri, driver_class.__name__)
        return self

    @property
    def _driver(self) -> Driver:
        """The driver instance (white box, for the contract kit's call counting; never for dispatch)."""
        return self._gate.driver

    def _unsubscribe(self, sub: Subscription) -> None:
        if self._hub.remove(sub) and not self._gate.closed:
            with self._gate.translate("stopping events"):
                self._gate.driver.stop_events()

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
        return self._gate.driver_name

    @property
    def readonly(self) -> bool:
        """True when write operations are refused."""
        return self._gate.readonly

    @property
    def timeout(self) -> float | None:
        """Seconds any single host call may take (None: the driver's default)."""
        return self._timeout

    @property
    def capabilities(self) -> Capabilities:
        """What this connection's driver can do (refined after connecting)."""
        return self._gate.capabilities

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._gate.closed

    def supports(self, cap: Capability | str) -> bool:
        """Whether the driver declares ``cap``; a misspelt name raises InvalidArgumentError."""
        return Capability.parse(cap) in self._gate.capabilities.supported

    def host_info(self) -> HostInfo:
        """Facts about the host."""
        with self._gate(OPERATIONS["host_info"], f"host info of {self._uri}") as call:
            return call.driver.host_info()

    def list_domains(self) -> list[Domain]:
        """Every domain, active or not, in one driver call."""
        from ._domain import Domain

        with self._gate(OPERATIONS["list_domains"], "listing domains") as call:
            refs = call.driver.list_domains()
        return [Domain(self, ref) for ref in refs]

    def lookup_domain(self, name_or_uuid: str) -> Domain:
        """A domain by name or UUID; NoDomainError when there is none."""
        from ._domain import Domain

        _rules.require_text(name_or_uuid, "domain name or UUID")
        with self._gate(OPERATIONS["lookup_domain"], f"lookup of domain {quote(name_or_uuid)}") as call:
            ref = call.driver.lookup_domain(name_or_uuid)
        return Domain(self, ref)

    def define_domain(self, spec: DomainSpec | Mapping[str, Any]) -> Domain:
        """Define a new persistent domain from a :class:`DomainSpec` (or its dict form)."""
        from ._domain import Domain

        if isinstance(spec, Mapping):
            spec = DomainSpec.from_dict(spec)
        if not isinstance(spec, DomainSpec):
            raise InvalidArgumentError("define_domain needs a DomainSpec")
        for disk in spec.disks:
            _rules.require_host_path(disk.path, f"path of disk {quote(disk.target)}")
        with self._gate(OPERATIONS["define_domain"], f"define of domain {quote(spec.name)}") as call:
            ref = call.driver.define_domain(spec)
        return Domain(self, ref)

    def restore(self, path: str | os.PathLike[str]) -> Domain:
        """Start a domain from a file written by :meth:`Domain.save`."""
        from ._domain import Domain

        path = _rules.require_host_path(os.fspath(path), "saved domain file")
        with self._gate(OPERATIONS["restore"], f"restore from {quote(path)}") as call:
            ref = call.driver.restore(path)
        return Domain(self, ref)

    def list_storage_pools(self) -> list[StoragePool]:
        """Every storage pool."""
        from ._storage import StoragePool

        with self._gate(OPERATIONS["list_storage_pools"], "listing storage pools") as call:
            pools = call.driver.list_storage_pools()
        return [StoragePool(self, p) for p in pools]

    def lookup_storage_pool(self, name: str) -> StoragePool:
        """A storage pool by name; NoStoragePoolError when there is none."""
        from ._storage import StoragePool

        _rules.require_lookup_name(name, "pool name")
        with self._gate(OPERATIONS["lookup_storage_pool"], f"lookup of pool {quote(name)}") as call:
            info = call.driver.lookup_storage_pool(name)
        return StoragePool(self, info)

    def list_networks(self) -> list[Network]:
        """Every network of the host, with subnets, VLANs and attached NICs, in one driver call."""
        from ._network import Network

        with self._gate(OPERATIONS["list_networks"], "listing networks") as call:
            networks = call.driver.list_networks()
        return [Network(self, n) for n in networks]

    def _networks_for_inventory(self, records: list[DomainRecord]) -> list[NetworkInfo]:
        """The networks for the inventory, which has just read ``records``: the driver may fill the
        attachments from them instead of reading every guest again (gated as ``list_networks``)."""
        with self._gate(OPERATIONS["list_networks"], "listing networks") as call:
            return call.driver.inventory_networks(records)

    def lookup_network(self, name_or_id: str) -> Network:
        """A network by name or id (a UUID in any case); NoNetworkError when there is none."""
        from ._network import Network

        _rules.require_text(name_or_id, "network name or id")
        with self._gate(OPERATIONS["lookup_network"], f"lookup of network {quote(name_or_id)}") as call:
            info = call.driver.lookup_network(name_or_id)
        return Network(self, info)

    def domain_records(self) -> list[DomainRecord]:
        """Every domain with its disks, NICs, snapshots and jobs, through the driver's bulk hook."""
        with self._gate(OPERATIONS["inventory"], f"inventory of {self._uri}") as call:
            return call.driver.inventory()

    def subscribe(self, callback: Callable[[Event], None], *, domain: Domain | str | None = None) -> Subscription:
        """Call ``callback(event)`` for lifecycle and block-job events (of one domain, if given).

        Callbacks run on a driver thread and should return quickly.
        """
        from ._domain import Domain

        self._gate.check_open()
        self._gate.require(Capability.EVENTS, "event subscription")
        if not callable(callback):
            raise InvalidArgumentError("subscribe needs a callable")
        key = domain.uuid if isinstance(domain, Domain) else domain
        sub = Subscription(self, callback, key)
        if self._hub.add(sub):
            with self._gate.translate("starting events"):
                self._gate.driver.start_events()
        return sub

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._gate.closed:
                return
            self._gate.closed = True
        with self._gate.translate(f"closing {self._uri}"):
            self._gate.driver.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection uri={self.uri!r} driver={self.driver_name!r} {state}>"

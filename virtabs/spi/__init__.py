"""virtabs.spi: everything a driver imports, and nothing else.

A driver is a :class:`Driver` subclass registered under the entry-point group
``virtabs.drivers`` with the URI scheme as its name::

    [project.entry-points."virtabs.drivers"]
    mydriver = "virtabs_mydriver.driver:MyDriver"

How a call reaches a driver::

    public API (virtabs.Domain.start ...)
        │  1. connection open; read-only?            → OperationDeniedError
        │  2. arguments, flag rules                   → InvalidArgumentError
        │  3. capability declared? (OPERATIONS row)  → NotSupportedError
        │  4. state / block-job rules (one           → OperationInvalidError,
        │     domain_status call when the row asks)     BlockCopyActiveError
        ▼
    Driver.start(dom, paused)   ← validated, normalised arguments; native work only
        │  5. anything not a VirtabsError becomes OperationFailedError;
        ▼     secrets are redacted from every message

So a driver never checks a capability, read-only mode, a state precondition or
a block-copy rule: the gate has, from :data:`OPERATIONS`. It reports facts
(:meth:`Driver.domain_status`, :meth:`Driver.block_job_info` ...) and maps the
host's own refusals to the same errors (an :class:`ErrorMap`).

Rules for driver authors (``docs/writing-a-driver.md`` walks through a whole driver):

* Keep the module named by the entry point light: import heavy SDKs inside
  :meth:`Driver.__init__` or later and raise :class:`DriverUnavailableError`
  with an install hint when that fails.
* Declare exactly what works in :attr:`Driver.capabilities`; every method a
  declared capability needs (:func:`methods_for`) must be overridden, which
  the registry checks when it loads the driver, and the contract kit
  (:mod:`virtabs.testing`) checks that each one does what it says.
* Raise only :class:`VirtabsError` subclasses, with messages that name the object;
  a caller's value (a name, a path) goes into a message through :func:`quote`
  (its repr, bounded to a prefix and its length: a 10 MB name gives a short line).
* Be thread-safe: one connection may be shared between threads.
* Emit events with :meth:`Driver.emit` when ``events`` is declared; without a
  native event stream, an :class:`EventPoller` diffs state snapshots.
* Waits belong to the core: :meth:`Driver.shutdown` and
  :meth:`Driver.block_job_abort` only start the action.

The toolkit: :class:`ErrorMap` (native exception → virtabs error, by a table),
:class:`Deadline` and :func:`poll_until` (waits with a bound), :func:`find_domain`
(lookup by name or UUID), :func:`find_network` and :func:`networks_with_attachments`
(networks by name or id, attachments from NICs), :func:`bridge_networks_from_ip_json` (a Linux
host's bridges from iproute2's JSON), :class:`HostIp` (iproute2 on a Linux host, locally or through a
command transport: its :class:`HostLinks`, each a :class:`HostLink`), :class:`EventPoller`,
:class:`OneCommandMigrations` (the progress of a migration the host runs as one command), :class:`CommandTransport`
(run a tool's argv locally or on a ``+ssh`` host over one multiplexed OpenSSH
connection, every argument quoted; ``docs/command-transport.md``), and
:func:`run_in_process_group` (one local command whose deadline kills its whole
process group: what the transport runs every command with), and :func:`confine_host_path` with
:func:`resolve_path_root` (a caller's host path resolved and kept inside the connection's roots, never in
:data:`SYSTEM_TREES`: for hosts that open what a caller names with more rights than the caller).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._command import CommandFailedError, CommandResult, CommandTransport, run_in_process_group
    from ._tls import describe_tls_failure

from .._capabilities import Capabilities, Capability
from .._config import Credentials
from .._errors import (
    AuthError,
    BlockCopyActiveError,
    ConnectError,
    DriverNotFoundError,
    DriverUnavailableError,
    ErrorCode,
    InternalError,
    InvalidArgumentError,
    NoDomainError,
    NoNetworkError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    NotSupportedError,
    OperationDeniedError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    VirtabsError,
    error_class_for_code,
    quote,
)
from .._flags import BlockJobStatus, BlockJobType, DomainState, LifecycleEventType, MigrateFlags, NetworkKind
from .._models import (
    DIRECTORY_FORMAT,
    DISK_BUSES,
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
    DomainStatus,
    Event,
    HostInfo,
    LifecycleEvent,
    MigrationDiskExport,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NetworkAttachment,
    NetworkInfo,
    NetworkSubnet,
    NicInfo,
    NicSpec,
    PoolInfo,
    Snapshot,
    VolumeInfo,
)
from .._uri import URI, parse_uri, redact_uri_text
from ._driver import SPI_METHODS, ConnectOptions, Driver, EventSink
from ._linux_net import (
    IP_ADDR_ARGV,
    IP_LINK_ARGV,
    IP_MISSING,
    HostIp,
    HostLink,
    HostLinks,
    bridge_networks_from_ip_json,
    host_links_from_ip_json,
)
from ._operations import (
    ANY_BLOCK_JOB,
    MANDATORY,
    OPERATIONS,
    JobRule,
    Operation,
    StateRule,
    methods_for,
    missing_methods,
)
from ._paths import SYSTEM_TREES, confine_host_path, path_within, resolve_path_root
from ._toolkit import (
    Deadline,
    ErrorMap,
    EventPoller,
    OneCommandMigrations,
    find_domain,
    find_network,
    image_volume_capacity,
    networks_with_attachments,
    poll_until,
)

__all__ = [
    # the base class and what open() hands it
    "ConnectOptions",
    "Credentials",
    "Driver",
    "EventSink",
    "URI",
    "parse_uri",
    "redact_uri_text",
    "SPI_METHODS",
    # capabilities and the operation table
    "ANY_BLOCK_JOB",
    "Capabilities",
    "Capability",
    "JobRule",
    "MANDATORY",
    "OPERATIONS",
    "Operation",
    "StateRule",
    "methods_for",
    "missing_methods",
    # records a driver returns or receives
    "BlockCommitRequest",
    "BlockCopyRequest",
    "BlockJobInfo",
    "DIRECTORY_FORMAT",
    "DISK_BUSES",
    "DISK_FORMATS",
    "DiskInfo",
    "DiskSpec",
    "DomainInfo",
    "DomainRecord",
    "DomainRef",
    "DomainSpec",
    "DomainStatus",
    "HostInfo",
    "MigrationDiskExport",
    "MigrationInfo",
    "MigrationRequest",
    "MigrationTicket",
    "NetworkAttachment",
    "NetworkInfo",
    "NetworkSubnet",
    "NicInfo",
    "NicSpec",
    "PoolInfo",
    "Snapshot",
    "VolumeInfo",
    # events
    "BlockJobEvent",
    "Event",
    "LifecycleEvent",
    # enums
    "BlockJobStatus",
    "BlockJobType",
    "DomainState",
    "LifecycleEventType",
    "MigrateFlags",
    "NetworkKind",
    # errors
    "AuthError",
    "BlockCopyActiveError",
    "ConnectError",
    "DriverNotFoundError",
    "DriverUnavailableError",
    "ErrorCode",
    "InternalError",
    "InvalidArgumentError",
    "NoDomainError",
    "NoNetworkError",
    "NoSnapshotError",
    "NoStoragePoolError",
    "NoStorageVolumeError",
    "NotSupportedError",
    "OperationDeniedError",
    "OperationFailedError",
    "OperationInvalidError",
    "OperationTimeoutError",
    "VirtabsError",
    "error_class_for_code",
    "quote",
    # toolkit
    "CommandFailedError",
    "CommandResult",
    "CommandTransport",
    "Deadline",
    "describe_tls_failure",
    "ErrorMap",
    "EventPoller",
    "OneCommandMigrations",
    "find_domain",
    "find_network",
    "image_volume_capacity",
    "networks_with_attachments",
    "bridge_networks_from_ip_json",
    "host_links_from_ip_json",
    "HostIp",
    "HostLink",
    "HostLinks",
    "IP_ADDR_ARGV",
    "IP_LINK_ARGV",
    "IP_MISSING",
    "poll_until",
    "run_in_process_group",
    # host paths confined to the connection's roots
    "SYSTEM_TREES",
    "confine_host_path",
    "path_within",
    "resolve_path_root",
]


def __getattr__(name: str) -> Any:
    if name in ("CommandFailedError", "CommandResult", "CommandTransport", "run_in_process_group"):
        from . import _command

        value = getattr(_command, name)
        globals()[name] = value
        return value
    if name == "describe_tls_failure":  # imports ssl (~25 ms): only the TLS backends pay for it
        from ._tls import describe_tls_failure

        globals()[name] = describe_tls_failure
        return describe_tls_failure
    raise AttributeError(f"module 'virtabs.spi' has no attribute {name!r}")

"""virtabs: one portable Python API over many hypervisors, the way libvirt does in C.

>>> import virtabs
>>> with virtabs.open("test:///default") as conn:
...     [d.name for d in conn.list_domains()]
['test']

The public names below are the whole API; everything else lives in private
modules. Driver authors use :mod:`virtabs.spi`; test authors
:mod:`virtabs.testing`; asyncio users :mod:`virtabs.aio`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._api import BlockJob, Connection, Domain, StoragePool, Subscription, Volume, open
from ._capabilities import Capabilities, Capability
from ._config import Credentials
from ._errors import (
    AuthError,
    BlockCopyActiveError,
    ConnectError,
    DriverNotFoundError,
    DriverUnavailableError,
    ErrorCode,
    InternalError,
    InvalidArgumentError,
    NoDomainError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
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
    LifecycleEventType,
)
from ._models import (
    BlockJobEvent,
    BlockJobInfo,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainSpec,
    Event,
    HostInfo,
    LifecycleEvent,
    NicInfo,
    NicSpec,
    PoolInfo,
    Snapshot,
    VolumeInfo,
)
from ._registry import DriverEntry, installed_drivers
from ._uri import URI, parse_uri

try:
    __version__ = version("virtabs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "URI",
    "AuthError",
    "BlockCommitFlags",
    "BlockCopyActiveError",
    "BlockCopyFlags",
    "BlockJob",
    "BlockJobAbortFlags",
    "BlockJobEvent",
    "BlockJobInfo",
    "BlockJobSetSpeedFlags",
    "BlockJobStatus",
    "BlockJobType",
    "BlockPullFlags",
    "BlockRebaseFlags",
    "Capabilities",
    "Capability",
    "ConnectError",
    "Connection",
    "Credentials",
    "DiskInfo",
    "DiskSpec",
    "Domain",
    "DomainInfo",
    "DomainRecord",
    "DomainSpec",
    "DomainState",
    "DriverEntry",
    "DriverNotFoundError",
    "DriverUnavailableError",
    "ErrorCode",
    "Event",
    "HostInfo",
    "InternalError",
    "InvalidArgumentError",
    "LifecycleEvent",
    "LifecycleEventType",
    "NicInfo",
    "NicSpec",
    "NoDomainError",
    "NoSnapshotError",
    "NoStoragePoolError",
    "NoStorageVolumeError",
    "NotSupportedError",
    "OperationDeniedError",
    "OperationFailedError",
    "OperationInvalidError",
    "OperationTimeoutError",
    "PoolInfo",
    "Snapshot",
    "StoragePool",
    "Subscription",
    "VirtabsError",
    "Volume",
    "VolumeInfo",
    "__version__",
    "installed_drivers",
    "open",
    "parse_uri",
]

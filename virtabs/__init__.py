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

from typing import Any

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


def __getattr__(name: str) -> Any:
    # __version__ is read from the installed metadata on first use: importing importlib.metadata
    # costs start-up time that `virtabs --help` and `import virtabs` should not pay.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("virtabs")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'virtabs' has no attribute {name!r}")


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

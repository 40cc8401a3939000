"""virtabs: one portable Python API over many hypervisors, the way libvirt does in C.

>>> import virtabs
>>> with virtabs.open("test:///default") as conn:
...     [d.name for d in conn.list_domains()]
['test']

The public names below are the whole API; everything else lives in private
modules. Driver authors use :mod:`virtabs.spi`; test authors
:mod:`virtabs.testing`; asyncio users :mod:`virtabs.aio`.

``import virtabs`` is lazy (PEP 562): a public name imports the private module
that defines it on first use, so ``import virtabs`` costs next to nothing and
the CLI's start-up pays only for what a command uses.
"""

from __future__ import annotations

# ``typing`` is not imported at run time (``import virtabs`` stays as cheap as the interpreter's start-up);
# type checkers treat any constant named TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the static view: every public name, as if imported eagerly
    from typing import Any

    from ._api import (
        BlockJob,
        Connection,
        Domain,
        MigrationJob,
        Network,
        StoragePool,
        Subscription,
        Volume,
        open,
    )
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
        MigrateFlags,
        NetworkKind,
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
        MigrationInfo,
        NetworkAttachment,
        NetworkInfo,
        NetworkSubnet,
        NicInfo,
        NicSpec,
        PoolInfo,
        Snapshot,
        VolumeInfo,
    )
    from ._registry import DriverEntry, installed_drivers
    from ._uri import URI, parse_uri

_LAZY: dict[str, str] = {
    "BlockJob": "._api",
    "MigrationJob": "._api",
    "Network": "._api",
    "Connection": "._api",
    "Domain": "._api",
    "StoragePool": "._api",
    "Subscription": "._api",
    "Volume": "._api",
    "open": "._api",
    "Capabilities": "._capabilities",
    "Capability": "._capabilities",
    "Credentials": "._config",
    "AuthError": "._errors",
    "BlockCopyActiveError": "._errors",
    "ConnectError": "._errors",
    "DriverNotFoundError": "._errors",
    "DriverUnavailableError": "._errors",
    "ErrorCode": "._errors",
    "InternalError": "._errors",
    "InvalidArgumentError": "._errors",
    "NoDomainError": "._errors",
    "NoNetworkError": "._errors",
    "NoSnapshotError": "._errors",
    "NoStoragePoolError": "._errors",
    "NoStorageVolumeError": "._errors",
    "NotSupportedError": "._errors",
    "OperationDeniedError": "._errors",
    "OperationFailedError": "._errors",
    "OperationInvalidError": "._errors",
    "OperationTimeoutError": "._errors",
    "VirtabsError": "._errors",
    "BlockCommitFlags": "._flags",
    "BlockCopyFlags": "._flags",
    "BlockJobAbortFlags": "._flags",
    "BlockJobSetSpeedFlags": "._flags",
    "BlockJobStatus": "._flags",
    "BlockJobType": "._flags",
    "BlockPullFlags": "._flags",
    "BlockRebaseFlags": "._flags",
    "MigrateFlags": "._flags",
    "NetworkKind": "._flags",
    "DomainState": "._flags",
    "LifecycleEventType": "._flags",
    "BlockJobEvent": "._models",
    "BlockJobInfo": "._models",
    "DiskInfo": "._models",
    "DiskSpec": "._models",
    "DomainInfo": "._models",
    "DomainRecord": "._models",
    "DomainSpec": "._models",
    "Event": "._models",
    "HostInfo": "._models",
    "LifecycleEvent": "._models",
    "MigrationInfo": "._models",
    "NetworkAttachment": "._models",
    "NetworkInfo": "._models",
    "NetworkSubnet": "._models",
    "NicInfo": "._models",
    "NicSpec": "._models",
    "PoolInfo": "._models",
    "Snapshot": "._models",
    "VolumeInfo": "._models",
    "DriverEntry": "._registry",
    "installed_drivers": "._registry",
    "URI": "._uri",
    "parse_uri": "._uri",
}
"""Public name -> the private module that defines it (imported on first use)."""


_SUBPACKAGES = frozenset({"aio", "cli", "drivers", "inventory", "spi", "testing"})
"""Subpackages reachable as attributes of ``virtabs`` (imported on first access)."""


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # ``virtabs.spi`` etc. without importing them first, as before
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # next time: a plain module attribute, no __getattr__
        return value
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


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
    "MigrateFlags",
    "MigrationInfo",
    "MigrationJob",
    "Network",
    "NetworkAttachment",
    "NetworkInfo",
    "NetworkKind",
    "NetworkSubnet",
    "NicInfo",
    "NicSpec",
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

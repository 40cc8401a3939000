"""An asyncio facade over the synchronous API, fully typed.

``await virtabs.aio.open(uri)`` returns an :class:`AsyncConnection`; every
method of the sync object is a coroutine that runs the *same* sync
implementation in a worker thread (``asyncio.to_thread``), so the event loop
never blocks on a hypervisor and no operation is implemented twice. Objects a
method returns come back wrapped the same way, with their own types:
:class:`AsyncDomain`, :class:`AsyncStoragePool`, :class:`AsyncVolume`, :class:`AsyncNetwork`,
:class:`AsyncBlockJob` (or lists of them); plain values (records, enums)
come back as they are. Properties (``name``, ``uuid``, ``uri`` ...) are plain
attributes, read without a thread. ``.sync`` is the wrapped sync object.
See docs/aio.md.

>>> import asyncio, virtabs.aio
>>> async def main():
...     async with await virtabs.aio.open("test:///default") as conn:
...         doms = await conn.list_domains()
...         return [d.name for d in doms]
>>> asyncio.run(main())
['test']
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _api

if TYPE_CHECKING:
    from ._capabilities import Capabilities, Capability
    from ._domain import ShutdownFallback
    from ._flags import (
        BlockCommitFlags,
        BlockCopyFlags,
        BlockJobAbortFlags,
        BlockJobSetSpeedFlags,
        BlockRebaseFlags,
        DomainState,
        MigrateFlags,
        NetworkKind,
    )
    from ._models import (
        BlockJobInfo,
        DiskInfo,
        DiskSpec,
        DomainInfo,
        DomainRecord,
        DomainSpec,
        Event,
        HostInfo,
        MigrationInfo,
        NetworkInfo,
        NicInfo,
        PoolInfo,
        Snapshot,
        VolumeInfo,
    )
    from ._uri import URI

__all__ = [
    "AsyncBlockJob",
    "AsyncConnection",
    "AsyncDomain",
    "AsyncMigrationJob",
    "AsyncNetwork",
    "AsyncProxy",
    "AsyncStoragePool",
    "AsyncVolume",
    "open",
]

T = TypeVar("T")


class AsyncProxy(Generic[T]):
    """The base of the async wrappers: holds the sync object (``.sync``)."""

    __slots__ = ("_target",)

    def __init__(self, target: T) -> None:
        self._target = target

    @property
    def sync(self) -> T:
        """The wrapped synchronous object."""
        return self._target

    def __repr__(self) -> str:
        return f"<async {self._target!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncProxy) and other._target == self._target

    def __hash__(self) -> int:
        return hash(self._target)


class AsyncConnection(AsyncProxy[_api.Connection]):
    """An async :class:`virtabs.Connection`; ``async with`` closes it."""

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (in a worker thread)."""
        await asyncio.to_thread(self._target.close)

    def supports(self, cap: Capability | str) -> bool:
        """Whether the connection declares ``cap`` (no I/O: not a coroutine)."""
        return self._target.supports(cap)

    def subscribe(
        self, callback: Callable[[Event], Any], *, domain: AsyncDomain | str | None = None
    ) -> _api.Subscription:
        """Subscribe to events; a coroutine callback is scheduled on the calling event loop,
        a plain one is called on it (``call_soon_threadsafe``)."""
        loop = asyncio.get_running_loop()
        if asyncio.iscoroutinefunction(callback):

            def deliver(event: Event) -> None:
                coro: Coroutine[Any, Any, Any] = callback(event)
                asyncio.run_coroutine_threadsafe(coro, loop)

        else:

            def deliver(event: Event) -> None:
                loop.call_soon_threadsafe(callback, event)

        dom = domain.sync if isinstance(domain, AsyncDomain) else domain
        return self._target.subscribe(deliver, domain=dom)

    @property
    def capabilities(self) -> Capabilities:
        """The sync object's ``capabilities``."""
        return self._target.capabilities

    @property
    def closed(self) -> bool:
        """The sync object's ``closed``."""
        return self._target.closed

    async def define_domain(self, spec: DomainSpec | Mapping[str, Any]) -> AsyncDomain:
        """Awaitable :meth:`virtabs.Connection.define_domain` (run in a worker thread)."""
        return AsyncDomain(await asyncio.to_thread(self._target.define_domain, spec))

    async def domain_records(self) -> list[DomainRecord]:
        """Awaitable :meth:`virtabs.Connection.domain_records` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.domain_records)

    @property
    def driver_name(self) -> str:
        """The sync object's ``driver_name``."""
        return self._target.driver_name

    async def host_info(self) -> HostInfo:
        """Awaitable :meth:`virtabs.Connection.host_info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.host_info)

    async def list_domains(self) -> list[AsyncDomain]:
        """Awaitable :meth:`virtabs.Connection.list_domains` (run in a worker thread)."""
        return [AsyncDomain(x) for x in await asyncio.to_thread(self._target.list_domains)]

    async def list_storage_pools(self) -> list[AsyncStoragePool]:
        """Awaitable :meth:`virtabs.Connection.list_storage_pools` (run in a worker thread)."""
        return [AsyncStoragePool(x) for x in await asyncio.to_thread(self._target.list_storage_pools)]

    async def lookup_domain(self, name_or_uuid: str) -> AsyncDomain:
        """Awaitable :meth:`virtabs.Connection.lookup_domain` (run in a worker thread)."""
        return AsyncDomain(await asyncio.to_thread(self._target.lookup_domain, name_or_uuid))

    async def lookup_storage_pool(self, name: str) -> AsyncStoragePool:
        """Awaitable :meth:`virtabs.Connection.lookup_storage_pool` (run in a worker thread)."""
        return AsyncStoragePool(await asyncio.to_thread(self._target.lookup_storage_pool, name))

    async def list_networks(self) -> list[AsyncNetwork]:
        """Awaitable :meth:`virtabs.Connection.list_networks` (run in a worker thread)."""
        return [AsyncNetwork(x) for x in await asyncio.to_thread(self._target.list_networks)]

    async def lookup_network(self, name_or_id: str) -> AsyncNetwork:
        """Awaitable :meth:`virtabs.Connection.lookup_network` (run in a worker thread)."""
        return AsyncNetwork(await asyncio.to_thread(self._target.lookup_network, name_or_id))

    @property
    def parsed_uri(self) -> URI:
        """The sync object's ``parsed_uri``."""
        return self._target.parsed_uri

    @property
    def readonly(self) -> bool:
        """The sync object's ``readonly``."""
        return self._target.readonly

    async def restore(self, path: str | os.PathLike[str]) -> AsyncDomain:
        """Awaitable :meth:`virtabs.Connection.restore` (run in a worker thread)."""
        return AsyncDomain(await asyncio.to_thread(self._target.restore, path))

    @property
    def timeout(self) -> float | None:
        """The sync object's ``timeout``."""
        return self._target.timeout

    @property
    def uri(self) -> str:
        """The sync object's ``uri``."""
        return self._target.uri


class AsyncDomain(AsyncProxy[_api.Domain]):
    """An async :class:`virtabs.Domain`."""

    async def attach_disk(self, disk: DiskSpec) -> None:
        """Awaitable :meth:`virtabs.Domain.attach_disk` (run in a worker thread)."""
        await asyncio.to_thread(self._target.attach_disk, disk)

    async def block_commit(
        self,
        disk: str,
        *,
        base: str | None = None,
        top: str | None = None,
        bandwidth: int = 0,
        flags: BlockCommitFlags | int = 0,
    ) -> AsyncBlockJob:
        """Awaitable :meth:`virtabs.Domain.block_commit` (run in a worker thread)."""
        return AsyncBlockJob(
            await asyncio.to_thread(
                self._target.block_commit, disk, base=base, top=top, bandwidth=bandwidth, flags=flags
            )
        )

    async def block_copy(
        self,
        disk: str,
        dest: str,
        *,
        flags: BlockCopyFlags | int = 0,
        format: str | None = None,
        bandwidth: int = 0,
        granularity: int | None = None,
        buf_size: int | None = None,
    ) -> AsyncBlockJob:
        """Awaitable :meth:`virtabs.Domain.block_copy` (run in a worker thread)."""
        return AsyncBlockJob(
            await asyncio.to_thread(
                self._target.block_copy,
                disk,
                dest,
                flags=flags,
                format=format,
                bandwidth=bandwidth,
                granularity=granularity,
                buf_size=buf_size,
            )
        )

    async def block_job_abort(self, disk: str, flags: BlockJobAbortFlags | int = 0) -> None:
        """Awaitable :meth:`virtabs.Domain.block_job_abort` (run in a worker thread)."""
        await asyncio.to_thread(self._target.block_job_abort, disk, flags)

    async def block_job_info(self, disk: str) -> BlockJobInfo | None:
        """Awaitable :meth:`virtabs.Domain.block_job_info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.block_job_info, disk)

    async def block_job_set_speed(self, disk: str, bandwidth: int, flags: BlockJobSetSpeedFlags | int = 0) -> None:
        """Awaitable :meth:`virtabs.Domain.block_job_set_speed` (run in a worker thread)."""
        await asyncio.to_thread(self._target.block_job_set_speed, disk, bandwidth, flags)

    async def block_pull(
        self, disk: str, *, base: str | None = None, bandwidth: int = 0, flags: int = 0
    ) -> AsyncBlockJob:
        """Awaitable :meth:`virtabs.Domain.block_pull` (run in a worker thread)."""
        return AsyncBlockJob(
            await asyncio.to_thread(self._target.block_pull, disk, base=base, bandwidth=bandwidth, flags=flags)
        )

    async def block_rebase(
        self, disk: str, base: str | None, *, bandwidth: int = 0, flags: BlockRebaseFlags | int = 0
    ) -> AsyncBlockJob:
        """Awaitable :meth:`virtabs.Domain.block_rebase` (run in a worker thread)."""
        return AsyncBlockJob(
            await asyncio.to_thread(self._target.block_rebase, disk, base, bandwidth=bandwidth, flags=flags)
        )

    @property
    def connection(self) -> AsyncConnection:
        """The sync object's ``connection``."""
        return AsyncConnection(self._target.connection)

    async def create_snapshot(self, name: str) -> Snapshot:
        """Awaitable :meth:`virtabs.Domain.create_snapshot` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.create_snapshot, name)

    async def delete_snapshot(self, name: str) -> None:
        """Awaitable :meth:`virtabs.Domain.delete_snapshot` (run in a worker thread)."""
        await asyncio.to_thread(self._target.delete_snapshot, name)

    async def destroy(self) -> None:
        """Awaitable :meth:`virtabs.Domain.destroy` (run in a worker thread)."""
        await asyncio.to_thread(self._target.destroy)

    async def detach_disk(self, target: str) -> None:
        """Awaitable :meth:`virtabs.Domain.detach_disk` (run in a worker thread)."""
        await asyncio.to_thread(self._target.detach_disk, target)

    async def disks(self) -> list[DiskInfo]:
        """Awaitable :meth:`virtabs.Domain.disks` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.disks)

    async def has_managed_save(self) -> bool:
        """Awaitable :meth:`virtabs.Domain.has_managed_save` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.has_managed_save)

    async def info(self) -> DomainInfo:
        """Awaitable :meth:`virtabs.Domain.info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.info)

    async def list_snapshots(self) -> list[Snapshot]:
        """Awaitable :meth:`virtabs.Domain.list_snapshots` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.list_snapshots)

    async def managed_save(self) -> None:
        """Awaitable :meth:`virtabs.Domain.managed_save` (run in a worker thread)."""
        await asyncio.to_thread(self._target.managed_save)

    async def managed_save_remove(self) -> None:
        """Awaitable :meth:`virtabs.Domain.managed_save_remove` (run in a worker thread)."""
        await asyncio.to_thread(self._target.managed_save_remove)

    @property
    def name(self) -> str:
        """The sync object's ``name``."""
        return self._target.name

    async def migrate(
        self,
        dest: AsyncConnection | _api.Connection | str,
        *,
        flags: MigrateFlags | int = 1,
        bandwidth: int = 0,
        max_downtime: int | None = None,
        disks: list[str] | tuple[str, ...] | None = None,
    ) -> AsyncMigrationJob:
        """Awaitable :meth:`virtabs.Domain.migrate` (run in a worker thread; ``flags`` defaults to LIVE)."""
        target = dest.sync if isinstance(dest, AsyncConnection) else dest
        return AsyncMigrationJob(
            await asyncio.to_thread(
                self._target.migrate, target, flags=flags, bandwidth=bandwidth, max_downtime=max_downtime, disks=disks
            )
        )

    async def nics(self) -> list[NicInfo]:
        """Awaitable :meth:`virtabs.Domain.nics` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.nics)

    async def reboot(self) -> None:
        """Awaitable :meth:`virtabs.Domain.reboot` (run in a worker thread)."""
        await asyncio.to_thread(self._target.reboot)

    async def resume(self) -> None:
        """Awaitable :meth:`virtabs.Domain.resume` (run in a worker thread)."""
        await asyncio.to_thread(self._target.resume)

    async def revert_to_snapshot(self, name: str) -> None:
        """Awaitable :meth:`virtabs.Domain.revert_to_snapshot` (run in a worker thread)."""
        await asyncio.to_thread(self._target.revert_to_snapshot, name)

    async def save(self, path: str | os.PathLike[str]) -> None:
        """Awaitable :meth:`virtabs.Domain.save` (run in a worker thread)."""
        await asyncio.to_thread(self._target.save, path)

    async def shutdown(self, timeout: float | None = None, *, on_timeout: ShutdownFallback = "raise") -> None:
        """Awaitable :meth:`virtabs.Domain.shutdown` (run in a worker thread)."""
        await asyncio.to_thread(self._target.shutdown, timeout, on_timeout=on_timeout)

    async def spec(self) -> DomainSpec:
        """Awaitable :meth:`virtabs.Domain.spec` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.spec)

    async def start(self, paused: bool = False) -> None:
        """Awaitable :meth:`virtabs.Domain.start` (run in a worker thread)."""
        await asyncio.to_thread(self._target.start, paused)

    async def state(self) -> DomainState:
        """Awaitable :meth:`virtabs.Domain.state` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.state)

    async def suspend(self) -> None:
        """Awaitable :meth:`virtabs.Domain.suspend` (run in a worker thread)."""
        await asyncio.to_thread(self._target.suspend)

    async def undefine(self) -> None:
        """Awaitable :meth:`virtabs.Domain.undefine` (run in a worker thread)."""
        await asyncio.to_thread(self._target.undefine)

    @property
    def uuid(self) -> str:
        """The sync object's ``uuid``."""
        return self._target.uuid


class AsyncNetwork(AsyncProxy[_api.Network]):
    """An async :class:`virtabs.Network`."""

    async def info(self) -> NetworkInfo:
        """Awaitable :meth:`virtabs.Network.info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.info)

    @property
    def id(self) -> str | None:
        """The sync object's ``id``."""
        return self._target.id

    @property
    def kind(self) -> NetworkKind:
        """The sync object's ``kind``."""
        return self._target.kind

    @property
    def last_info(self) -> NetworkInfo:
        """The sync object's ``last_info``."""
        return self._target.last_info

    @property
    def name(self) -> str:
        """The sync object's ``name``."""
        return self._target.name


class AsyncStoragePool(AsyncProxy[_api.StoragePool]):
    """An async :class:`virtabs.StoragePool`."""

    async def create_volume(
        self, name: str, capacity_bytes: int | None = None, *, format: str = "qcow2", backing: str | None = None
    ) -> AsyncVolume:
        """Awaitable :meth:`virtabs.StoragePool.create_volume` (run in a worker thread)."""
        return AsyncVolume(
            await asyncio.to_thread(self._target.create_volume, name, capacity_bytes, format=format, backing=backing)
        )

    async def info(self) -> PoolInfo:
        """Awaitable :meth:`virtabs.StoragePool.info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.info)

    @property
    def last_info(self) -> PoolInfo:
        """The sync object's ``last_info``."""
        return self._target.last_info

    async def list_volumes(self) -> list[AsyncVolume]:
        """Awaitable :meth:`virtabs.StoragePool.list_volumes` (run in a worker thread)."""
        return [AsyncVolume(x) for x in await asyncio.to_thread(self._target.list_volumes)]

    async def lookup_volume(self, name: str) -> AsyncVolume:
        """Awaitable :meth:`virtabs.StoragePool.lookup_volume` (run in a worker thread)."""
        return AsyncVolume(await asyncio.to_thread(self._target.lookup_volume, name))

    @property
    def name(self) -> str:
        """The sync object's ``name``."""
        return self._target.name


class AsyncVolume(AsyncProxy[_api.Volume]):
    """An async :class:`virtabs.Volume`."""

    async def delete(self) -> None:
        """Awaitable :meth:`virtabs.Volume.delete` (run in a worker thread)."""
        await asyncio.to_thread(self._target.delete)

    async def info(self) -> VolumeInfo:
        """Awaitable :meth:`virtabs.Volume.info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.info)

    @property
    def last_info(self) -> VolumeInfo:
        """The sync object's ``last_info``."""
        return self._target.last_info

    @property
    def name(self) -> str:
        """The sync object's ``name``."""
        return self._target.name

    @property
    def path(self) -> str:
        """The sync object's ``path``."""
        return self._target.path

    @property
    def pool(self) -> str:
        """The sync object's ``pool``."""
        return self._target.pool

    async def resize(self, capacity_bytes: int) -> VolumeInfo:
        """Awaitable :meth:`virtabs.Volume.resize` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.resize, capacity_bytes)


class AsyncBlockJob(AsyncProxy[_api.BlockJob]):
    """An async :class:`virtabs.BlockJob`: ``await job.wait_ready()``, ``await job.pivot()``."""

    async def abort(self, *, wait: bool = True) -> None:
        """Awaitable :meth:`virtabs.BlockJob.abort` (run in a worker thread)."""
        await asyncio.to_thread(self._target.abort, wait=wait)

    async def info(self) -> BlockJobInfo | None:
        """Awaitable :meth:`virtabs.BlockJob.info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.info)

    async def pivot(self, *, wait: bool = True) -> None:
        """Awaitable :meth:`virtabs.BlockJob.pivot` (run in a worker thread)."""
        await asyncio.to_thread(self._target.pivot, wait=wait)

    @property
    def two_phase(self) -> bool:
        """The sync object's ``two_phase``."""
        return self._target.two_phase

    async def wait(
        self, timeout: float | None = None, *, progress: Callable[[BlockJobInfo], None] | None = None
    ) -> None:
        """Awaitable :meth:`virtabs.BlockJob.wait` (run in a worker thread)."""
        await asyncio.to_thread(self._target.wait, timeout, progress=progress)

    async def wait_ready(
        self, timeout: float | None = None, *, progress: Callable[[BlockJobInfo], None] | None = None
    ) -> BlockJobInfo:
        """Awaitable :meth:`virtabs.BlockJob.wait_ready` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.wait_ready, timeout, progress=progress)


class AsyncMigrationJob(AsyncProxy[_api.MigrationJob]):
    """An async :class:`virtabs.MigrationJob`: ``await job.wait()`` gives the domain on the destination."""

    async def abort(self) -> None:
        """Awaitable :meth:`virtabs.MigrationJob.abort` (run in a worker thread)."""
        await asyncio.to_thread(self._target.abort)

    async def close(self) -> None:
        """Awaitable :meth:`virtabs.MigrationJob.close` (run in a worker thread)."""
        await asyncio.to_thread(self._target.close)

    @property
    def done(self) -> bool:
        """The sync object's ``done``."""
        return self._target.done

    async def info(self) -> MigrationInfo:
        """Awaitable :meth:`virtabs.MigrationJob.info` (run in a worker thread)."""
        return await asyncio.to_thread(self._target.info)

    async def wait(
        self, timeout: float | None = None, *, progress: Callable[[MigrationInfo], None] | None = None
    ) -> AsyncDomain:
        """Awaitable :meth:`virtabs.MigrationJob.wait` (run in a worker thread)."""
        return AsyncDomain(await asyncio.to_thread(self._target.wait, timeout, progress=progress))


async def open(uri: str | None = None, **kwargs: Any) -> AsyncConnection:
    """Open a connection off the event loop; same arguments as :func:`virtabs.open`."""
    conn = await asyncio.to_thread(_api.open, uri, **kwargs)
    return AsyncConnection(conn)

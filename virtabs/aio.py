"""An asyncio facade over the synchronous API.

``await virtabs.aio.open(uri)`` returns an :class:`AsyncConnection`; every
method of the sync object becomes a coroutine that runs the *same* sync
implementation in a worker thread (``asyncio.to_thread``), so the event loop
never blocks on a hypervisor and no operation is implemented twice. Objects a
method returns (``Domain``, ``StoragePool``, ``Volume``, ``BlockJob``, or lists
of them) come back wrapped the same way; plain values come back as they are.

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
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from . import _api

__all__ = ["AsyncConnection", "AsyncProxy", "open"]

_WRAPPED = (_api.Connection, _api.Domain, _api.StoragePool, _api.Volume, _api.BlockJob)


def _wrap(value: Any) -> Any:
    if isinstance(value, _api.Connection):
        return AsyncConnection(value)
    if isinstance(value, _WRAPPED):
        return AsyncProxy(value)
    if isinstance(value, list) and value and all(isinstance(v, _WRAPPED) for v in value):
        return [_wrap(v) for v in value]
    return value


class AsyncProxy:
    """Wraps a sync API object: methods become coroutines, attributes pass through."""

    def __init__(self, target: Any) -> None:
        self._target = target

    @property
    def sync(self) -> Any:
        """The wrapped synchronous object."""
        return self._target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return _wrap(await asyncio.to_thread(attr, *args, **kwargs))

        return call

    def __repr__(self) -> str:
        return f"<async {self._target!r}>"


class AsyncConnection(AsyncProxy):
    """An async connection; ``async with`` closes it."""

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._target.close)

    def subscribe(self, callback: Callable[[Any], Any], *, domain: Any = None) -> _api.Subscription:
        """Subscribe to events; a coroutine callback is scheduled on the calling event loop."""
        loop = asyncio.get_running_loop()
        if asyncio.iscoroutinefunction(callback):

            def deliver(event: Any) -> None:
                coro: Coroutine[Any, Any, Any] = callback(event)
                asyncio.run_coroutine_threadsafe(coro, loop)

        else:

            def deliver(event: Any) -> None:
                loop.call_soon_threadsafe(callback, event)

        dom = domain.sync if isinstance(domain, AsyncProxy) else domain
        return self._target.subscribe(deliver, domain=dom)  # type: ignore[no-any-return]


async def open(uri: str | None = None, **kwargs: Any) -> AsyncConnection:
    """Open a connection off the event loop; same arguments as :func:`virtabs.open`."""
    conn = await asyncio.to_thread(_api.open, uri, **kwargs)
    return AsyncConnection(conn)

"""The asyncio facade: read every domain of a host concurrently, then watch a copy's events.

    .venv/bin/python examples/aio_status.py [URI]      # default: test:///default

Each awaitable runs the same synchronous implementation in a worker thread, so the
event loop never blocks on the hypervisor. Types: docs/aio.md.
"""

from __future__ import annotations

import asyncio
import sys

import virtabs
import virtabs.aio


async def main(uri: str) -> None:
    """Print each domain's state and vCPUs, read concurrently."""
    async with await virtabs.aio.open(uri) as conn:
        domains = await conn.list_domains()
        infos = await asyncio.gather(*(d.info() for d in domains))
        for dom, info in zip(domains, infos, strict=True):
            print(f"{dom.name:<12} {info.state.name.lower():<8} {info.vcpus} vCPU(s)")

        if uri.startswith("test:") and domains:
            events: list[virtabs.Event] = []
            done = asyncio.Event()

            def on_event(event: virtabs.Event) -> None:
                events.append(event)
                if isinstance(event, virtabs.BlockJobEvent) and event.status == virtabs.BlockJobStatus.READY:
                    done.set()

            sub = conn.subscribe(on_event, domain=domains[0])
            job = await domains[0].block_copy("vda", "/tmp/aio-copy.img")
            await asyncio.wait_for(done.wait(), timeout=60)
            await job.abort()  # leave the domain on its original disk
            sub.close()
            print("events:", ", ".join(type(e).__name__ for e in events))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "test:///default"))

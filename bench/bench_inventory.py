#!/usr/bin/env python3
"""``virtabs.inventory.collect`` over 1, 10 and 50 hosts, as ratios (never asserted in tests).

Hosts are test-driver nodes loaded from JSON files (200 domains each, a qcow2
disk on a backing chain, a NIC, a pool with volumes), written to a temporary
directory. The nodes are loaded once before timing (a hypervisor is already
running when it is inventoried); ``--cold`` makes every run reload them, so that
parsing the node files is part of the cost.

Two scenarios:

* ``in-memory``: the test driver as it is; all work is Python on one
  interpreter (the GIL serialises it), so this shows the fixed overhead.
* ``latency``: every driver call first sleeps ``--latency-ms`` (default 5 ms),
  the round trip of a remote hypervisor API. This is what an inventory over
  the network looks like, and where parallel hosts and the bulk hook pay.

For each it prints the scaling table (time, time per host, ratio against one
host and against the host count), then the ratio against the naive loop a user
would write with the public API, host after host::

    for uri in uris:
        with virtabs.open(uri) as conn:
            for dom in conn.list_domains():
                rows.append({"host": uri, "info": attrs.asdict(dom.info()),
                             "disks": [...], "nics": [...]})
    json.dumps(rows, default=str)

(which still reads less than the inventory: no snapshots, jobs, pools or host facts).

    .venv/bin/python bench/bench_inventory.py [--runs N] [--latency-ms MS] [--domains N] [--naive-max-hosts N]
    .venv/bin/python bench/bench_inventory.py --qemu [--qemu-hosts 50]   # also QEMU embed roots (slower)
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

import virtabs
import virtabs.inventory as inv
from virtabs.drivers.test import TestDriver, reset_all_nodes
from virtabs.testing.fleet import fleet_node
from virtabs.testing.recorder import READ_METHODS

HOST_COUNTS = (1, 10, 50)


def make_nodes(directory: Path, hosts: int, domains: int) -> list[str]:
    """Write ``hosts`` node files; their URIs."""
    uris = []
    for h in range(hosts):
        path = directory / f"node{h:02d}.json"
        path.write_text(json.dumps(fleet_node(f"node{h:02d}", domains, h + 1, base_images=3)))
        uris.append(f"test://{path}")
    return uris


@contextlib.contextmanager
def simulated_latency(seconds: float) -> Iterator[None]:
    """Make every TestDriver read call (and connecting) sleep ``seconds`` first."""
    if seconds <= 0:
        yield
        return
    saved: dict[str, Any] = {}

    def slowed(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(seconds)
            return method(*args, **kwargs)

        return call

    for name in (*READ_METHODS, "__init__"):
        saved[name] = TestDriver.__dict__.get(name)
        setattr(TestDriver, name, slowed(getattr(TestDriver, name)))
    try:
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(TestDriver, name)
            else:
                setattr(TestDriver, name, original)


def naive(uris: list[str]) -> int:
    """What a user writes with the public API: host after host, three calls per domain, then JSON."""
    rows = []
    for uri in uris:
        with virtabs.open(uri, readonly=True) as conn:
            for dom in conn.list_domains():
                rows.append(
                    {
                        "host": uri,
                        "info": attrs.asdict(dom.info()),
                        "disks": [attrs.asdict(d) for d in dom.disks()],
                        "nics": [attrs.asdict(n) for n in dom.nics()],
                    }
                )
    json.dumps(rows, default=str)
    return len(rows)


def with_virtabs(uris: list[str], concurrency: int) -> int:
    """``virtabs.inventory.collect`` and the JSON document (what ``virtabs inventory`` writes)."""
    result = inv.collect(uris, concurrency=concurrency, timeout=600)
    if result.exit_status != 0:
        raise SystemExit(f"inventory failed: {[h.error for h in result.failed_hosts]}")
    inv.to_json(result, indent=None)  # what --output FILE writes
    return result.domain_count


def _warm() -> None:
    return None


def timed(
    fn: Callable[[], int], runs: int, reset: Callable[[], None] = _warm, budget: float = 1.0, warmup: bool = True
) -> tuple[float, int]:
    """Median seconds of at least ``runs`` calls (after ``reset()`` each), repeated until ``budget``
    seconds of samples (at most 25), and what the last call counted."""
    samples: list[float] = []
    count = 0
    if warmup and reset is _warm:
        fn()  # warm-up: loads the nodes
    while len(samples) < runs or (sum(samples) < budget and len(samples) < 25):
        reset()
        start = time.perf_counter()
        count = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), count


def report(
    title: str,
    uris: list[str],
    runs: int,
    concurrency: int,
    naive_max_hosts: int,
    reset: Callable[[], None] = _warm,
    counts: tuple[int, ...] = HOST_COUNTS,
) -> None:
    """Print the scaling table and the naive-loop ratios of one scenario."""
    print(f"\n== {title} ==")
    print(f"{'hosts':>5} {'domains':>8} {'seconds':>9} {'s/host':>8} {'vs 1 host':>10} {'(hosts x)':>10}")
    times: dict[int, float] = {}
    for n in counts:
        seconds, found = timed(functools.partial(with_virtabs, uris[:n], concurrency), runs, reset)
        times[n] = seconds
        base = times[counts[0]]
        print(f"{n:>5} {found:>8} {seconds:>9.3f} {seconds / n:>8.4f} {seconds / base:>9.1f}x {n / counts[0]:>9.0f}x")
    print(f"{'hosts':>5} {'naive s':>9} {'virtabs s':>10} {'naive/virtabs':>14}")
    for n in counts:
        if n > naive_max_hosts:
            print(f"{n:>5} {'(skipped: --naive-max-hosts)':>36}")
            continue
        seconds, _ = timed(functools.partial(naive, uris[:n]), max(1, runs // 2), reset, budget=0, warmup=False)
        print(f"{n:>5} {seconds:>9.3f} {times[n]:>10.3f} {seconds / times[n]:>13.1f}x")


def qemu_roots(directory: Path, hosts: int, domains: int) -> list[str]:
    """``hosts`` QEMU embed roots, each with ``domains`` shut-off domains on a small qcow2 image."""
    import subprocess

    uris = []
    for h in range(hosts):
        root = directory / f"qemu{h:02d}"
        root.mkdir()
        uri = f"qemu:///embed?root={root}"
        with virtabs.open(uri) as conn:
            for i in range(domains):
                img = root / f"vm{i:03d}.qcow2"
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
                conn.define_domain(
                    {
                        "name": f"q{h:02d}-vm{i:03d}",
                        "memory_bytes": 64 << 20,
                        "vcpus": 1,
                        "disks": [{"target": "vda", "path": str(img), "format": "qcow2"}],
                        "nics": [{"network": "user"}],
                    }
                )
        uris.append(uri)
    return uris


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="repetitions per measurement (median)")
    parser.add_argument("--domains", type=int, default=200, help="domains per test node")
    parser.add_argument("--cold", action="store_true", help="reload the node files before every run")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="simulated round trip per driver call")
    parser.add_argument("--concurrency", type=int, default=inv.DEFAULT_CONCURRENCY)
    parser.add_argument("--naive-max-hosts", type=int, default=10, help="largest host count the naive loop runs")
    parser.add_argument("--qemu", action="store_true", help="also QEMU embed roots (needs qemu-img)")
    parser.add_argument("--qemu-domains", type=int, default=20, help="domains per QEMU embed root")
    parser.add_argument("--qemu-hosts", type=int, default=10, choices=HOST_COUNTS, help="most QEMU embed roots")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="virtabs-bench-inv-") as tmp:
        uris = make_nodes(Path(tmp), max(HOST_COUNTS), args.domains)
        print(
            f"virtabs inventory bench: {args.domains} domains per host, concurrency {args.concurrency}, "
            f"median of >= {args.runs} runs; Python {sys.version.split()[0]}"
        )
        reset = reset_all_nodes if args.cold else _warm
        start = time.perf_counter()
        for uri in uris:
            with virtabs.open(uri):
                pass
        print(
            f"loading the {len(uris)} node files: {time.perf_counter() - start:.3f} s (not timed below unless --cold)"
        )
        report("test driver, in memory", uris, args.runs, args.concurrency, args.naive_max_hosts, reset)
        with simulated_latency(args.latency_ms / 1000):
            report(
                f"test driver, {args.latency_ms:g} ms per driver call (a remote host)",
                uris,
                args.runs,
                args.concurrency,
                args.naive_max_hosts,
                reset,
            )
        if args.qemu:
            start = time.perf_counter()
            qemu = qemu_roots(Path(tmp), args.qemu_hosts, args.qemu_domains)
            print(f"\ncreating {args.qemu_hosts} QEMU embed roots: {time.perf_counter() - start:.1f} s")
            report(
                f"QEMU embed roots, {args.qemu_domains} shut-off domains each (image headers read in Python, no qemu-img)",
                qemu,
                args.runs,
                args.concurrency,
                args.naive_max_hosts,
                counts=tuple(n for n in HOST_COUNTS if n <= args.qemu_hosts),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

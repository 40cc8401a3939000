#!/usr/bin/env python3
"""Fleet inventory at estate scale (simulated hosts; figures from one run, never asserted in tests).

Three measurements, each in fresh processes (``virtabs inventory`` run as a command):

* ``mechanisms``: what waiting on many hosts costs, without virtabs: N hosts, each five sequential
  waits of ``--latency-ms`` (a host's round trips) and a little CPU, with C in flight, as a bounded
  pool of OS threads and as asyncio tasks. Wall time, CPU time and peak RSS.
* ``estate``: ``virtabs inventory --format jsonl`` over a generated fleet (virtabs.testing.fleet:
  test-driver node files, ``--domains`` domains each, ``--latency-ms`` per driver call), at 100,
  1,000 and ``--hosts`` hosts: wall time, time per host, peak RSS (``/usr/bin/time -v``).
* ``vcenter``: vcsim in vCenter mode with 10,000 VMs: ``collect()`` and its bulk hook against
  bench_esx.py's hand-written PropertyCollector script, in the same run.
* ``dask``: the same inventory of ``--dask-hosts`` hosts locally and on a LocalCluster of 2 worker
  processes (in this process, the cluster's start-up timed apart); the ratio of wall times, and
  whether the two json documents are equal (timestamps aside).

    .venv/bin/python bench/bench_fleet.py mechanisms [--hosts 10000]
    .venv/bin/python bench/bench_fleet.py estate [--hosts 10000] [--concurrency 64]
    .venv/bin/python bench/bench_fleet.py dask [--dask-hosts 1000]
    .venv/bin/python bench/bench_fleet.py vcenter [--vms-per-pool 5000]   # needs vcsim (see bench_esx.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CALLS_PER_HOST = 5  # connect, host_info, the bulk domain call, list pools, list volumes
CLI = [sys.executable, "-c", "from virtabs.cli import main; main()", "inventory"]


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _threads(hosts: int, concurrency: int, latency: float, cpu: float) -> None:
    todo = iter(range(hosts))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                host = next(todo, None)
            if host is None:
                return
            for _ in range(CALLS_PER_HOST):
                time.sleep(latency)
            _spin(cpu)

    pool = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


async def _asyncio(hosts: int, concurrency: int, latency: float, cpu: float) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def host() -> None:
        async with gate:
            for _ in range(CALLS_PER_HOST):
                await asyncio.sleep(latency)
            _spin(cpu)

    await asyncio.gather(*(host() for _ in range(hosts)))


def _one_mechanism(kind: str, hosts: int, concurrency: int, latency: float, cpu: float) -> None:
    start, cpu0 = time.perf_counter(), time.process_time()
    if kind == "threads":
        _threads(hosts, concurrency, latency, cpu)
    else:
        asyncio.run(_asyncio(hosts, concurrency, latency, cpu))
    wall, used = time.perf_counter() - start, time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": used, "rss_mib": rss}))


def mechanisms(args: argparse.Namespace) -> None:
    """Threads vs asyncio for the waiting part alone."""
    print(
        f"\n== waiting on {args.hosts} hosts: {CALLS_PER_HOST} waits of {args.latency_ms:g} ms and "
        f"{args.cpu_ms:g} ms CPU each =="
    )
    print(f"{'mechanism':<10} {'in flight':>9} {'wall s':>8} {'cpu s':>7} {'peak RSS MiB':>13} {'floor s':>8}")
    for concurrency in (64, 256, 1024):
        for kind in ("threads", "asyncio"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "_mechanism",
                    kind,
                    str(args.hosts),
                    str(concurrency),
                    str(args.latency_ms / 1000),
                    str(args.cpu_ms / 1000),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(proc.stdout)
            floor = max(
                args.hosts * CALLS_PER_HOST * args.latency_ms / 1000 / concurrency, args.hosts * args.cpu_ms / 1000
            )
            print(f"{kind:<10} {concurrency:>9} {r['wall']:>8.2f} {r['cpu']:>7.2f} {r['rss_mib']:>13.1f} {floor:>8.2f}")


def _timed_cli(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system, of the command and the processes it
    waited for) of one inventory command, from /usr/bin/time -v."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *CLI, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if match is None:
        raise SystemExit(f"no /usr/bin/time figures: {proc.stderr[-2000:]}")
    if proc.returncode not in (0, 3):
        raise SystemExit(f"inventory failed ({proc.returncode}): {proc.stderr[-2000:]}")
    user = re.search(r"User time \(seconds\): ([0-9.]+)", proc.stderr)
    system = re.search(r"System time \(seconds\): ([0-9.]+)", proc.stderr)
    cpu = (float(user[1]) if user else 0.0) + (float(system[1]) if system else 0.0)
    return wall, int(match[1]) / 1024, cpu


def _fleet(directory: Path, hosts: int, domains: int, latency_ms: float) -> Path:
    from virtabs.testing.fleet import make_fleet

    start = time.perf_counter()
    make_fleet(directory, hosts, domains, latency_ms)
    print(f"generated {hosts} node files in {time.perf_counter() - start:.1f} s (not timed below)")
    return directory / "hosts.yaml"


def estate(args: argparse.Namespace) -> None:
    """jsonl streaming at 100, 1,000 and --hosts hosts."""
    with tempfile.TemporaryDirectory(prefix="virtabs-bench-fleet-") as tmp:
        print(
            f"\n== virtabs inventory --format jsonl: {args.domains} domains per host, {args.latency_ms:g} ms per "
            f"driver call, --concurrency {args.concurrency} =="
        )
        one = _fleet(Path(tmp) / "f1", 1, args.domains, args.latency_ms)
        fixed, _rss, fixed_cpu = _timed_cli(["--config", str(one), "--output", str(Path(tmp) / "one.jsonl"), "--quiet"])
        print(f"fixed cost (start-up, imports, one host): {fixed:.2f} s; ms/host below is (wall - fixed) / hosts")
        print(
            f"{'hosts':>6} {'domains':>8} {'wall s':>8} {'ms/host':>8} {'vs 100':>7} {'peak RSS MiB':>13} "
            f"{'CPU s':>7} {'CPU ms/host':>12} {'lines':>8}"
        )
        per_host: dict[int, float] = {}
        for hosts in sorted({100, 1000, args.hosts}):
            hosts_file = _fleet(Path(tmp) / f"f{hosts}", hosts, args.domains, args.latency_ms)
            out = Path(tmp) / f"estate{hosts}.jsonl"
            wall, rss, cpu = _timed_cli(
                ["--config", str(hosts_file), "--output", str(out), "--quiet", "--concurrency", str(args.concurrency)]
            )
            per_host[hosts] = (wall - fixed) / hosts
            with out.open("rb") as fh:
                lines = sum(1 for _ in fh)
            ratio = per_host[hosts] / per_host[min(per_host)]
            print(
                f"{hosts:>6} {hosts * args.domains:>8} {wall:>8.2f} {per_host[hosts] * 1000:>8.2f} {ratio:>6.2f}x "
                f"{rss:>13.1f} {cpu:>7.1f} {(cpu - fixed_cpu) / hosts * 1000:>12.2f} {lines:>8}"
            )


def _without_times(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop("generated_at")
    for host in doc["hosts"]:
        host.pop("collected_at")
    return doc


def dask(args: argparse.Namespace) -> None:
    """The same inventory locally and on a 2-process LocalCluster (in this process: the cluster's start-up
    is timed apart from the run)."""
    import distributed

    import virtabs.inventory as inv
    from virtabs.inventory._dask import worker_ready

    with tempfile.TemporaryDirectory(prefix="virtabs-bench-fleet-") as tmp:
        hosts_file = _fleet(Path(tmp) / "f", args.dask_hosts, args.domains, args.latency_ms)
        uris = [h.uri for h in inv.load_hosts_file(hosts_file)[0]]
        print(
            f"\n== {args.dask_hosts} hosts, local threads vs a LocalCluster of 2 worker processes (1 thread each), "
            f"--concurrency {args.concurrency}, batches of {args.batch_size} =="
        )
        start = time.perf_counter()
        local = inv.collect(uris, concurrency=args.concurrency, timeout=600).to_dict()
        local_wall = time.perf_counter() - start
        print(f"local          {local_wall:7.2f} s")
        start = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = distributed.Client(cluster)
        client.run(worker_ready)  # what --dask does: the workers import virtabs before the first batch
        started = time.perf_counter() - start
        try:
            start = time.perf_counter()
            remote = inv.collect(
                uris,
                concurrency=args.concurrency,
                timeout=600,
                executor=client.get_executor(),
                batch_size=args.batch_size,
            ).to_dict()
            dask_wall = time.perf_counter() - start
        finally:
            start = time.perf_counter()
            client.close()
            cluster.close()
            stopped = time.perf_counter() - start
        print(f"dask           {dask_wall:7.2f} s   (cluster start {started:.2f} s and stop {stopped:.2f} s apart)")
        same = _without_times(local) == _without_times(remote)
        print(
            f"dask / local: {dask_wall / local_wall:.2f}x the run, "
            f"{(dask_wall + started + stopped) / local_wall:.2f}x with the cluster's start and stop; "
            f"documents equal (timestamps aside): {same}"
        )


def vcenter(args: argparse.Namespace) -> None:
    """vcsim in vCenter mode with 2 x ``--vms-per-pool`` VMs: ``virtabs.inventory.collect`` (one bulk
    retrieval for the VMs) and its bulk hook alone vs bench_esx.py's hand-written PropertyCollector script,
    interleaved in the same run; medians of ``--repeat``."""
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_esx import Contender, HandWritten, missing_tools, running_vcsim
    from pyVim.connect import Disconnect, SmartConnect

    import virtabs
    import virtabs.inventory as inv

    hint = missing_tools()
    if hint:
        raise SystemExit(hint)
    vcsim_args = ("-vm", str(args.vms_per_pool), "-delay", str(args.delay), "-paging")
    start = time.perf_counter()
    with running_vcsim(args=vcsim_args, timeout=600) as sim:
        print(f"\nvcsim with {2 * args.vms_per_pool} VMs started in {time.perf_counter() - start:.1f} s")
        import ssl

        ctx = ssl.create_default_context(cafile=str(sim.pki.ca))
        uri = f"vpx://{sim.host}:{sim.port}/?cafile={sim.pki.ca}"
        os.environ["VIRTABS_USERNAME"], os.environ["VIRTABS_PASSWORD"] = sim.username, sim.password
        si = SmartConnect(host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, sslContext=ctx)
        try:

            def inventory() -> list[Any]:
                result = inv.collect([uri], timeout=3600)
                if result.exit_status:
                    raise SystemExit(f"inventory failed: {result.failed_hosts}")
                return [r for _h, r in result.domains()]

            def inventory_no_pools() -> list[Any]:
                result = inv.collect([uri], timeout=3600, pools=False)
                return [r for _h, r in result.domains()]

            with virtabs.open(uri) as conn:
                ours = Contender("virtabs.inventory.collect()", inventory)
                bare = Contender("collect(pools=False)", inventory_no_pools)
                hook = Contender("its bulk hook, domain_records()", conn.domain_records)
                hand = Contender("hand-written PropertyCollector", HandWritten(si))
                for _ in range(args.repeat):  # interleaved, so load hits all alike; the script first
                    hand.run(sim)
                    ours.run(sim)
                    bare.run(sim)
                    hook.run(sim)
        finally:
            Disconnect(si)
    print(f"vcsim: {hand.vms} VMs, {args.delay} ms per SOAP call, TLS verified; median of {args.repeat}")
    for c in (ours, bare, hook, hand):
        total = sum(c.calls.values())
        print(f"  {c.label:34s} {c.wall:8.3f} s (client CPU {c.cpu:6.3f} s)  {c.vms:6d} VMs  {total:5d} SOAP calls")
    print(
        f"ratio to the hand-written script: collect() {ours.wall / hand.wall:.2f}x, "
        f"collect(pools=False) {bare.wall / hand.wall:.2f}x, bulk hook {hook.wall / hand.wall:.2f}x"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_mechanism":
        kind, hosts, concurrency, latency, cpu = sys.argv[2:7]
        _one_mechanism(kind, int(hosts), int(concurrency), float(latency), float(cpu))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("mechanisms", "estate", "dask", "vcenter", "all"))
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--cpu-ms", type=float, default=0.5, help="mechanisms: CPU per host")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dask-hosts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64, help="dask: hosts per task")
    parser.add_argument("--vms-per-pool", type=int, default=5000, help="vcenter: vcsim -vm (2 pools: 2x VMs)")
    parser.add_argument("--delay", type=int, default=5, help="vcenter: ms vcsim adds to every SOAP call")
    parser.add_argument("--repeat", type=int, default=3, help="vcenter: interleaved runs (median)")
    args = parser.parse_args()
    print(f"virtabs fleet bench; Python {sys.version.split()[0]}")
    if args.what in ("mechanisms", "all"):
        mechanisms(args)
    if args.what in ("estate", "all"):
        estate(args)
    if args.what in ("dask", "all"):
        dask(args)
    if args.what == "vcenter":
        vcenter(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

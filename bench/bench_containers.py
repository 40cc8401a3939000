#!/usr/bin/env python3
"""Container listing and inventory: virtabs against the engines' own CLIs, measured in the same run.

Starts its own engines (as root): a private lxcpath with 100 busybox containers (10 running), and a private
dockerd with 100 containers (10 running) of a busybox image imported from a rootfs tarball. Everything it
starts is stopped and removed at the end. Reports medians and ratios (never asserted anywhere):

  LXC     virtabs list_domains() / domain_records() on lxc:///?path=...   vs  `lxc-ls -P ... --fancy`
  Docker  virtabs list_domains() / domain_records() on docker+unix://...  vs  `docker ps -a --format '{{json .}}'`
          and the docker SDK's high-level containers.list(all=True) (one inspect per container)

In-process calls reuse one open connection. The "process" rows run the virtabs CLI as a whole process, like
the CLIs they are compared with: `virtabs inventory URI` and `virtabs -c URI list`, both one bulk engine
call (until 2026-12 `list` asked info() of every domain: 10 s for 100 containers, 10 running, since
Docker's stats sample takes about a second per running container).

    sudo .venv/bin/python bench/bench_containers.py [--runs N] [--count N] [--only lxc|docker]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "backends" / "lxc" / "tests"))
sys.path.insert(0, str(ROOT / "backends" / "docker" / "tests"))
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

import virtabs  # noqa: E402


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls after one warm-up, in seconds."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(cmd: list[str]) -> Callable[[], object]:
    """A callable running ``cmd`` as a whole process."""
    return lambda: subprocess.run(cmd, check=True, capture_output=True, env=ENV)


def inventory_cli(uri: str) -> Callable[[], object]:
    """``virtabs inventory URI --format json`` as a whole process (bulk: Driver.inventory)."""
    return run([str(BIN / "virtabs"), "inventory", uri, "--format", "json", "--no-pools", "-q"])


def list_cli(uri: str) -> Callable[[], object]:
    """``virtabs -c URI list`` as a whole process (one bulk call: ``Connection.domain_records``)."""
    return run([str(BIN / "virtabs"), "-c", uri, "list"])


def report(title: str, rows: list[tuple[str, float, str, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'virtabs':44} {'ms':>8}   {'peer':44} {'ms':>8}   peer/virtabs")
    for mine, mine_s, peer, peer_s in rows:
        print(f"  {mine:44} {mine_s * 1000:8.2f}   {peer:44} {peer_s * 1000:8.2f}   {peer_s / mine_s:6.1f}x")


def bench_lxc(count: int, running: int, runs: int) -> None:
    from lxc_helpers import private_lxcpath
    from virtabs_lxc.testing import LxcTarget

    with private_lxcpath("vtbench-lxc-") as path:
        uri = f"lxc:///?path={path}"
        target = LxcTarget()
        conn = virtabs.open(uri)
        try:
            doms = [conn.define_domain(target.domain_spec(conn, f"ct{i:03d}")) for i in range(count)]
            for dom in doms[:running]:
                dom.start()
            assert len(conn.list_domains()) == count
            lxc_ls = ["lxc-ls", "-P", path, "--fancy"]
            assert subprocess.run(lxc_ls, check=True, capture_output=True, text=True).stdout.count("\n") == count + 1
            peer = median_time(run(lxc_ls), runs)
            rows = [
                (f"list_domains() ({count})", median_time(conn.list_domains, runs), "lxc-ls --fancy", peer),
                (f"domain_records() ({count})", median_time(conn.domain_records, runs), "lxc-ls --fancy", peer),
                ("process: virtabs inventory", median_time(inventory_cli(uri), runs), "lxc-ls --fancy", peer),
                ("process: virtabs list", median_time(list_cli(uri), runs), "lxc-ls --fancy", peer),
            ]
            report(f"LXC: {count} containers, {running} running (liblxc {lxc_version()})", rows)
        finally:
            for dom in conn.list_domains():
                if dom.state().is_active:
                    dom.destroy()
                dom.undefine()
            conn.close()
            shutil.rmtree(target.workdir, ignore_errors=True)


def lxc_version() -> str:
    import lxc

    return str(lxc.version)


def bench_docker(count: int, running: int, runs: int) -> None:
    from docker_helpers import SLEEPER, private_dockerd

    docker_cli = shutil.which("docker")
    with private_dockerd() as engine:
        client = engine.client()
        hc = client.api.create_host_config(network_mode="none")
        for i in range(count):
            client.api.create_container(engine.image, command=list(SLEEPER), name=f"ct{i:03d}", host_config=hc)
        for i in range(running):
            client.api.start(f"ct{i:03d}")
        conn = virtabs.open(engine.uri)
        try:
            assert len(conn.list_domains()) == count
            rows = []
            if docker_cli:
                ps = [docker_cli, "-H", engine.base_url, "ps", "-a", "--format", "{{json .}}"]
                assert subprocess.run(ps, check=True, capture_output=True, text=True).stdout.count("\n") == count
                peer = median_time(run(ps), runs)
                rows += [
                    (
                        f"list_domains() ({count})",
                        median_time(conn.list_domains, runs),
                        "docker ps -a --format json",
                        peer,
                    ),
                    (
                        f"domain_records() ({count})",
                        median_time(conn.domain_records, runs),
                        "docker ps -a --format json",
                        peer,
                    ),
                    (
                        "process: virtabs inventory",
                        median_time(inventory_cli(engine.uri), runs),
                        "docker ps -a --format json",
                        peer,
                    ),
                    (
                        "process: virtabs list",
                        median_time(list_cli(engine.uri), runs),
                        "docker ps -a --format json",
                        peer,
                    ),
                ]
            raw = median_time(lambda: client.api.containers(all=True), runs)
            rows.append(
                (f"list_domains() ({count})", median_time(conn.list_domains, runs), "SDK api.containers() (raw)", raw)
            )
            sdk = median_time(lambda: client.containers.list(all=True), runs)
            rows.append(
                (f"domain_records() ({count})", median_time(conn.domain_records, runs), "SDK containers.list()", sdk)
            )
            report(f"Docker: {count} containers, {running} running (dockerd {client.version()['Version']})", rows)
        finally:
            conn.close()
            client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--running", type=int, default=10)
    parser.add_argument("--only", choices=["lxc", "docker"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_containers: needs root (private LXC containers and dockerd)", file=sys.stderr)
        return 2
    if args.only in (None, "lxc"):
        bench_lxc(args.count, args.running, args.runs)
    if args.only in (None, "docker"):
        bench_docker(args.count, args.running, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

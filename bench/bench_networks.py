#!/usr/bin/env python3
"""Networks of Docker and Podman (issue 25): virtabs against the docker SDK, measured in the same run.

Starts its own engines (as root): a private dockerd and a private podman service (tests/docker_helpers.py),
each with N bridge networks (unique names, bridge devices and subnets of 10.200.0.0/13) and C stopped
containers on each. Everything it starts is removed at the end. Reports medians and ratios (never asserted):

  virtabs list_networks()              two engine calls: the network list (Podman: libpod's) + the container list
  SDK networks.list(greedy=True)       the SDK's way to networks with their containers: one inspect per network
  SDK api.networks() (raw)             the floor: one call, no attachments (Podman: its default network misnamed)

    sudo .venv/bin/python bench/bench_networks.py [--runs N] [--networks N] [--containers C] [--only docker|podman]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backends" / "docker" / "tests"))

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


def bench_engine(kind: str, networks: int, containers: int, runs: int) -> None:
    """Make the networks and containers on a private engine of ``kind``, measure, print one table."""
    from docker_helpers import SLEEPER, private_dockerd, private_podman

    with private_dockerd() if kind == "docker" else private_podman() as engine:
        client = engine.client()
        api = client.api
        prefix = f"vtnb{uuid.uuid4().hex[:5]}"
        try:
            for i in range(networks):
                name = f"{prefix}{i}"
                pool = {"Subnet": f"10.{200 + i // 256}.{i % 256}.0/24"}
                options = {"com.docker.network.bridge.name": name}
                api.create_network(name, driver="bridge", ipam={"Driver": "default", "Config": [pool]}, options=options)
                hc = api.create_host_config(network_mode=name)
                for j in range(containers):
                    api.create_container(engine.image, command=list(SLEEPER), name=f"{name}-{j}", host_config=hc)
            with virtabs.open(engine.uri) as conn:
                mine = [n for n in conn.list_networks() if n.name.startswith(prefix)]
                assert len(mine) == networks and all(len(n.last_info.attachments) == containers for n in mine)
                ours = median_time(conn.list_networks, runs)
                greedy = median_time(lambda: client.networks.list(greedy=True), runs)
                raw = median_time(api.networks, runs)
            version = client.version()["Version"]
            print(f"\n{kind} {version}: {networks} networks x {containers} containers (median of {runs})")
            print(f"  virtabs list_networks()          {ours * 1000:9.1f} ms")
            print(f"  SDK networks.list(greedy=True)   {greedy * 1000:9.1f} ms   {greedy / ours:6.1f}x virtabs")
            print(f"  SDK api.networks() (raw, floor)  {raw * 1000:9.1f} ms   {raw / ours:6.2f}x virtabs")
        finally:
            engine.remove_all_containers()
            for net in api.networks():
                if str(net.get("Name", "")).startswith(prefix):
                    with contextlib.suppress(Exception):
                        api.remove_network(net["Id"])
            client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--containers", type=int, default=2)
    parser.add_argument("--only", choices=["docker", "podman"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_networks: needs root (private dockerd and podman)", file=sys.stderr)
        return 2
    for kind in ("docker", "podman"):
        if args.only in (None, kind):
            bench_engine(kind, args.networks, args.containers, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A simulated fleet for inventory tests and benchmarks: test-driver node files, a set latency, dead hosts.

Everything here is **simulated** (test only): each host is a ``test:///DIR/hostNNNNN.json`` node file
of the test driver, whose URI asks for ``latency_ms=N`` (connecting and every driver call sleep N ms
first, as a round trip to a remote hypervisor would) and ``forget=1`` (the process drops the node when
its connection closes, so that 10,000 hosts do not stay in memory). A *dead* host is a node file that
does not exist (the connection fails with NO_CONNECT); a *hanging* host is a node whose latency is an
hour (the inventory's per-host timeout reports it). No network and no real hypervisor is involved.

    python -m virtabs.testing.fleet DIR --hosts 10000 --domains 20 --latency-ms 20 --dead 3 --hanging 2

writes the node files and ``DIR/hosts.txt`` (one URI per line; ``virtabs inventory $(cat DIR/hosts.txt)``
or ``--config DIR/hosts.yaml``, also written).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

__all__ = ["HANGING_LATENCY_MS", "fleet_node", "make_fleet"]

GiB = 1 << 30
STATES = ("running", "shutoff", "paused", "running")
HANGING_LATENCY_MS = 3_600_000
"""The latency of a hanging host: an hour per call."""


def fleet_node(host: str, domains: int, seed: int) -> dict[str, Any]:
    """One node description: ``domains`` domains (a qcow2 disk on a base image, one NIC) and a pool."""
    doms = []
    for i in range(domains):
        n = seed * 1_000 + i
        doms.append(
            {
                "name": f"{host}-vm{i:03d}",
                "uuid": str(uuid.UUID(int=(seed << 64) + i + 1)),
                "memory_bytes": (1 + i % 4) * GiB,
                "vcpus": 1 + i % 8,
                "state": STATES[i % len(STATES)],
                "autostart": i % 2 == 0,
                "disks": [
                    {
                        "target": "vda",
                        "path": f"/pool/{host}-vm{i:03d}.qcow2",
                        "format": "qcow2",
                        "capacity_bytes": 20 * GiB,
                        "allocation_bytes": (i + 1) << 20,
                        "backing_chain": [f"/img/{host}-base.qcow2"],
                    }
                ],
                "nics": [
                    {
                        "mac": f"52:54:{(n >> 24) & 0xFF:02x}:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}",
                        "network": "default",
                        "model": "virtio",
                        "ips": [f"10.{(seed >> 8) & 0xFF}.{seed & 0xFF}.{i % 250 + 1}"],
                    }
                ],
            }
        )
    return {
        "host": {"hostname": host, "cpus": 32, "memory_bytes": 128 * GiB},
        "pools": [
            {
                "name": "images",
                "type": "dir",
                "path": "/img",
                "capacity_bytes": 500 * GiB,
                "volumes": [
                    {
                        "name": f"{host}-base.qcow2",
                        "format": "qcow2",
                        "capacity_bytes": 20 * GiB,
                        "allocation_bytes": GiB,
                    }
                ],
            }
        ],
        "domains": doms,
    }


def make_fleet(
    directory: str | Path,
    hosts: int,
    domains: int = 20,
    latency_ms: float = 0.0,
    dead: int = 0,
    hanging: int = 0,
) -> list[str]:
    """Write ``hosts`` node files into ``directory``; the URIs of the fleet, dead and hanging hosts last.

    Also writes ``hosts.txt`` (one URI per line) and ``hosts.yaml`` (a ``virtabs inventory --config``
    host list) there.
    """
    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    params = f"?latency_ms={latency_ms:g}&forget=1" if latency_ms else "?forget=1"
    uris = []
    for h in range(hosts):
        name = f"host{h:05d}"
        path = root / f"{name}.json"
        path.write_text(json.dumps(fleet_node(name, domains, h + 1)), encoding="utf-8")
        uris.append(f"test://{path}{params}")
    for d in range(dead):
        uris.append(f"test://{root}/dead{d:03d}.json{params}")  # never written: NO_CONNECT
    for g in range(hanging):
        name = f"hanging{g:03d}"
        path = root / f"{name}.json"
        path.write_text(json.dumps(fleet_node(name, 1, 900_000 + g)), encoding="utf-8")
        uris.append(f"test://{path}?latency_ms={HANGING_LATENCY_MS}&forget=1")
    (root / "hosts.txt").write_text("".join(u + "\n" for u in uris), encoding="utf-8")
    (root / "hosts.yaml").write_text("hosts:\n" + "".join(f"  - {json.dumps(u)}\n" for u in uris), encoding="utf-8")
    return uris


def main(argv: list[str] | None = None) -> int:
    """``python -m virtabs.testing.fleet DIR [--hosts N] [--domains N] [--latency-ms MS] [--dead N] [--hanging N]``."""
    parser = argparse.ArgumentParser(prog="python -m virtabs.testing.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--dead", type=int, default=0)
    parser.add_argument("--hanging", type=int, default=0)
    args = parser.parse_args(argv)
    uris = make_fleet(args.directory, args.hosts, args.domains, args.latency_ms, args.dead, args.hanging)
    print(f"{len(uris)} hosts in {Path(args.directory).resolve()}/hosts.txt and hosts.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())

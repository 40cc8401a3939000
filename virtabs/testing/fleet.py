"""A simulated fleet for inventory tests and benchmarks: test-driver node files, a set latency, dead hosts.

Everything here is **simulated** (test only): each host is a ``test:///DIR/hostNNNNN.json`` node file
of the test driver, whose URI asks for ``latency_ms=N`` (connecting and every driver call sleep N ms
first, as a round trip to a remote hypervisor would) and ``forget=1`` (the process drops the node when
its connection closes, so that 10,000 hosts do not stay in memory). A *dead* host is a node file that
does not exist (the connection fails with NO_CONNECT); a *hanging* host is a node whose latency is an
hour (the inventory's per-host timeout reports it). No network and no real hypervisor is involved.

    python -m virtabs.testing.fleet DIR --hosts 10000 --domains 20 --latency-ms 20 --dead 3 --hanging 2

writes the node files and ``DIR/hosts.txt`` (one URI per line; ``virtabs inventory $(cat DIR/hosts.txt)``
or ``--config DIR/hosts.yaml``, also written). ``fleet_node`` is the one generator of such node
descriptions (the inventory tests and benchmarks use it too): domains with a disk and a NIC, a pool of
base images, optionally networks.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["HANGING_LATENCY_MS", "MAX_SEED", "SEED_BLOCK", "fleet_node", "make_fleet"]

GiB = 1 << 30
STATES = ("running", "shutoff", "paused", "running")
HANGING_LATENCY_MS = 3_600_000
"""The latency of a hanging host: an hour per call."""
SEED_BLOCK = 64_000
"""The most domains a node may have (250 addresses in each of 256 /24 networks); domain ``i`` of a node
with seed ``s`` has MAC number ``s * SEED_BLOCK + i``."""
MAX_SEED = (1 << 32) // SEED_BLOCK - 1
"""The largest seed whose MACs fit the 32 bits after ``52:54``."""


def _mac(number: int) -> str:
    """``52:54:`` and ``number`` (below 2**32) in four bytes, most significant first."""
    digits = f"{number:08x}"
    return "52:54:" + ":".join(digits[k : k + 2] for k in range(0, len(digits), 2))


def fleet_node(
    host: str,
    domains: int,
    seed: int = 0,
    *,
    base_images: int = 1,
    networks: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A test-driver node description (the JSON of a ``test:///PATH.json`` node file).

    ``domains`` domains named ``{host}-vmNNN``, each with a qcow2 disk on one of ``base_images`` base
    images (domain ``i`` on ``/img/{host}-base{i % base_images}.qcow2``, or ``/img/{host}-base.qcow2``
    when there is one) and one virtio NIC, and a pool ``images`` holding the base images.

    ``seed`` tells nodes apart: two nodes with different seeds (``0..MAX_SEED``) have no domain UUID and
    no MAC in common, and within a node every MAC, UUID and IP address (``10.{seed % 250}.{i // 250}.
    {i % 250 + 1}``) is different. ``networks`` (test-driver network descriptions) become the node's
    networks, with domain ``i``'s NIC on ``networks[i % len(networks)]``; without them the node has the
    test driver's default network, which every NIC is on.
    """
    if not 0 <= domains <= SEED_BLOCK:
        raise ValueError(f"domains must be 0..{SEED_BLOCK}, not {domains}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be 0..{MAX_SEED}, not {seed}")
    if base_images < 1:
        raise ValueError(f"base_images must be at least 1, not {base_images}")
    if networks is not None and not networks:
        raise ValueError("networks must name at least one network (or be None for the default network)")
    bases = [f"{host}-base.qcow2"] if base_images == 1 else [f"{host}-base{b}.qcow2" for b in range(base_images)]
    nic_networks = [str(n["name"]) for n in networks] if networks is not None else ["default"]
    doms = []
    for i in range(domains):
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
                        "backing_chain": [f"/img/{bases[i % base_images]}"],
                    }
                ],
                "nics": [
                    {
                        "mac": _mac(seed * SEED_BLOCK + i),
                        "network": nic_networks[i % len(nic_networks)],
                        "model": "virtio",
                        "ips": [f"10.{seed % 250}.{i // 250}.{i % 250 + 1}"],
                    }
                ],
            }
        )
    node: dict[str, Any] = {
        "host": {"hostname": host, "cpus": 32, "memory_bytes": 128 * GiB},
        "pools": [
            {
                "name": "images",
                "type": "dir",
                "path": "/img",
                "capacity_bytes": 500 * GiB,
                "volumes": [
                    {"name": base, "format": "qcow2", "capacity_bytes": 20 * GiB, "allocation_bytes": GiB}
                    for base in bases
                ],
            }
        ],
        "domains": doms,
    }
    if networks is not None:
        node["networks"] = [dict(n) for n in networks]
    return node


def make_fleet(
    directory: str | Path,
    hosts: int,
    domains: int = 20,
    latency_ms: float = 0.0,
    dead: int = 0,
    hanging: int = 0,
) -> list[str]:
    """Write ``hosts`` node files into ``directory``; the URIs of the fleet, dead and hanging hosts last.

    Host ``h`` is ``fleet_node("host{h:05d}", domains, seed=h + 1)`` and hanging host ``g`` has seed
    ``hosts + 1 + g``, so no two hosts share a MAC or a domain UUID. Also writes ``hosts.txt`` (one URI
    per line) and ``hosts.yaml`` (a ``virtabs inventory --config`` host list) there.
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
        path.write_text(json.dumps(fleet_node(name, 1, hosts + 1 + g)), encoding="utf-8")
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

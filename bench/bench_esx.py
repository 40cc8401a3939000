"""Inventory of 1,000 VMs on vcsim with 5 ms per SOAP call: virtabs-esx vs a hand-written PropertyCollector
script vs the naive pyVmomi loop, and the inventory with the networks added (issue 25). Prints times, ratios
and the SOAP calls each made (counted by vcsim).

    .venv/bin/python bench/bench_esx.py [--vms-per-pool 500] [--delay 5] [--repeat 5]

Needs golang-go, golang-github-vmware-govmomi-dev and openssl (vcsim is built like in the esx tests) and
virtabs-esx installed. The three contenders read the same facts for every VM: name, UUID, power state,
vCPUs, memory, disks (path, capacity) and NICs (MAC, network), and the guest's IP addresses.
The simulator serves a throw-away CA's certificate and every client verifies it.
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backends" / "esx" / "tests"))

from pyVim.connect import Disconnect, SmartConnect  # noqa: E402
from pyVmomi import vim, vmodl  # noqa: E402
from vcsim_harness import Vcsim, missing_tools, running_vcsim  # noqa: E402

import virtabs  # noqa: E402

PC = vmodl.query.PropertyCollector
PROPS = [
    "name",
    "config.uuid",
    "config.template",
    "runtime.powerState",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "config.hardware.device",
    "guest.net",
]


def _devices(devices: list[Any]) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    disks = [(d.backing.fileName, d.capacityInKB * 1024) for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    nics = [
        (
            d.macAddress,
            getattr(d.backing, "deviceName", None) or getattr(getattr(d.backing, "port", None), "portgroupKey", ""),
        )
        for d in devices
        if isinstance(d, vim.vm.device.VirtualEthernetCard)
    ]
    return disks, nics


class HandWritten:
    """The best practice: one ContainerView, one RetrievePropertiesEx for exactly these properties, paging."""

    def __init__(self, si: Any) -> None:
        self.content = si.RetrieveContent()
        self.view: Any = None

    def __call__(self) -> list[dict[str, Any]]:
        if self.view is None:
            self.view = self.content.viewManager.CreateContainerView(
                self.content.rootFolder, [vim.VirtualMachine], True
            )
        traverse = PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=self.view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=PROPS)],
        )
        pc = self.content.propertyCollector
        result = pc.RetrievePropertiesEx(specSet=[spec], options=PC.RetrieveOptions(maxObjects=1000))
        out = []
        while result is not None:
            for oc in result.objects:
                p = {prop.name: prop.val for prop in oc.propSet}
                if p.get("config.template"):
                    continue
                disks, nics = _devices(p.get("config.hardware.device") or [])
                ips = [ip for n in p.get("guest.net") or [] for ip in (n.ipAddress or [])]
                out.append(
                    {
                        "name": p["name"],
                        "uuid": p["config.uuid"],
                        "state": p["runtime.powerState"],
                        "vcpus": p["config.hardware.numCPU"],
                        "memory_mb": p["config.hardware.memoryMB"],
                        "disks": disks,
                        "nics": nics,
                        "ips": ips,
                    }
                )
            result = pc.ContinueRetrievePropertiesEx(token=result.token) if result.token else None
        return out


def naive(si: Any) -> list[dict[str, Any]]:
    """What most scripts do: walk the view and touch attributes (pyVmomi: one Fetch per property access)."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    out = []
    for vm in view.view:
        config = vm.config
        if config.template:
            continue
        disks, nics = _devices(config.hardware.device)
        out.append(
            {
                "name": vm.name,
                "uuid": config.uuid,
                "state": vm.runtime.powerState,
                "vcpus": config.hardware.numCPU,
                "memory_mb": config.hardware.memoryMB,
                "disks": disks,
                "nics": nics,
                "ips": [ip for n in vm.guest.net or [] for ip in (n.ipAddress or [])],
            }
        )
    view.Destroy()
    return out


class Contender:
    """One way of reading the inventory, with what it cost."""

    def __init__(self, label: str, fn: Callable[[], list[Any]]) -> None:
        self.label = label
        self.fn = fn
        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.calls: dict[str, int] = {}
        self.vms = 0

    def run(self, sim: Vcsim) -> None:
        """One timed run; the first one also counts the SOAP calls (on the server) and the VMs."""
        first = not self.walls
        if first:
            sim.reset_calls()
        c0, t0 = time.process_time(), time.perf_counter()
        found = self.fn()
        self.walls.append(time.perf_counter() - t0)
        self.cpus.append(time.process_time() - c0)  # this process only: XML parsing, building records
        if first:
            self.calls, self.vms = sim.calls(), len(found)

    @property
    def wall(self) -> float:
        """Median wall time."""
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        """Median client CPU time."""
        return statistics.median(self.cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms-per-pool", type=int, default=500, help="vcsim -vm (2 pools: 2x VMs)")
    parser.add_argument("--delay", type=int, default=5, help="ms added by vcsim to every SOAP call")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the bulk contenders (median)")
    args = parser.parse_args()
    hint = missing_tools()
    if hint:
        print(hint, file=sys.stderr)
        return 2
    vcsim_args = ("-vm", str(args.vms_per_pool), "-delay", str(args.delay), "-paging")
    with running_vcsim(args=vcsim_args) as sim:
        assert sim.pki is not None
        ctx = ssl.create_default_context(cafile=str(sim.pki.ca))
        uri = f"vpx://{sim.host}:{sim.port}/?cafile={sim.pki.ca}"
        creds = virtabs.Credentials(sim.username, sim.password)
        si = SmartConnect(host=sim.host, port=sim.port, user=sim.username, pwd=sim.password, sslContext=ctx)
        try:
            with virtabs.open(uri, credentials=creds) as conn:
                ours = Contender("virtabs-esx domain_records()", conn.domain_records)
                hand = Contender("hand-written PropertyCollector", HandWritten(si))

                def records_and_networks() -> list[virtabs.DomainRecord]:
                    """What the inventory reads from a host: the records, then the networks for them."""
                    records = conn.domain_records()
                    conn._networks_for_inventory(records)  # attachments from the records: no VM read again
                    return records

                with_nets = Contender("inventory with networks", records_and_networks)
                for _ in range(args.repeat):  # interleaved, so load and simulator warm-up hit all alike
                    ours.run(sim)
                    hand.run(sim)
                    with_nets.run(sim)
            slow = Contender("naive pyVmomi loop", lambda: naive(si))
            slow.run(sim)
        finally:
            Disconnect(si)
    print(f"vcsim: {ours.vms} VMs, {args.delay} ms per SOAP call, TLS verified; median of {args.repeat} (naive: 1 run)")
    for c in (ours, hand, with_nets, slow):
        total = sum(c.calls.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(c.calls.items()))
        print(
            f"  {c.label:32s} {c.wall:8.3f} s (client CPU {c.cpu:6.3f} s)  {c.vms:5d} VMs  {total:5d} SOAP calls ({detail})"
        )
    print(f"ratio virtabs / hand-written: {ours.wall / hand.wall:.2f}x   (target <= 1.1x)")
    print(f"ratio naive / virtabs:        {slow.wall / ours.wall:.1f}x   (target >= 50x)")
    print(f"ratio with networks / without: {with_nets.wall / ours.wall:.2f}x   (issue 25's target <= 1.1x)")
    print(f"client CPU virtabs / hand-written: {ours.cpu / hand.cpu:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

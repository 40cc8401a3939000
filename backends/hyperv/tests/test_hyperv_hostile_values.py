"""Issue 21.1 on Hyper-V: hostile values in every text field, through WinRM into the simulated host.

Every script is a fixed template; the operation's values travel as one base64 JSON argument that the
template decodes into ``$a`` (``_scripts``), so no value can end a PowerShell string. Each definition goes
through the driver, over pywinrm, into the WS-Man simulator's PowerShell interpreter: the host's VM holds
exactly the intended disk paths and switch names, the driver reads them back, and no fragment ever
appeared in a script's text (the values only travelled as data).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER
from virtabs_hyperv_sim import Simulator

MiB = 1 << 20
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]


@pytest.fixture
def conn(sim: Simulator) -> Iterator[virtabs.Connection]:
    c = virtabs.open(
        f"hyperv://127.0.0.1:{sim.port}/?auth=basic&cafile={sim.cafile}", credentials=(sim.username, sim.password)
    )
    yield c
    c.close()


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_every_hostile_value_reaches_the_host_whole(conn: virtabs.Connection, sim: Simulator, fragment: str) -> None:
    path = f"C:\\VMs\\d{fragment}x\\disk {fragment}.vhdx"
    switch = f"vSwitch{fragment}"
    with sim.host.lock:  # a Windows admin may name a switch and a folder anything
        sim.host.add_vhd(path, 64 * MiB)
        sim.host.switches.append(switch)
    name = f"x-+y.z_{HOSTILE_FRAGMENTS.index(fragment)}"
    scripts_before = len(sim.server.scripts)
    spec = DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=(DiskSpec("sda", path, format="vhdx", bus="scsi"),),
        nics=(NicSpec(network=switch, mac="00:15:5d:00:00:01", model=f"synthetic{fragment}"),),
    )
    dom = conn.define_domain(spec)
    try:
        with sim.host.lock:
            (vm,) = [v for v in sim.host.vms.values() if str(v.id) == dom.uuid]
            assert vm.name == name
            assert [d.path for d in vm.drives] == [sim.host.find_file(path).path]  # type: ignore[union-attr]
            assert [a.switch_name for a in vm.adapters] == [switch]
        back = dom.spec()
        assert [n.network for n in back.nics] == [switch]
        assert [d.path for d in back.disks] == [sim.host.find_file(path).path]  # type: ignore[union-attr]
        scripts = sim.server.scripts[scripts_before:]
        assert scripts and not any(
            value in script for script in scripts for value in (path, switch, spec.nics[0].model)
        )
    finally:
        dom.undefine()
        with sim.host.lock:
            sim.host.switches.remove(switch)
    assert not os.path.exists(MARKER)

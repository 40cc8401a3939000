"""Networks (issue 25) on the WS-Man simulator: virtual switches of each type, the adapters on them with their
VLANs, one WinRM command for the whole listing, lookups by name and by switch Id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import virtabs
from virtabs import NetworkKind, NoNetworkError
from virtabs_hyperv_sim import Simulator

MiB = 1 << 20


@pytest.fixture
def conn(sim: Simulator) -> Iterator[virtabs.Connection]:
    c = virtabs.open(
        f"hyperv://127.0.0.1:{sim.port}/?auth=basic&cafile={sim.cafile}", credentials=(sim.username, sim.password)
    )
    yield c
    c.close()


@pytest.fixture
def lab(conn: virtabs.Connection, sim: Simulator) -> Iterator[dict[str, str]]:
    """An external and a private switch, and two VMs with adapters on them (names unique to this test)."""
    tag = uuid.uuid4().hex[:8]
    dmz, lab_sw = f"DMZ-{tag}", f"lab-{tag}"
    with sim.host.lock:
        sim.host.add_switch(dmz, "External", "Intel(R) Ethernet Connection I219-LM")
        sim.host.add_switch(lab_sw, "Private")
    doms = []
    for n, nics in enumerate(
        (
            [{"network": dmz, "mac": "00:15:5d:77:00:01"}, {"network": lab_sw, "mac": "00:15:5d:77:00:02"}],
            [{"network": dmz, "mac": "00:15:5d:77:00:03"}, {"network": "default", "mac": "00:15:5d:77:00:04"}],
        )
    ):
        doms.append(conn.define_domain({"name": f"net-{tag}-{n}", "memory_bytes": 64 * MiB, "vcpus": 1, "nics": nics}))
    with sim.host.lock:  # Set-VMNetworkAdapterVlan -Access -VlanId 40 on the first VM's DMZ adapter
        adapter = next(a for vm in sim.host.vms.values() if vm.name == doms[0].name for a in vm.adapters)
        adapter.vlan_mode, adapter.access_vlan = 1, 40
    yield {"tag": tag, "dmz": dmz, "lab": lab_sw, "first": doms[0].uuid, "second": doms[1].uuid}
    for d in doms:
        d.undefine()
    with sim.host.lock:
        for name in (dmz, lab_sw):
            sim.host.switches.remove(name)
            del sim.host.switch_facts[name]


def test_switches_with_their_adapters_and_vlans(conn: virtabs.Connection, lab: dict[str, str]) -> None:
    nets = {n.name: n.last_info for n in conn.list_networks()}
    dmz = nets[lab["dmz"]]
    assert (dmz.kind, dmz.native_kind, dmz.device) == (
        NetworkKind.EXTERNAL_SWITCH,
        "External",
        "Intel(R) Ethernet Connection I219-LM",
    )
    assert dmz.vlan_ids == (40,) and dmz.id is not None and uuid.UUID(dmz.id)
    assert sorted((a.domain_uuid, a.mac) for a in dmz.attachments) == sorted(
        [(lab["first"], "00:15:5d:77:00:01"), (lab["second"], "00:15:5d:77:00:03")]
    )
    private = nets[lab["lab"]]
    assert (private.kind, private.vlan_ids, private.device) == (NetworkKind.PRIVATE_SWITCH, (), None)
    assert [(a.domain_uuid, a.mac) for a in private.attachments] == [(lab["first"], "00:15:5d:77:00:02")]
    default = nets["Default Switch"]
    assert (default.kind, default.id) == (NetworkKind.INTERNAL_SWITCH, "c08cb7b8-9b3c-408e-8e30-5e16a3aeb444")
    assert (lab["second"], "00:15:5d:77:00:04") in [(a.domain_uuid, a.mac) for a in default.attachments]
    for dom_uuid in (lab["first"], lab["second"]):
        for nic in conn.lookup_domain(dom_uuid).nics():
            assert nic.network in nets
            assert (dom_uuid, nic.mac) in [(a.domain_uuid, a.mac) for a in nets[nic.network].attachments]


def test_lookup_by_name_and_id(conn: virtabs.Connection, lab: dict[str, str]) -> None:
    dmz = conn.lookup_network(lab["dmz"])
    assert dmz.kind == NetworkKind.EXTERNAL_SWITCH and dmz.id is not None
    assert conn.lookup_network(dmz.id.upper()).name == lab["dmz"]
    assert conn.lookup_network(lab["lab"]).info().kind == NetworkKind.PRIVATE_SWITCH
    with pytest.raises(NoNetworkError) as exc:
        conn.lookup_network(f"nope-{lab['tag']}")
    assert exc.value.code == 43


def test_listing_is_one_winrm_command_whatever_the_count(
    conn: virtabs.Connection, sim: Simulator, lab: dict[str, str]
) -> None:
    before = sim.server.commands_run
    first = conn.list_networks()
    assert sim.server.commands_run - before == 1
    extra = [f"more-{lab['tag']}-{i}" for i in range(4)]
    with sim.host.lock:
        for name in extra:
            sim.host.add_switch(name, "Internal")
    try:
        dom = conn.define_domain(
            {"name": f"more-{lab['tag']}", "memory_bytes": 64 * MiB, "vcpus": 1, "nics": [{"network": extra[0]}] * 3}
        )
        before = sim.server.commands_run
        second = conn.list_networks()
        assert sim.server.commands_run - before == 1
        dom.undefine()
    finally:
        with sim.host.lock:
            for name in extra:
                sim.host.switches.remove(name)
                del sim.host.switch_facts[name]
    assert len(second) == len(first) + 4
    assert len(next(n for n in second if n.name == extra[0]).last_info.attachments) == 3

"""Pure translations (no simulator): datastore paths, disk targets, power states, thumbprints."""

from __future__ import annotations

import pytest
from virtabs.spi import DomainState, InvalidArgumentError

from virtabs_esx._paths import datastore_path, domain_state, posix_path, slot_of, target_name
from virtabs_esx._tls import normalise_thumbprint


def test_datastore_paths_both_ways() -> None:
    assert posix_path("[LocalDS_0] web/web.vmdk") == "/vmfs/volumes/LocalDS_0/web/web.vmdk"
    assert posix_path("[LocalDS_0]") == "/vmfs/volumes/LocalDS_0"
    assert datastore_path("/vmfs/volumes/LocalDS_0/web/web.vmdk") == ("LocalDS_0", "[LocalDS_0] web/web.vmdk")
    assert datastore_path("/vmfs/volumes/ds 1") == ("ds 1", "[ds 1]")
    assert datastore_path("[ds] a/b.vmdk") == ("ds", "[ds] a/b.vmdk")
    for bad in ("/srv/x.vmdk", "relative.vmdk", "/vmfs/volumes/", "[unclosed x.vmdk"):
        with pytest.raises(InvalidArgumentError):
            datastore_path(bad)


@pytest.mark.parametrize(
    ("kind", "bus", "unit", "target"),
    [
        ("pvscsi", 0, 0, "vda"),
        ("pvscsi", 0, 6, "vdg"),
        ("pvscsi", 0, 8, "vdh"),  # unit 7 is the controller's own
        ("pvscsi", 0, 15, "vdo"),
        ("pvscsi", 1, 0, "vdp"),
        ("scsi", 0, 1, "sdb"),
        ("ide", 0, 0, "hda"),
        ("ide", 1, 1, "hdd"),
        ("pvscsi", 3, 15, "vdbh"),
    ],
)
def test_targets_round_trip(kind: str, bus: int, unit: int, target: str) -> None:
    assert target_name(kind, bus, unit) == target
    assert slot_of(target) == (kind, bus, unit)


def test_other_controllers_and_bad_targets() -> None:
    assert target_name("sata", 0, 1) == "sata0:1"
    assert slot_of("vdb", "virtio") == ("pvscsi", 0, 1)
    for target, bus in (("xvda", None), ("vda", "scsi"), ("hde", None), ("vdbi", None), ("sda1", None)):
        with pytest.raises(InvalidArgumentError):
            slot_of(target, bus)


def test_power_states() -> None:
    assert domain_state("poweredOn") == DomainState.RUNNING
    assert domain_state("poweredOff") == DomainState.SHUTOFF
    assert domain_state("suspended") == DomainState.SHUTOFF  # stopped, memory on disk: like a managed save
    assert domain_state(None) == DomainState.NOSTATE


def test_thumbprints() -> None:
    digest = bytes(range(32))
    text = ":".join(f"{b:02X}" for b in digest)
    assert normalise_thumbprint(text) == digest
    assert normalise_thumbprint(text.replace(":", "").lower()) == digest
    for bad in ("AB:CD", "zz" * 32, "00" * 20):  # too short, not hex, SHA-1 length
        with pytest.raises(InvalidArgumentError):
            normalise_thumbprint(bad)


def test_port_group_vlans_vcsim_cannot_show() -> None:
    """VLANs as vSphere's data objects carry them (vcsim 0.24.2 keeps a new host port group's spec out of
    config.network.portgroup, and gives a distributed port group no private VLAN)."""
    from pyVmomi import vim

    from virtabs_esx.driver import _dvpg_vlan, _standard_port_group

    def spec(vlan: int, switch: str = "vSwitch0") -> object:
        return vim.host.PortGroup.Specification(name="pg", vlanId=vlan, vswitchName=switch)

    assert _standard_port_group([spec(40), spec(40)]) == ("vSwitch0", (40,), {})
    assert _standard_port_group([spec(0)]) == ("vSwitch0", (), {})
    assert _standard_port_group([spec(40, "vSwitch1"), spec(4095)]) == (
        "vSwitch0",
        (40,),
        {"esx.vswitches": ("vSwitch0", "vSwitch1"), "esx.vlan_trunk": "0-4094"},
    )
    assert _standard_port_group([]) == (None, (), {})
    dvs = vim.dvs.VmwareDistributedVirtualSwitch
    port = dvs.VmwarePortConfigPolicy
    assert _dvpg_vlan(port(vlan=dvs.VlanIdSpec(vlanId=40))) == ((40,), {})
    assert _dvpg_vlan(port(vlan=dvs.VlanIdSpec(vlanId=0))) == ((), {})
    trunk = dvs.TrunkVlanSpec(vlanId=[vim.NumericRange(start=10, end=20), vim.NumericRange(start=30, end=30)])
    assert _dvpg_vlan(port(vlan=trunk)) == ((), {"esx.vlan_trunk": "10-20,30"})
    assert _dvpg_vlan(port(vlan=dvs.PvlanSpec(pvlanId=101))) == ((101,), {"esx.pvlan": True})
    assert _dvpg_vlan(None) == ((), {})

"""libvirt's networks (virNetwork, issue 25) through the bridge: libvirt's test driver, then a real libvirtd.

The ``qemu:///system`` tests define networks and domains with unique names (a random suffix) and
random subnets of 10.0.0.0/8, and undefine them at the end whatever happened; they need libvirtd
(``.ci/run`` starts it): skipped without it, failed under CI.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import virtabs
from virtabs import NetworkKind, NetworkSubnet

from virtabs_libvirt import _xml

from .peers import SYSTEM

# --- the XML mapping (network XML in libvirt's documented format, formatnetwork.html) --------------


def _net(body: str, name: str = "n1") -> str:
    return f"<network><name>{name}</name><uuid>0b7c3a46-2c0b-4b0e-8f41-5d3b7a6f1c21</uuid>{body}</network>"


@pytest.mark.parametrize(
    ("body", "kind", "native", "device"),
    [
        ("<bridge name='virbr9'/>", NetworkKind.ISOLATED, "isolated", "virbr9"),
        ("<forward/><bridge name='virbr9'/>", NetworkKind.NAT, "nat", "virbr9"),
        ("<forward mode='nat'/><bridge name='virbr9'/>", NetworkKind.NAT, "nat", "virbr9"),
        ("<forward mode='route' dev='eth1'/><bridge name='virbr9'/>", NetworkKind.ROUTED, "route", "virbr9"),
        ("<forward mode='open'/><bridge name='virbr9'/>", NetworkKind.ROUTED, "open", "virbr9"),
        ("<forward mode='bridge'/><bridge name='br0'/>", NetworkKind.BRIDGE, "bridge", "br0"),
        ("<forward mode='bridge'><interface dev='eth2'/></forward>", NetworkKind.MACVLAN, "bridge", "eth2"),
        ("<forward mode='vepa' dev='eth3'/>", NetworkKind.MACVLAN, "vepa", "eth3"),
        ("<forward mode='passthrough'><pf dev='eth4'/></forward>", NetworkKind.MACVLAN, "passthrough", "eth4"),
        ("<forward mode='hostdev' managed='yes'><pf dev='eth5'/></forward>", NetworkKind.OTHER, "hostdev", "eth5"),
    ],
)
def test_forward_modes_map_to_kinds(body: str, kind: NetworkKind, native: str, device: str) -> None:
    info = _xml.network_from_xml(_net(body), active=False, autostart=False)
    assert (info.kind, info.native_kind, info.device) == (kind, native, device)
    assert info.id == "0b7c3a46-2c0b-4b0e-8f41-5d3b7a6f1c21"


def test_subnets_vlans_and_gateway() -> None:
    body = (
        "<forward mode='nat'/><bridge name='virbr9'/><vlan trunk='yes'><tag id='40'/><tag id='42'/></vlan>"
        "<portgroup name='dmz'><vlan><tag id='41'/></vlan></portgroup><portgroup name='all'/>"
        "<ip address='192.168.130.1' netmask='255.255.255.0'><dhcp>"
        "<range start='192.168.130.10' end='192.168.130.20'/><range start='192.168.130.30' end='192.168.130.40'/>"
        "</dhcp></ip><ip family='ipv6' address='fd00:1::1' prefix='64'/><ip address='10.1.2.3'/>"
    )
    info = _xml.network_from_xml(_net(body), active=True, autostart=True)
    assert info.vlan_ids == (40, 42, 41)
    assert info.subnets == (
        NetworkSubnet(
            "192.168.130.0/24",
            "192.168.130.1",
            (("192.168.130.10", "192.168.130.20"), ("192.168.130.30", "192.168.130.40")),
        ),
        NetworkSubnet("fd00:1::/64", "fd00:1::1"),
        NetworkSubnet("10.0.0.0/8", "10.1.2.3"),  # no netmask: libvirt's classful default
    )
    assert info.extra["portgroups"] == ("dmz", "all")
    isolated = _xml.network_from_xml(_net("<ip address='10.9.9.1' prefix='24'/>"), active=True, autostart=False)
    assert isolated.subnets == (NetworkSubnet("10.9.9.0/24", None),)  # nothing leaves it: no gateway


def test_nics_name_only_libvirt_networks() -> None:
    domain = (
        "<domain type='test'><name>d</name><devices>"
        "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='n1'/></interface>"
        "<interface type='network'><mac address='52:54:00:00:00:02'/><source network='gone'/></interface>"
        "<interface type='bridge'><mac address='52:54:00:00:00:03'/><source bridge='virbr9'/></interface>"
        "<interface type='bridge'><mac address='52:54:00:00:00:04'/><source bridge='br-own'/></interface>"
        "<interface type='direct'><mac address='52:54:00:00:00:05'/><source dev='eth0' mode='vepa'/></interface>"
        "<interface type='user'><mac address='52:54:00:00:00:06'/></interface>"
        "</devices></domain>"
    )
    keys = _xml.network_keys([_net("<bridge name='virbr9'/>")])
    assert [n.network for n in _xml.nics_from_xml(domain, networks=keys)] == ["n1", None, "n1", None, None, None]
    # the definition as written (a spec read back) keeps what each source names
    assert [n.network for n in _xml.nics_from_xml(domain)] == ["n1", "gone", "virbr9", "br-own", "eth0", "user"]
    assert _xml.bridge_interfaces(domain)


# --- libvirt's test driver -------------------------------------------------------------------------


def test_test_driver_default_network() -> None:
    with virtabs.open("libvirt+test:///default") as conn:
        assert "network" in conn.capabilities.supported
        (default,) = [n.last_info for n in conn.list_networks() if n.name == "default"]
        assert (default.kind, default.native_kind, default.device) == (NetworkKind.NAT, "nat", "virbr0")
        assert default.id == "dd8fe884-6c02-601e-7551-cca97df1c5df"
        assert default.subnets == (
            NetworkSubnet("192.168.122.0/24", "192.168.122.1", (("192.168.122.2", "192.168.122.254"),)),
        )
        assert (default.active, default.autostart) == (True, False)
        test = conn.lookup_domain("test")
        assert [(n.network, n.mac) for n in test.nics()] == [("default", "aa:bb:cc:dd:ee:ff")]
        assert [(a.domain_uuid, a.domain_name, a.mac) for a in default.attachments] == [
            (test.uuid, "test", "aa:bb:cc:dd:ee:ff")
        ]
        assert conn.lookup_network(str(default.id)).last_info == default
        with pytest.raises(virtabs.NoNetworkError) as missing:
            conn.lookup_network("no-such-network")
        assert int(missing.value.code) == 43


def test_nics_of_a_hypervisor_without_network_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt drivers without virNetwork (VIR_ERR_NO_SUPPORT): nics() still answers, with what sources name."""
    with virtabs.open("libvirt+test:///default") as conn:
        native = conn._driver._conn  # libvirt's test driver runs in-process: the virConnect itself
        test = native.lookupByName("test")

        def unsupported(flags: int) -> None:
            test.blockJobInfo("vda", 0)  # libvirt's test driver has no block jobs: a real VIR_ERR_NO_SUPPORT

        monkeypatch.setattr(native, "listAllNetworks", unsupported)
        assert [n.network for n in conn.lookup_domain("test").nics()] == ["default"]
        with pytest.raises(virtabs.NotSupportedError):
            conn.list_networks()


# --- a real libvirtd --------------------------------------------------------------------------------


@pytest.fixture
def names(system: Any) -> Iterator[str]:
    """A unique prefix; every network and domain of this test named with it is removed at the end."""
    import libvirt

    prefix = f"vtne{uuid.uuid4().hex[:6]}"
    yield prefix
    for dom in system.listAllDomains(0):
        if dom.name().startswith(prefix):
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
    for net in system.listAllNetworks(0):
        if net.name().startswith(prefix):
            with contextlib.suppress(libvirt.libvirtError):
                if net.isActive():
                    net.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                net.undefine()


def _domain_xml(name: str, interfaces: str) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os>"
        f"<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{interfaces}</devices></domain>"
    )


def test_system_networks_with_state_subnets_and_attachments(system: Any, names: str) -> None:
    base = f"10.{random.randint(160, 250)}.{random.randint(0, 255)}"
    nat_name, iso_name, bridge = f"{names}-nat", f"{names}-iso", names  # a bridge name has at most 15 characters
    nat = system.networkDefineXML(
        f"<network><name>{nat_name}</name><forward mode='nat'/><bridge name='{bridge}'/>"
        f"<ip address='{base}.1' netmask='255.255.255.0'><dhcp><range start='{base}.100' end='{base}.199'/>"
        "</dhcp></ip></network>"
    )
    nat.create()
    nat.setAutostart(1)
    system.networkDefineXML(
        f"<network><name>{iso_name}</name><ip family='ipv6' address='fd{random.randint(0, 0xFF):02x}:1::1' "
        "prefix='64'/></network>"
    )
    system.defineXML(
        _domain_xml(
            f"{names}-a",
            f"<interface type='network'><mac address='52:54:00:aa:00:01'/><source network='{nat_name}'/></interface>"
            f"<interface type='bridge'><mac address='52:54:00:aa:00:02'/><source bridge='{bridge}'/></interface>"
            f"<interface type='bridge'><mac address='52:54:00:aa:00:03'/><source bridge='{names}x'/></interface>",
        )
    )
    system.defineXML(
        _domain_xml(
            f"{names}-b",
            f"<interface type='network'><mac address='52:54:00:aa:00:04'/><source network='{iso_name}'/></interface>",
        )
    )
    with virtabs.open(f"libvirt+{SYSTEM}") as conn:
        networks = {n.name: n.last_info for n in conn.list_networks()}
        info, iso = networks[nat_name], networks[iso_name]
        assert (info.kind, info.device, info.active, info.autostart) == (NetworkKind.NAT, bridge, True, True)
        assert info.id == nat.UUIDString()
        assert info.subnets == (NetworkSubnet(f"{base}.0/24", f"{base}.1", ((f"{base}.100", f"{base}.199"),)),)
        assert (iso.kind, iso.active, iso.autostart) == (NetworkKind.ISOLATED, False, False)
        assert iso.device is not None  # libvirt names a bridge for it at define time
        assert [s.family for s in iso.subnets] == [6] and iso.subnets[0].gateway is None
        a, b = conn.lookup_domain(f"{names}-a"), conn.lookup_domain(f"{names}-b")
        assert [n.network for n in a.nics()] == [nat_name, nat_name, None]  # the last bridge is no libvirt network
        assert sorted((x.domain_name, x.mac) for x in info.attachments) == [
            (a.name, "52:54:00:aa:00:01"),
            (a.name, "52:54:00:aa:00:02"),
        ]
        assert [(x.domain_uuid, x.mac) for x in iso.attachments] == [(b.uuid, "52:54:00:aa:00:04")]
        records = {r.name: r for r in conn.domain_records()}
        assert [n.network for n in records[a.name].nics] == [nat_name, nat_name, None]
        assert conn.lookup_network(nat.UUIDString()).name == nat_name
        with pytest.raises(virtabs.NoNetworkError):
            conn.lookup_network(f"{names}-missing")


def test_system_network_vlans_and_portgroups(system: Any, names: str) -> None:
    """A network on an Open vSwitch bridge with VLAN tags: defined only (starting it would need OVS)."""
    system.networkDefineXML(
        f"<network><name>{names}-ovs</name><forward mode='bridge'/><bridge name='{names}o'/>"
        "<virtualport type='openvswitch'/><vlan><tag id='40'/></vlan>"
        "<portgroup name='dmz'><vlan><tag id='41'/></vlan></portgroup></network>"
    )
    with virtabs.open(f"libvirt+{SYSTEM}", readonly=True) as conn:
        info = conn.lookup_network(f"{names}-ovs").last_info
    assert (info.kind, info.device, info.vlan_ids, info.active) == (NetworkKind.BRIDGE, f"{names}o", (40, 41), False)
    assert info.extra["portgroups"] == ("dmz",)

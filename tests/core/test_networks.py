"""Networks (issue 25) through the public API on the test driver: listing, lookup, the error, the gate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtabs
import virtabs.aio
from virtabs import (
    Capability,
    ErrorCode,
    InvalidArgumentError,
    NetworkAttachment,
    NetworkInfo,
    NetworkKind,
    NetworkSubnet,
    NoNetworkError,
    NotSupportedError,
)
from virtabs.drivers.test import reset_all_nodes
from virtabs.spi import OPERATIONS, find_network, methods_for, networks_with_attachments

DEFAULT_NET_UUID = "dd8fe884-6c02-601e-7551-cca97df1c5df"
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()


@pytest.fixture
def conn() -> Iterator[virtabs.Connection]:
    with virtabs.open("test:///default") as c:
        yield c


def test_default_node_has_libvirts_default_network(conn: virtabs.Connection) -> None:
    [net] = conn.list_networks()
    info = net.last_info
    assert (net.name, net.id, net.kind) == ("default", DEFAULT_NET_UUID, NetworkKind.NAT)
    assert (info.native_kind, info.device, info.active, info.autostart) == ("nat", "virbr0", True, False)
    assert info.subnets == (NetworkSubnet("192.168.122.0/24", "192.168.122.1", [("192.168.122.2", "192.168.122.254")]),)
    assert info.attachments == (NetworkAttachment(TEST_UUID, "test", "52:54:00:a3:41:7e"),)


def test_lookup_by_name_and_by_id_in_any_case(conn: virtabs.Connection) -> None:
    assert conn.lookup_network("default").id == DEFAULT_NET_UUID
    assert conn.lookup_network(DEFAULT_NET_UUID.upper()).name == "default"
    with pytest.raises(NoNetworkError):
        conn.lookup_network("DEFAULT")  # names are case-sensitive, as libvirt's
    assert conn.lookup_network("default").info() == conn.list_networks()[0].last_info


def test_missing_network_is_error_43(conn: virtabs.Connection) -> None:
    with pytest.raises(NoNetworkError) as caught:
        conn.lookup_network("dmz")
    assert caught.value.code == ErrorCode.NO_NETWORK == 43
    assert "'dmz'" in caught.value.message
    assert isinstance(caught.value, LookupError)
    assert virtabs.spi.error_class_for_code(43) is NoNetworkError


@pytest.mark.parametrize("bad", ["", "br0\nlxc.hook.pre-start=/x", "a\x00b", "x" * 5000, 7])
def test_lookup_refuses_bad_names_before_the_driver(conn: virtabs.Connection, bad: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        conn.lookup_network(bad)  # type: ignore[arg-type]
    assert len(caught.value.message) < 300


def test_refused_when_declared_away() -> None:
    with virtabs.open("test:///default?without=network") as c:
        assert not c.supports("network")
        with pytest.raises(NotSupportedError):
            c.list_networks()
        with pytest.raises(NotSupportedError):
            c.lookup_network("default")


def test_operation_rows_are_reads_of_the_network_capability() -> None:
    for method in ("list_networks", "lookup_network"):
        assert OPERATIONS[method].capability is Capability.NETWORK
        assert not OPERATIONS[method].writes
    assert methods_for(Capability.NETWORK) == ("list_networks",)  # lookup_network has a default


def test_attachments_follow_the_domains_nics(conn: virtabs.Connection) -> None:
    spec = {
        "name": "net-two-nics",
        "memory_bytes": 1 << 30,
        "vcpus": 1,
        "nics": [{"network": "default", "mac": "52:54:00:00:00:aa"}, {"network": "default"}],
    }
    dom = conn.define_domain(spec)
    attached = conn.lookup_network("default").last_info.attachments
    mine = [a for a in attached if a.domain_uuid == dom.uuid]
    assert [a.mac for a in mine] == [nic.mac for nic in dom.nics()]
    assert mine[0].mac == "52:54:00:00:00:aa" and all(a.domain_name == "net-two-nics" for a in mine)
    dom.undefine()
    assert [a.domain_name for a in conn.lookup_network("default").last_info.attachments] == ["test"]


NODE = {
    "networks": [
        {
            "name": "dmz",
            "uuid": "0b3c9a56-8f11-4f3c-9c55-2f1f5d0c0a40",
            "kind": "port_group",
            "native_kind": "HostPortGroup",
            "device": "vSwitch1",
            "vlan_ids": [40],
            "subnets": [{"cidr": "10.40.0.7/24", "gateway": "10.40.0.1"}, {"cidr": "fd00:40::/64"}],
            "active": True,
            "autostart": True,
        },
        {"name": "lan"},
    ],
    "domains": [
        {"name": "web", "memory_bytes": 1 << 30, "vcpus": 1, "nics": [{"mac": "52:54:00:00:00:01", "network": "dmz"}]}
    ],
}


def test_file_node_networks_survive_a_write_back(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(NODE))
    uri = f"test://{path}"
    with virtabs.open(uri) as c:
        before = [n.last_info for n in c.list_networks()]
        c.lookup_domain("web").start()  # a change: the node is written back
    written = json.loads(path.read_text())
    assert [n["name"] for n in written["networks"]] == ["dmz", "lan"]
    reset_all_nodes()
    with virtabs.open(uri) as c:
        after = [n.last_info for n in c.list_networks()]
    assert after == before
    dmz = after[0]
    assert (dmz.kind, dmz.native_kind, dmz.device, dmz.vlan_ids) == (
        NetworkKind.PORT_GROUP,
        "HostPortGroup",
        "vSwitch1",
        (40,),
    )
    assert [s.cidr for s in dmz.subnets] == ["10.40.0.0/24", "fd00:40::/64"]
    assert [s.family for s in dmz.subnets] == [4, 6]
    assert dmz.attachments == (NetworkAttachment(after[0].attachments[0].domain_uuid, "web", "52:54:00:00:00:01"),)
    assert (after[1].kind, after[1].attachments) == (NetworkKind.BRIDGE, ())


@pytest.mark.parametrize(
    ("network", "complaint"),
    [
        ({"name": "x", "kind": "wormhole"}, "unknown network kind 'wormhole'"),
        ({"name": "x", "vlan_ids": [4096]}, "invalid VLAN id 4096"),
        ({"name": "x", "subnets": [{"cidr": "10.0.0.0/33"}]}, "invalid subnet '10.0.0.0/33'"),
        ({"name": "x", "subnets": [{"cidr": "10.0.0.0/8", "dhcp_ranges": [["10.0.0.2"]]}]}, "[first, last] pair"),
        ({"name": "x", "colour": "red"}, "unknown key(s) colour"),
        ({"kind": "nat"}, "a network needs a name"),
    ],
)
def test_node_file_network_errors_name_the_part(tmp_path: Path, network: dict[str, object], complaint: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"networks": [network]}))
    with pytest.raises(InvalidArgumentError) as caught:
        virtabs.open(f"test://{path}")
    assert "networks[0]" in caught.value.message and complaint in caught.value.message


def test_find_network_prefers_a_name_over_an_id() -> None:
    a = NetworkInfo("b0c0ffee-0000-0000-0000-000000000001", None, "bridge", "linux-bridge")
    b = NetworkInfo("lan", "B0C0FFEE-0000-0000-0000-000000000001", "nat", "nat")
    assert find_network([b, a], "b0c0ffee-0000-0000-0000-000000000001") is a
    assert find_network([b], "b0c0ffee-0000-0000-0000-000000000001") is b
    with pytest.raises(NoNetworkError):
        find_network([a, b], "wan")


def test_networks_with_attachments_from_records(conn: virtabs.Connection) -> None:
    bare = [NetworkInfo("default", None, "bridge", "linux-bridge"), NetworkInfo("other", None, "bridge", "x")]
    filled = networks_with_attachments(bare, conn.domain_records())
    assert filled[0].attachments == (NetworkAttachment(TEST_UUID, "test", "52:54:00:a3:41:7e"),)
    assert filled[1].attachments == ()


def test_aio_facade() -> None:
    async def main() -> tuple[list[str], str, NetworkKind]:
        async with await virtabs.aio.open("test:///default") as aconn:
            nets = await aconn.list_networks()
            one = await aconn.lookup_network(DEFAULT_NET_UUID)
            info = await one.info()
            return [n.name for n in nets], info.name, one.kind

    assert asyncio.run(main()) == (["default"], "default", NetworkKind.NAT)

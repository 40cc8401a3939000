"""Networks (issue 25) on the VBoxManage simulator, locally and over the test sshd: every kind VirtualBox has,
the adapters on them, one host call for the whole listing, and lookups by name and by GUID."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from virtabs import NetworkKind, NoNetworkError

SIM = str(Path(__file__).resolve().parent / "vboxmanage_sim" / "VBoxManage")


@pytest.fixture
def conn(any_uri: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(any_uri) as c:
        yield c


def home_of(conn: virtabs.Connection, request: pytest.FixtureRequest) -> Path:
    """The VBOX_USER_HOME the connection's VBoxManage uses (local, or the sshd side's)."""
    if conn.parsed_uri.transport == "ssh":
        return Path(request.getfixturevalue("vbox_sshd").vbox_home)
    return Path(os.environ["VBOX_USER_HOME"])


def sim(home: Path, *args: str) -> str:
    """Run the simulator directly, as a VirtualBox user would set networks up outside virtabs."""
    env = {**os.environ, "VBOX_USER_HOME": str(home)}
    return subprocess.run([SIM, *args], env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def lab(conn: virtabs.Connection, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A host-only interface, a NAT network and two machines with one adapter of each kind (unique names)."""
    home = home_of(conn, request)
    tag = uuid.uuid4().hex[:8]
    created = sim(home, "hostonlyif", "create")
    hostonly = created.split("'")[1]
    natnet = f"nat-{tag}"
    sim(home, "natnetwork", "add", "--netname", natnet, "--network", "10.77.0.0/24", "--enable")
    machines = {}
    for n in (1, 2):
        name = f"net-{tag}-{n}"
        out = sim(home, "createvm", "--name", name, "--register")
        machines[name] = next(line.split()[1] for line in out.splitlines() if line.startswith("UUID:"))
    first, second = machines
    sim(home, "modifyvm", first, "--nic1", "nat", "--macaddress1", "080027000A01",
        "--nic2", "hostonly", "--hostonlyadapter2", hostonly, "--macaddress2", "080027000A02",
        "--nic3", "natnetwork", "--nat-network3", natnet, "--macaddress3", "080027000A03",
        "--nic4", "bridged", "--bridgeadapter4", "eth0", "--macaddress4", "080027000A04")  # fmt: skip
    sim(home, "modifyvm", second, "--nic1", "intnet", "--intnet1", f"dmz-{tag}", "--macaddress1", "080027000B01",
        "--nic2", "natnetwork", "--nat-network2", natnet, "--macaddress2", "080027000B02",
        "--nic3", "null", "--macaddress3", "080027000B03")  # fmt: skip
    yield {"tag": tag, "hostonly": hostonly, "natnet": natnet, "machines": machines, "first": first, "second": second}
    for name in machines:
        sim(home, "unregistervm", name, "--delete")
    sim(home, "natnetwork", "remove", "--netname", natnet)
    sim(home, "hostonlyif", "remove", hostonly)


def test_every_kind_with_the_adapters_on_it(conn: virtabs.Connection, lab: dict[str, Any]) -> None:
    nets = {n.name: n.last_info for n in conn.list_networks()}
    first, second = lab["machines"][lab["first"]], lab["machines"][lab["second"]]

    hostonly = nets[lab["hostonly"]]
    assert (hostonly.kind, hostonly.native_kind, hostonly.device) == (
        NetworkKind.HOST_ONLY,
        "hostonly",
        lab["hostonly"],
    )
    assert hostonly.id is not None and uuid.UUID(hostonly.id)
    assert [s.cidr for s in hostonly.subnets] == [f"192.168.{int(lab['hostonly'][7:]) + 56}.0/24"]
    assert [(a.domain_uuid, a.mac) for a in hostonly.attachments] == [(first, "08:00:27:00:0a:02")]

    natnet = nets[lab["natnet"]]
    assert (natnet.kind, natnet.active) == (NetworkKind.NAT_NETWORK, True)
    assert [(s.cidr, s.gateway) for s in natnet.subnets] == [("10.77.0.0/24", "10.77.0.1")]
    assert sorted((a.domain_name, a.mac) for a in natnet.attachments) == [
        (lab["first"], "08:00:27:00:0a:03"),
        (lab["second"], "08:00:27:00:0b:02"),
    ]

    dmz = nets[f"dmz-{lab['tag']}"]
    assert (dmz.kind, dmz.id, dmz.device) == (NetworkKind.INTERNAL_NETWORK, None, None)
    assert [(a.domain_uuid, a.mac) for a in dmz.attachments] == [(second, "08:00:27:00:0b:01")]

    eth0 = nets["eth0"]  # the simulated host's interface (list bridgedifs)
    assert (eth0.kind, eth0.device, [s.cidr for s in eth0.subnets]) == (NetworkKind.BRIDGE, "eth0", ["192.0.2.0/24"])
    assert (first, "08:00:27:00:0a:04") in [(a.domain_uuid, a.mac) for a in eth0.attachments]

    user = nets["user"]  # the per-machine NAT engine
    assert (user.kind, user.native_kind) == (NetworkKind.USER, "nat")
    assert (first, "08:00:27:00:0a:01") in [(a.domain_uuid, a.mac) for a in user.attachments]

    # every adapter's network is a listed one; the "null" adapter is on none
    for dom_uuid in (first, second):
        nics = conn.lookup_domain(dom_uuid).nics()
        assert all(n.network in nets for n in nics if n.network is not None)
        for nic in nics:
            on = [a for net in nets.values() for a in net.attachments if a.domain_uuid == dom_uuid and a.mac == nic.mac]
            assert len(on) == (0 if nic.network is None else 1)
    assert [n.network for n in conn.lookup_domain(second).nics()] == [f"dmz-{lab['tag']}", lab["natnet"], None]


def test_lookup_by_name_and_guid(conn: virtabs.Connection, lab: dict[str, Any]) -> None:
    by_name = conn.lookup_network(lab["hostonly"])
    assert by_name.kind == NetworkKind.HOST_ONLY and by_name.id is not None
    assert conn.lookup_network(by_name.id.upper()).name == lab["hostonly"]
    assert conn.lookup_network(lab["natnet"]).info().subnets[0].cidr == "10.77.0.0/24"
    with pytest.raises(NoNetworkError) as exc:
        conn.lookup_network(f"nope-{lab['tag']}")
    assert exc.value.code == 43


def test_listing_networks_is_one_host_call_whatever_the_count(
    conn: virtabs.Connection, lab: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    transport = conn._driver._transport  # type: ignore[attr-defined]
    calls: list[list[str]] = []
    real_run = transport.run

    def counting_run(argv: list[str], **kwargs: Any) -> Any:
        calls.append(list(argv))
        return real_run(argv, **kwargs)

    home = home_of(conn, request)
    extra = [f"more-{lab['tag']}-{i}" for i in range(3)]
    transport.run = counting_run
    try:
        before = {n.name for n in conn.list_networks()}
        assert len(calls) == 1, calls
        for name in extra:
            sim(home, "natnetwork", "add", "--netname", name, "--network", "10.78.0.0/24")
        sim(home, "modifyvm", lab["second"], "--nic4", "intnet", "--intnet4", f"{extra[0]}-int")
        calls.clear()
        after = {n.name for n in conn.list_networks()}
        assert len(calls) == 1, calls
    finally:
        transport.run = real_run
        for name in extra:
            sim(home, "natnetwork", "remove", "--netname", name)
    assert after - before == {*extra, f"{extra[0]}-int"}


def test_dhcp_ranges_of_host_only_interfaces_and_nat_networks(
    conn: virtabs.Connection, lab: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    home = home_of(conn, request)
    hostonly = lab["hostonly"]
    prefix = f"192.168.{int(hostonly[7:]) + 56}"
    sim(home, "dhcpserver", "add", "--ifname", hostonly, "--ip", f"{prefix}.2", "--netmask", "255.255.255.0",
        "--lowerip", f"{prefix}.100", "--upperip", f"{prefix}.199", "--enable")  # fmt: skip
    sim(home, "dhcpserver", "add", "--netname", lab["natnet"], "--ip", "10.77.0.3", "--netmask", "255.255.255.0",
        "--lowerip", "10.77.0.10", "--upperip", "10.77.0.20", "--disable")  # fmt: skip
    try:
        nets = {n.name: n.last_info for n in conn.list_networks()}
        (subnet,) = nets[hostonly].subnets
        assert (subnet.cidr, subnet.dhcp_ranges) == (f"{prefix}.0/24", ((f"{prefix}.100", f"{prefix}.199"),))
        assert nets[hostonly].extra["vbox.dhcp_server"] == f"{prefix}.2"
        (nat,) = nets[lab["natnet"]].subnets
        assert (nat.gateway, nat.dhcp_ranges) == ("10.77.0.1", ())  # its server is disabled: it leases nothing
        assert nets[lab["natnet"]].extra["vbox.dhcp_enabled"] is False
        sim(home, "dhcpserver", "modify", "--netname", lab["natnet"], "--enable")
        # the interface readdressed after its server was set up: the server's network is a subnet of its own
        sim(home, "hostonlyif", "ipconfig", hostonly, "--ip", "172.31.9.1", "--netmask", "255.255.255.0")
        nets = {n.name: n.last_info for n in conn.list_networks()}
        assert [(s.cidr, s.dhcp_ranges) for s in nets[hostonly].subnets] == [
            ("172.31.9.0/24", ()),
            (f"{prefix}.0/24", ((f"{prefix}.100", f"{prefix}.199"),)),
        ]
        assert nets[lab["natnet"]].subnets[0].dhcp_ranges == (("10.77.0.10", "10.77.0.20"),)
    finally:
        sim(home, "dhcpserver", "remove", "--ifname", hostonly)
        sim(home, "dhcpserver", "remove", "--netname", lab["natnet"])


def test_virtualbox_7_host_only_networks_on_a_macos_host(vbox_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``list hostonlynets`` (VirtualBox 7 on macOS, simulated with VBOXSIM_VMNET=1) in the same one host call."""
    monkeypatch.setenv("VBOXSIM_VMNET", "1")
    tag = uuid.uuid4().hex[:8]
    net = f"vagrantnet-{tag}"
    sim(vbox_home, "hostonlynet", "add", "--name", net, "--netmask", "255.255.255.0",
        "--lower-ip", "192.168.61.100", "--upper-ip", "192.168.61.150", "--enable")  # fmt: skip
    out = sim(vbox_home, "createvm", "--name", f"hn-{tag}", "--register")
    vm = next(line.split()[1] for line in out.splitlines() if line.startswith("UUID:"))
    sim(vbox_home, "modifyvm", vm, "--nic2", "hostonlynet", "--host-only-net2", net, "--macaddress2", "080027000C02")
    try:
        with virtabs.open("vbox:///session") as conn:
            transport = conn._driver._transport  # type: ignore[attr-defined]
            real_run = transport.run
            calls: list[Any] = []
            transport.run = lambda argv, **kw: calls.append(argv) or real_run(argv, **kw)
            try:
                info = next(n.last_info for n in conn.list_networks() if n.name == net)
            finally:
                transport.run = real_run
            assert len(calls) == 1
            assert conn.lookup_network(info.id).name == net
            assert (info.kind, info.native_kind, info.active) == (NetworkKind.HOST_ONLY, "hostonlynet", True)
            assert info.id is not None and uuid.UUID(info.id)
            assert [(s.cidr, s.dhcp_ranges) for s in info.subnets] == [
                ("192.168.61.0/24", (("192.168.61.100", "192.168.61.150"),))
            ]
            assert [(a.domain_uuid, a.mac) for a in info.attachments] == [(vm, "08:00:27:00:0c:02")]
            assert [n.network for n in conn.lookup_domain(vm).nics()] == [net]
    finally:
        sim(vbox_home, "unregistervm", vm, "--delete")
        sim(vbox_home, "hostonlynet", "remove", "--name", net)

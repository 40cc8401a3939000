"""Issue 25 on qemu:///embed: user-mode networking and the host bridges and taps the NICs are on.

Real host interfaces: each test makes its own bridge and taps with unique names (``ip link add vtb-XXXXXXXX
type bridge``, ``ip tuntap add``) and removes them whatever happens; that needs root (a failure under CI,
a skip elsewhere). The domains are definitions in a fresh root; one test starts a paused QEMU under TCG.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import DomainSpec, NetworkKind, NicSpec, NoNetworkError
from virtabs.spi import IP_ADDR_ARGV, IP_LINK_ARGV, HostIp, HostLink
from virtabs.testing.plugin import in_ci

from virtabs_qemu import _networks
from virtabs_qemu._cmdline import mac_for

MiB = 1 << 20
KIT_NETWORK_TESTS = "virtabs.testing.suite.test_networks"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def links() -> Iterator[list[str]]:
    """Interfaces the test adds to this list are deleted at the end (a bridge after its ports)."""
    reason = None if os.geteuid() == 0 else "creating host bridges and taps needs root"
    if reason is None and shutil.which("ip") is None:
        reason = "iproute2's ip is not installed"
    if reason is not None:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    made: list[str] = []
    yield made
    for name in reversed(made):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _bridge(made: list[str], address: str | None = None) -> str:
    name = f"vtb-{secrets.token_hex(4)}"
    _ip("link", "add", name, "type", "bridge")
    made.append(name)
    if address:
        _ip("addr", "add", address, "dev", name)
    _ip("link", "set", name, "up")
    return name


def _tap(made: list[str], master: str | None = None) -> str:
    name = f"vtt-{secrets.token_hex(4)}"
    _ip("tuntap", "add", "dev", name, "mode", "tap")
    made.append(name)
    if master:
        _ip("link", "set", name, "master", master)
    return name


def _define(conn: virtabs.Connection, name: str, *networks: str, macs: dict[int, str] | None = None) -> virtabs.Domain:
    nics = tuple(NicSpec(network=n, mac=(macs or {}).get(i)) for i, n in enumerate(networks))
    return conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, nics=nics))


def _attachments(net: virtabs.Network) -> list[tuple[str, str, str | None]]:
    return sorted((a.domain_name, a.domain_uuid, a.mac) for a in net.last_info.attachments)


def test_user_bridges_and_taps_are_listed_with_the_nics_on_them(root: Path, links: list[str]) -> None:
    third = secrets.randbelow(250) + 1
    bridge = _bridge(links, f"198.18.{third}.1/24")
    port = _tap(links, master=bridge)  # a tap that is a port of the bridge: its NIC is on the bridge
    lone = _tap(links)  # a tap on no bridge: a network of its own
    gone_bridge, gone_tap = f"vtb-{secrets.token_hex(4)}", f"vtt-{secrets.token_hex(4)}"  # never created
    with virtabs.open(f"qemu:///embed?root={root}&accel=tcg") as conn:
        assert conn.supports("network")
        users = _define(conn, "users", "user", "default", macs={1: "52:54:00:aa:00:01"})
        on_bridge = _define(conn, "on-bridge", f"bridge:{bridge}")
        on_port = _define(conn, "on-port", f"tap:{port}")
        on_lone = _define(conn, "on-lone", f"tap:{lone}", "user")
        strays = _define(conn, "strays", f"bridge:{gone_bridge}", f"tap:{gone_tap}", f"bridge:{lone}")

        networks = conn.list_networks()
        assert [n.name for n in networks] == ["user", *sorted([bridge, lone])]
        by_name = {n.name: n for n in networks}

        user = by_name["user"].last_info
        assert (user.kind, user.native_kind, user.device, user.active) == (NetworkKind.USER, "user", None, True)
        assert [(s.cidr, s.gateway, s.dhcp_ranges) for s in user.subnets] == [
            ("10.0.2.0/24", "10.0.2.2", (("10.0.2.15", "10.0.2.30"),)),
            ("fec0::/64", "fec0::2", ()),
        ]
        assert _attachments(by_name["user"]) == sorted(
            [
                ("users", users.uuid, mac_for(users.uuid, 0)),
                ("users", users.uuid, "52:54:00:aa:00:01"),
                ("on-lone", on_lone.uuid, mac_for(on_lone.uuid, 1)),
            ]
        )

        br = by_name[bridge].last_info
        assert (br.kind, br.native_kind, br.device, br.active) == (NetworkKind.BRIDGE, "linux-bridge", bridge, True)
        assert [s.cidr for s in br.subnets] == [f"198.18.{third}.0/24"]
        assert _attachments(by_name[bridge]) == sorted(
            [
                ("on-bridge", on_bridge.uuid, mac_for(on_bridge.uuid, 0)),
                ("on-port", on_port.uuid, mac_for(on_port.uuid, 0)),
            ]
        )

        tap = by_name[lone].last_info
        assert (tap.kind, tap.native_kind, tap.device, tap.active) == (NetworkKind.OTHER, "tap", lone, False)
        assert _attachments(by_name[lone]) == [("on-lone", on_lone.uuid, mac_for(on_lone.uuid, 0))]

        # every NIC names the listed network it is on, or None (a bridge or tap the host does not have, a
        # tap named as a bridge): the same in nics() and in the bulk records
        expected = {
            "users": ["user", "user"],
            "on-bridge": [bridge],
            "on-port": [bridge],
            "on-lone": [lone, "user"],
            "strays": [None, None, None],
        }
        assert {d.name: [n.network for n in d.nics()] for d in conn.list_domains()} == expected
        assert {r.name: [n.network for n in r.nics] for r in conn.domain_records()} == expected
        assert strays.spec().nics[0].network == f"bridge:{gone_bridge}"  # the definition keeps its word

        assert conn.lookup_network(bridge).last_info == br
        with pytest.raises(NoNetworkError) as missing:
            conn.lookup_network(gone_bridge)
        assert int(missing.value.code) == 43


def test_a_tap_qemu_creates_is_a_network_while_the_domain_runs(root: Path, links: list[str]) -> None:
    tap = f"vtt-{secrets.token_hex(4)}"  # not created by the test: QEMU creates it (as root) and removes it
    links.append(tap)  # in case QEMU is killed without removing it
    with virtabs.open(f"qemu:///embed?root={root}&accel=tcg", timeout=60) as conn:
        dom = _define(conn, "tapped", f"tap:{tap}")
        assert [n.network for n in dom.nics()] == [None]
        assert [n.name for n in conn.list_networks()] == ["user"]
        dom.start(paused=True)
        try:
            assert [n.network for n in dom.nics()] == [tap]
            net = conn.lookup_network(tap)
            assert (net.kind, net.last_info.native_kind) == (NetworkKind.OTHER, "tap")
            assert _attachments(net) == [("tapped", dom.uuid, mac_for(dom.uuid, 0))]
        finally:
            dom.destroy()
        assert [n.network for n in dom.nics()] == [None]
        with pytest.raises(NoNetworkError):
            conn.lookup_network(tap)


def test_listing_costs_two_ip_commands_whatever_the_number_of_networks_and_nics(
    root: Path, links: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    real_run = HostIp.run

    def counted(self: HostIp, argv: tuple[str, ...]) -> str:
        calls.append(tuple(argv))
        return real_run(self, argv)

    def no_sys_reads(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("list_networks read /sys/class/net per interface")

    monkeypatch.setattr(HostIp, "run", counted)
    with virtabs.open(f"qemu:///embed?root={root}&accel=tcg") as conn:
        first = _bridge(links)
        _define(conn, "d0", f"bridge:{first}")
        monkeypatch.setattr(HostLink, "from_sys", no_sys_reads)
        assert [n.name for n in conn.list_networks()] == ["user", first]
        small = list(calls)
        monkeypatch.undo()
        monkeypatch.setattr(HostIp, "run", counted)

        bridges = [first, *(_bridge(links) for _ in range(4))]
        taps = [_tap(links, master=bridges[i]) for i in range(2)] + [_tap(links) for _ in range(2)]
        for i in range(12):
            _define(conn, f"d{i + 1}", f"bridge:{bridges[i % 5]}", f"tap:{taps[i % 4]}", "user")
        monkeypatch.setattr(HostLink, "from_sys", no_sys_reads)
        calls.clear()
        networks = conn.list_networks()
    assert len(networks) == 1 + 5 + 2 and sum(len(n.last_info.attachments) for n in networks) == 1 + 36
    assert calls == small == [IP_LINK_ARGV, IP_ADDR_ARGV]


@pytest.mark.no_qemu
def test_nic_words_name_networks_by_what_the_host_has() -> None:
    host = {
        "br0": HostLink("bridge"),
        "tap0": HostLink("tap", master="br0"),
        "tap1": HostLink("tap"),
        "tap2": HostLink("tap", master="bond0"),
        "bond0": HostLink("other"),
        "eth0": HostLink("other"),
    }
    cases = {
        "user": "user",
        "default": "user",
        "bridge:br0": "br0",
        "bridge:eth0": None,  # not a bridge: QEMU's bridge helper would refuse it
        "bridge:tap1": None,
        "bridge:nope": None,
        "tap:tap0": "br0",  # a port of br0
        "tap:tap1": "tap1",
        "tap:tap2": "tap2",  # its master is no bridge
        "tap:eth0": None,  # not a tap
        "tap:nope": None,
        "bridge:": None,
        "ovs:br0": None,
    }
    assert {word: _networks.network_of_word(word, host.get) for word in cases} == cases


@pytest.mark.no_qemu
def test_sys_class_net_reads_say_bridge_tap_port_or_nothing(tmp_path: Path) -> None:
    """The layout the kernel shows (``/sys/class/net/NAME/bridge/``, ``tun_flags``, the ``master`` link)."""
    (tmp_path / "br0" / "bridge").mkdir(parents=True)
    (tmp_path / "tap0").mkdir()
    (tmp_path / "tap0" / "tun_flags").write_text("0x1802\n")  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, as read here
    (tmp_path / "tap0" / "master").symlink_to("../br0")
    (tmp_path / "tun0").mkdir()
    (tmp_path / "tun0" / "tun_flags").write_text("0x1001\n")  # IFF_TUN: layer 3, not a tap
    (tmp_path / "eth0").mkdir()
    read = {name: HostLink.from_sys(name, str(tmp_path)) for name in ("br0", "tap0", "tun0", "eth0", "x")}
    assert read == {
        "br0": HostLink("bridge"),
        "tap0": HostLink("tap", master="br0"),
        "tun0": HostLink("other"),
        "eth0": HostLink("other"),
        "x": None,
    }
    assert HostLink.from_sys("../etc", str(tmp_path)) is None  # a name, never a path


def test_a_host_without_ip_does_not_declare_network(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = shutil.which("qemu-system-x86_64")
    assert emulator is not None
    monkeypatch.setenv("PATH", str(tmp_path))  # no iproute2 on this "host"
    with virtabs.open(f"qemu:///embed?root={root}&accel=tcg&emulator={emulator}") as conn:
        assert not conn.supports("network") and conn.supports("domain.define")
        with pytest.raises(virtabs.NotSupportedError) as refused:
            conn.list_networks()
        assert int(refused.value.code) == 3


def test_the_kit_network_checks_pass_with_nics_on_every_kind(root: Path, links: list[str]) -> None:
    """The contract kit's TestNetworks (run as a third party runs it) over a root whose NICs are on ``user``, a
    bridge, a tap that is a port of it, a lone tap and on nothing (the kit's own domains have no NIC)."""
    bridge = _bridge(links)
    port, lone = _tap(links, master=bridge), _tap(links)
    uri = f"qemu:///embed?root={root}&accel=tcg"
    with virtabs.open(uri) as conn:
        _define(conn, "k-user", "user", "default")
        _define(conn, "k-bridge", f"bridge:{bridge}", f"tap:{port}")
        _define(conn, "k-taps", f"tap:{lone}", f"bridge:vtb-{secrets.token_hex(4)}")
    kit_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", KIT_NETWORK_TESTS]
    kit = subprocess.run(
        [*kit_argv, f"--virtabs-uri={uri}"],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=300,
    )
    assert kit.returncode == 0 and "4 passed" in kit.stdout, kit.stdout[-3000:] + kit.stderr[-2000:]

"""Issue 25 on real LXC: the host's bridges, macvlan, ``host`` (type none) and ``none`` (empty) networks.

Each test makes its own bridge with a unique name (``ip link add vtb-XXXXXXXX type bridge``) and removes it
whatever happens. Containers live in the session's private lxcpath; the ones virtabs cannot define (macvlan,
type none, a veth without a link) are written as configuration files by hand, as another LXC tool would.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from lxc_helpers import ready_file, wait_for
from virtabs import DomainSpec, NetworkKind, NicSpec, NoNetworkError
from virtabs.spi import IP_ADDR_ARGV, IP_LINK_ARGV, HostIp, HostLink
from virtabs.testing.plugin import in_ci

from virtabs_lxc import _networks
from virtabs_lxc.testing import LxcTarget

MiB = 1 << 20
KIT_NETWORK_TESTS = "virtabs.testing.suite.test_networks"


@pytest.fixture
def bridges() -> Iterator[list[str]]:
    """Bridges the test adds to this list are deleted at the end."""
    if shutil.which("ip") is None:
        if in_ci():
            pytest.fail("iproute2's ip is not installed")
        pytest.skip("iproute2's ip is not installed")
    made: list[str] = []
    yield made
    for name in reversed(made):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _bridge(made: list[str], address: str | None = None) -> str:
    name = f"vtb-{secrets.token_hex(4)}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True)
    made.append(name)
    if address:
        subprocess.run(["ip", "addr", "add", address, "dev", name], check=True, capture_output=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
    return name


def _foreign(lxcpath: str, name: str, *net_lines: str) -> None:
    """A container as another tool leaves it: a configuration file and nothing of virtabs'."""
    directory = Path(lxcpath) / name
    directory.mkdir()
    lines = [f"lxc.uts.name = {name}", f"lxc.rootfs.path = dir:{directory / 'rootfs'}", *net_lines]
    (directory / "config").write_text("\n".join(lines) + "\n")


@pytest.fixture
def containers(lxcpath: str) -> Iterator[list[str]]:
    """Containers (stopped) the test adds to this list are removed from the lxcpath at the end."""
    made: list[str] = []
    yield made
    for name in made:
        shutil.rmtree(Path(lxcpath) / name, ignore_errors=True)


def _attachments(net: virtabs.Network) -> list[tuple[str, str | None]]:
    return sorted(
        ((a.domain_name, a.mac) for a in net.last_info.attachments), key=lambda pair: (pair[0], pair[1] or "")
    )


@pytest.fixture
def target() -> Iterator[LxcTarget]:
    target = LxcTarget()
    yield target
    target.close()


def test_bridges_macvlan_host_and_none_are_listed_with_the_nics_on_them(
    lxcpath: str, bridges: list[str], containers: list[str], target: LxcTarget
) -> None:
    third = secrets.randbelow(250) + 1
    bridge = _bridge(bridges, f"198.18.{third}.1/24")
    unused = _bridge(bridges)  # a bridge of the host no container uses: listed too
    gone = f"vtb-{secrets.token_hex(4)}"  # never created
    names = {key: f"vtn{secrets.token_hex(3)}-{key}" for key in ("veth", "empty", "mac", "none", "loose", "gone")}
    containers.extend(names.values())
    with virtabs.open(f"lxc:///?path={lxcpath}") as conn:
        assert conn.supports("network")
        spec = target.domain_spec(conn, names["veth"])
        veth = conn.define_domain(
            DomainSpec(
                name=spec.name,
                memory_bytes=spec.memory_bytes,
                vcpus=1,
                os_type="exe",
                nics=(NicSpec(network=bridge, mac="00:16:3e:00:00:01"), NicSpec(network=bridge)),
                extra=spec.extra,
            )
        )
        empty = conn.define_domain(target.domain_spec(conn, names["empty"]))  # no NICs: lxc.net.0.type = empty
        _foreign(lxcpath, names["mac"], "lxc.net.0.type = macvlan", f"lxc.net.0.link = {bridge}")
        _foreign(lxcpath, names["none"], "lxc.net.0.type = none")
        _foreign(lxcpath, names["loose"], "lxc.net.0.type = veth")  # a veth on no bridge
        _foreign(lxcpath, names["gone"], "lxc.net.0.type = veth", f"lxc.net.0.link = {gone}")

        networks = conn.list_networks()
        by_name = {n.name: n for n in networks}
        assert {bridge, unused, "host", "none", f"macvlan:{bridge}"} <= set(by_name)
        assert gone not in by_name

        br = by_name[bridge].last_info
        assert (br.kind, br.native_kind, br.device, br.active) == (NetworkKind.BRIDGE, "linux-bridge", bridge, True)
        assert [s.cidr for s in br.subnets] == [f"198.18.{third}.0/24"]
        assert _attachments(by_name[bridge]) == [(names["veth"], None), (names["veth"], "00:16:3e:00:00:01")]
        assert _attachments(by_name[unused]) == []
        mac = by_name[f"macvlan:{bridge}"].last_info
        assert (mac.kind, mac.native_kind, mac.device) == (NetworkKind.MACVLAN, "macvlan", bridge)
        assert _attachments(by_name[f"macvlan:{bridge}"]) == [(names["mac"], None)]
        host, none = by_name["host"].last_info, by_name["none"].last_info
        assert (host.kind, host.native_kind, none.kind, none.native_kind) == (
            NetworkKind.HOST,
            "none",
            NetworkKind.NONE,
            "empty",
        )
        # other tests' containers share the session's lxcpath (and its "none" network): only ours are checked
        ours = set(names.values())
        assert [a for a in _attachments(by_name["host"]) if a[0] in ours] == [(names["none"], None)]
        assert [a for a in _attachments(by_name["none"]) if a[0] in ours] == [(names["empty"], None)]

        expected = {
            names["veth"]: [(bridge, "veth"), (bridge, "veth")],
            names["empty"]: [("none", "empty")],
            names["mac"]: [(f"macvlan:{bridge}", "macvlan")],
            names["none"]: [("host", "none")],
            names["loose"]: [(None, "veth")],
            names["gone"]: [(None, "veth")],
        }
        mine = [d for d in conn.list_domains() if d.name in expected]
        assert {d.name: [(n.network, n.model) for n in d.nics()] for d in mine} == expected
        records = [r for r in conn.domain_records() if r.name in expected]
        assert {r.name: [(n.network, n.model) for n in r.nics] for r in records} == expected
        assert empty.spec().nics == () and veth.spec().nics[0].network == bridge  # definitions unchanged

        assert conn.lookup_network(bridge).last_info.attachments == br.attachments
        with pytest.raises(NoNetworkError) as missing:
            conn.lookup_network(gone)
        assert int(missing.value.code) == 43


def test_a_running_container_on_a_bridge_is_attached_through_its_veth(
    lxcpath: str, bridges: list[str], containers: list[str], target: LxcTarget
) -> None:
    bridge = _bridge(bridges)
    name = f"vtn{secrets.token_hex(3)}-run"
    containers.append(name)
    with virtabs.open(f"lxc:///?path={lxcpath}", timeout=60) as conn:
        spec = target.domain_spec(conn, name)
        dom = conn.define_domain(
            DomainSpec(
                name=name,
                memory_bytes=spec.memory_bytes,
                vcpus=1,
                os_type="exe",
                nics=(NicSpec(network=bridge, mac="00:16:3e:00:00:02"),),
                extra=spec.extra,
            )
        )
        dom.start()
        try:
            wait_for(lambda: ready_file(Path(target.rootfs_for(name))).exists(), 30, "busybox init")
            assert [n.network for n in dom.nics()] == [bridge]
            net = conn.lookup_network(bridge)
            assert _attachments(net) == [(name, "00:16:3e:00:00:02")]
            ports = net.last_info.extra["ports"]
            assert len(ports) == 1 and ports[0].startswith("veth"), ports  # liblxc's host end of the pair
        finally:
            dom.destroy()


def test_listing_costs_two_ip_commands_whatever_the_number_of_networks_and_nics(
    lxcpath: str, bridges: list[str], containers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []
    real_run = HostIp.run

    def counted(self: HostIp, argv: tuple[str, ...]) -> str:
        calls.append(tuple(argv))
        return real_run(self, argv)

    def no_sys_reads(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("list_networks read /sys/class/net per interface")

    monkeypatch.setattr(HostIp, "run", counted)
    monkeypatch.setattr(HostLink, "from_sys", no_sys_reads)
    prefix = f"vtn{secrets.token_hex(3)}"
    containers.extend(f"{prefix}-{i}" for i in range(11))
    with virtabs.open(f"lxc:///?path={lxcpath}") as conn:
        first = _bridge(bridges)
        _foreign(lxcpath, f"{prefix}-0", "lxc.net.0.type = veth", f"lxc.net.0.link = {first}")
        conn.list_networks()
        small = list(calls)
        more = [first, *(_bridge(bridges) for _ in range(4))]
        for i in range(10):
            lines = [f"lxc.net.{n}.type = veth" for n in range(3)]
            lines += [f"lxc.net.{n}.link = {more[(i + n) % 5]}" for n in range(3)]
            _foreign(lxcpath, f"{prefix}-{i + 1}", *lines)
        calls.clear()
        networks = {n.name: n for n in conn.list_networks()}
    assert sum(len(networks[b].last_info.attachments) for b in more) == 1 + 30
    assert calls == small == [IP_LINK_ARGV, IP_ADDR_ARGV]


def test_nic_types_name_networks_by_what_the_host_has() -> None:
    host = {"br0": HostLink("bridge"), "eth0": HostLink("other")}
    cases = {
        ("veth", "br0"): "br0",
        ("veth", "eth0"): None,  # not a bridge
        ("veth", "nope"): None,
        ("veth", None): None,
        ("macvlan", "eth0"): "macvlan:eth0",
        ("macvlan", "br0"): "macvlan:br0",
        ("macvlan", "nope"): None,
        ("ipvlan", "eth0"): "ipvlan:eth0",
        ("phys", "eth0"): None,  # the device leaves the host: on no network the host manages
        ("vlan", "eth0"): None,
        ("none", None): "host",
        ("empty", None): "none",
    }
    got = {key: _networks.network_of(_networks.NicFacts(key[0], key[1], None), host.get) for key in cases}
    assert got == cases


def test_a_host_without_ip_does_not_declare_network(
    lxcpath: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no iproute2 on this "host"
    with virtabs.open(f"lxc:///?path={lxcpath}") as conn:
        assert not conn.supports("network") and conn.supports("domain.define")
        with pytest.raises(virtabs.NotSupportedError) as refused:
            conn.lookup_network("none")
        assert int(refused.value.code) == 3


def test_the_kit_network_checks_pass_with_nics_on_every_kind(
    lxcpath: str, bridges: list[str], containers: list[str]
) -> None:
    """The contract kit's TestNetworks (run as a third party runs it) over the lxcpath with NICs on a bridge,
    macvlan, ``host``, ``none`` and on nothing (the kit's own containers have no NIC of their own)."""
    bridge = _bridge(bridges)
    prefix = f"vtn{secrets.token_hex(3)}"
    kinds = {
        "veth": ("lxc.net.0.type = veth", f"lxc.net.0.link = {bridge}", "lxc.net.0.hwaddr = 00:16:3e:00:00:03"),
        "two": (
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {bridge}",
            "lxc.net.1.type = macvlan",
            f"lxc.net.1.link = {bridge}",
            "lxc.net.2.type = veth",  # on no bridge: None
        ),
        "none": ("lxc.net.0.type = none",),
        "empty": ("lxc.net.0.type = empty",),
    }
    for kind, lines in kinds.items():
        containers.append(f"{prefix}-{kind}")
        _foreign(lxcpath, f"{prefix}-{kind}", *lines)
    kit_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", KIT_NETWORK_TESTS]
    kit = subprocess.run(
        [*kit_argv, f"--virtabs-uri=lxc:///?path={lxcpath}"], capture_output=True, text=True, cwd="/", timeout=300
    )
    assert kit.returncode == 0 and "4 passed" in kit.stdout, kit.stdout[-3000:] + kit.stderr[-2000:]

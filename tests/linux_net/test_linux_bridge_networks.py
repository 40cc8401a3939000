"""``virtabs.spi.bridge_networks_from_ip_json``: Linux bridges from iproute2's JSON (captured, then live)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from virtabs import NetworkInfo, NetworkKind, NetworkSubnet, OperationFailedError
from virtabs.spi import bridge_networks_from_ip_json
from virtabs.testing.plugin import in_ci

HERE = Path(__file__).parent
CAPTURED = HERE / "captured"


def _captured() -> tuple[str, str]:
    return (
        (CAPTURED / "ip-json-details-link-show.json").read_text(),
        (CAPTURED / "ip-json-addr-show.json").read_text(),
    )


def test_captured_bridges_become_networks() -> None:
    virbr7, lxcbr1 = bridge_networks_from_ip_json(*_captured())
    assert (virbr7.name, virbr7.id, virbr7.kind, virbr7.native_kind, virbr7.device) == (
        "virbr7",
        None,
        NetworkKind.BRIDGE,
        "linux-bridge",
        "virbr7",
    )
    assert virbr7.subnets == (NetworkSubnet("192.168.150.0/24"), NetworkSubnet("fd00:150::/64"))
    assert virbr7.active is True  # administratively up, although without carrier
    assert virbr7.autostart is None and virbr7.vlan_ids == () and virbr7.attachments == ()
    assert virbr7.extra["ports"] == ("vnet7", "vnet8")  # the veth and the tap; not the macvlan on it
    assert virbr7.extra["host_addresses"] == ("192.168.150.1/24", "fd00:150::1/64")
    assert virbr7.extra["mac"] == "52:54:00:7a:00:01"
    assert (lxcbr1.name, lxcbr1.active, lxcbr1.subnets, lxcbr1.extra["ports"]) == ("lxcbr1", False, (), ())


def test_link_local_addresses_say_nothing_about_the_network() -> None:
    link, _ = _captured()
    addr = (
        '[{"ifindex":2,"ifname":"virbr7","addr_info":[{"family":"inet6","local":"fe80::5054:ff:fe7a:1",'
        '"prefixlen":64,"scope":"link"},{"family":"inet","local":"10.1.2.3","prefixlen":16,"scope":"global"}]}]'
    )
    virbr7 = bridge_networks_from_ip_json(link, addr)[0]
    assert [s.cidr for s in virbr7.subnets] == ["10.1.0.0/16"]


@pytest.mark.parametrize("bad", ["", 'Object "-json" is unknown', '{"ifname": "br0"}', "[1, 2]"])
def test_output_that_is_not_a_list_of_links_is_an_operation_failure(bad: str) -> None:
    _, addr = _captured()
    with pytest.raises(OperationFailedError) as caught:
        bridge_networks_from_ip_json(bad, addr)
    assert "ip -json -details link show" in caught.value.message


def _unshare_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"no network namespace for this user: {probe.stderr.strip()}"
    return None


def test_live_namespace_matches_the_capture(tmp_path: Path) -> None:
    """The capture script run again now, in a fresh namespace: the same bridges, subnets and ports."""
    missing = _unshare_available()
    if missing:
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    subprocess.run(
        ["unshare", "-rn", "sh", str(HERE / "capture.sh"), str(tmp_path)], check=True, capture_output=True, timeout=60
    )
    live = bridge_networks_from_ip_json(
        (tmp_path / "ip-json-details-link-show.json").read_text(), (tmp_path / "ip-json-addr-show.json").read_text()
    )
    captured = bridge_networks_from_ip_json(*_captured())

    def comparable(nets: list[NetworkInfo]) -> list[tuple[object, ...]]:
        # not the MACs: lxcbr1's is the kernel's random one
        return [(n.name, n.subnets, n.active, n.extra["ports"], n.extra["host_addresses"]) for n in nets]

    assert comparable(live) == comparable(captured)

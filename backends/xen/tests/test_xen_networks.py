"""Networks of the Xen driver on the real lab: the dom0's bridges, a guest's vifs on them, the kit's network tests.

A bridge made for this module in the dom0 (``ip link add ... type bridge``, with an address), made xl's default
bridge by a ``vif.default.bridge`` line added to the dom0's xl.conf for the module (removed after it), and one
running PV guest with one vif without ``bridge=``: xl puts it on the new bridge, ``xl list -l`` leaves its
bridge out, and the driver must say where it is. One vif only: each runs xl's ``vif-bridge`` hotplug script,
which took 30-60 s on the loaded nested lab and made ``xl create`` fail past libxl's timeout with two. What
the driver reports is checked against the dom0's kernel through the lab's own ssh (``ip -json link``), not
through the driver. The fast suite covers the rest from recordings (``test_xen_fast_driver.py``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest
import virtabs
from virtabs import Domain, NetworkKind, NetworkSubnet, NicSpec
from virtabs.spi import CommandResult, CommandTransport
from xen_helpers import Lab

from virtabs_xen.testing import XenTarget

KIT_NETWORK_TESTS = "virtabs.testing.suite.test_networks"
MAC = "00:16:3e:7a:00:01"
XL_CONF = "/etc/xen/xl.conf"


@attrs.frozen
class Netted:
    """The module's bridge and running guest."""

    bridge: str
    dom: Domain
    domid: int


def _dom0_links(xenlab: Lab) -> dict[str, Any]:
    """The dom0's links as its kernel reports them (the lab's ssh: the test's own door)."""
    out = xenlab.ssh("ip -json -details link show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


@pytest.fixture(scope="module")
def netted(xenlab: Lab, conn: virtabs.Connection, target: XenTarget) -> Iterator[Netted]:
    bridge = f"vtn{secrets.token_hex(3)}"
    xenlab.ssh(
        f"ip link add name {bridge} type bridge stp_state 0 forward_delay 0 && "
        f"ip addr add 192.168.93.1/24 dev {bridge} && ip link set {bridge} up && "
        f"cp {XL_CONF} {XL_CONF}.virtabs-test && echo 'vif.default.bridge=\"{bridge}\"' >> {XL_CONF}"
    )
    name = target.new_name("net")
    spec = attrs.evolve(target.domain_spec(conn, name), nics=(NicSpec(network="default", mac=MAC),))
    dom = conn.define_domain(spec)
    try:
        dom.start()
        domid = int(xenlab.ssh(f"xl domid {name}").stdout.strip())
        yield Netted(bridge, dom, domid)
    finally:
        with contextlib.suppress(virtabs.VirtabsError):
            dom.destroy()
        dom.undefine()
        xenlab.ssh(f"mv {XL_CONF}.virtabs-test {XL_CONF}; ip link del {bridge}", check=False)


def test_the_guest_vifs_are_on_the_bridges_the_dom0_kernel_shows(
    xenlab: Lab, conn: virtabs.Connection, netted: Netted
) -> None:
    links = _dom0_links(xenlab)
    assert links[f"vif{netted.domid}.0"].get("master") == netted.bridge  # xl.conf's vif.default.bridge
    assert [(n.network, n.mac) for n in netted.dom.nics()] == [(netted.bridge, MAC)]
    networks = {n.name: n.last_info for n in conn.list_networks()}
    bridges = {name for name, link in links.items() if (link.get("linkinfo") or {}).get("info_kind") == "bridge"}
    assert set(networks) == bridges and {"xenbr0", netted.bridge} <= bridges
    mine = networks[netted.bridge]
    assert (mine.kind, mine.device, mine.active, mine.subnets) == (
        NetworkKind.BRIDGE,
        netted.bridge,
        True,
        (NetworkSubnet("192.168.93.0/24"),),
    )
    assert mine.extra["ports"] == (f"vif{netted.domid}.0",)
    assert [(a.domain_uuid, a.domain_name, a.mac) for a in mine.attachments] == [
        (netted.dom.uuid, netted.dom.name, MAC)
    ]
    assert conn.lookup_network(netted.bridge).info().attachments == mine.attachments


def test_the_kit_attachment_test_passes_on_the_lab(xenlab: Lab, netted: Netted) -> None:
    """The kit's attachment check, which the guest's vif makes observable (``test_xen_contract.py`` runs the
    kit's other network tests, where no domain has a NIC and this one is "not observable")."""
    kit = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            KIT_NETWORK_TESTS,
            "-k",
            "attachments",
            f"--virtabs-uri={xenlab.uri()}",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=600,
    )
    assert kit.returncode == 0 and "1 passed, 3 deselected" in kit.stdout, kit.stdout[-3000:] + kit.stderr[-2000:]


def test_listing_is_one_round_trip_whatever_the_number_of_domains_and_vifs(
    conn: virtabs.Connection, target: XenTarget, netted: Netted, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver_transport = conn._driver._t  # type: ignore[attr-defined]
    runs: list[Sequence[str]] = []
    real_run = CommandTransport.run

    def counted(self: CommandTransport, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if self is driver_transport:
            runs.append(argv)
        return real_run(self, argv, **kwargs)

    monkeypatch.setattr(CommandTransport, "run", counted)
    small = conn.list_networks()
    first = len(runs)
    defined = []
    try:
        for i in range(4):
            name = target.new_name("netdef")
            nics = tuple(NicSpec(network=net) for net in ("xenbr0", netted.bridge, "default")[: 1 + i % 3])
            # shut off: "default" is xl.conf's bridge here, netted.bridge
            defined.append(conn.define_domain(attrs.evolve(target.domain_spec(conn, name), nics=nics)))
        runs.clear()
        large = conn.list_networks()
        second = len(runs)
    finally:
        for dom in defined:
            dom.undefine()
    attached = sum(len(n.last_info.attachments) for n in large) - sum(len(n.last_info.attachments) for n in small)
    assert attached == 1 + 2 + 3 + 1
    assert second == first == 1


def test_net_list_on_the_command_line(xenlab: Lab, netted: Netted) -> None:
    """``virtabs net-list --json`` against the lab: the core's CLI over the driver."""
    cli = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from virtabs.cli import main; sys.exit(main())",
            "-c",
            xenlab.uri(),
            "net-list",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    listed = {n["name"]: n for n in json.loads(cli.stdout)}
    assert {"xenbr0", netted.bridge} <= set(listed)
    assert listed[netted.bridge]["kind"] == "bridge"

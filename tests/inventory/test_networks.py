"""Networks in the inventory (issue 25): the document (schema v2), every format, --diff, and the call count."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import virtabs
import virtabs.inventory as inv
from virtabs.testing.fleet import fleet_node
from virtabs.testing.recorder import CallRecorder

from .conftest import BASE_IMAGES, DriverCalls

DMZ = {
    "name": "dmz",
    "uuid": "0b3c9a56-8f11-4f3c-9c55-2f1f5d0c0a40",
    "kind": "port_group",
    "native_kind": "HostPortGroup",
    "device": "vSwitch1",
    "vlan_ids": [40],
    "subnets": [{"cidr": "10.40.0.0/24", "gateway": "10.40.0.1"}],
}


def _with_networks(host: str, domains: int, seed: int, extra_networks: int = 0) -> dict[str, Any]:
    """A ``fleet_node`` with networks ``default``, ``dmz`` and ``extra_networks`` isolated ones, the NICs
    spread over them in that order (with no extra network, every odd domain's NIC is on ``dmz``)."""
    networks = [
        {"name": "default", "kind": "nat", "device": "virbr0", "subnets": [{"cidr": "192.168.122.0/24"}]},
        DMZ,
        *({"name": f"spare{i}", "kind": "isolated"} for i in range(extra_networks)),
    ]
    return fleet_node(host, domains, seed, base_images=BASE_IMAGES, networks=networks)


@pytest.fixture
def two_networks(make_node: Callable[..., str]) -> str:
    return make_node("netted", description=_with_networks("netted", 4, seed=7))


def test_hosts_carry_their_networks_and_the_document_validates(two_networks: str) -> None:
    result = inv.collect([two_networks, "test:///default?without=network"])
    doc = result.to_dict()
    inv.validate(doc)
    assert doc["schema_version"] == 3
    netted, bare = doc["hosts"]
    assert [n["name"] for n in netted["networks"]] == ["default", "dmz"]
    dmz = netted["networks"][1]
    assert (dmz["kind"], dmz["native_kind"], dmz["device"], dmz["vlan_ids"]) == (
        "port_group",
        "HostPortGroup",
        "vSwitch1",
        [40],
    )
    assert dmz["subnets"] == [{"cidr": "10.40.0.0/24", "gateway": "10.40.0.1", "dhcp_ranges": []}]
    on_dmz = sorted((d["uuid"], d["nics"][0]["mac"]) for d in netted["domains"] if d["nics"][0]["network"] == "dmz")
    assert sorted((a["domain_uuid"], a["mac"]) for a in dmz["attachments"]) == on_dmz and len(on_dmz) == 2
    assert "networks" not in netted["field_errors"]
    assert bare["networks"] is None
    assert bare["field_errors"]["networks"] == "NO_SUPPORT: the test driver does not list networks"


def test_listing_networks_costs_one_driver_call_whatever_the_numbers(
    make_node: Callable[..., str], driver_calls: DriverCalls
) -> None:
    small = make_node("few", description=_with_networks("few", 2, seed=1))
    large = make_node("many", description=_with_networks("many", 200, seed=2, extra_networks=100))
    result = inv.collect([small, large])
    assert [len(h.networks or ()) for h in result.hosts] == [2, 102]
    assert driver_calls.of("list_networks") == {small: 1, large: 1}
    assert driver_calls.of("lookup_network") == {}
    for uri, networks in ((small, 2), (large, 102)):
        with virtabs.open(uri) as conn, CallRecorder(conn._driver) as calls:
            assert len(conn.list_networks()) == networks
            assert sum(len(n.last_info.attachments) for n in conn.list_networks()) == (2 if networks == 2 else 200)
        assert calls.count() == 2  # two listings, nothing per network or per NIC


def test_csv_ansible_openmetrics_and_table(two_networks: str) -> None:
    result = inv.collect([two_networks])
    rows = list(csv.DictReader(io.StringIO(inv.render(result, "csv"))))
    assert list(rows[0])[-2:] == ["network_kinds", "vlan_ids"]
    by_network = {(r["networks"], r["network_kinds"], r["vlan_ids"]) for r in rows}
    assert by_network == {("default", "nat", ""), ("dmz", "port_group", "40")}
    ansible = json.loads(inv.render(result, "ansible"))
    dmz_names = sorted(d.name for _, d in result.domains() if d.nics[0].network == "dmz")
    assert sorted(ansible["network_dmz"]["hosts"]) == dmz_names == sorted(ansible["vlan_40"]["hosts"])
    assert len(ansible["network_default"]["hosts"]) == 2
    metrics = inv.render(result, "openmetrics")
    assert (
        'virtabs_network_domains{host_uri="' + two_networks + '",host="netted",network="dmz",kind="port_group"} 2'
        in (metrics)
    )
    table = inv.render(result, "table")
    assert "Networks" in table and "port_group" in table and "10.40.0.0/24" in table


def test_diff_reports_network_changes(two_networks: str, tmp_path: Path) -> None:
    before = inv.collect([two_networks]).to_dict()
    after = copy.deepcopy(before)
    networks = after["hosts"][0]["networks"]
    networks[1]["vlan_ids"] = [41]
    networks.append({**networks[0], "name": "lab", "id": None, "attachments": []})
    del networks[0]
    changes = inv.diff(before, after).hosts_changed[0]["changes"]
    assert {(c["field"], c["change"]) for c in changes} == {
        ("networks.dmz.vlan_ids", "modified"),
        ("networks.default", "removed"),
        ("networks.lab", "added"),
    }
    text = inv.diff(before, after).to_text()
    assert "~ host " + two_networks + ": networks.dmz.vlan_ids: [40] -> [41]" in text
    # a schema version 1 document has no networks: compared with version 2, no network changes
    old = copy.deepcopy(before)
    old["schema_version"] = 1
    for host in old["hosts"]:
        del host["networks"]
        host["field_errors"].pop("networks", None)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    assert not inv.diff(inv.load_inventory(path), before).has_changes

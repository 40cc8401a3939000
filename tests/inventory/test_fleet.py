"""The simulated fleet: the test driver's test-only ``latency_ms`` and ``forget`` parameters, and the
generator of node files (virtabs.testing.fleet)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

import virtabs
import virtabs.drivers.test as test_driver
import virtabs.inventory as inv
from virtabs.testing.fleet import HANGING_LATENCY_MS, MAX_SEED, SEED_BLOCK, fleet_node, make_fleet
from virtabs.testing.plugin import in_ci

MAC = re.compile(r"52:54(:[0-9a-f]{2}){4}")


def test_latency_ms_sleeps_before_connecting_and_every_host_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(test_driver.time, "sleep", slept.append)
    (uri,) = make_fleet(tmp_path, hosts=1, domains=2, latency_ms=20)
    with virtabs.open(uri, readonly=True) as conn:
        assert slept == [0.02]  # the connection's round trip
        conn.host_info()
        assert slept == [0.02, 0.02]
        records = conn.domain_records()
        assert len(records) == 2
        assert slept == [0.02] * 3  # one bulk call for every domain
    with virtabs.open("test:///default", readonly=True) as conn:
        conn.host_info()
    assert slept == [0.02] * 3  # no parameter, no latency


@pytest.mark.parametrize("value", ["-1", "x", "nan", "inf"])
def test_latency_ms_must_be_a_non_negative_number(value: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="latency_ms"):
        virtabs.open(f"test:///default?latency_ms={value}")


def test_forget_drops_the_node_when_its_last_connection_closes(tmp_path: Path) -> None:
    (uri,) = make_fleet(tmp_path, hosts=1, domains=1)
    assert uri.endswith("?forget=1")
    first = virtabs.open(uri, readonly=True)
    second = virtabs.open(uri, readonly=True)
    node = test_driver.get_node(uri)
    first.close()
    assert test_driver.get_node(uri) is node  # one connection still open
    second.close()
    assert test_driver.get_node(uri) is not node  # read again from the file
    kept = tmp_path / "kept.json"
    kept.write_text((tmp_path / "host00000.json").read_text())
    with virtabs.open(f"test://{kept}", readonly=True):
        node = test_driver.get_node(f"test://{kept}")
    assert test_driver.get_node(f"test://{kept}") is node  # without forget=1 the process keeps it


def test_fleet_has_dead_and_hanging_hosts_reported_not_fatal(tmp_path: Path) -> None:
    uris = make_fleet(tmp_path, hosts=4, domains=3, dead=1, hanging=1)
    assert (tmp_path / "hosts.txt").read_text().split() == uris
    assert f"latency_ms={HANGING_LATENCY_MS}" in uris[-1]
    result = inv.collect(uris, timeout=2, concurrency=8)
    by_uri = {h.uri: h for h in result.hosts}
    assert [h.ok for h in result.hosts] == [True] * 4 + [False, False]
    assert by_uri[uris[4]].error is not None and by_uri[uris[4]].error.code_name == "NO_CONNECT"
    assert by_uri[uris[5]].error is not None and by_uri[uris[5]].error.code_name == "OPERATION_TIMEOUT"
    assert result.domain_count == 12
    hosts, _settings = inv.load_hosts_file(tmp_path / "hosts.yaml")
    assert [h.uri for h in hosts] == uris


def test_a_host_that_never_answers_on_the_network_is_reported_and_the_fleet_is_not_held_up(
    tmp_path: Path,
) -> None:
    """A real TCP peer that accepts and never answers (a loopback listener), among simulated hosts."""
    try:
        import virtabs_docker  # noqa: F401  (the docker+tcp driver)
    except ImportError:
        if in_ci():
            raise
        pytest.skip("needs the docker backend (virtabs-docker)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        silent = f"docker+tcp://127.0.0.1:{port}?tls=0"
        uris = make_fleet(tmp_path, hosts=3, domains=2)
        result = inv.collect([*uris, silent], timeout=2, call_timeout=60)  # the run's deadline, not the socket's
    finally:
        listener.close()
    assert [h.ok for h in result.hosts] == [True, True, True, False]
    error = result.hosts[3].error
    assert error is not None and error.code_name == "OPERATION_TIMEOUT", error
    assert result.domain_count == 6


def _macs_uuids_ips(node: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    domains = node["domains"]
    return (
        [d["nics"][0]["mac"] for d in domains],
        [d["uuid"] for d in domains],
        [d["nics"][0]["ips"][0] for d in domains],
    )


def _well_formed(mac: str, ip: str) -> bool:
    octets = [int(o) for o in ip.split(".")]
    return bool(MAC.fullmatch(mac)) and len(octets) == 4 and octets[0] == 10 and octets[2] < 256 and 0 < octets[3] < 255


@pytest.mark.parametrize(("seeds", "domains"), [((1, 2), 1_001), ((MAX_SEED - 1, MAX_SEED), SEED_BLOCK)])
def test_fleet_node_macs_and_uuids_differ_between_seeds_and_ips_within_a_node(
    seeds: tuple[int, int], domains: int
) -> None:
    """More than 1,000 domains (a seed * 1,000 MAC formula collides there), and the largest seeds and node
    (where MACs must still fit in six bytes and IP octets in a byte)."""
    first, second = (_macs_uuids_ips(fleet_node(f"h{s}", domains, s)) for s in seeds)
    for macs, uuids, ips in (first, second):
        assert len(set(macs)) == len(set(uuids)) == len(set(ips)) == domains
        assert all(_well_formed(mac, ip) for mac, ip in zip(macs, ips, strict=True))
    assert not set(first[0]) & set(second[0])
    assert not set(first[1]) & set(second[1])


@pytest.mark.parametrize("base_images", [1, 3])
def test_fleet_node_spreads_the_disks_over_its_base_images_which_the_pool_holds(
    tmp_path: Path, base_images: int
) -> None:
    path = tmp_path / "based.json"
    path.write_text(json.dumps(fleet_node("based", 6, seed=5, base_images=base_images)))
    host = inv.collect([f"test://{path}"]).to_dict()["hosts"][0]
    volumes = [v["name"] for v in host["pools"][0]["volumes"]]
    expected = ["based-base.qcow2"] if base_images == 1 else [f"based-base{b}.qcow2" for b in range(base_images)]
    assert volumes == expected
    chains = {d["name"]: d["disks"][0]["backing_chain"] for d in host["domains"]}
    assert chains == {f"based-vm{i:03d}": [f"/img/{expected[i % base_images]}"] for i in range(6)}


def test_fleet_node_puts_the_nics_on_its_networks_in_turn(tmp_path: Path) -> None:
    networks = [{"name": "default", "kind": "nat"}, {"name": "lab", "kind": "isolated"}, {"name": "dmz"}]
    path = tmp_path / "netted.json"
    path.write_text(json.dumps(fleet_node("netted", 7, seed=3, networks=networks)))
    with virtabs.open(f"test://{path}", readonly=True) as conn:
        attached = {n.name: len(n.last_info.attachments) for n in conn.list_networks()}
    assert attached == {"default": 3, "lab": 2, "dmz": 2}
    plain = fleet_node("plain", 3, seed=4)
    assert "networks" not in plain and {d["nics"][0]["network"] for d in plain["domains"]} == {"default"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"domains": SEED_BLOCK + 1}, "domains"),
        ({"domains": -1}, "domains"),
        ({"seed": MAX_SEED + 1}, "seed"),
        ({"seed": -1}, "seed"),
        ({"base_images": 0}, "base_images"),
        ({"networks": []}, "networks"),
    ],
)
def test_fleet_node_refuses_what_would_repeat_a_mac_or_break_the_node(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fleet_node("bad", **{"domains": 1, **arguments})


def test_no_two_hosts_of_a_fleet_share_a_mac_or_a_domain_uuid(tmp_path: Path) -> None:
    make_fleet(tmp_path, hosts=3, domains=4, hanging=2)
    nodes = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(nodes) == 5
    macs = [m for node in nodes for m in _macs_uuids_ips(node)[0]]
    uuids = [u for node in nodes for u in _macs_uuids_ips(node)[1]]
    assert len(macs) == len(set(macs)) == len(uuids) == len(set(uuids)) == 3 * 4 + 2

"""The engines' networks (issue 25) on the real engines: a private dockerd and a private podman.

Every network is made here with a unique name, a unique bridge device and a random /24 of 10.0.0.0/8
(``Subnet``, ``Gateway``, ``IPRange``), and removed at the end of its test whatever happened.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import virtabs
from docker_helpers import SLEEPER, Engine, RequestCounter
from virtabs import NetworkKind, NetworkSubnet


@pytest.fixture
def conn(engine: Engine) -> Iterator[virtabs.Connection]:
    with virtabs.open(engine.uri) as c:
        yield c
    engine.remove_all_containers()


@pytest.fixture
def client(engine: Engine) -> Iterator[Any]:
    """The engine's SDK client; every network whose name starts with this test's prefix is removed at the end."""
    c = engine.client()
    c.prefix = f"vtne{uuid.uuid4().hex[:6]}"
    try:
        yield c
    finally:
        engine.remove_all_containers()
        for net in c.api.networks():
            if str(net.get("Name", "")).startswith(c.prefix):
                with contextlib.suppress(Exception):
                    c.api.remove_network(net["Id"])
        c.close()


def _subnet() -> tuple[str, str]:
    """A random 10.X.Y.0/24 and its .1 (another engineer's test picks another one)."""
    base = f"10.{random.randint(160, 250)}.{random.randint(0, 255)}"
    return f"{base}.0/24", f"{base}.1"


def _network(client: Any, suffix: str, *, internal: bool = False, ip_range: str | None = None) -> tuple[str, str, str]:
    """A bridge network named PREFIX-SUFFIX on a bridge device of that name; its name, id and subnet."""
    name = f"{client.prefix}{suffix}"
    cidr, gateway = _subnet()
    pool: dict[str, str] = {"Subnet": cidr, "Gateway": gateway}
    if ip_range is not None:
        pool["IPRange"] = cidr.replace(".0/24", ip_range)
    created = client.api.create_network(
        name,
        driver="bridge",
        internal=internal,
        ipam={"Driver": "default", "Config": [pool]},
        options={"com.docker.network.bridge.name": name},
    )
    return name, str(created["Id"]), cidr


def _container(engine: Engine, client: Any, name: str, network: str) -> str:
    hc = client.api.create_host_config(network_mode=network)
    return str(client.api.create_container(engine.image, command=list(SLEEPER), name=name, host_config=hc)["Id"])


def test_networks_with_kinds_subnets_and_attachments(engine: Engine, conn: virtabs.Connection, client: Any) -> None:
    nat_name, nat_id, nat_cidr = _network(client, "n", ip_range=".128/25")
    iso_name, iso_id, iso_cidr = _network(client, "i", internal=True)
    running = f"{client.prefix}-run"
    stopped = f"{client.prefix}-stop"
    _container(engine, client, running, nat_name)
    _container(engine, client, stopped, iso_name)
    client.api.start(running)

    networks = {n.name: n for n in conn.list_networks()}
    nat, iso = networks[nat_name].last_info, networks[iso_name].last_info
    assert (nat.kind, nat.native_kind, nat.device, nat.id) == (NetworkKind.NAT, "bridge", nat_name, nat_id)
    assert (iso.kind, iso.native_kind, iso.device, iso.id) == (NetworkKind.ISOLATED, "bridge", iso_name, iso_id)
    base = nat_cidr.removesuffix(".0/24")
    first = f"{base}.129" if engine.kind == "podman" else f"{base}.128"  # Podman leases from the range's 2nd address
    assert nat.subnets == (NetworkSubnet(nat_cidr, f"{base}.1", ((first, f"{base}.254"),)),)
    assert iso.subnets == (NetworkSubnet(iso_cidr, iso_cidr.replace(".0/24", ".1")),)
    assert (nat.active, nat.autostart) == (True, None)

    running_dom, stopped_dom = conn.lookup_domain(running), conn.lookup_domain(stopped)
    (nic,) = running_dom.nics()
    assert nic.network == nat_name and nic.mac is not None and nic.ips[0].startswith(base)
    assert [(a.domain_uuid, a.domain_name, a.mac) for a in nat.attachments] == [(running_dom.uuid, running, nic.mac)]
    (stopped_nic,) = stopped_dom.nics()
    assert stopped_nic.network == iso_name
    assert [(a.domain_uuid, a.domain_name, a.mac) for a in iso.attachments] == [
        (stopped_dom.uuid, stopped, stopped_nic.mac)
    ]
    # every NIC of every container names a listed network, and the inventory's NICs say the same
    for record in conn.domain_records():
        for n in record.nics:
            assert n.network in networks, (record.name, n)

    assert conn.lookup_network(nat_name).last_info == nat
    assert conn.lookup_network(nat_id).last_info.name == nat_name
    with pytest.raises(virtabs.NoNetworkError) as missing:
        conn.lookup_network(f"{client.prefix}-missing")
    assert int(missing.value.code) == 43


def test_listing_networks_is_two_engine_calls(engine: Engine, conn: virtabs.Connection, client: Any) -> None:
    network_list = "GET /v4.0.0/libpod/networks/json" if engine.kind == "podman" else "GET /v1.41/networks"
    for size, total in ((1, 1), (4, 5)):
        for i in range(size):
            name, _, _ = _network(client, f"{size}x{i}")
            for j in range(2):
                _container(engine, client, f"{name}-c{j}", name)
        with RequestCounter(conn._driver._api) as listing:
            networks = conn.list_networks()
        mine = [n for n in networks if n.name.startswith(client.prefix)]
        assert len(mine) == total and all(len(n.last_info.attachments) == 2 for n in mine)
        assert sorted(p.split("?")[0] for p in listing.paths) == ["GET /v1.41/containers/json", network_list], (
            listing.paths
        )


def test_docker_host_and_none_networks(dockerd: Engine) -> None:
    client = dockerd.client()
    name = f"vtne{uuid.uuid4().hex[:6]}"
    try:
        _container(dockerd, client, f"{name}-host", "host")
        _container(dockerd, client, f"{name}-none", "none")
        with virtabs.open(dockerd.uri) as conn:
            networks = {n.name: n.last_info for n in conn.list_networks()}
            host_dom = conn.lookup_domain(f"{name}-host")
            none_dom = conn.lookup_domain(f"{name}-none")
            assert (networks["host"].kind, networks["none"].kind) == (NetworkKind.HOST, NetworkKind.NONE)
            assert [n.network for n in host_dom.nics()] == ["host"]
            assert host_dom.uuid in {a.domain_uuid for a in networks["host"].attachments}
            assert none_dom.nics() == [] and networks["none"].attachments == ()
    finally:
        dockerd.remove_all_containers()
        client.close()


def test_podman_default_network_is_listed_under_the_name_its_containers_use(podman: Engine) -> None:
    """Podman's compatible network list calls its default network ``bridge``; its containers say ``podman``."""
    client = podman.client()
    name = f"vtne{uuid.uuid4().hex[:6]}"
    try:
        client.api.create_container(podman.image, command=list(SLEEPER), name=name)  # the default network
        with virtabs.open(podman.uri) as conn:
            (nic,) = conn.lookup_domain(name).nics()
            default = conn.lookup_network(str(nic.network)).last_info
            assert default.name == "podman" and default.kind == NetworkKind.NAT
            assert default.device is not None and default.device.startswith("cni-podman")
            assert name in {a.domain_name for a in default.attachments}
    finally:
        podman.remove_all_containers()
        client.close()

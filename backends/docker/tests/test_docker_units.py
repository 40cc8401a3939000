"""Pure parts of the Docker driver: URIs, spec mapping, states, UUIDs, event translation and the named-volume
records (no engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from virtabs import (
    Capability,
    DomainSpec,
    DomainState,
    LifecycleEventType,
    NetworkAttachment,
    NetworkKind,
    NetworkSubnet,
    NicSpec,
)

from virtabs_docker._networks import docker_network_records, libpod_network_records, network_kind
from virtabs_docker._spec import UUID_LABEL, SpecError, create_arguments, spec_from_inspect
from virtabs_docker._uri import DEFAULT_SOCKET, Endpoint, UriError, endpoint_for
from virtabs_docker._volumes import pool_info, volume_info, volume_name_problem
from virtabs_docker.driver import DockerDriver, container_uuid, docker_state, lifecycle_event

MiB = 1 << 20
CID = "d88b3865c22d3b0e6c8f1e0f3a5b2c4d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b"


def test_local_uris() -> None:
    assert endpoint_for(None, None, None, "/", {}, {}) == Endpoint(base_url=DEFAULT_SOCKET)
    assert endpoint_for(None, None, None, "/", {}, {"DOCKER_HOST": "unix:///x.sock"}) == Endpoint(
        base_url="unix:///x.sock", from_env=True
    )
    assert (
        endpoint_for("unix", None, None, "/run/podman/podman.sock", {}, {}).base_url == "unix:///run/podman/podman.sock"
    )


def test_tcp_verifies_tls_by_default(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    ep = endpoint_for("tcp", "docker.example", None, "/", {}, {"DOCKER_CERT_PATH": str(tmp_path)})
    assert ep.base_url == "https://docker.example:2376"
    assert ep.tls and ep.tls_verify and ep.tls_ca == str(tmp_path / "ca.pem")
    assert ep.tls_cert is None
    (tmp_path / "cert.pem").write_text("x")
    ep = endpoint_for("tcp", "h", 3000, "/", {}, {"DOCKER_CERT_PATH": str(tmp_path)})
    assert (ep.base_url, ep.tls_cert, ep.tls_key) == (
        "https://h:3000",
        str(tmp_path / "cert.pem"),
        str(tmp_path / "key.pem"),
    )


def test_tcp_without_a_ca_is_refused_unless_verification_is_turned_off(tmp_path: Path) -> None:
    env = {"DOCKER_CERT_PATH": str(tmp_path)}
    with pytest.raises(UriError, match="CA certificate"):
        endpoint_for("tcp", "h", None, "/", {}, env)
    ep = endpoint_for("tcp", "h", None, "/", {"no_verify": "1"}, env)
    assert ep.tls and not ep.tls_verify and ep.tls_ca is None
    assert endpoint_for("tcp", "h", None, "/", {"tls": "0"}, env) == Endpoint(base_url="http://h:2375")


@pytest.mark.parametrize(
    ("transport", "host", "path", "params"),
    [
        (None, "h", "/", {}),
        (None, None, "/x", {}),
        (None, None, "/", {"a": "1"}),
        ("unix", "h", "/s", {}),
        ("unix", None, "/", {}),
        ("tcp", None, "/", {}),
        ("tcp", "h", "/x", {"no_verify": "1"}),
        ("tcp", "h", "/", {"bogus": "1"}),
        ("tcp", "h", "/", {"tls_cert": "/c.pem", "no_verify": "1"}),
        ("ssh", "h", "/", {}),
    ],
)
def test_bad_uris(transport: str | None, host: str | None, path: str, params: dict[str, str]) -> None:
    with pytest.raises(UriError):
        endpoint_for(transport, host, None, path, params, {})


def _spec(**extra: object) -> DomainSpec:
    docker = {"image": "virtabs/busybox", "command": ["sleep", "100"], **extra}
    return DomainSpec(name="web", memory_bytes=64 * MiB, vcpus=2, os_type="exe", extra={"docker": docker})


def test_create_arguments() -> None:
    args = create_arguments(_spec(env={"A": 1}, volumes={"data": "/data"}, stop_signal="SIGUSR1"))
    assert args == {
        "image": "virtabs/busybox",
        "name": "web",
        "command": ["sleep", "100"],
        "labels": {},
        "environment": {"A": "1"},
        "stop_signal": "SIGUSR1",
        "volumes": ["/data"],
        "host_config": {
            "mem_limit": 64 * MiB,
            "nano_cpus": 2 * 10**9,
            "network_mode": "none",
            "binds": {"data": {"bind": "/data", "mode": "rw"}},
        },
    }


def test_create_arguments_uuid_label_and_network() -> None:
    spec = DomainSpec(
        name="web",
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        uuid="6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55",
        nics=[NicSpec(network="bridge", mac="02:42:ac:11:00:02")],
        extra={"docker": {"image": "i", "command": "sh -c 'sleep 1'"}},
    )
    args = create_arguments(spec)
    assert args["labels"] == {UUID_LABEL: "6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55"}
    assert args["host_config"]["network_mode"] == "bridge" and args["mac_address"] == "02:42:ac:11:00:02"
    assert args["command"] == ["sh", "-c", "sleep 1"]


@pytest.mark.parametrize(
    "spec",
    [
        DomainSpec(name="web", memory_bytes=MiB, vcpus=1, os_type="hvm", extra={"docker": {"image": "i"}}),
        DomainSpec(name="web", memory_bytes=MiB, vcpus=1, os_type="exe", extra={}),
        DomainSpec(name="web", memory_bytes=MiB, vcpus=1, os_type="exe", extra={"docker": {"image": "i", "x": 1}}),
        DomainSpec(
            name="web", memory_bytes=MiB, vcpus=1, os_type="exe", extra={"docker": {"image": "i", "command": 3}}
        ),
        DomainSpec(
            name="web",
            memory_bytes=MiB,
            vcpus=1,
            os_type="exe",
            extra={"docker": {"image": "i", "volumes": {"v": "rel"}}},
        ),
        DomainSpec(
            name="web",
            memory_bytes=MiB,
            vcpus=1,
            os_type="exe",
            disks=[{"target": "vda", "path": "/x"}],
            extra={"docker": {"image": "i"}},
        ),
        DomainSpec(
            name="web",
            memory_bytes=MiB,
            vcpus=1,
            os_type="exe",
            nics=[NicSpec(), NicSpec()],
            extra={"docker": {"image": "i"}},
        ),
    ],
)
def test_specs_that_cannot_be_containers(spec: DomainSpec) -> None:
    with pytest.raises(SpecError, match="'web'"):
        create_arguments(spec)


def test_spec_from_inspect_docker_and_podman_shapes() -> None:
    docker = {
        "Id": CID,
        "Name": "/web",
        "Config": {"Image": "virtabs/busybox:latest", "Cmd": ["sleep", "1"], "Entrypoint": None, "Labels": {}},
        "HostConfig": {"Memory": 64 * MiB, "NanoCpus": 10**9, "CpuQuota": 0, "CpuPeriod": 0, "NetworkMode": "none"},
        "Mounts": [],
    }
    podman = {
        "Id": CID,
        "Name": "web",
        "Config": {"Image": "localhost/virtabs/busybox:latest", "Cmd": ["sleep", "1"], "Entrypoint": [],
                   "Labels": {UUID_LABEL: "x", "team": "a"}},
        "HostConfig": {"Memory": 0, "NanoCpus": 0, "CpuQuota": 150000, "CpuPeriod": 100000, "NetworkMode": "bridge"},
        "Mounts": [{"Name": "data", "Source": "/var/lib/x", "Destination": "/data"}],
    }  # fmt: skip
    d = spec_from_inspect(docker, "6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55", 8 << 30, 4)
    assert (d.name, d.memory_bytes, d.vcpus, d.nics) == ("web", 64 * MiB, 1, ())
    assert d.extra["docker"] == {"image": "virtabs/busybox:latest", "command": ["sleep", "1"]}
    p = spec_from_inspect(podman, "6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55", 8 << 30, 4)
    assert (p.name, p.memory_bytes, p.vcpus, [n.network for n in p.nics]) == ("web", 8 << 30, 2, ["bridge"])
    assert p.extra["docker"]["labels"] == {"team": "a"} and p.extra["docker"]["volumes"] == {"data": "/data"}


def test_states() -> None:
    assert docker_state("running") == DomainState.RUNNING
    assert docker_state("paused") == DomainState.PAUSED
    assert docker_state("exited") == docker_state("created") == docker_state("stopped") == DomainState.SHUTOFF
    assert docker_state("dead") == DomainState.CRASHED
    assert docker_state("weird") == DomainState.NOSTATE


def test_container_uuid() -> None:
    assert container_uuid(CID, None) == "d88b3865-c22d-3b0e-6c8f-1e0f3a5b2c4d"
    assert (
        container_uuid(CID, {UUID_LABEL: "6F1C3E1A-0A4E-4B57-9D0B-8F2D7E0B1C55"})
        == "6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55"
    )
    assert container_uuid(CID, {UUID_LABEL: "garbage"}) == "d88b3865-c22d-3b0e-6c8f-1e0f3a5b2c4d"


def test_events_of_both_engines() -> None:
    docker_raw = {"Type": "container", "Action": "destroy", "Actor": {"ID": CID, "Attributes": {"name": "web"}}}
    ev = lifecycle_event(docker_raw)
    assert ev is not None and (ev.domain, ev.type, ev.uuid) == (
        "web",
        LifecycleEventType.UNDEFINED,
        container_uuid(CID, None),
    )
    podman_raw = {
        "status": "remove",
        "id": CID,
        "Type": "container",
        "Actor": {"ID": CID, "Attributes": {"name": "web"}},
    }
    ev = lifecycle_event(podman_raw)
    assert ev is not None and ev.type == LifecycleEventType.UNDEFINED
    for action, kind in (("create", "DEFINED"), ("start", "STARTED"), ("die", "STOPPED"), ("pause", "SUSPENDED"),
                         ("unpause", "RESUMED")):  # fmt: skip
        ev = lifecycle_event({**docker_raw, "Action": action})
        assert ev is not None and ev.type == LifecycleEventType[kind]
    for ignored in ("kill", "stop", "init", "cleanup", "exec_start", "restart"):
        assert lifecycle_event({**docker_raw, "Action": ignored}) is None
    assert lifecycle_event({**docker_raw, "Type": "image"}) is None


# --- networks (issue 25): hand-written entries in the shape of the engines' JSON, only the fields read ---


def _domain_of(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["Names"][0].lstrip("/"), container_uuid(entry["Id"], None)


def test_network_kinds() -> None:
    assert network_kind("bridge", False) == NetworkKind.NAT
    assert network_kind("bridge", True) == NetworkKind.ISOLATED
    assert [network_kind(d, False) for d in ("host", "null", "macvlan", "ipvlan", "overlay", "weave")] == [
        NetworkKind.HOST,
        NetworkKind.NONE,
        NetworkKind.MACVLAN,
        NetworkKind.IPVLAN,
        NetworkKind.OVERLAY,
        NetworkKind.OTHER,
    ]


def test_docker_networks_devices_ranges_and_attachments() -> None:
    networks = [
        {"Name": "none", "Id": "a" * 64, "Driver": "null", "IPAM": {"Config": []}},
        {
            "Name": "front",
            "Id": "b" * 64,
            "Driver": "bridge",
            "IPAM": {
                "Config": [
                    {"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.1", "IPRange": "10.5.0.0/25"},
                    {"Subnet": "fd00:5::/64", "Gateway": "fd00:5::1", "IPRange": "fd00:5::100/120"},
                ]
            },
        },
        {"Name": "lan", "Id": "c" * 64, "Driver": "macvlan", "Options": {"parent": "eth0.40"}, "IPAM": {}},
    ]
    containers = [
        {
            "Id": CID,
            "Names": ["/web"],
            "NetworkSettings": {"Networks": {"front": {"MacAddress": "02:42:0a:05:00:02"}, "lan": {"MacAddress": ""}}},
        },
        {"Id": "e" * 64, "Names": ["/off"], "NetworkSettings": {"Networks": {"none": {"MacAddress": ""}}}},
    ]
    none, front, lan = docker_network_records(networks, containers, _domain_of)
    assert (none.kind, none.attachments, none.device) == (NetworkKind.NONE, (), None)
    assert front.device == "br-bbbbbbbbbbbb" and front.id == "b" * 64
    assert front.subnets == (
        NetworkSubnet("10.5.0.0/24", "10.5.0.1", (("10.5.0.1", "10.5.0.127"),)),  # not the network address
        NetworkSubnet("fd00:5::/64", "fd00:5::1", (("fd00:5::100", "fd00:5::1ff"),)),
    )
    web = container_uuid(CID, None)
    assert front.attachments == (NetworkAttachment(web, "web", "02:42:0a:05:00:02"),)
    assert (lan.kind, lan.device, lan.attachments) == (NetworkKind.MACVLAN, "eth0.40", (NetworkAttachment(web, "web"),))


def test_libpod_networks_without_gateway_and_whole_subnet_ranges() -> None:
    networks = [
        {
            "name": "podman",
            "id": "d" * 64,
            "driver": "bridge",
            "network_interface": "cni-podman0",
            "subnets": [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}],
        },
        {
            "name": "inner",
            "id": "f" * 64,
            "driver": "bridge",
            "internal": True,
            "network_interface": "cni-podman1",
            "subnets": [{"subnet": "10.89.0.0/24", "lease_range": {"start_ip": "10.89.0.1", "end_ip": "10.89.0.254"}}],
        },
    ]
    podman, inner = libpod_network_records(networks, [], _domain_of)
    assert (podman.kind, podman.device, podman.subnets) == (
        NetworkKind.NAT,
        "cni-podman0",
        (NetworkSubnet("10.88.0.0/16", "10.88.0.1"),),
    )
    # a lease range over the whole subnet narrows nothing: no range reported
    assert (inner.kind, inner.subnets) == (NetworkKind.ISOLATED, (NetworkSubnet("10.89.0.0/24", None),))


# --- networks from the engines' own answers (data/*.json, captured byte for byte by data/capture_networks.py:
# dockerd 20.10.24 and podman 4.3.1 on this machine, 2026-12-07) ---

DATA = Path(__file__).with_name("data")


def _listing_domain(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["Names"][0].lstrip("/"), container_uuid(entry["Id"], entry.get("Labels"))


@pytest.mark.parametrize(("networks_file", "containers_file"), [("docker", "docker"), ("libpod", "podman")])
def test_networks_from_captured_answers(networks_file: str, containers_file: str) -> None:
    networks = json.loads((DATA / f"{networks_file}-networks.json").read_bytes())
    containers = json.loads((DATA / f"{containers_file}-containers.json").read_bytes())
    parse = libpod_network_records if networks_file == "libpod" else docker_network_records
    records = {n.name: n for n in parse(networks, containers, _listing_domain)}
    nat, internal = records["vtcapnat"], records["vtcapint"]
    assert (nat.kind, nat.native_kind, nat.device) == (NetworkKind.NAT, "bridge", "vtcapnat")
    assert (internal.kind, internal.device) == (NetworkKind.ISOLATED, "vtcapint")
    first = "10.251.7.129" if networks_file == "libpod" else "10.251.7.128"
    assert nat.subnets == (NetworkSubnet("10.251.7.0/24", "10.251.7.1", ((first, "10.251.7.254"),)),)
    assert internal.subnets == (NetworkSubnet("10.251.8.0/24", "10.251.8.1"),)
    run, stop = (next(c for c in containers if c["Names"] == [f"/vtcap-{n}"]) for n in ("run", "stop"))
    run_mac = run["NetworkSettings"]["Networks"]["vtcapnat"]["MacAddress"]
    assert run_mac and nat.attachments == (NetworkAttachment(*reversed(_listing_domain(run)), run_mac),)
    assert internal.attachments == (NetworkAttachment(*reversed(_listing_domain(stop)), None),)
    if networks_file == "libpod":  # the default network under the name its containers use, with its bridge
        assert (records["podman"].device, records["podman"].kind) == ("cni-podman0", NetworkKind.NAT)
    else:
        assert (records["host"].kind, records["none"].kind) == (NetworkKind.HOST, NetworkKind.NONE)


@pytest.mark.parametrize(
    ("engine", "version", "declared"),
    [("podman", "3.4.4", False), ("podman", "4.3.1", True), ("docker", "20.10.24", True), ("podman", "", False)],
)
def test_network_is_declared_where_the_engine_has_the_list(engine: str, version: str, declared: bool) -> None:
    driver = DockerDriver.__new__(DockerDriver)  # the declaration depends on the engine's identity alone
    driver._engine, driver._engine_version = engine, version
    caps = driver.connection_capabilities()
    assert (Capability.NETWORK in caps.supported) is declared
    if not declared:
        assert "needs Podman 4" in caps.dropped[Capability.NETWORK]


@pytest.mark.parametrize(
    ("engine", "name", "taken"),
    [
        ("docker", "data", True),
        ("docker", "a", False),  # Docker: "volume name is too short, names should be at least two alphanumeric ..."
        ("podman", "a", True),
        ("docker", "x+y", False),  # both: "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ("podman", "x+y", False),
        ("docker", "_lead", False),
        ("podman", "web.data-1_x", True),
        ("docker", "a/b", False),
    ],
)
def test_volume_names_the_engines_take(engine: str, name: str, taken: bool) -> None:
    assert (volume_name_problem(engine, name) is None) is taken


def test_a_named_volume_is_a_directory_without_a_size() -> None:
    # the fields dockerd 20.10.24 answered for a create (as printed by the SDK), Labels as the driver sets them
    raw = {
        "CreatedAt": "2026-12-07T21:21:52Z",
        "Driver": "local",
        "Labels": {"virtabs.create-token": "t"},
        "Mountpoint": "/var/lib/docker/volumes/probe1/_data",
        "Name": "probe1",
        "Options": None,
        "Scope": "local",
    }
    info = volume_info(raw)
    assert (info.name, info.pool, info.path) == ("probe1", "volumes", "/var/lib/docker/volumes/probe1/_data")
    assert (info.format, info.capacity_bytes, info.allocation_bytes, info.backing_chain) == ("dir", None, None, ())
    pool = pool_info("podman", "/var/lib/containers/storage/volumes")
    assert (pool.name, pool.type, pool.path) == ("volumes", "podman-volumes", "/var/lib/containers/storage/volumes")
    assert (pool.capacity_bytes, pool.allocation_bytes, pool.available_bytes) == (None, None, None)

"""The Docker driver on the real engines (a private dockerd and a private podman) beyond the contract kit."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import virtabs
from docker_helpers import SLEEPER, Engine, RequestCounter, wait_for
from virtabs import DomainSpec, DomainState
from virtabs.testing import TargetUnavailable

from virtabs_docker.testing import DockerTarget

MiB = 1 << 20


@pytest.fixture
def conn(engine: Engine) -> Iterator[virtabs.Connection]:
    with virtabs.open(engine.uri) as c:
        yield c
    engine.remove_all_containers()


def _spec(engine: Engine, name: str, **docker: Any) -> DomainSpec:
    extra = {"image": engine.image, "command": list(SLEEPER), **docker}
    return DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra={"docker": extra})


def test_listing_and_inventory_are_one_engine_call(engine: Engine, conn: virtabs.Connection) -> None:
    client = engine.client()
    try:
        hc = client.api.create_host_config(network_mode="none")
        for i in range(30):
            client.api.create_container(engine.image, command=list(SLEEPER), name=f"bulk{i}", host_config=hc)
        client.api.start("bulk0")
        driver = conn._driver
        with RequestCounter(driver._api) as listing:
            refs = conn.list_domains()
        assert {f"bulk{i}" for i in range(30)} <= {r.name for r in refs}
        assert (
            len(listing.paths) == 1
            and listing.paths[0].startswith("GET /v1.41/containers/json?")
            and "all=1" in listing.paths[0]
        ), listing.paths
        with RequestCounter(driver._api) as inventory:
            records = {r.name: r for r in conn.domain_records()}
        assert len(inventory.paths) == 1, inventory.paths
        assert records["bulk0"].state == DomainState.RUNNING and records["bulk1"].state == DomainState.SHUTOFF
        assert records["bulk1"].extra["image"] in (engine.image, engine.image.removesuffix(":latest"))
        assert records["bulk1"].vcpus is None and "bulk listing" in records["bulk1"].field_errors["vcpus"]
        # the SDK's high-level listing, for contrast, inspects every container
        with RequestCounter(client.api) as high_level:
            client.containers.list(all=True)
        assert len(high_level.paths) > 30
    finally:
        client.close()


def test_info_from_inspect_and_stats(engine: Engine, conn: virtabs.Connection) -> None:
    dom = conn.define_domain(_spec(engine, "info1"))
    off = dom.info()
    assert off.state == DomainState.SHUTOFF and off.native_state in ("created", "configured")
    assert off.max_memory_bytes == 64 * MiB and off.vcpus == 1 and off.cpu_time_ns == 0
    dom.start()
    on = dom.info()
    assert on.state == DomainState.RUNNING and on.native_state == "running"
    assert 0 < on.memory_bytes < 64 * MiB
    assert on.cpu_time_ns > 0
    dom.suspend()
    assert dom.info().native_state == "paused"
    dom.resume()
    dom.destroy()
    assert dom.info().native_state in ("exited", "stopped")


def test_spec_round_trip_and_define_errors(engine: Engine, conn: virtabs.Connection) -> None:
    spec = _spec(engine, "spec1", env={"A": "1"}, labels={"team": "blue"})
    dom = conn.define_domain(spec)
    back = dom.spec()
    assert (back.name, back.memory_bytes, back.vcpus, back.os_type, back.nics) == ("spec1", 64 * MiB, 1, "exe", ())
    assert back.extra["docker"]["command"] == list(SLEEPER)
    assert back.extra["docker"]["labels"] == {"team": "blue"}
    assert back.uuid == dom.uuid
    with pytest.raises(virtabs.OperationFailedError, match="spec1"):
        conn.define_domain(spec)
    with pytest.raises(virtabs.InvalidArgumentError, match="nope"):
        conn.define_domain(_spec(engine, "nope", image="virtabs/no-such-image:1"))
    assert "nope" not in [d.name for d in conn.list_domains()]


def test_uuid_from_the_spec_is_kept(engine: Engine, conn: virtabs.Connection) -> None:
    wanted = "6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55"
    spec = DomainSpec(
        name="uuid1", memory_bytes=64 * MiB, vcpus=1, os_type="exe", uuid=wanted, extra=_spec(engine, "x").extra
    )
    dom = conn.define_domain(spec)
    assert dom.uuid == wanted and conn.lookup_domain(wanted).name == "uuid1"
    with pytest.raises(virtabs.OperationFailedError, match="already used"):
        conn.define_domain(
            DomainSpec(name="uuid2", memory_bytes=MiB, vcpus=1, os_type="exe", uuid=wanted, extra=spec.extra)
        )


def test_undefine_keeps_named_volumes(engine: Engine, conn: virtabs.Connection) -> None:
    client = engine.client()
    try:
        client.api.create_volume(name="vtkeep")
        dom = conn.define_domain(_spec(engine, "vol1", volumes={"vtkeep": "/data"}))
        assert dom.spec().extra["docker"]["volumes"] == {"vtkeep": "/data"}
        dom.start()
        client.api.exec_start(client.api.exec_create("vol1", ["sh", "-c", "echo kept > /data/f"]))
        dom.destroy()
        dom.undefine()
        assert "vtkeep" in [v["Name"] for v in client.api.volumes()["Volumes"] or []]
        check = client.api.create_container(
            engine.image,
            command=["cat", "/data/f"],
            host_config=client.api.create_host_config(
                binds={"vtkeep": {"bind": "/data", "mode": "ro"}}, network_mode="none"
            ),
        )
        client.api.start(check)
        wait_for(lambda: client.api.inspect_container(check)["State"]["Running"] is False, 30, "cat to finish")
        assert client.api.logs(check).strip() == b"kept"
        client.api.remove_container(check)
        client.api.remove_volume("vtkeep")
    finally:
        client.close()


def test_docker_uri_follows_docker_host(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    with virtabs.open("docker:///") as conn:
        assert conn.host_info().hypervisor == engine.kind


def test_unreachable_engine_is_a_connect_error(tmp_path: Any) -> None:
    with pytest.raises(virtabs.ConnectError):
        virtabs.open(f"docker+unix://{tmp_path}/nothing.sock")


def test_host_info_names_the_engine(engine: Engine, conn: virtabs.Connection) -> None:
    info = conn.host_info()
    assert info.hypervisor == engine.kind
    assert info.cpus == os.cpu_count() and info.memory_bytes > 0 and info.hypervisor_version


def test_published_target_builds_a_runnable_domain(engine: Engine, conn: virtabs.Connection) -> None:
    target = DockerTarget(engine.image)
    dom = target.make_domain(conn, running=True)
    assert dom.state() == DomainState.RUNNING
    target.cleanup(conn)
    assert dom.name not in [d.name for d in conn.list_domains()]


# --- TLS over TCP (dockerd only: the fixture's dockerd also listens on 127.0.0.1 with --tlsverify) ---------


def _tcp(dockerd: Engine, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"docker+tcp://127.0.0.1:{dockerd.tcp_port}/" + (f"?{query}" if query else "")


def test_tcp_with_verified_tls(dockerd: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # a CA bundle in the environment (common on CI machines) must not replace the URI's CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    tls = dockerd.tls
    client = dockerd.client()
    name = f"tls-{uuid.uuid4().hex[:8]}"
    hc = client.api.create_host_config(network_mode="none")
    client.api.create_container(dockerd.image, command=list(SLEEPER), name=name, host_config=hc)
    try:
        with virtabs.open(_tcp(dockerd, tls_ca=tls["ca"], tls_cert=tls["client"], tls_key=tls["client-key"])) as conn:
            assert conn.host_info().hypervisor == "docker"
            listed = {d.name: d for d in conn.list_domains()}
            assert name in listed, f"the container made over the socket is not listed over TLS: {sorted(listed)}"
            assert listed[name].state() == DomainState.SHUTOFF
            assert conn.lookup_domain(name).uuid == listed[name].uuid
    finally:
        client.api.remove_container(name, force=True)


def test_tcp_refuses_a_server_its_ca_did_not_sign(dockerd: Engine) -> None:
    tls = dockerd.tls
    with pytest.raises(virtabs.ConnectError) as exc:
        virtabs.open(_tcp(dockerd, tls_ca=tls["other-ca"], tls_cert=tls["client"], tls_key=tls["client-key"]))
    assert "certificate" in str(exc.value).lower()


def test_tcp_without_a_client_certificate_is_refused_by_the_server(dockerd: Engine) -> None:
    with pytest.raises(virtabs.ConnectError):
        virtabs.open(_tcp(dockerd, tls_ca=dockerd.tls["ca"]))


def test_tcp_no_verify_skips_server_verification(dockerd: Engine) -> None:
    tls = dockerd.tls
    with virtabs.open(_tcp(dockerd, no_verify="1", tls_cert=tls["client"], tls_key=tls["client-key"])) as conn:
        conn.list_domains()


def test_stats_of_a_container_that_stopped_is_not_an_error(engine: Engine, conn: virtabs.Connection) -> None:
    """The race of info() against a shutdown: the sample of a container that no longer runs.

    Podman answers such a stats request with an empty body (not JSON); Docker with zeros.
    """
    dom = conn.define_domain(_spec(engine, "stats1"))
    driver = conn._driver
    container_id = driver._api.inspect_container("stats1")["Id"]
    sample = driver._stats(dom._ref, container_id)
    if engine.kind == "podman":
        assert sample is None
    else:
        assert sample is None or isinstance(sample, dict)
    assert dom.info().state == DomainState.SHUTOFF


def test_reboot_and_destroy_of_a_paused_container(engine: Engine, conn: virtabs.Connection) -> None:
    dom = conn.define_domain(_spec(engine, "paused1"))
    dom.start()
    started = engine.client().api.inspect_container("paused1")["State"]["StartedAt"]
    dom.suspend()
    dom.reboot()
    assert dom.state() == DomainState.RUNNING
    assert engine.client().api.inspect_container("paused1")["State"]["StartedAt"] != started
    dom.suspend()
    dom.destroy()
    assert dom.state() == DomainState.SHUTOFF


def test_shutdown_of_a_paused_container(engine: Engine, conn: virtabs.Connection) -> None:
    dom = conn.define_domain(_spec(engine, "paused2"))
    dom.start()
    dom.suspend()
    dom.shutdown(timeout=30)
    assert dom.state() == DomainState.SHUTOFF


def test_target_on_an_engine_without_its_image_says_what_to_do(engine: Engine, conn: virtabs.Connection) -> None:
    """A fresh engine lacks the target's image: one TargetUnavailable naming the ways to provide it, not a
    "No such image" from every test; the engine is asked once, and nothing is left behind."""
    absent = f"virtabs/absent-{uuid.uuid4().hex[:8]}:1"
    target = DockerTarget(absent, engine.base_url)
    before = {d.name for d in conn.list_domains()}
    asked: list[str] = []
    client = target._engine(conn)
    inspect = client.inspect_image
    client.inspect_image = lambda image: asked.append(image) or inspect(image)
    try:
        for _ in range(3):
            with pytest.raises(TargetUnavailable) as exc:
                target.make_domain(conn, running=True)
            message = str(exc.value)
            assert absent in message and "VIRTABS_DOCKER_IMAGE" in message and f"pull {absent}" in message, message
            assert "No such image" not in message
        assert asked == [absent]
        assert {d.name for d in conn.list_domains()} == before
    finally:
        target.close()
    present = DockerTarget(engine.image, engine.base_url)
    try:
        present.require_image(conn)  # the image the fixture imported: no complaint
    finally:
        present.close()

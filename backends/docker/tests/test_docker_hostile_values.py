"""Issue 21.1 on Docker and Podman: hostile values in every text field, read back from the real engine.

A container is made through the Engine API, whose fields are JSON values: a command, an entrypoint, a
label or a user cannot change structure. Two fields are strings the engine splits again, and the
renderer refuses what they cannot hold: an environment entry is ``NAME=value`` (a ``=`` in a name) and a
bind is ``source:target:mode`` (a ``:`` in either path). The label ``virtabs.uuid`` is the driver's own.
Every accepted definition is inspected on the engine and holds exactly the intended values; every
refused one left no container behind; and no command ran (the fragments' marker file never appears).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import virtabs
from docker_helpers import Engine
from virtabs import DomainSpec, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

from virtabs_docker._spec import SpecError, create_arguments

MiB = 1 << 20
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]


@pytest.fixture
def conn(engine: Engine) -> Iterator[virtabs.Connection]:
    with virtabs.open(engine.uri) as c:
        yield c
    engine.remove_all_containers()


def _spec(engine: Engine, name: str, fragment: str) -> DomainSpec:
    """Every field the engine stores as given carries ``fragment``."""
    value = f"v{fragment}"
    return DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        nics=(NicSpec(network="none", model=f"veth{fragment}"),),
        extra={
            "docker": {
                "image": engine.image,
                "command": ["/bin/sh", "-c", f"echo {fragment}", fragment, value],
                "entrypoint": [f"/bin/{fragment}", fragment],
                "env": {f"E{fragment}": value, "PLAIN": fragment},
                "labels": {f"l{fragment}": value, "plain": fragment},
                "user": f"u{fragment}",
                "working_dir": f"/w/{fragment}",
            }
        },
    )


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_every_field_reads_back_exactly_from_the_engine(
    engine: Engine, conn: virtabs.Connection, fragment: str
) -> None:
    name = f"hostile{HOSTILE_FRAGMENTS.index(fragment)}"
    spec = _spec(engine, name, fragment)
    docker = spec.extra["docker"]
    if "=" in fragment:  # an environment variable's or a label's name cannot hold '=': refused before the engine
        with pytest.raises(virtabs.InvalidArgumentError, match=r"environment variable name|label name"):
            conn.define_domain(spec)
        assert name not in [d.name for d in conn.list_domains()]
        docker = {
            **docker,
            "env": {"E": f"v{fragment}", "PLAIN": fragment},
            "labels": {"l": f"v{fragment}", "plain": fragment},
        }
        spec = DomainSpec(name=name, memory_bytes=spec.memory_bytes, vcpus=1, os_type="exe", extra={"docker": docker})
    conn.define_domain(spec)
    client = engine.client()
    try:
        config = client.api.inspect_container(name)["Config"]
    finally:
        client.close()
    assert config["Cmd"] == docker["command"]
    assert config["Entrypoint"] == docker["entrypoint"]
    env = dict(entry.split("=", 1) for entry in config["Env"] or [])
    for key, value in docker["env"].items():
        assert env[key] == value
    labels = config["Labels"] or {}
    assert {k: labels[k] for k in docker["labels"]} == docker["labels"]
    assert set(labels) - set(docker["labels"]) <= {"virtabs.uuid", "io.buildah.version", "io.podman.annotations.init"}
    assert config["User"] == docker["user"]
    assert config["WorkingDir"] == docker["working_dir"]
    assert conn.lookup_domain(name).spec().extra["docker"]["labels"] == docker["labels"]
    # a network is a name (or container:NAME): anything else is refused and leaves no container
    if not re.fullmatch(r"[\w.-]*", fragment, re.A):
        nic = NicSpec(network=f"bridge{fragment}")
        other = DomainSpec(
            name=f"{name}n", memory_bytes=64 * MiB, vcpus=1, os_type="exe", nics=(nic,), extra=spec.extra
        )
        with pytest.raises(virtabs.InvalidArgumentError, match="not a Docker network name"):
            conn.define_domain(other)
        assert f"{name}n" not in [d.name for d in conn.list_domains()]
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("fragment", [f for f in HOSTILE_FRAGMENTS if ":" in f or "=" in f] + [":", "a:b"], ids=repr)
def test_what_the_engine_splits_again_is_refused_before_it(fragment: str) -> None:
    """``NAME=value`` and ``source:target:mode`` have no escaping: such values never reach the engine."""

    def spec(**docker: Any) -> DomainSpec:
        extra = {"docker": {"image": "busybox", **docker}}
        return DomainSpec(name="x", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=extra)

    cases = []
    if "=" in fragment:
        cases += [spec(env={f"A{fragment}": "1"}), spec(labels={f"A{fragment}": "1"})]
    if ":" in fragment:
        cases += [spec(volumes={f"/src{fragment}": "/data"}), spec(volumes={"vol": f"/data{fragment}"})]
    for case in cases:
        with pytest.raises(SpecError, match=r"cannot (be empty or )?hold"):
            create_arguments(case)


def test_the_uuid_label_is_not_a_caller_s() -> None:
    spec = DomainSpec(
        name="x",
        memory_bytes=64 * MiB,
        vcpus=1,
        os_type="exe",
        extra={"docker": {"image": "busybox", "labels": {"virtabs.uuid": "6f1c3e1a-0a4e-4b57-9d0b-8f2d7e0b1c55"}}},
    )
    with pytest.raises(SpecError, match="virtabs' own"):
        create_arguments(spec)

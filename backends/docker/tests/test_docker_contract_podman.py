"""The virtabs contract kit against a real podman (`podman system service` on a private socket).

The kit's tests run against ``docker+unix://<private socket>`` with containers of the busybox image the
fixture imported (``virtabs_docker.testing.DockerTarget``), each with one NIC on a bridge network made for the
session (so the kit's network tests compare real attachments with real NICs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker_helpers import Engine, bridge_network
from virtabs.testing import Contract
from virtabs.testing.suite import *  # noqa: F403

from virtabs_docker.testing import DockerTarget


@pytest.fixture(scope="session")
def virtabs_uri(podman: Engine) -> str:
    return podman.uri


@pytest.fixture(scope="session")
def virtabs_target(podman: Engine) -> Iterator[DockerTarget]:
    with bridge_network(podman) as network:
        target = DockerTarget(podman.image, podman.base_url, network=network)
        yield target
        target.close()


class TestNetworks(TestNetworks):  # type: ignore[misc,valid-type]  # noqa: F405
    """The kit's network tests with a running and a stopped container of the target on the session network
    (the kit makes no domain of its own there, and would compare empty sets)."""

    @pytest.fixture(autouse=True)
    def _containers_on_the_network(self, virtabs_contract: Contract) -> None:
        virtabs_contract.domain(running=True)
        virtabs_contract.domain(running=False)

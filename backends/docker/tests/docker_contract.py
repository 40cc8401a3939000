"""What the Docker and the Podman contract modules share: the kit's target on an engine, and the kit's
network tests with containers on the session's network.

A plain module beside the tests (as ``docker_helpers``), so pytest collects its class only where a contract
module binds it to the kit's name ``TestNetworks``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from docker_helpers import Engine, bridge_network
from virtabs.testing import Contract
from virtabs.testing.suite import TestNetworks as KitNetworkTests

from virtabs_docker.testing import DockerTarget


@contextlib.contextmanager
def contract_target(engine: Engine) -> Iterator[DockerTarget]:
    """The kit's target on ``engine``: busybox containers, each with one NIC on a bridge network made for the
    session (so the kit's network tests compare real attachments with real NICs)."""
    with bridge_network(engine) as network:
        target = DockerTarget(engine.image, engine.base_url, network=network)
        try:
            yield target
        finally:
            target.close()


class NetworkTestsWithContainers(KitNetworkTests):  # type: ignore[misc]
    """The kit's network tests with a running and a stopped container of the target on the session network
    (the kit makes no domain of its own there, and would compare empty sets)."""

    @pytest.fixture(autouse=True)
    def _containers_on_the_network(self, virtabs_contract: Contract) -> None:
        virtabs_contract.domain(running=True)
        virtabs_contract.domain(running=False)

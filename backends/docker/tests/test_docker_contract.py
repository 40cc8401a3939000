"""The virtabs contract kit against a real dockerd (private, started by the session fixture).

The kit's tests run against ``docker+unix://<private socket>`` with containers of the busybox image the
fixture imported (``virtabs_docker.testing.DockerTarget``), each with one NIC on a bridge network made for the
session (``docker_contract``, shared with the Podman module).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker_contract import NetworkTestsWithContainers, contract_target
from docker_helpers import Engine
from virtabs.testing.suite import *  # noqa: F403

from virtabs_docker.testing import DockerTarget


@pytest.fixture(scope="session")
def virtabs_uri(dockerd: Engine) -> str:
    return dockerd.uri


@pytest.fixture(scope="session")
def virtabs_target(dockerd: Engine) -> Iterator[DockerTarget]:
    with contract_target(dockerd) as target:
        yield target


TestNetworks = NetworkTestsWithContainers

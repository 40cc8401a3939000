"""The virtabs contract kit against a real podman (`podman system service` on a private socket).

The kit's tests run against ``docker+unix://<private socket>`` with containers of the busybox image the
fixture imported (``virtabs_docker.testing.DockerTarget``), each with one NIC on a bridge network made for the
session (``docker_contract``, shared with the Docker module).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker_contract import NetworkTestsWithContainers, contract_target
from docker_helpers import Engine
from virtabs.testing.suite import *  # noqa: F403

from virtabs_docker.testing import DockerTarget


@pytest.fixture(scope="session")
def virtabs_uri(podman: Engine) -> str:
    return podman.uri


@pytest.fixture(scope="session")
def virtabs_target(podman: Engine) -> Iterator[DockerTarget]:
    with contract_target(podman) as target:
        yield target


TestNetworks = NetworkTestsWithContainers

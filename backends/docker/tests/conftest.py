"""pytest wiring of the Docker backend tests; engines and helpers live in ``docker_helpers``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

# The helpers are plain modules next to this file (no package: other suites also have a "tests" dir).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from docker_helpers import Engine, engine_available, private_dockerd, private_podman, require


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Engine]:
    """A private dockerd for the session (stopped by pid at the end, its files removed)."""
    reason = engine_available("docker")
    require(reason is None, str(reason))
    with private_dockerd() as engine:
        yield engine


@pytest.fixture(scope="session")
def podman() -> Iterator[Engine]:
    """A private ``podman system service`` for the session."""
    reason = engine_available("podman")
    require(reason is None, str(reason))
    with private_podman() as engine:
        yield engine


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each test that takes ``engine`` runs once per engine."""
    return request.getfixturevalue("dockerd" if request.param == "docker" else "podman")  # type: ignore[no-any-return]

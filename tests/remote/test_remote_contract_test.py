"""The contract suite over ``test+ssh://``: a file-backed test node behind a real sshd, reached through
the virtabs-remote helper; the target reads the node file on the remote host through its own ssh door."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from virtabs.drivers._test_json import DEFAULT_NODE
from virtabs.testing.remote_target import RemoteTestTarget
from virtabs.testing.suite import *  # noqa: F403


@pytest.fixture(scope="session")
def virtabs_uri(sshd: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    node = tmp_path_factory.mktemp("remote-node") / "node.json"
    node.write_text(json.dumps(DEFAULT_NODE))
    return sshd.uri("test", str(node))  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str) -> Iterator[RemoteTestTarget]:
    target = RemoteTestTarget(virtabs_uri)
    yield target
    target.close()


@pytest.fixture(scope="session")
def virtabs_known_failures() -> dict[str, str]:
    # A test node file keeps no boot clock (the simulated guest's run clock lives in the helper's memory),
    # so the target's own door on the remote host cannot tell one boot from the next.
    return {
        "TestPowerState::test_reboot_boots_the_guest_again": "TargetUnavailable: a test node file has no boot clock"
    }

"""The contract suite over ``test+ssh://``: a file-backed test node behind a real sshd, reached through
the virtabs-remote helper; the target reads the node file on the remote host through its own ssh door."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from virtabs.drivers._test_json import DEFAULT_NODE
from virtabs.testing.plugin import KnownFailure
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
    # A test node file keeps no boot clock and no run clock (the simulated guest's clocks live in the
    # helper's memory), so the target's own door on the remote host can tell neither one boot from the
    # next nor a resumed guest from a rebooted one.
    return {
        "TestPowerState::test_reboot_boots_the_guest_again": KnownFailure(
            "TargetUnavailable: a test node file has no boot clock", match="a test node file records no boot clock"
        ),
        "TestManagedSave::test_managed_save_then_start_resumes_the_guest": KnownFailure(
            "TargetUnavailable: a test node file has no run clock", match="the target must provide run_clock"
        ),
        "TestManagedSave::test_managed_save_remove_makes_start_boot": KnownFailure(
            "TargetUnavailable: a test node file has no run clock", match="the target must provide run_clock"
        ),
    }

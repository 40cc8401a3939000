"""The contract kit over ``test+ssh://`` into the Xen lab's dom0, where the virtabs wheel is installed.

A second machine for real (``test_xen_remote_dom0.py`` says how the wheel gets there): the helper runs
in the dom0 and serves a file-backed test node in the dom0's file system; the target
(:class:`virtabs.testing.remote_target.RemoteTestTarget`) observes effects through its own ssh door
into the dom0 (``cat`` of the node file there), never through the connection under test.

Part of the kit, to keep the Xen suite (run alone, last, in CI) well under its time budget: connection,
define, lookups, listing, power state, save and restore (into a directory made in the dom0), events and
storage. The whole kit over ``test+ssh://`` runs against
the loopback sshd in ``tests/remote/test_remote_contract_test.py``; against this dom0 it passed once in full
(backends/xen/README.md, 2026-12-07).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from virtabs.drivers._test_json import DEFAULT_NODE
from virtabs.testing.plugin import KnownFailure
from virtabs.testing.remote_target import RemoteTestTarget
from virtabs.testing.suite import (  # noqa: F401  (collected by pytest)
    TestConnection,
    TestDefine,
    TestEvents,
    TestListing,
    TestLookups,
    TestPowerState,
    TestSaveRestore,
    TestStoragePools,
    TestStorageVolumes,
)
from xen_helpers import Lab, node_uri


@pytest.fixture(scope="session")
def virtabs_uri(xenlab: Lab, dom0_virtabs: str) -> str:
    path = f"/root/virtabs-nodes/kit-{uuid.uuid4().hex[:12]}.json"
    xenlab.ssh(f"mkdir -p /root/virtabs-nodes && cat > {path}", input=json.dumps(DEFAULT_NODE))
    return node_uri(xenlab, path)


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str) -> Iterator[RemoteTestTarget]:
    target = RemoteTestTarget(virtabs_uri)
    yield target
    target.close()


@pytest.fixture(scope="session")
def virtabs_known_failures() -> dict[str, str]:
    # As over the loopback sshd (tests/remote/test_remote_contract_test.py): a test node file keeps no
    # boot clock and no run clock (the simulated guest's clocks live in the helper's memory), so the
    # target's door in the dom0 cannot tell one boot from the next.
    return {
        "TestPowerState::test_reboot_boots_the_guest_again": KnownFailure(
            "TargetUnavailable: a test node file has no boot clock", match="a test node file records no boot clock"
        ),
    }

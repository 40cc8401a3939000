"""The virtabs contract kit against the hyperv driver, talking WinRM to the WS-Man simulator.

The target (``virtabs_hyperv.testing.HypervTarget``, the one the driver publishes) starts the simulator
(``tests/wsman_sim``) because the URI points at a free local port; nothing here ran against a real
Hyper-V host. ``KNOWN_FAILURES`` lists the tests whose model Hyper-V does not have, with the reason;
they run as strict xfails, so one that starts passing fails the run and the list must shrink
(``known-failures.yaml``).
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from virtabs.testing.plugin import load_known_failures
from virtabs.testing.suite import *  # noqa: F403

from virtabs_hyperv.testing import HypervTarget

# What Hyper-V does not have, whatever the core accepts (with the error each failure raises).
KNOWN_FAILURES = load_known_failures(Path(__file__).with_name("known-failures.yaml"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def _sim_uri() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vthv-") as d:
        yield f"hyperv://127.0.0.1:{_free_port()}/?auth=basic&cafile={Path(d) / 'ca.pem'}"


@pytest.fixture(scope="session")
def virtabs_uri(_sim_uri: str) -> str:
    return _sim_uri


@pytest.fixture(scope="session")
def virtabs_target(_sim_uri: str) -> Iterator[HypervTarget]:
    target = HypervTarget.from_uri(_sim_uri)
    assert target.sim is not None, "the target did not start the simulator"
    yield target
    target.close()


@pytest.fixture(scope="session")
def virtabs_known_failures() -> Mapping[str, str]:
    return KNOWN_FAILURES

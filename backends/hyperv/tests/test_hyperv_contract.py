"""The virtabs contract kit against the hyperv driver, talking WinRM to the WS-Man simulator.

The target (``virtabs_hyperv.testing.HypervTarget``, the one the driver publishes) starts the simulator
(``tests/wsman_sim``) because the URI points at a free local port; nothing here ran against a real
Hyper-V host. It has no known failures: what Hyper-V cannot do is undeclared and each refusal verified
(the two migration entries were declarations: ``domain.migrate.keep_source`` and ``.abort``, issue 27).
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from virtabs.testing.suite import *  # noqa: F403

from virtabs_hyperv.testing import HypervTarget


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

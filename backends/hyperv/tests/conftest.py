"""pytest wiring of the Hyper-V backend tests: the WS-Man simulator as session fixtures.

The simulator (``tests/wsman_sim``, importable as ``virtabs_hyperv_sim``) is test infrastructure: a real
WS-Management endpoint that pywinrm talks to, standing in for a Windows host with Hyper-V.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from virtabs_hyperv_sim import Simulator


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    """HTTPS on a free port, Basic auth, a throw-away CA the client verifies against."""
    s = Simulator(tls=True).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def sim_http() -> Iterator[Simulator]:
    """Plain HTTP on a free port where Basic auth is allowed unencrypted (as ``AllowUnencrypted=true``)."""
    s = Simulator(tls=False, allow_unencrypted=True).start()
    yield s
    s.stop()

"""The virtabs contract kit against real LXC (``lxc:///?path=<private lxcpath>``), as root.

Domains are busybox-static containers (``virtabs_lxc.testing.LxcTarget``) on root file systems of their
own outside the lxcpath, with empty networking.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from virtabs.testing.suite import *  # noqa: F403

from virtabs_lxc.testing import LxcTarget


@pytest.fixture(scope="session")
def virtabs_uri(lxc_uri: str) -> str:
    return lxc_uri


@pytest.fixture(scope="session")
def virtabs_target(lxcpath: str) -> Iterator[LxcTarget]:
    target = LxcTarget()
    yield target
    target.close()

"""The virtabs contract kit against real Xen 4.17 (nested in QEMU/TCG): ``xen+ssh://root@127.0.0.1:PORT/``.

Real ``xl``, real xenstored, real PV guests (the Debian kernel with a busybox initramfs built by
``tests/xenlab/xenlab.sh``), reached over the command transport's multiplexed OpenSSH connection with
the lab's key and known_hosts file (host key checked).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from virtabs.testing.plugin import load_known_failures
from virtabs.testing.suite import *  # noqa: F403
from xen_helpers import Lab

from virtabs_xen.testing import XenTarget

KNOWN_FAILURES = load_known_failures(Path(__file__).with_name("known-failures.yaml"))


@pytest.fixture(scope="session")
def virtabs_uri(xenlab: Lab) -> str:
    return xenlab.uri()


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str) -> Iterator[XenTarget]:
    target = XenTarget.from_uri(virtabs_uri)
    yield target
    target.close()


@pytest.fixture(scope="session")
def virtabs_known_failures() -> Mapping[str, str]:
    return KNOWN_FAILURES

"""The virtabs contract kit against the VirtualBox driver on the VBoxManage simulator: locally
(``vbox:///session``) and over a real sshd on 127.0.0.1 (``vbox+ssh://root@127.0.0.1:PORT/session``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from virtabs.testing.suite import *  # noqa: F403

from virtabs_vbox.testing import VboxTarget


@pytest.fixture(scope="session", params=["local", "ssh"])
def virtabs_uri(request: pytest.FixtureRequest, vbox_home: Path) -> str:
    """Both transports: the same kit runs once per URI."""
    if request.param == "local":
        return "vbox:///session"
    return str(request.getfixturevalue("ssh_uri"))


@pytest.fixture(scope="session")
def virtabs_target() -> VboxTarget:
    return VboxTarget()


# One listing test defines 100 machines; every VBoxManage call of the simulator is a Python start-up
# (a real VBoxManage is an IPC round trip to VBoxSVC), so the kit's default 300 s per test is too short
# on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1800)

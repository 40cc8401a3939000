"""The virtabs contract kit against the VirtualBox driver on the VBoxManage simulator: locally
(``vbox:///session``) and over a real sshd on 127.0.0.1 (``vbox+ssh://root@127.0.0.1:PORT/session``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from virtabs import Connection, Domain
from virtabs.testing import TargetUnavailable
from virtabs.testing.suite import *  # noqa: F403

from virtabs_vbox.testing import VboxTarget

HOMES: dict[str, Path] = {}
"""VBOX_USER_HOME of the simulator each transport reaches (filled by the virtabs_uri fixture)."""


@pytest.fixture(scope="session", params=["local", "ssh"])
def virtabs_uri(request: pytest.FixtureRequest, vbox_home: Path) -> str:
    """Both transports: the same kit runs once per URI."""
    if request.param == "local":
        HOMES["local"] = vbox_home
        return "vbox:///session"
    HOMES["ssh"] = request.getfixturevalue("vbox_sshd").vbox_home
    return str(request.getfixturevalue("ssh_uri"))


class SimTarget(VboxTarget):
    """The published target plus what only the simulator can tell: the guest's boots (its state file)."""

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """How many times the simulated guest booted, read from the simulator's state, not through the driver."""
        home = HOMES[conn.parsed_uri.transport or "local"]
        machines = json.loads((home / "vboxsim.json").read_text())["machines"]
        machine = next((m for m in machines if m["uuid"] == dom.uuid), None)
        if machine is None:
            raise TargetUnavailable(f"domain {dom.name!r} is not in the simulator's state in {home}")
        return machine.get("boots", 0)

    def run_clock(self, conn: Connection, dom: Domain) -> float | None:
        """The simulated guest's run clock from the simulator's state (None while the machine is not running)."""
        home = HOMES[conn.parsed_uri.transport or "local"]
        machines = json.loads((home / "vboxsim.json").read_text())["machines"]
        machine = next((m for m in machines if m["uuid"] == dom.uuid), None)
        if machine is None:
            raise TargetUnavailable(f"domain {dom.name!r} is not in the simulator's state in {home}")
        if machine["state"] not in ("running", "paused"):
            return None
        since = machine.get("running_since")
        return float(machine.get("ran_s", 0.0)) + (time.time() - since if since is not None else 0.0)


@pytest.fixture(scope="session")
def virtabs_target() -> SimTarget:
    return SimTarget()


# One listing test defines 100 machines; every VBoxManage call of the simulator is a Python start-up
# (a real VBoxManage is an IPC round trip to VBoxSVC), so the kit's default 300 s per test is too short
# on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1800)

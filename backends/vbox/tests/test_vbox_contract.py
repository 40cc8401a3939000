"""The virtabs contract kit against the VirtualBox driver on the VBoxManage simulator: locally
(``vbox:///session``) and over a real sshd on 127.0.0.1 (``vbox+ssh://root@127.0.0.1:PORT/session``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import virtabs
from virtabs import Connection, Domain
from virtabs.testing import TargetUnavailable
from virtabs.testing.plugin import load_known_failures
from virtabs.testing.suite import *  # noqa: F403

from virtabs_vbox.testing import VboxTarget

HOMES: dict[str, Path] = {}
"""VBOX_USER_HOME of the simulator each transport reaches (filled by the virtabs_uri fixture)."""
URIS: dict[str, str] = {}
"""The URI of each simulated host: ``local`` (``vbox:///session``) and ``ssh`` (behind the test sshd)."""
KNOWN_FAILURES = load_known_failures(Path(__file__).with_name("known-failures.yaml"))


@pytest.fixture(scope="session", params=["local", "ssh"])
def virtabs_uri(request: pytest.FixtureRequest, vbox_home: Path) -> str:
    """Both transports: the same kit runs once per URI (each is the other's migration peer)."""
    HOMES["local"], URIS["local"] = vbox_home, "vbox:///session"
    HOMES["ssh"] = request.getfixturevalue("vbox_sshd").vbox_home
    URIS["ssh"] = str(request.getfixturevalue("ssh_uri"))
    return URIS[request.param]


class SimTarget(VboxTarget):
    """The published target plus what only the simulator can tell: the guest's boots (its state file)."""

    def __init__(self) -> None:
        super().__init__()
        self._peers: list[Connection] = []

    def migration_peer(self, conn: Connection) -> Connection:
        """The other simulated host (simulator only): the one behind the test sshd for a local connection,
        the local one for a ``vbox+ssh://`` connection; the two share the simulated network and the files."""
        other = "local" if conn.parsed_uri.transport == "ssh" else "ssh"
        peer = virtabs.open(URIS[other], timeout=conn.timeout)
        self._peers.append(peer)
        return peer

    def close(self) -> None:
        """Close the migration peers' connections."""
        while self._peers:
            self._peers.pop().close()

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
def virtabs_target() -> Iterator[SimTarget]:
    target = SimTarget()
    yield target
    target.close()


@pytest.fixture(scope="session")
def virtabs_known_failures() -> Mapping[str, str]:
    return KNOWN_FAILURES


# One listing test defines 100 machines; every VBoxManage call of the simulator is a Python start-up
# (a real VBoxManage is an IPC round trip to VBoxSVC), so the kit's default 300 s per test is too short
# on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1800)

"""Teleporting (issue 23) between two simulated VirtualBox hosts: the local simulator (``vbox:///session``)
and the one behind the test sshd (``vbox+ssh://root@127.0.0.1:PORT/session``), joined by the simulated
network ``VBOXSIM_NETWORK``. What each host holds is read from its simulator's own state file, not through
the driver. The simulator is test infrastructure, not VirtualBox (see vboxmanage_sim/README.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, DomainState, MigrateFlags, NotSupportedError, OperationFailedError

M = MigrateFlags
MiB = 1 << 20


def machine(home: Path, dom_uuid: str) -> dict[str, Any] | None:
    """The simulator's record of a machine on the host whose VBOX_USER_HOME is ``home``."""
    machines = json.loads((home / "vboxsim.json").read_text())["machines"]
    return next((m for m in machines if m["uuid"] == dom_uuid), None)


@pytest.fixture
def hosts(vbox_home: Path, vbox_sshd: Any, ssh_uri: str) -> Iterator[tuple[virtabs.Connection, virtabs.Connection]]:
    """The local host (source) and the host behind the sshd (destination)."""
    with virtabs.open("vbox:///session") as local, virtabs.open(ssh_uri) as remote:
        yield local, remote


def running_domain(conn: virtabs.Connection, tmp_path: Path) -> virtabs.Domain:
    """A running machine whose 64 MiB disk sits in ``tmp_path`` (storage both simulated hosts share)."""
    name = f"vtvb-mig-{uuid.uuid4().hex[:8]}"
    vol = conn.lookup_storage_pool("default").create_volume(f"{name}.vdi", 64 * MiB, format="vdi")
    disk = DiskSpec("vda", vol.path, format="vdi", bus="sata")
    dom = conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=(disk,)))
    dom.start()
    return dom


def test_teleport_moves_the_running_guest_and_keeps_the_source_registered(
    hosts: tuple[virtabs.Connection, virtabs.Connection],
    vbox_home: Path,
    vbox_sshd: Any,
    vbox_network: Path,
    tmp_path: Path,
) -> None:
    local, remote = hosts
    dom = running_domain(local, tmp_path)
    before = machine(vbox_home, dom.uuid)
    assert before is not None
    disk = dom.disks()[0].path
    job = dom.migrate(remote, flags=M.LIVE | M.PERSIST_DEST, max_downtime=120)
    moved = job.wait(timeout=120)
    assert job.info().phase == "completed"
    assert moved.state() == DomainState.RUNNING
    there = machine(vbox_sshd.vbox_home, dom.uuid)
    assert there is not None and there["state"] == "running"
    assert there["boots"] == before["boots"]  # the same guest continues: no boot on the destination
    assert there["ran_s"] >= before["ran_s"]  # its run clock went on
    assert there["teleporter_port"] == 0  # VirtualBox sets the port it chose back to 0
    source = machine(vbox_home, dom.uuid)
    assert source is not None and source["state"] == "teleported"  # kept registered, as VirtualBox does
    assert dom.state() == DomainState.SHUTOFF and dom.info().native_state == "teleported"
    assert source["teleports"][-1]["host"] == "127.0.0.1" and source["teleports"][-1]["maxdowntime"] == 120
    assert moved.disks()[0].path == disk  # shared storage: the same image
    assert not list(vbox_network.iterdir())  # no teleporter target left listening
    # a machine that arrived keeps teleporterenabled="on": start must boot it, not wait for a teleport
    moved.destroy()
    moved.start()
    assert machine(vbox_sshd.vbox_home, dom.uuid)["boots"] == before["boots"] + 1  # type: ignore[index]
    moved.destroy()


def test_teleport_back_with_undefine_source(
    hosts: tuple[virtabs.Connection, virtabs.Connection], vbox_home: Path, vbox_sshd: Any, tmp_path: Path
) -> None:
    local, remote = hosts
    dom = running_domain(local, tmp_path)
    disk = Path(dom.disks()[0].path)
    moved = dom.migrate(remote, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait(timeout=120)
    assert machine(vbox_home, dom.uuid) is None
    assert disk.exists()  # unregistering the source deleted no disk: the destination runs on it
    moved.suspend()
    back = moved.migrate(local, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait(timeout=120)
    assert back.state() == DomainState.PAUSED  # a paused machine arrives paused (hand-over-paused)
    assert machine(vbox_sshd.vbox_home, dom.uuid) is None
    assert machine(vbox_home, dom.uuid)["state"] == "paused"  # type: ignore[index]
    back.destroy()


def test_a_failed_teleport_leaves_the_source_running_and_nothing_on_the_destination(
    hosts: tuple[virtabs.Connection, virtabs.Connection],
    vbox_home: Path,
    vbox_sshd: Any,
    ssh_uri: str,
    vbox_network: Path,
    tmp_path: Path,
) -> None:
    local, _ = hosts
    dom = running_domain(local, tmp_path)
    # the destination names itself by an address its simulated host does not answer to: the source's
    # controlvm teleport cannot connect
    with virtabs.open(f"{ssh_uri}&migrate_address=elsewhere.invalid") as unreachable:
        job = dom.migrate(unreachable, flags=M.LIVE | M.PERSIST_DEST)
        with pytest.raises(OperationFailedError, match="Failed to connect to port"):
            job.wait(timeout=120)
        assert dom.uuid not in [d.uuid for d in unreachable.list_domains()]
    assert machine(vbox_sshd.vbox_home, dom.uuid) is None
    assert dom.state() == DomainState.RUNNING
    assert not list(vbox_network.iterdir())
    dom.destroy()


def test_refusals_before_the_destination_is_touched(
    hosts: tuple[virtabs.Connection, virtabs.Connection], vbox_sshd: Any, tmp_path: Path
) -> None:
    local, remote = hosts
    dom = running_domain(local, tmp_path)
    with pytest.raises(NotSupportedError, match="bandwidth"):
        dom.migrate(remote, flags=M.LIVE | M.PERSIST_DEST, bandwidth=10).wait(timeout=60)
    with pytest.raises(NotSupportedError):
        dom.migrate(remote, flags=M.LIVE | M.PERSIST_DEST | M.NON_SHARED_DISK).wait(timeout=60)
    assert machine(vbox_sshd.vbox_home, dom.uuid) is None
    assert dom.state() == DomainState.RUNNING
    dom.destroy()


def test_offline_migration_moves_the_definition_onto_the_shared_disk(
    hosts: tuple[virtabs.Connection, virtabs.Connection], vbox_home: Path, vbox_sshd: Any, tmp_path: Path
) -> None:
    local, remote = hosts
    dom = running_domain(local, tmp_path)
    dom.destroy()
    disk = dom.disks()[0].path
    moved = dom.migrate(remote, flags=M.OFFLINE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait(timeout=60)
    assert machine(vbox_home, dom.uuid) is None
    there = machine(vbox_sshd.vbox_home, dom.uuid)
    assert there is not None and there["state"] == "poweroff" and not there.get("teleporter")
    assert moved.disks()[0].path == disk
    moved.start()  # boots on the destination: nothing waits for a teleport
    assert machine(vbox_sshd.vbox_home, dom.uuid)["state"] == "running"  # type: ignore[index]
    moved.destroy()

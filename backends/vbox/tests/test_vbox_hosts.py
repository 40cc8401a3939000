"""Hostile names, silent hosts, the ssh user and undefine with snapshots (issue 21), on the simulator and a real sshd."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from virtabs import AuthError, ConnectError, DiskSpec, DomainSpec, OperationTimeoutError
from virtabs.testing.listeners import SilentListener

SIM = str(Path(__file__).resolve().parent / "vboxmanage_sim" / "VBoxManage")
MiB = 1 << 20


@pytest.fixture
def conn(any_uri: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(any_uri) as c:
        yield c


def home_of(conn: virtabs.Connection, request: pytest.FixtureRequest) -> Path:
    """The VBOX_USER_HOME the connection's VBoxManage uses (local, or the sshd side's)."""
    if conn.parsed_uri.transport == "ssh":
        return Path(request.getfixturevalue("vbox_sshd").vbox_home)
    return Path(os.environ["VBOX_USER_HOME"])


def sim(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the simulator directly (as a user of VirtualBox outside virtabs would)."""
    env = {**os.environ, "VBOX_USER_HOME": str(home)}
    return subprocess.run([SIM, *args], env=env, capture_output=True, text=True, check=check)


# --- names that look like options ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["--details", "-h", "--help", "-o", "--machinereadable"])
def test_a_machine_named_like_an_option_is_looked_up_by_name(
    conn: virtabs.Connection, request: pytest.FixtureRequest, name: str
) -> None:
    """``showvminfo`` parses its arguments with IPRT's RTGetOpt: the name goes after ``--``."""
    home = home_of(conn, request)
    made = sim(home, "createvm", "--name", name, "--register").stdout
    uuid = made.split("UUID: ")[1].split()[0]
    try:
        dom = conn.lookup_domain(name)
        assert (dom.name, dom.uuid) == (name, uuid)
        assert dom.info().vcpus >= 1
        snap = dom.create_snapshot("s-" + name.strip("-"))
        assert [s.name for s in dom.list_snapshots()] == [snap.name]
    finally:
        sim(home, "unregistervm", uuid, "--delete", check=False)


def test_the_simulator_reads_a_bare_option_like_name_as_an_option_as_vboxmanage_does(vbox_home: Path) -> None:
    made = sim(vbox_home, "createvm", "--name", "--details", "--register").stdout
    uuid = made.split("UUID: ")[1].split()[0]
    try:
        bare = sim(vbox_home, "showvminfo", "--details", "--machinereadable", check=False)
        assert bare.returncode != 0  # "--details" is the option, and no machine is named
        dashed = sim(vbox_home, "showvminfo", "--machinereadable", "--", "--details")
        assert f'UUID="{uuid}"' in dashed.stdout
    finally:
        sim(vbox_home, "unregistervm", uuid, "--delete", check=False)


# --- undefine keeps the disks, snapshots or not ---------------------------------------------------


def test_undefine_with_snapshots_keeps_the_disk(conn: virtabs.Connection, request: pytest.FixtureRequest) -> None:
    """``unregistervm --delete`` deletes the disks the snapshots hold: undefine deletes the snapshots first."""
    pool = conn.lookup_storage_pool("default")
    vol = pool.create_volume("snapkeep.vdi", 32 * MiB, format="vdi")
    try:
        dom = conn.define_domain(
            DomainSpec(
                name="snapkeep", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", vol.path, format="vdi"),)
            )
        )
        dom.create_snapshot("first")
        dom.create_snapshot("second")
        dom.undefine()
        assert "snapkeep" not in [d.name for d in conn.list_domains()]
        assert os.path.exists(vol.path)
        assert "snapkeep.vdi" in [v.name for v in pool.list_volumes()]
    finally:
        for v in pool.list_volumes():
            if v.name == "snapkeep.vdi":
                v.delete()


def test_the_simulators_unregistervm_delete_removes_disks_held_by_snapshots(vbox_home: Path, tmp_path: Path) -> None:
    """What VirtualBox does (CleanupMode_DetachAllReturnHardDisksOnly): the reason undefine deletes snapshots first."""
    disk = tmp_path / "held.vdi"
    sim(vbox_home, "createmedium", "disk", "--filename", str(disk), "--size", "4", "--format", "VDI")
    made = sim(vbox_home, "createvm", "--name", "heldvm", "--register").stdout
    uuid = made.split("UUID: ")[1].split()[0]
    sim(vbox_home, "storagectl", uuid, "--name", "SATA", "--add", "sata", "--controller", "IntelAhci")
    sim(vbox_home, "storageattach", uuid, "--storagectl", "SATA", "--port", "0", "--device", "0",
        "--type", "hdd", "--medium", str(disk))  # fmt: skip
    sim(vbox_home, "snapshot", uuid, "take", "-h")  # the snapshot name is argv[2] as is, even "-h"
    sim(vbox_home, "storageattach", uuid, "--storagectl", "SATA", "--port", "0", "--device", "0",
        "--medium", "none")  # fmt: skip
    sim(vbox_home, "unregistervm", uuid, "--delete")
    assert not disk.exists()


# --- silent hosts and the ssh user ------------------------------------------------------------------


@pytest.mark.timeout(20)  # the bound: well under the 30 s default an unbounded open would wait
def test_opening_vbox_ssh_to_a_silent_host_ends_within_the_timeout(vbox_sshd: Any) -> None:
    with SilentListener() as silent:
        uri = f"vbox+ssh://root@{silent.address}/session?known_hosts={vbox_sshd.known_hosts}"
        with pytest.raises((ConnectError, OperationTimeoutError)) as exc:
            virtabs.open(uri, timeout=1)
        assert silent.accepted
    assert silent.address in str(exc.value)


def test_the_uris_user_wins_over_virtabs_username(
    ssh_uri: str, vbox_sshd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTABS_USERNAME", "virtabs-nobody")
    with virtabs.open(ssh_uri) as c:  # root@ in the URI: VIRTABS_USERNAME is not used
        assert c._driver._transport.user == vbox_sshd.user  # type: ignore[attr-defined]
        c.list_domains()
    without_user = ssh_uri.replace(f"//{vbox_sshd.user}@", "//")
    with pytest.raises(AuthError, match="virtabs-nobody@127.0.0.1"):
        virtabs.open(without_user)  # no user in the URI: VIRTABS_USERNAME is the one sent
    monkeypatch.delenv("VIRTABS_USERNAME")
    with virtabs.open(without_user) as c:  # neither: ssh's own default (the local login name)
        assert c._driver._transport.user is None  # type: ignore[attr-defined]

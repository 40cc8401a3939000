"""The VirtualBox driver on the VBoxManage simulator, locally and over a real sshd: what the kit does not cover."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from virtabs import (
    ConnectError,
    DiskSpec,
    DomainSpec,
    DomainState,
    InvalidArgumentError,
    NoDomainError,
    NoSnapshotError,
    OperationInvalidError,
)

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


def new_domain(conn: virtabs.Connection, name: str, *, running: bool = False) -> virtabs.Domain:
    pool = conn.lookup_storage_pool("default")
    vol = pool.create_volume(f"{name}.vdi", 32 * MiB, format="vdi")
    dom = conn.define_domain(
        DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=2, disks=(DiskSpec("vda", vol.path, format="vdi"),))
    )
    if running:
        dom.start()
    return dom


def remove(dom: virtabs.Domain) -> None:
    if dom.state().is_active:
        dom.destroy()
    dom.undefine()


def test_hostile_machine_name_stays_one_argument(
    conn: virtabs.Connection, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A machine made outside virtabs with shell syntax in its name: looked up, started and stopped by name.

    Were the name ever split by a shell (the remote one over ssh), the canary would go and ``pwned`` appear.
    """
    home = home_of(conn, request)
    canary, pwned = tmp_path / "canary", tmp_path / "pwned"
    canary.write_text("alive")
    hostile = f"a b; rm -rf {canary}; touch {pwned}"
    sim(home, "createvm", "--name", hostile, "--register")
    try:
        dom = conn.lookup_domain(hostile)
        assert dom.name == hostile
        assert hostile in [d.name for d in conn.list_domains()]
        dom.start()
        assert dom.state() == DomainState.RUNNING
        dom.destroy()
        assert dom.state() == DomainState.SHUTOFF
        assert canary.read_text() == "alive"
        assert not pwned.exists()
        listed = sim(home, "list", "vms").stdout
        assert f'"{hostile}" {{{dom.uuid}}}' in listed.splitlines()
    finally:
        sim(home, "unregistervm", hostile, "--delete", check=False)


def test_bulk_reads_are_one_host_call(conn: virtabs.Connection) -> None:
    doms = [new_domain(conn, f"bulk-{i}", running=i == 0) for i in range(3)]
    try:
        transport = conn._driver._transport  # type: ignore[attr-defined]
        calls: list[list[str]] = []
        real_run = transport.run

        def counting_run(argv: list[str], **kwargs: Any) -> Any:
            calls.append(list(argv))
            return real_run(argv, **kwargs)

        transport.run = counting_run
        try:
            records = {r.name: r for r in conn.domain_records()}
            assert len(calls) == 1, calls
            calls.clear()
            names = [d.name for d in conn.list_domains()]
            assert len(calls) == 1 and calls[0][:3] == ["VBoxManage", "list", "vms"]
        finally:
            transport.run = real_run
        for dom in doms:
            assert dom.name in names
            record = records[dom.name]
            assert (record.vcpus, record.memory_bytes, record.snapshot_count) == (2, 64 * MiB, 0)
            assert [d.target for d in record.disks] == ["vda"]
            assert record.disks[0].format == "vdi" and record.disks[0].capacity_bytes == 32 * MiB
        assert records["bulk-0"].state == DomainState.RUNNING
        assert records["bulk-1"].state == DomainState.SHUTOFF
    finally:
        for dom in doms:
            remove(dom)


def test_missing_objects(conn: virtabs.Connection) -> None:
    with pytest.raises(NoDomainError, match="no-such-vm"):
        conn.lookup_domain("no-such-vm")
    dom = new_domain(conn, "snapless", running=True)
    try:
        with pytest.raises(NoSnapshotError, match="nope"):
            dom.revert_to_snapshot("nope")
        assert dom.list_snapshots() == []
    finally:
        remove(dom)


def test_revert_of_a_paused_snapshot_comes_back_paused(conn: virtabs.Connection) -> None:
    dom = new_domain(conn, "pausesnap", running=True)
    try:
        dom.suspend()
        dom.create_snapshot("p1")
        dom.resume()
        dom.destroy()
        dom.revert_to_snapshot("p1")
        assert dom.state() == DomainState.PAUSED
        dom.destroy()
        dom.create_snapshot("off1")
        dom.start()
        dom.revert_to_snapshot("off1")
        assert dom.state() == DomainState.SHUTOFF
        snaps = {s.name: s for s in dom.list_snapshots()}
        assert snaps["p1"].state == DomainState.PAUSED and snaps["off1"].parent == "p1"
        assert snaps["off1"].state == DomainState.SHUTOFF
        with pytest.raises(OperationInvalidError):
            dom.create_snapshot("p1")
    finally:
        remove(dom)


def test_foreign_machine_with_vagrant_style_controllers(
    conn: virtabs.Connection, request: pytest.FixtureRequest
) -> None:
    home = home_of(conn, request)
    disk = str(home / "box disk1.vmdk")
    sim(home, "createvm", "--name", "vagrant-box", "--register")
    try:
        sim(home, "createmedium", "disk", "--filename", disk, "--size", "10", "--format", "VMDK")
        sim(home, "storagectl", "vagrant-box", "--name", "SATA Controller", "--add", "sata")
        sim(home, "storageattach", "vagrant-box", "--storagectl", "SATA Controller", "--port", "0", "--device",
            "0", "--type", "hdd", "--medium", disk)  # fmt: skip
        sim(home, "storagectl", "vagrant-box", "--name", "IDE Controller", "--add", "ide")
        sim(home, "storageattach", "vagrant-box", "--storagectl", "IDE Controller", "--port", "1", "--device",
            "0", "--type", "dvddrive", "--medium", "emptydrive")  # fmt: skip
        dom = conn.lookup_domain("vagrant-box")
        disks = dom.disks()
        assert [(d.target, d.path, d.format, d.bus) for d in disks] == [("sda", disk, "vmdk", "sata")]
        assert disks[0].capacity_bytes == 10 * MiB
        # hot-plug onto a controller virtabs did not make: refused on IDE while running
        dom.start()
        with pytest.raises(OperationInvalidError):
            dom.attach_disk(DiskSpec("hdb", disk, format="vmdk", bus="ide"))
        dom.destroy()
        dom.detach_disk("sda")
        assert dom.disks() == []
        with pytest.raises(InvalidArgumentError):
            dom.detach_disk("sda")
    finally:
        sim(home, "unregistervm", "vagrant-box", "--delete", check=False)


def test_saved_state_is_shut_off_and_start_resumes_it(conn: virtabs.Connection, request: pytest.FixtureRequest) -> None:
    home = home_of(conn, request)
    dom = new_domain(conn, "managedsave", running=True)
    try:
        sim(home, "controlvm", dom.uuid, "savestate")
        info = dom.info()
        assert (info.state, info.native_state) == (DomainState.SHUTOFF, "saved")
        dom.start()
        assert dom.state() == DomainState.RUNNING
    finally:
        remove(dom)


def test_unsupported_uris(vbox_home: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="/session"):
        virtabs.open("vbox:///system")
    with pytest.raises(InvalidArgumentError, match="\\+ssh"):
        virtabs.open("vbox://somehost/session")


def test_vboxmanage_missing_locally_is_a_connect_error(vbox_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(ConnectError, match="VBoxManage"):
        virtabs.open("vbox:///session")


def test_vboxmanage_missing_remotely_is_a_connect_error(vbox_sshd: Any, tmp_path: Path) -> None:
    """An sshd whose sessions have no VBoxManage on PATH."""
    sshd_module = type(vbox_sshd)
    bare = sshd_module(tmp_path / "bare-sshd", set_env={"PATH": "/usr/bin:/bin"})
    bare.start()
    try:
        with pytest.raises(ConnectError, match="not installed"):
            virtabs.open(bare.uri("vbox", "/session"))
    finally:
        bare.stop()


def test_volume_errors(conn: virtabs.Connection) -> None:
    pool = conn.lookup_storage_pool("default")
    with pytest.raises(InvalidArgumentError, match="vhdx"):
        pool.create_volume("x.vhdx", 16 * MiB, format="vhdx")
    vol = pool.create_volume("grow-me.vdi", 16 * MiB, format="vdi")
    try:
        with pytest.raises(virtabs.VirtabsError, match="Shrinking"):
            vol.resize(8 * MiB)
        assert vol.resize(20 * MiB).capacity_bytes == 20 * MiB
    finally:
        vol.delete()
    assert "grow-me.vdi" not in [v.name for v in pool.list_volumes()]


def test_connects_through_the_kernel_module_warning(vbox_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a Linux host without vboxdrv prints a WARNING paragraph before --version (real capture:
    # tests/real_outputs/version-5.2-warning-minikube.txt); the simulator prints it when told to
    monkeypatch.setenv("VBOXSIM_NO_KMOD", "1")
    with virtabs.open("vbox:///session") as c:
        assert c.host_info().hypervisor_version == "7.0.14r161095"


def test_windows_error_lines_are_read(vbox_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # VBoxManage on Windows names itself as invoked (real capture: "vboxmanage.exe: error: ...",
    # tests/real_outputs/error-windows-vboxmanage-rest-api.txt); the simulator prints that when told to
    monkeypatch.setenv("VBOXSIM_PROGRAM", "vboxmanage.exe")
    with virtabs.open("vbox:///session") as c:
        with pytest.raises(NoDomainError, match="no-such-vm"):
            c.lookup_domain("no-such-vm")
        dom = new_domain(c, "winerr")
        try:
            with pytest.raises(OperationInvalidError):
                dom.suspend()  # "Machine '...' is not currently running", under the Windows prefix
        finally:
            remove(dom)

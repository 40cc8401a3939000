"""The hyperv driver through the public virtabs API, against the WS-Man simulator (pywinrm on the wire)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import virtabs
from virtabs.spi import BlockCopyRequest, poll_until
from virtabs_hyperv_sim import HyperVHost, Simulator, link_hosts

from virtabs_hyperv import _scripts

EVIL = "x'; Remove-VM -Name * -Force; '"
MiB = 1 << 20


def uri(sim: Simulator, extra: str = "") -> str:
    return f"hyperv://127.0.0.1:{sim.port}/?auth=basic&cafile={sim.cafile}{extra}"


@pytest.fixture
def conn(sim: Simulator) -> Iterator[virtabs.Connection]:
    c = virtabs.open(uri(sim), credentials=(sim.username, sim.password))
    yield c
    c.close()


def _vhdx(conn: virtabs.Connection, name: str) -> str:
    return conn.lookup_storage_pool("default").create_volume(name, 64 * MiB, format="vhdx").path


def _define(conn: virtabs.Connection, name: str, disk: str | None = None) -> virtabs.Domain:
    disks = [
        {
            "target": "vda",
            "path": disk or _vhdx(conn, f"disk-{time.time_ns()}.vhdx"),
            "format": "vhdx",
            "bus": "scsi",
        }
    ]
    return conn.define_domain({"name": name, "memory_bytes": 64 * MiB, "vcpus": 1, "disks": disks})


def test_a_hostile_name_is_just_a_name(conn: virtabs.Connection, sim: Simulator) -> None:
    bystander = _define(conn, "bystander")
    # virtabs refuses to define such a name itself, but a Windows admin can: it is on the host already
    with sim.host.lock:
        sim.host.add_vm(EVIL)
    dom = conn.lookup_domain(EVIL)
    assert dom.name == EVIL
    dom.start()
    assert dom.state() == virtabs.DomainState.RUNNING
    conn._driver.create_snapshot(dom._ref, EVIL)  # the core refuses to make it; the host may have one
    assert [s.name for s in dom.list_snapshots()] == [EVIL]
    dom.revert_to_snapshot(EVIL)
    dom.delete_snapshot(EVIL)
    dom.destroy()
    # the define template itself, fed the hostile name (the core would stop it before the driver)
    made = conn._driver._run(
        "vm.define",
        {
            "name": EVIL + " 2",
            "mem": 64 * MiB,
            "cpu": 1,
            "disks": [],
            "nics": [{"switch": "Default Switch", "mac": None}],
        },
        "hostile define",
    )
    assert made["Name"] == EVIL + " 2"
    names = sorted(v.name for v in sim.host.vms.values())
    assert EVIL in names and EVIL + " 2" in names and "bystander" in names
    assert bystander.state() == virtabs.DomainState.SHUTOFF
    assert not any(EVIL in script for script in sim.server.scripts)  # the name only ever travelled as base64 data
    for d in conn.list_domains():
        if d.name.startswith("x'"):
            d.undefine()
    bystander.undefine()


def test_names_are_not_unique_on_hyper_v(conn: virtabs.Connection, sim: Simulator) -> None:
    a = _define(conn, "twin")
    with sim.host.lock:  # a second VM with the same name, made on the host behind virtabs' back
        other = sim.host.add_vm("twin")
    with pytest.raises(virtabs.InvalidArgumentError, match="2 virtual machines are called 'twin'"):
        conn.lookup_domain("twin")
    assert conn.lookup_domain(a.uuid).uuid == a.uuid
    assert conn.lookup_domain(str(other.id).upper()).uuid == str(other.id)
    with pytest.raises(virtabs.VirtabsError, match="already exists"):
        _define(conn, "twin")
    with sim.host.lock:
        del sim.host.vms[other.id]
    a.undefine()


def test_inventory_is_one_winrm_command(conn: virtabs.Connection, sim: Simulator) -> None:
    doms = [_define(conn, f"inv-{i}") for i in range(5)]
    doms[0].start()
    doms[0].create_snapshot("one")
    before = sim.server.commands_run
    records = {r.uuid: r for r in conn.domain_records()}
    assert sim.server.commands_run - before == 1
    r0 = records[doms[0].uuid]
    assert r0.state == virtabs.DomainState.RUNNING and r0.native_state == "Running"
    assert r0.snapshot_count == 1 and [d.target for d in r0.disks] == ["vda"] and r0.disks[0].format == "vhdx"
    for d in doms:
        if d.state().is_active:
            d.destroy()
        for s in d.list_snapshots():
            d.delete_snapshot(s.name)
        d.undefine()


def test_states_keep_the_native_word(conn: virtabs.Connection, sim: Simulator) -> None:
    dom = _define(conn, "states")
    dom.start()
    dom.suspend()
    info = dom.info()
    assert (info.state, info.native_state) == (virtabs.DomainState.PAUSED, "Paused")
    dom.resume()
    dom.managed_save()
    info = dom.info()
    assert (info.state, info.native_state, info.state_reason) == (virtabs.DomainState.SHUTOFF, "Saved", "saved")
    dom.start()  # Start-VM restores a saved VM
    assert dom.state() == virtabs.DomainState.RUNNING
    dom.shutdown()
    assert dom.state() == virtabs.DomainState.SHUTOFF
    dom.undefine()


def test_powershell_errors_carry_the_cmdlet_message(conn: virtabs.Connection, sim: Simulator) -> None:
    dom = _define(conn, "errs")
    dom.start()
    vm = next(v for v in sim.host.vms.values() if v.name == "errs")
    vm.shutdown_service = False
    with pytest.raises(virtabs.OperationFailedError, match="Shutdown integration service is not available"):
        dom.shutdown()
    with sim.host.lock:
        del sim.host.vms[vm.id]
    with pytest.raises(virtabs.NoDomainError, match="errs"):
        dom.info()


def test_a_typo_in_a_template_fails(conn: virtabs.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _scripts.Script("vm.list", "Hyper-V\\Get-VM -Nmae x | ConvertTo-Json -Compress\n")
    monkeypatch.setitem(_scripts.SCRIPTS, "vm.list", broken)
    with pytest.raises(virtabs.OperationFailedError, match="parameter name 'Nmae'.*rejected the driver's script"):
        conn.list_domains()


def test_block_copy_switches_over_by_itself(conn: virtabs.Connection, sim: Simulator) -> None:
    sim.host.copy_rate = 64 * MiB
    try:
        dom = _define(conn, "mover")
        dom.start()
        src = dom.disks()[0].path
        dest = src.rsplit("\\", 1)[0] + "\\moved.vhdx"
        drv = conn._driver  # straight to the driver: the core refuses C:\\ destinations today
        drv.block_copy(dom._ref, "vda", BlockCopyRequest(dest=dest))
        poll_until(lambda: drv.block_job_info(dom._ref, "vda") is None, timeout=30, what="copy not finished")
        assert dom.disks()[0].path == dest
        assert sim.host.find_file(src) is None  # Move-VMStorage deletes the source
    finally:
        sim.host.copy_rate = 256 << 20
    dom.destroy()
    dom.undefine()


def test_block_copy_abort_stays_on_the_source(conn: virtabs.Connection, sim: Simulator) -> None:
    sim.host.copy_rate = 64 * 1024
    try:
        dom = _define(conn, "aborter")
        dom.start()
        src = dom.disks()[0].path
        drv = conn._driver  # straight to the driver: the core refuses C:\\ destinations today
        drv.block_copy(dom._ref, "vda", BlockCopyRequest(dest=src.rsplit("\\", 1)[0] + "\\aborted.vhdx"))
        info = drv.block_job_info(dom._ref, "vda")
        assert info is not None and not info.ready and info.cur < info.end and info.bandwidth == 0
        assert [j.disk for j in drv.domain_status(dom._ref).jobs] == ["vda"]
        drv.block_job_abort(dom._ref, "vda", False)
        poll_until(lambda: drv.block_job_info(dom._ref, "vda") is None, timeout=10, what="abort not done")
        assert dom.disks()[0].path == src and sim.host.find_file(src.rsplit("\\", 1)[0] + "\\aborted.vhdx") is None
    finally:
        sim.host.copy_rate = 256 << 20
    dom.destroy()
    dom.undefine()


def test_winrm_failures_become_virtabs_errors(sim: Simulator) -> None:
    with pytest.raises(virtabs.AuthError) as auth:
        virtabs.open(uri(sim), credentials=(sim.username, "wrong-password"))
    assert "wrong-password" not in str(auth.value)
    with pytest.raises(virtabs.ConnectError, match="TLS"):
        virtabs.open(f"hyperv://127.0.0.1:{sim.port}/?auth=basic", credentials=(sim.username, sim.password))
    c = virtabs.open(uri(sim), credentials=(sim.username, sim.password), timeout=5)
    try:
        sim.server.fault_plan.append("stall:7")
        with pytest.raises(virtabs.OperationTimeoutError):
            c.list_domains()
        sim.server.fault_plan.append("500")
        with pytest.raises(virtabs.ConnectError, match="HTTP 500"):
            c.list_domains()
        assert c.list_domains() is not None  # and the connection recovers
    finally:
        c.close()


def test_uri_and_credential_rules(sim: Simulator) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="unencrypted"):
        virtabs.open(f"hyperv://127.0.0.1:{sim.port}/?transport=http&auth=basic", credentials=("user", "secret-pw"))
    with pytest.raises(virtabs.AuthError, match="needs a username and password"):
        _open_without_credentials(sim)


def _open_without_credentials(sim: Simulator) -> virtabs.Connection:
    import os

    saved = {k: os.environ.pop(k) for k in ("VIRTABS_USERNAME", "VIRTABS_PASSWORD") if k in os.environ}
    try:
        return virtabs.open(uri(sim))
    finally:
        os.environ.update(saved)


def test_ntlm_is_the_default_over_http() -> None:
    with Simulator(tls=False, ntlm=True) as ntlm:
        c = virtabs.open(f"hyperv://127.0.0.1:{ntlm.port}/?transport=http", credentials=(ntlm.username, ntlm.password))
        try:
            assert c.host_info().hypervisor == "Hyper-V"
            assert c.list_domains() == []
        finally:
            c.close()
        assert ntlm.server.sealed >= 4


def test_the_default_uri_is_ntlm_over_verified_https() -> None:
    with Simulator(tls=True, ntlm=True) as ntlm:
        c = virtabs.open(
            f"hyperv://127.0.0.1:{ntlm.port}/?cafile={ntlm.cafile}", credentials=(ntlm.username, ntlm.password)
        )
        try:
            assert c.list_domains() == []
        finally:
            c.close()
        assert ntlm.server.sealed == 0  # TLS protects the bodies; NTLM authenticated the connection
        with pytest.raises(virtabs.AuthError):
            virtabs.open(f"hyperv://127.0.0.1:{ntlm.port}/?cafile={ntlm.cafile}", credentials=(ntlm.username, "bad-pw"))


def test_memory_is_read_and_written_in_bytes(conn: virtabs.Connection, sim: Simulator) -> None:
    """The memory value itself, through every read, against what the host holds (a unit error in either
    direction changes it; the simulator's lower bound alone only catches a value that shrinks below it)."""
    dom = conn.define_domain({"name": f"mem-{time.time_ns()}", "memory_bytes": 96 * MiB, "vcpus": 2})
    try:
        with sim.host.lock:
            held = next(v for v in sim.host.vms.values() if v.name == dom.name)
            assert held.memory == 96 * MiB, f"Hyper-V was given {held.memory} bytes of startup memory"
        for running in (False, True):
            if running:
                dom.start()
            info = dom.info()
            assert (info.memory_bytes, info.max_memory_bytes, info.vcpus) == (96 * MiB, 96 * MiB, 2), info
            assert dom.spec().memory_bytes == 96 * MiB
            (record,) = [r for r in conn.domain_records() if r.uuid == dom.uuid]
            assert record.memory_bytes == 96 * MiB, record
        dom.destroy()
        with sim.host.lock:  # a VM made on the host, with a size no define of this test uses
            sim.host.add_vm(f"host-made-{dom.name}", memory=1536 << 20, cpu=3)
        made = conn.lookup_domain(f"host-made-{dom.name}")
        assert (made.info().memory_bytes, made.info().vcpus) == (1536 << 20, 3)
        (record,) = [r for r in conn.domain_records() if r.uuid == made.uuid]
        assert (record.memory_bytes, record.vcpus) == (1536 << 20, 3)
        made.undefine()
    finally:
        dom.undefine()


# --- live migration: Move-VM between two simulated hosts ---------------------------------------------


@pytest.fixture
def peer(sim: Simulator) -> Iterator[Simulator]:
    """A second simulated host, HV-SIM-B, that Move-VM reaches from ``sim``; storage NOT shared."""
    host = HyperVHost(computer_name="HV-SIM-B")
    host.vhd_path = "D:\\Hyper-V\\Virtual Hard Disks"
    link_hosts(sim.host, host, shared_storage=False)
    s = Simulator(tls=True, username=sim.username, password=sim.password, host=host).start()
    yield s
    s.stop()
    sim.host.peers.pop("hv-sim-b", None)


def test_move_vm_needs_include_storage_without_shared_storage(conn: virtabs.Connection, sim: Simulator,
                                                              peer: Simulator) -> None:  # fmt: skip
    M = virtabs.MigrateFlags
    dom = _define(conn, f"mig-{time.time_ns()}")
    dom.start()
    vm_id = uuid.UUID(dom.uuid)
    src_disk = dom.disks()[0].path
    with sim.host.lock:
        started, data = sim.host.vms[vm_id].started, sim.host.find_file(src_disk).data  # type: ignore[union-attr]
    with virtabs.open(uri(peer), credentials=(peer.username, peer.password)) as dest:
        # the disk is not on the destination: Move-VM without -IncludeStorage fails, the VM stays
        with pytest.raises(virtabs.OperationFailedError, match="cannot access the virtual hard disk"):
            dom.migrate(dest, flags=M.LIVE | M.UNDEFINE_SOURCE).wait(timeout=30)
        move = M.LIVE | M.UNDEFINE_SOURCE
        for kwargs, match in (
            ({"flags": move, "bandwidth": 5}, "domain.migrate.bandwidth"),
            ({"flags": move, "max_downtime": 50}, "domain.migrate.max_downtime"),
            ({"flags": move | M.PAUSED}, "PAUSED is not mapped"),
            ({"flags": move | M.NON_SHARED_INC}, "copies whole disks"),
            ({"flags": M.PERSIST_DEST | M.UNDEFINE_SOURCE}, "pass LIVE"),
            ({"flags": M.LIVE | M.NON_SHARED_DISK}, "keep_source.*add UNDEFINE_SOURCE"),  # Move-VM removes it
        ):
            with pytest.raises(virtabs.NotSupportedError, match=match):
                dom.migrate(dest, **kwargs).wait(timeout=30)
        assert dom.state() == virtabs.DomainState.RUNNING and vm_id not in peer.host.vms
        moved = dom.migrate(dest, flags=M.LIVE | M.NON_SHARED_DISK | M.UNDEFINE_SOURCE).wait(timeout=30)
        assert moved.state() == virtabs.DomainState.RUNNING
        new_disk = moved.disks()[0].path
        assert new_disk.startswith("D:\\Hyper-V\\Virtual Hard Disks\\")
    with sim.host.lock, peer.host.lock:
        assert vm_id not in sim.host.vms and sim.host.find_file(src_disk) is None  # the source's files left too
        vm = peer.host.vms[vm_id]
        assert vm.state == 2 and vm.started == started  # moved live: the same run, no boot
        assert peer.host.find_file(new_disk).data == data  # type: ignore[union-attr]


def test_move_vm_to_an_unknown_host_fails_and_the_vm_stays(conn: virtabs.Connection, sim: Simulator) -> None:
    """A destination the source cannot reach (not linked): Move-VM's connection error; nothing moved."""
    dom = _define(conn, f"mig-{time.time_ns()}")
    dom.start()
    lonely = Simulator(tls=True, username=sim.username, password=sim.password,
                       host=HyperVHost(computer_name="HV-SIM-LONELY"))  # fmt: skip
    with lonely, virtabs.open(uri(lonely), credentials=(sim.username, sim.password)) as dest:
        with pytest.raises(virtabs.OperationFailedError, match="No such host is known"):
            dom.migrate(dest, flags=virtabs.MigrateFlags.LIVE | virtabs.MigrateFlags.UNDEFINE_SOURCE).wait(timeout=30)
        assert dest.list_domains() == []
    assert dom.state() == virtabs.DomainState.RUNNING

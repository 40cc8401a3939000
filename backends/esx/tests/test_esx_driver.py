"""The esx/vpx driver against vcsim: TLS, credentials, bulk reads with call counts, paging, faults, jobs.

Every connection verifies TLS against the run's throw-away CA unless a test says otherwise.
"""

from __future__ import annotations

import socket
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from vcsim_harness import Pki, Vcsim, start_vcsim
from virtabs import Credentials
from virtabs.spi import (
    AuthError,
    BlockCopyRequest,
    BlockJobEvent,
    BlockJobStatus,
    ConnectError,
    DomainState,
    InvalidArgumentError,
    LifecycleEvent,
    LifecycleEventType,
    MigrateFlags,
    NoDomainError,
    NoSnapshotError,
    NoStoragePoolError,
    NotSupportedError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
)

from virtabs_esx import _tls
from virtabs_esx.testing import EsxTarget

M = MigrateFlags
MOVE_CHAIN = virtabs.BlockCopyFlags.MOVE_CHAIN


def _uri(sim: Vcsim, query: str = "", scheme: str = "vpx") -> str:
    assert sim.pki is not None
    params = f"cafile={sim.pki.ca}" + (f"&{query}" if query else "")
    return f"{scheme}://{sim.host}:{sim.port}/?{params}"


def _open(sim: Vcsim, uri: str | None = None, **kwargs: Any) -> virtabs.Connection:
    creds = kwargs.pop("credentials", Credentials(sim.username, sim.password))
    return virtabs.open(uri or _uri(sim), credentials=creds, **kwargs)


@pytest.fixture
def conn(vcsim: Vcsim) -> Iterator[virtabs.Connection]:
    c = _open(vcsim)
    target = EsxTarget(datastore="LocalDS_0", scratch_datastore="LocalDS_1", prefix="vtd")
    c.test_target = target  # type: ignore[attr-defined]
    yield c
    target.cleanup(c)
    c.close()


# --- TLS --------------------------------------------------------------------------------------


def test_loopback_server_from_an_untrusted_ca_is_refused(vcsim: Vcsim, pki: Pki) -> None:
    """pyVmomi would skip verification for 127.0.0.1 by itself; the driver's explicit context does not."""
    creds = Credentials(vcsim.username, vcsim.password)
    for uri in (f"esx://{vcsim.host}:{vcsim.port}/", f"esx://{vcsim.host}:{vcsim.port}/?cafile={pki.other_ca}"):
        with pytest.raises(ConnectError) as exc:
            virtabs.open(uri, credentials=creds)
        assert "not trusted" in str(exc.value) and "\n" not in str(exc.value)


def test_cafile_is_trusted(vcsim: Vcsim) -> None:
    with _open(vcsim) as c:
        assert c.list_domains()


def test_thumbprint_pins_the_certificate(vcsim: Vcsim, pki: Pki) -> None:
    base = f"esx://{vcsim.host}:{vcsim.port}/"
    creds = Credentials(vcsim.username, vcsim.password)
    with virtabs.open(f"{base}?thumbprint={pki.thumbprint}", credentials=creds) as c:  # no CA at all
        assert c.list_domains()
    wrong = "00" + pki.thumbprint[2:] if not pki.thumbprint.startswith("00") else "11" + pki.thumbprint[2:]
    with pytest.raises(ConnectError) as exc:
        virtabs.open(f"{base}?thumbprint={wrong}", credentials=creds)
    assert "thumbprint" in str(exc.value)
    with pytest.raises(InvalidArgumentError):
        virtabs.open(f"{base}?thumbprint=abcd", credentials=creds)


def test_no_verify_is_warned_about_once(vcsim: Vcsim) -> None:
    _tls._warned.clear()
    uri = f"esx://{vcsim.host}:{vcsim.port}/?no_verify=1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with _open(vcsim, uri) as c:
                assert c.list_domains()
    insecure = [w for w in caught if issubclass(w.category, _tls.InsecureConnectionWarning)]
    assert len(insecure) == 1 and "verification is OFF" in str(insecure[0].message)


# --- credentials and reachability ----------------------------------------------------------------


def test_wrong_password_is_an_auth_error_without_the_secret(vcsim: Vcsim) -> None:
    secret = "Wr0ng-S3cret-value"
    with pytest.raises(AuthError) as exc:
        _open(vcsim, credentials=Credentials(vcsim.username, secret))
    text = str(exc.value)
    assert "refused" in text and "\n" not in text and secret not in text and secret not in repr(exc.value)


def test_the_password_never_shows(vcsim: Vcsim, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with _open(vcsim) as c:
        shown = [repr(c), str(c.uri) if hasattr(c, "uri") else "", repr(c._driver), repr(c._driver.options)]
        with pytest.raises(NoDomainError) as exc:
            c.lookup_domain("no-such-vm")
        shown.append(str(exc.value))
    shown += [r.getMessage() for r in caplog.records]
    assert not [s for s in shown if vcsim.password in s]


def test_missing_credentials_are_an_auth_error(vcsim: Vcsim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTABS_USERNAME", raising=False)
    monkeypatch.delenv("VIRTABS_PASSWORD", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    with pytest.raises(AuthError):
        virtabs.open(_uri(vcsim))


def test_credentials_from_the_environment(vcsim: Vcsim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTABS_USERNAME", vcsim.username)
    monkeypatch.setenv("VIRTABS_PASSWORD", vcsim.password)
    with virtabs.open(_uri(vcsim)) as c:
        assert c.list_domains()


def test_unreachable_host_is_a_connect_error(vcsim: Vcsim) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once it is closed
    assert vcsim.pki is not None
    with pytest.raises(ConnectError) as exc:
        _open(vcsim, f"esx://127.0.0.1:{port}/?cafile={vcsim.pki.ca}")
    assert f"127.0.0.1:{port}" in str(exc.value) and "\n" not in str(exc.value)


def test_a_call_past_the_connection_timeout_is_an_operation_timeout(
    vcsim_binary: Path, pki: Pki, tmp_path: Path
) -> None:
    sim = start_vcsim(vcsim_binary, tmp_path, pki=pki, args=("-vm", "1", "-method-delay", "RetrievePropertiesEx:4000"))
    try:
        with _open(sim, timeout=1) as c, pytest.raises(OperationTimeoutError) as exc:
            c.list_domains()
        assert "listing virtual machines" in str(exc.value) and "\n" not in str(exc.value)
    finally:
        sim.stop()


def test_plain_http_transport(vcsim_binary: Path, tmp_path: Path) -> None:
    sim = start_vcsim(vcsim_binary, tmp_path, pki=None, args=("-vm", "1"))
    try:
        with virtabs.open(
            f"esx://{sim.host}:{sim.port}/?transport=http", credentials=Credentials(sim.username, sim.password)
        ) as c:
            assert len(c.list_domains()) == 2
    finally:
        sim.stop()


# --- bulk reads: SOAP calls counted by vcsim ------------------------------------------------------


@pytest.fixture(scope="module")
def big(vcsim_binary: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vcsim]:
    """200 VMs (``-vm 100``: 100 per resource pool) with the paging double on."""
    sim = start_vcsim(vcsim_binary, tmp_path_factory.mktemp("big"), pki=pki, args=("-vm", "100", "-paging"))
    yield sim
    sim.stop()


def test_listing_and_inventory_cost_one_call_whatever_the_vm_count(big: Vcsim) -> None:
    with _open(big) as c:
        c.list_domains()  # creates the session's container view
        big.reset_calls()
        doms = c.list_domains()
        listing = big.calls()
        big.reset_calls()
        records = c.domain_records()
        inventory = big.calls()
        big.reset_calls()
        infos = [d.info() for d in doms[:3]]
        per_domain = big.calls()
    assert len(doms) == 200 and len(records) == 200
    assert {r.name for r in records} == {d.name for d in doms}
    assert all(r.disks and r.nics for r in records)
    assert listing == {"RetrievePropertiesEx": 1}
    assert inventory == {"RetrievePropertiesEx": 1}
    assert "Fetch" not in per_domain and per_domain == {"RetrievePropertiesEx": 3}
    assert all(i.state == DomainState.RUNNING for i in infos)


def test_paging_loop_follows_tokens(big: Vcsim) -> None:
    """Against the paging double (vcsim 0.24.2 itself ignores maxObjects): 200 VMs in pages of 32."""
    with _open(big, _uri(big, "page_size=32")) as c:
        c.list_domains()
        big.reset_calls()
        records = c.domain_records()
        calls = big.calls()
    assert len(records) == 200 and len({r.uuid for r in records}) == 200
    assert calls == {"RetrievePropertiesEx": 1, "ContinueRetrievePropertiesEx": 6}  # 7 pages: 6 x 32 + 8


def test_page_size_must_be_positive(vcsim: Vcsim) -> None:
    with pytest.raises(InvalidArgumentError):
        _open(vcsim, _uri(vcsim, "page_size=0"))


# --- operations and faults (driver level, past the core's gate, to see the host's own refusals) ---


def test_host_faults_are_mapped(conn: virtabs.Connection) -> None:
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=True)
    drv = conn._driver
    ref = drv.lookup_domain(dom.name)
    with pytest.raises(OperationInvalidError) as exc:
        drv.start(ref, False)  # InvalidPowerState
    assert dom.name in str(exc.value) and "InvalidPowerState" in str(exc.value)
    with pytest.raises(OperationFailedError, match="already exists"):
        drv.define_domain(conn.lookup_domain(dom.name).spec())
    with pytest.raises(NoSnapshotError):
        drv.revert_to_snapshot(ref, "nope")
    drv.destroy(ref)
    drv.undefine(ref)
    with pytest.raises(NoDomainError):
        drv.domain_info(ref)


def test_guest_reboot_asks_vmware_tools(conn: virtabs.Connection) -> None:
    """Default reboot is RebootGuest; vcsim 0.24.2 does not implement it, and the refusal names the VM."""
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=True)
    with pytest.raises(OperationFailedError) as exc:
        conn._driver.reboot(conn._driver.lookup_domain(dom.name))
    assert dom.name in str(exc.value) and "RebootGuest" in str(exc.value)


def _current_snapshot(conn: virtabs.Connection, name: str) -> str:
    drv = conn._driver
    tree = drv._session.properties(drv._vm(drv.lookup_domain(name)), ["snapshot"])["snapshot"]
    current = tree.currentSnapshot._moId
    return next(n.name for n, _ in drv._walk(tree.rootSnapshotList) if n.snapshot._moId == current)


def test_snapshot_revert_to_an_older_snapshot(conn: virtabs.Connection) -> None:
    """RevertToSnapshot_Task works although vcsim's task entity trips pyVmomi's WaitForTask (§4.8).

    vcsim 0.24.2's revert only moves ``snapshot.currentSnapshot`` (real vSphere also restores the power
    state and the disks), so that is what is checked.
    """
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=False)
    dom.create_snapshot("off")
    dom.start()
    dom.create_snapshot("on")
    assert [(s.name, s.parent, s.state) for s in dom.list_snapshots()] == [
        ("off", None, DomainState.SHUTOFF),
        ("on", "off", DomainState.RUNNING),
    ]
    assert _current_snapshot(conn, dom.name) == "on"
    dom.revert_to_snapshot("off")
    assert _current_snapshot(conn, dom.name) == "off"
    dom.delete_snapshot("on")  # a leaf that is not the current snapshot
    assert [s.name for s in dom.list_snapshots()] == ["off"]
    dom.delete_snapshot("off")  # the only one left: RemoveAllSnapshots_Task
    assert dom.list_snapshots() == []


def test_disk_attach_creates_and_detach_keeps_the_file(conn: virtabs.Connection) -> None:
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=True)
    path = target.scratch_path(conn, "extra.vmdk")
    dom.attach_disk(virtabs.DiskSpec("sdb", path, format="vmdk", bus="scsi"))
    disks = {d.target: d for d in dom.disks()}
    assert disks["sdb"].path == path and disks["sdb"].bus == "scsi" and disks["sdb"].pool == "LocalDS_1"
    assert disks["sdb"].capacity_bytes == 1 << 30
    dom.detach_disk("sdb")
    assert "sdb" not in {d.target for d in dom.disks()}
    kept = {v.path: v.last_info for v in conn.lookup_storage_pool("LocalDS_1").list_volumes()}
    assert path in kept  # detach keeps the .vmdk, with the capacity it was made with
    assert kept[path].capacity_bytes == 1 << 30
    dom.attach_disk(virtabs.DiskSpec("vdc", path, format="vmdk"))  # re-attach the existing file
    assert {d.target: d.path for d in dom.disks()}["vdc"] == path


def test_datastores_are_pools_and_vmdks_volumes(conn: virtabs.Connection) -> None:
    pools = {p.name: p.info() for p in conn.list_storage_pools()}
    assert set(pools) == {"LocalDS_0", "LocalDS_1"}
    info = pools["LocalDS_0"]
    assert info.path == "/vmfs/volumes/LocalDS_0" and info.capacity_bytes and info.available_bytes is not None
    vols = conn.lookup_storage_pool("LocalDS_0").list_volumes()
    vm = conn.list_domains()[0]
    assert {d.path for d in vm.disks()} <= {v.path for v in vols}
    with pytest.raises(NoStoragePoolError):
        conn.lookup_storage_pool("nope")


def test_storage_vmotion_is_a_job_that_switches_over_by_itself(vcsim: Vcsim, conn: virtabs.Connection) -> None:
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=True)
    events: list[BlockJobEvent] = []
    drv = conn._driver
    drv.options = type(drv.options)(
        credentials=drv.options.credentials,
        event_sink=lambda e: events.append(e),  # type: ignore[arg-type]
    )
    ref = drv.lookup_domain(dom.name)
    vcsim.reset_calls()
    drv.block_copy(ref, "vda", BlockCopyRequest(dest="/vmfs/volumes/LocalDS_1"))
    assert vcsim.calls().get("RelocateVM_Task") == 1
    # vcsim runs the relocation synchronously: the task has succeeded, the job is over and was reported
    assert drv.block_job_info(ref, "vda") is None
    assert [(e.disk, e.status) for e in events if isinstance(e, BlockJobEvent)] == [("vda", BlockJobStatus.COMPLETED)]
    with pytest.raises(NoStoragePoolError):
        drv.block_copy(ref, "vda", BlockCopyRequest(dest="/vmfs/volumes/NoSuchDS"))
    with pytest.raises(InvalidArgumentError, match="not on a datastore"):
        drv.block_copy(ref, "vda", BlockCopyRequest(dest="/srv/copy.vmdk"))
    with pytest.raises(InvalidArgumentError):
        drv.block_copy(ref, "vdz", BlockCopyRequest(dest="/vmfs/volumes/LocalDS_1"))


def test_a_bandwidth_is_refused_by_block_copy_as_by_set_speed(vcsim: Vcsim, conn: virtabs.Connection) -> None:
    """Storage vMotion cannot be throttled, so ESX does not declare block.bandwidth: a copy asked for a limit
    is refused before any task (never run at full speed), and set_speed is refused the same way; 0
    (unlimited, what Storage vMotion runs at) copies."""
    assert not conn.supports("block.bandwidth")
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=True)
    before = dom.disks()[0].path
    vcsim.reset_calls()
    with pytest.raises(NotSupportedError, match="block.bandwidth") as copy_refusal:
        dom.block_copy("vda", "/vmfs/volumes/LocalDS_1", flags=MOVE_CHAIN, bandwidth=1)
    assert "RelocateVM_Task" not in vcsim.calls(), "a refused copy must not start a relocation"
    assert dom.block_job_info("vda") is None
    assert dom.disks()[0].path == before
    with pytest.raises(NotSupportedError) as speed_refusal:
        dom.block_job_set_speed("vda", 1)
    assert type(copy_refusal.value) is type(speed_refusal.value)
    dom.block_copy("vda", "/vmfs/volumes/LocalDS_1", flags=MOVE_CHAIN, bandwidth=0)  # unlimited, as Storage vMotion
    assert vcsim.calls().get("RelocateVM_Task") == 1


def test_only_a_chain_move_is_declared_and_a_flattening_copy_is_refused(vcsim: Vcsim, conn: virtabs.Connection) -> None:
    """Storage vMotion moves a disk with its delta disks: ESX declares block.copy.move_chain, not
    block.copy.flatten nor block.copy.shallow, and the core refuses those copies before any task."""
    assert conn.supports("block.copy.move_chain")
    assert not conn.supports("block.copy.flatten") and not conn.supports("block.copy.shallow")
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=True)
    before = dom.disks()[0].path
    vcsim.reset_calls()
    with pytest.raises(NotSupportedError, match="block.copy.flatten"):
        dom.block_copy("vda", "/vmfs/volumes/LocalDS_1")
    with pytest.raises(NotSupportedError, match="block.copy.flatten"):
        dom.block_rebase("vda", "/vmfs/volumes/LocalDS_1", flags=virtabs.BlockRebaseFlags.COPY)
    with pytest.raises(NotSupportedError, match="block.copy.shallow"):
        dom.block_copy("vda", "/vmfs/volumes/LocalDS_1", flags=virtabs.BlockCopyFlags.SHALLOW)
    assert "RelocateVM_Task" not in vcsim.calls(), "a refused copy must not start a relocation"
    assert dom.disks()[0].path == before


# --- events: WaitForUpdatesEx ------------------------------------------------------------------


def test_power_changes_arrive_as_lifecycle_events(conn: virtabs.Connection, vcsim: Vcsim) -> None:
    target: EsxTarget = conn.test_target  # type: ignore[attr-defined]
    dom = target.make_domain(conn, running=False)
    seen: list[virtabs.Event] = []
    got = threading.Condition()

    def sink(event: virtabs.Event) -> None:
        with got:
            seen.append(event)
            got.notify_all()

    def wait_for(kind: LifecycleEventType) -> None:
        with got:
            assert got.wait_for(
                lambda: any(isinstance(e, LifecycleEvent) and e.type == kind for e in seen), timeout=30
            ), f"no {kind.name} event; seen {seen}"

    with conn.subscribe(sink, domain=dom):
        vcsim.reset_calls()
        dom.start()
        wait_for(LifecycleEventType.STARTED)
        dom.destroy()
        wait_for(LifecycleEventType.STOPPED)
        assert vcsim.calls().get("WaitForUpdatesEx", 0) >= 1
        dom.start()
        job = dom.block_copy("vda", "/vmfs/volumes/LocalDS_1/copy.vmdk", flags=MOVE_CHAIN)
        with got:
            assert got.wait_for(
                lambda: any(isinstance(e, BlockJobEvent) and e.status == BlockJobStatus.COMPLETED for e in seen),
                timeout=30,
            )
        assert job.info() is None
    assert all(e.domain == dom.name for e in seen)


# --- scopes: standalone ESX, vCenter paths ----------------------------------------------------------


def test_standalone_esx_model(vcsim_binary: Path, pki: Pki, tmp_path: Path) -> None:
    sim = start_vcsim(vcsim_binary, tmp_path, pki=pki, args=("-esx", "-vm", "3"))
    try:
        with _open(sim, _uri(sim, scheme="esx")) as c:
            host = c.host_info()
            names = sorted(d.name for d in c.list_domains())
            records = c.domain_records()
            networks = {n.name: n.last_info for n in c.list_networks()}
        assert names == ["ha-host_VM0", "ha-host_VM1", "ha-host_VM2"]
        assert len(records) == 3 and host.cpus > 0 and "govmomi simulator" in host.hypervisor
        # a standalone host: its standard port group only (no distributed switch), every VM's NIC on it
        assert list(networks) == ["VM Network"] and networks["VM Network"].device == "vSwitch0"
        assert sorted((a.domain_uuid, a.mac) for a in networks["VM Network"].attachments) == sorted(
            (r.uuid, n.mac) for r in records for n in r.nics
        )
    finally:
        sim.stop()


def test_vpx_path_scopes_the_inventory(vcsim: Vcsim) -> None:
    assert vcsim.pki is not None
    base = f"vpx://{vcsim.host}:{vcsim.port}"
    query = f"?cafile={vcsim.pki.ca}"
    with _open(vcsim, f"{base}/DC0/DC0_C0{query}") as c:
        cluster = {d.name for d in c.list_domains()}
        cluster_pools = {p.name for p in c.list_storage_pools()}
        target = EsxTarget(prefix="vts")
        made = target.make_domain(c, running=False)  # placed in the cluster's resource pool
        try:
            # a fresh connection: vcsim 0.24.2 does not add new VMs to an existing non-root ContainerView
            with _open(vcsim, f"{base}/DC0/DC0_C0{query}") as fresh:
                assert made.name in {d.name for d in fresh.list_domains()}
        finally:
            with _open(vcsim, f"{base}/DC0/DC0_C0{query}") as fresh:
                target.cleanup(fresh)
    with _open(vcsim, f"{base}/DC0/DC0_H0{query}") as c:
        standalone = {d.name for d in c.list_domains()}
    assert cluster and all(n.startswith("DC0_C0_") for n in cluster if not n.startswith("vt"))
    assert standalone and all(n.startswith("DC0_H0_") for n in standalone if not n.startswith("vt"))
    assert cluster.isdisjoint(standalone) and "LocalDS_0" in cluster_pools
    with pytest.raises(ConnectError, match="no datacenter, cluster or host"):
        _open(vcsim, f"{base}/DC0/NoSuchCluster{query}")


# --- vMotion (Domain.migrate on vpx) ------------------------------------------------------------------


def _runs_on(target: EsxTarget, conn: virtabs.Connection, dom: virtabs.Domain) -> tuple[str, str]:
    """(host name, power state) of ``dom``'s VM, read through the target's own vSphere session."""
    vm = target._own_session(conn).content.searchIndex.FindByUuid(None, dom.uuid, True)
    assert vm is not None, f"{dom.name} is not in the inventory"
    return vm.runtime.host.name, str(vm.runtime.powerState)


def _host_uri(sim: Vcsim, path: str) -> str:
    assert sim.pki is not None
    return f"vpx://{sim.host}:{sim.port}/{path}?cafile={sim.pki.ca}"


def test_vmotion_moves_the_running_vm_to_the_destination_host(vcsim: Vcsim) -> None:
    """RelocateVM_Task onto the host the destination's path names; the guest keeps running (no power-on
    event, so no reboot); and back onto the first host of the root scope."""
    target = EsxTarget(datastore="LocalDS_0", scratch_datastore="LocalDS_1", prefix="vtm",
                       credentials=(vcsim.username, vcsim.password))  # fmt: skip
    with _open(vcsim) as src, _open(vcsim, _host_uri(vcsim, "DC0/DC0_C0/DC0_C0_H1")) as dest:
        try:
            dom = target.make_domain(src, running=True)
            first_host, _ = _runs_on(target, src, dom)
            assert first_host != "DC0_C0_H1"
            boots = target.boot_id(src, dom)
            job = dom.migrate(dest, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE)
            moved = job.wait(timeout=60)
            assert _runs_on(target, src, dom) == ("DC0_C0_H1", "poweredOn")
            assert moved.connection is dest and moved.uuid == dom.uuid and moved.state() == DomainState.RUNNING
            info = job.info()
            assert info.phase == "completed" and info.memory_total == 64 << 20 and info.memory_remaining == 0
            assert target.boot_id(src, dom) == boots  # vMotion, not a restart
            back = moved.migrate(src, flags=M.LIVE | M.UNDEFINE_SOURCE).wait(timeout=60)  # the root scope's first host
            assert back.connection is src
            assert _runs_on(target, src, dom) == (first_host, "poweredOn")
        finally:
            target.cleanup(src)


def test_vmotion_refuses_what_it_cannot_do_before_moving(vcsim: Vcsim, vcsim_binary: Path, pki: Pki,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """Not LIVE, PAUSED, a bandwidth, a downtime, a storage copy, without UNDEFINE_SOURCE (the one VM moves),
    an abort, a standalone esx:// peer, another vCenter: refused, and the VM stays where it was."""
    target = EsxTarget(datastore="LocalDS_0", scratch_datastore="LocalDS_1", prefix="vtm",
                       credentials=(vcsim.username, vcsim.password))  # fmt: skip
    other = start_vcsim(vcsim_binary, tmp_path, pki=pki, args=("-vm", "1"))
    with _open(vcsim) as src, _open(vcsim, _host_uri(vcsim, "DC0/DC0_C0/DC0_C0_H1")) as dest:
        try:
            dom = target.make_domain(src, running=True)
            where = _runs_on(target, src, dom)
            move = M.LIVE | M.UNDEFINE_SOURCE
            for kwargs, error, match in (
                ({"flags": M.PERSIST_DEST | M.UNDEFINE_SOURCE}, NotSupportedError, "always live"),
                ({"flags": move | M.PAUSED}, NotSupportedError, "always live"),
                ({"flags": move, "bandwidth": 10}, NotSupportedError, "domain.migrate.bandwidth"),
                ({"flags": move, "max_downtime": 100}, NotSupportedError, "domain.migrate.max_downtime"),
                ({"flags": move | M.NON_SHARED_DISK}, NotSupportedError, "domain.migrate.copy_storage"),
                ({"flags": M.LIVE | M.PERSIST_DEST}, NotSupportedError, "keep_source.*add UNDEFINE_SOURCE"),
            ):
                with pytest.raises(error, match=match):
                    dom.migrate(dest, **kwargs).wait(timeout=60)
            with _open(vcsim, _uri(vcsim, scheme="esx")) as esx, pytest.raises(NotSupportedError):
                dom.migrate(esx, flags=move)
            with _open(other) as elsewhere, pytest.raises(OperationInvalidError, match="not in this vCenter"):
                dom.migrate(elsewhere, flags=move).wait(timeout=60)
            assert _runs_on(target, src, dom) == where
            assert dom.state() == DomainState.RUNNING
            job = dom.migrate(dest, flags=move)
            with pytest.raises(NotSupportedError, match="domain.migrate.abort"):
                job.abort()  # vcsim 0.24.2 has no CancelTask: not declared, so refused; the vMotion goes on
            job.wait(timeout=60)
            assert _runs_on(target, src, dom) == ("DC0_C0_H1", "poweredOn")
        finally:
            target.cleanup(src)
            other.stop()


def _datastore_files(vcsim: Vcsim, name: str) -> list[str]:
    """The files vcsim keeps for a disk ``name`` (``x.vmdk`` and its ``x-flat.vmdk``) in its datastore
    directories, which live in its work directory: the other door, vcsim's own file system."""
    stem = name.removesuffix(".vmdk")
    return sorted(p.name for p in vcsim.log.parent.rglob(f"{stem}*.vmdk"))


def test_volumes_are_made_and_removed_by_the_virtual_disk_manager(vcsim: Vcsim, conn: virtabs.Connection) -> None:
    pool = conn.lookup_storage_pool("LocalDS_1")
    name = f"vtd-vol-{uuid.uuid4().hex[:8]}.vmdk"
    before = vcsim.calls()
    vol = pool.create_volume(name, 16 << 20, format="vmdk")
    calls = vcsim.calls()
    assert calls.get("CreateVirtualDisk_Task", 0) == before.get("CreateVirtualDisk_Task", 0) + 1
    assert _datastore_files(vcsim, name) == [name.replace(".vmdk", "-flat.vmdk"), name]
    assert vol.path == f"/vmfs/volumes/LocalDS_1/{name}" and vol.last_info.format == "vmdk"
    # the browser's disk query hides the -flat extent: one volume per disk, its capacity from the descriptor
    listed = [v.last_info for v in pool.list_volumes() if v.name.startswith(name.removesuffix(".vmdk"))]
    assert [v.name for v in listed] == [name] and listed[0].capacity_bytes == 16 << 20
    with pytest.raises(virtabs.OperationInvalidError, match="already exists"):
        pool.create_volume(name, 16 << 20, format="vmdk")
    vol.delete()
    assert _datastore_files(vcsim, name) == []
    with pytest.raises(virtabs.NoStorageVolumeError):
        vol.delete()


def _descriptor_sectors(vcsim: Vcsim, name: str) -> int:
    """The extent size (512-byte sectors) in the descriptor vcsim's disk double keeps for ``name``."""
    (path,) = [p for p in vcsim.log.parent.rglob(name)]
    (extent,) = [line.split() for line in path.read_text().splitlines() if line.startswith("RW ")]
    return int(extent[1])


def test_volume_resize_is_one_extend_task_and_never_shrinks(vcsim: Vcsim, conn: virtabs.Connection) -> None:
    pool = conn.lookup_storage_pool("LocalDS_1")
    name = f"vtd-grow-{uuid.uuid4().hex[:8]}.vmdk"
    vol = pool.create_volume(name, 16 << 20, format="vmdk")
    before = vcsim.calls()
    grown = vol.resize((32 << 20) + 1)  # rounded up to whole KiB: vSphere sizes disks in KB
    calls = vcsim.calls()
    assert calls.get("ExtendVirtualDisk_Task", 0) == before.get("ExtendVirtualDisk_Task", 0) + 1
    assert grown.capacity_bytes == (32 << 20) + 1024
    assert _descriptor_sectors(vcsim, name) == ((32 << 20) + 1024) // 512  # what vcsim itself now holds
    other = _open(vcsim)
    try:
        assert other.lookup_storage_pool("LocalDS_1").lookup_volume(name).info().capacity_bytes == (32 << 20) + 1024
    finally:
        other.close()
    assert vol.resize((32 << 20) + 1024).capacity_bytes == (32 << 20) + 1024  # the same size: nothing changes

    before = vcsim.calls().get("ExtendVirtualDisk_Task", 0)
    with pytest.raises(virtabs.InvalidArgumentError, match="cannot shrink a virtual disk"):
        vol.resize(16 << 20)
    assert vcsim.calls().get("ExtendVirtualDisk_Task", 0) == before  # refused before any task
    assert _descriptor_sectors(vcsim, name) == ((32 << 20) + 1024) // 512
    with pytest.raises(virtabs.NoStorageVolumeError):
        pool.lookup_volume("vtd-no-such-disk.vmdk").resize(32 << 20)
    assert vcsim.calls().get("ExtendVirtualDisk_Task", 0) == before
    vol.delete()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("x.qcow2", 1 << 20), {"format": "qcow2"}, "holds vmdk virtual disks"),
        (("x.img", 1 << 20), {"format": "vmdk"}, "holds vmdk virtual disks"),
        (("x",), {"format": "dir"}, "holds disk images, not directory volumes"),
        (("x.vmdk", 1 << 20), {"format": "vmdk", "backing": "/vmfs/volumes/LocalDS_0/base.vmdk"}, "backing"),
    ],
)
def test_what_a_datastore_cannot_hold_is_refused_before_any_task(
    vcsim: Vcsim, conn: virtabs.Connection, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    pool = conn.lookup_storage_pool("LocalDS_1")
    before = vcsim.calls().get("CreateVirtualDisk_Task", 0)
    with pytest.raises(virtabs.InvalidArgumentError, match=message):
        pool.create_volume(*args, **kwargs)
    assert vcsim.calls().get("CreateVirtualDisk_Task", 0) == before

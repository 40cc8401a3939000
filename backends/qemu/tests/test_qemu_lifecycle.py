"""Domain lifecycle, save/restore, snapshots, hot-plug and storage against real QEMU."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import virtabs
from qemu_helpers import (
    SIZE,
    MiB,
    chain_spec,
    check_all_layers,
    has_pattern,
    make_driver,
    qemu_img,
    qemu_pids,
    write_pattern,
)
from virtabs import DomainState
from virtabs.spi import (
    DiskSpec,
    DomainSpec,
    DriverUnavailableError,
    InvalidArgumentError,
    LifecycleEventType,
    NoDomainError,
    NoStorageVolumeError,
    OperationInvalidError,
    OperationTimeoutError,
)

from virtabs_qemu._state import StateDirs


def _disk(root: Path, name: str = "d.qcow2", fmt: str = "qcow2") -> Path:
    p = root / name
    qemu_img("create", "-q", "-f", fmt, str(p), str(SIZE))
    return p


def test_define_start_pause_resume_destroy_undefine(root: Path) -> None:
    events: list[object] = []
    drv = make_driver(root, events)
    spec = DomainSpec(
        name="a", memory_bytes=64 * MiB, vcpus=2, disks=[DiskSpec("vda", str(_disk(root)), "qcow2")], nics=[{}]
    )
    ref = drv.define_domain(spec)
    assert drv.lookup_domain("a") == ref and drv.lookup_domain(ref.uuid) == ref
    saved = json.loads((root / "domains" / "a.json").read_text())
    assert saved["uuid"] == ref.uuid and saved["spec"]["name"] == "a"
    assert drv.domain_info(ref).state == DomainState.SHUTOFF
    drv.start(ref, paused=True)
    info = drv.domain_info(ref)
    assert info.state == DomainState.PAUSED and info.vcpus == 2 and info.memory_bytes == 64 * MiB
    drv.resume(ref)
    assert drv.domain_info(ref).state == DomainState.RUNNING
    time.sleep(0.3)
    assert drv.domain_info(ref).cpu_time_ns > 0
    drv.suspend(ref)
    assert drv.domain_info(ref).native_state == "paused"
    drv.resume(ref)
    drv.reboot(ref)
    assert drv.domain_info(ref).state == DomainState.RUNNING
    # Past the gate (as a start racing another start would be): QEMU's pidfile lock refuses, nothing is touched.
    with pytest.raises(OperationInvalidError, match="already running"):
        drv.start(ref, paused=False)
    with pytest.raises(OperationInvalidError):
        drv.undefine(ref)
    assert drv.domain_info(ref).state == DomainState.RUNNING
    assert drv.nics(ref)[0].mac and drv.nics(ref)[0].network == "user"  # a "default" NIC is on QEMU's user network
    drv.destroy(ref)
    assert drv.domain_info(ref).state == DomainState.SHUTOFF
    assert qemu_pids(root) == set()
    drv.undefine(ref)
    with pytest.raises(NoDomainError):
        drv.lookup_domain("a")
    kinds = [e.type for e in events if hasattr(e, "type")]  # type: ignore[attr-defined]
    for k in (
        LifecycleEventType.DEFINED,
        LifecycleEventType.STARTED,
        LifecycleEventType.SUSPENDED,
        LifecycleEventType.RESUMED,
        LifecycleEventType.STOPPED,
        LifecycleEventType.UNDEFINED,
    ):
        assert k in kinds


def test_duplicate_name_or_uuid_refused(root: Path) -> None:
    drv = make_driver(root)
    ref = drv.define_domain(DomainSpec(name="a", memory_bytes=64 * MiB, vcpus=1))
    with pytest.raises(OperationInvalidError):
        drv.define_domain(DomainSpec(name="a", memory_bytes=128 * MiB, vcpus=1))
    with pytest.raises(OperationInvalidError):
        drv.define_domain(DomainSpec(name="b", memory_bytes=64 * MiB, vcpus=1, uuid=ref.uuid))
    assert drv.domain_spec(ref).memory_bytes == 64 * MiB


def test_shutdown_without_acpi_guest_times_out(root: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    dom = conn.define_domain(DomainSpec(name="a", memory_bytes=64 * MiB, vcpus=1))
    dom.start()
    with pytest.raises(OperationTimeoutError, match="'a'"):
        dom.shutdown(timeout=1.0)  # the driver pressed the power button; the core waited
    assert dom.state().is_active
    dom.destroy()


def test_save_and_restore(root: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    dom = conn.define_domain(
        DomainSpec(name="s", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec("vda", str(_disk(root)), "qcow2")])
    )
    dom.start()
    target = root / "s.save"
    dom.save(str(target))
    assert dom.state() == DomainState.SHUTOFF
    assert target.stat().st_size > 65536
    dom2 = conn.restore(str(target))
    assert dom2.name == "s" and dom2.state() == DomainState.RUNNING
    dom2.destroy()
    with pytest.raises(virtabs.InvalidArgumentError):
        conn.restore(str(root / "domains" / "s.json"))


def test_internal_snapshots_running_and_inactive(root: Path) -> None:
    drv = make_driver(root)
    img = _disk(root)
    write_pattern(img, "qcow2", 0x11, 0, MiB)
    ref = drv.define_domain(
        DomainSpec(name="sn", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec("vda", str(img), "qcow2")])
    )
    # inactive: disk-only
    s0 = drv.create_snapshot(ref, "cold")
    assert s0.state == DomainState.SHUTOFF and s0.kind == "internal"
    write_pattern(img, "qcow2", 0x22, 0, MiB)
    drv.revert_to_snapshot(ref, "cold")
    assert has_pattern(img, "qcow2", 0x11, 0, MiB)
    # running: savevm with RAM
    drv.start(ref, paused=False)
    s1 = drv.create_snapshot(ref, "hot")
    assert s1.state == DomainState.RUNNING and s1.parent == "cold"
    assert [s.name for s in drv.list_snapshots(ref)] == ["cold", "hot"]
    drv.suspend(ref)
    drv.revert_to_snapshot(ref, "hot")
    assert drv.domain_info(ref).state == DomainState.RUNNING
    with pytest.raises(OperationInvalidError):
        drv.revert_to_snapshot(ref, "cold")
    drv.delete_snapshot(ref, "hot")
    drv.destroy(ref)
    with pytest.raises(virtabs.NoSnapshotError):
        drv.delete_snapshot(ref, "hot")
    out = qemu_img("snapshot", "-l", str(img))
    assert [line.split()[1] for line in out.splitlines()[2:]] == ["cold"]
    # revert to a running snapshot of an inactive domain starts it from the saved RAM
    drv.start(ref, paused=False)
    drv.create_snapshot(ref, "hot2")
    drv.destroy(ref)
    drv.revert_to_snapshot(ref, "hot2")
    assert drv.domain_info(ref).state == DomainState.RUNNING
    drv.destroy(ref)


def test_hotplug_scsi_attach_detach_and_virtio_attach(root: Path) -> None:
    drv = make_driver(root)
    ref = drv.define_domain(DomainSpec(name="h", memory_bytes=64 * MiB, vcpus=1))
    drv.start(ref, paused=False)
    extra = _disk(root, "e.raw", "raw")
    drv.attach_disk(ref, DiskSpec("sda", str(extra), "raw", bus="scsi"))
    assert [d.target for d in drv.disks(ref)] == ["sda"]
    drv.attach_disk(ref, DiskSpec("vdb", str(_disk(root, "v.qcow2")), "qcow2"))
    assert [d.target for d in drv.domain_spec(ref).disks] == ["sda", "vdb"]
    drv.detach_disk(ref, "sda")
    assert [d.target for d in drv.domain_spec(ref).disks] == ["vdb"]
    drv.destroy(ref)
    # inactive: definition only; the next start has the disk
    drv.attach_disk(ref, DiskSpec("sdb", str(extra), "raw", bus="scsi"))
    drv.start(ref, paused=True)
    drv.detach_disk(ref, "sdb")
    drv.destroy(ref)
    with pytest.raises(InvalidArgumentError):  # the core's rule: the disk must exist
        virtabs.open(f"qemu:///embed?root={root}").lookup_domain("h").detach_disk("sdz")


def test_storage_pool_volumes(root: Path) -> None:
    drv = make_driver(root)
    pools = drv.list_storage_pools()
    assert [p.name for p in pools] == ["default"] and pools[0].type == "dir"
    base = drv.create_volume("default", "base.qcow2", 64 * MiB, "qcow2", None)
    assert base.format == "qcow2" and base.capacity_bytes == 64 * MiB and base.backing_chain == ()
    top = drv.create_volume("default", "top.qcow2", 64 * MiB, "qcow2", "base.qcow2")
    assert top.backing_chain == (base.path,)
    raw = drv.create_volume("default", "r.raw", MiB, "raw", None)
    assert raw.format == "raw"
    assert drv.resize_volume("default", "r.raw", 2 * MiB).capacity_bytes == 2 * MiB
    assert drv.resize_volume("default", "base.qcow2", 128 * MiB).capacity_bytes == 128 * MiB
    assert sorted(v.name for v in drv.list_volumes("default")) == ["base.qcow2", "r.raw", "top.qcow2"]
    drv.delete_volume("default", "r.raw")
    with pytest.raises(NoStorageVolumeError):
        drv.lookup_volume("default", "r.raw")
    with pytest.raises(OperationInvalidError):
        drv.create_volume("default", "top.qcow2", MiB, "qcow2", None)
    with pytest.raises(virtabs.NoStoragePoolError):
        drv.lookup_storage_pool("nope")
    (root / "other").mkdir()
    (root / "pools" / "other.json").write_text(json.dumps({"type": "dir", "path": str(root / "other")}))
    assert drv.lookup_storage_pool("other").path == str(root / "other")
    # a domain disk in the pool shows its pool and chain
    ref = drv.define_domain(
        DomainSpec(name="p", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec("vda", top.path, "qcow2")])
    )
    d = drv.disks(ref)[0]
    assert d.pool == "default" and d.backing_chain == (base.path,)


def test_missing_backing_format_is_refused(root: Path) -> None:
    drv = make_driver(root)
    base = _disk(root, "b.raw", "raw")
    top = root / "t.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(top))
    # hide the backing-format header extension (0xe2792aca) behind an unknown magic QEMU ignores
    data = bytearray(top.read_bytes()[:65536])
    at = data.index(bytes.fromhex("e2792aca"))
    data[at : at + 4] = bytes.fromhex("12345678")
    with open(top, "r+b") as fh:
        fh.write(data)
    ref = drv.define_domain(
        DomainSpec(name="x", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec("vda", str(top), "qcow2")])
    )
    with pytest.raises(virtabs.OperationFailedError, match="probe"):
        drv.start(ref, paused=True)
    assert qemu_pids(root) == set()


def test_uri_layouts_and_emulator(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/c")
    monkeypatch.setenv("XDG_DATA_HOME", "/d")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/r")
    s = StateDirs.for_uri("/session", {})
    assert (s.domains, s.images, s.run) == ("/c/virtabs/qemu/domains", "/d/virtabs/qemu/images", "/r/virtabs/qemu")
    y = StateDirs.for_uri("/system", {})
    assert (y.domains, y.run) == ("/var/lib/virtabs/qemu/domains", "/run/virtabs/qemu")
    with pytest.raises(InvalidArgumentError):
        StateDirs.for_uri("/embed", {})
    long_root = "/tmp/" + "x" * 120
    assert len(StateDirs.for_uri("/embed", {"root": long_root}).qmp_socket("vm")) < 100
    with pytest.raises(DriverUnavailableError):
        make_driver(root, emulator="/nonexistent/qemu")
    drv = make_driver(root, emulator="/usr/bin/qemu-system-x86_64", accel="tcg")
    assert drv.accel == "tcg"
    ref = drv.define_domain(DomainSpec(name="t", memory_bytes=64 * MiB, vcpus=1))
    drv.start(ref, paused=False)
    assert drv.domain_info(ref).state == DomainState.RUNNING
    drv.destroy(ref)
    assert "block.copy" in drv.connection_capabilities()
    assert drv.host_info().hypervisor == "QEMU"


def test_public_api_connection(root: Path, chain: dict[str, Path]) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    assert conn.driver_name == "qemu"
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    assert [d.name for d in conn.list_domains()] == ["vm"]
    dom.start(paused=True)
    assert dom.state() == DomainState.PAUSED
    assert dom.disks()[0].backing_chain == (str(chain["snap1"]), str(chain["base"]))
    dom.destroy()
    check_all_layers(chain["snap2"], "qcow2")
    assert os.path.exists(root / "domains" / "vm.json")


def test_save_while_paused_restores_paused(root: Path) -> None:
    drv = make_driver(root)
    ref = drv.define_domain(
        DomainSpec(name="sp", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec("vda", str(_disk(root)), "qcow2")])
    )
    drv.start(ref, paused=True)
    drv.save(ref, str(root / "p.save"))
    assert drv.domain_info(ref).state == DomainState.SHUTOFF
    assert drv.restore(str(root / "p.save")) == ref
    assert drv.domain_info(ref).state == DomainState.PAUSED
    with pytest.raises(OperationInvalidError):
        drv.restore(str(root / "p.save"))  # already running
    drv.destroy(ref)
    assert qemu_pids(root) == set()


def test_capabilities_refined_from_query_commands(root: Path) -> None:
    import sys

    fake = root / "old-qemu"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        'print(json.dumps({"QMP": {"version": {}, "capabilities": []}}), flush=True)\n'
        "for line in sys.stdin:\n"
        '    cmd = json.loads(line)["execute"]\n'
        '    if cmd == "query-version":\n'
        '        ret = {"qemu": {"major": 4, "minor": 0, "micro": 0}, "package": ""}\n'
        '    elif cmd == "query-commands":\n'
        '        ret = [{"name": n} for n in ("stop", "cont", "system_reset", "system_powerdown", "quit")]\n'
        "    else:\n"
        "        ret = {}\n"
        '    print(json.dumps({"return": ret}), flush=True)\n'
    )
    fake.chmod(0o755)
    caps = make_driver(root, emulator=str(fake)).connection_capabilities()
    assert "domain.suspend" in caps and "domain.reboot" in caps
    for gone in ("block.copy", "block.copy.shallow", "block.pull", "block.commit", "domain.save", "domain.snapshot"):
        assert gone not in caps
    full = make_driver(root).connection_capabilities()
    assert set(full) == set(type(make_driver(root)).capabilities)


def test_migration_knobs_follow_the_emulators_commands(root: Path) -> None:
    """issue 27: an emulator that migrates but has no ``migrate-set-parameters`` loses the bandwidth and
    downtime knobs; one without ``block-job-cancel`` cannot abort (a mirror could not be cancelled)."""
    import sys

    migrate = ("migrate", "migrate-incoming", "migrate-continue", "migrate_cancel", "block-job-cancel", "quit")

    def caps_with(name: str, commands: tuple[str, ...]) -> object:
        fake = root / name
        fake.write_text(
            f"#!{sys.executable}\n"
            "import json, sys\n"
            'print(json.dumps({"QMP": {"version": {}, "capabilities": []}}), flush=True)\n'
            "for line in sys.stdin:\n"
            '    cmd = json.loads(line)["execute"]\n'
            '    if cmd == "query-version":\n'
            '        ret = {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}\n'
            '    elif cmd == "query-commands":\n'
            f"        ret = [{{'name': n}} for n in {commands!r}]\n"
            "    else:\n"
            "        ret = {}\n"
            '    print(json.dumps({"return": ret}), flush=True)\n'
        )
        fake.chmod(0o755)
        return make_driver(root, emulator=str(fake)).connection_capabilities()

    caps = caps_with("no-params-qemu", migrate)
    assert "domain.migrate" in caps and "domain.migrate.abort" in caps and "domain.migrate.keep_source" in caps
    assert "domain.migrate.bandwidth" not in caps and "domain.migrate.max_downtime" not in caps
    caps = caps_with("full-qemu", (*migrate, "migrate-set-parameters"))
    assert "domain.migrate.bandwidth" in caps and "domain.migrate.max_downtime" in caps
    caps = caps_with("no-cancel-qemu", tuple(c for c in migrate if c != "block-job-cancel"))
    assert "domain.migrate" in caps and "domain.migrate.abort" not in caps


def test_scsi_sata_disks_and_nic_models_start(root: Path) -> None:
    drv = make_driver(root)
    spec = DomainSpec(
        name="buses",
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=[
            DiskSpec("vda", str(_disk(root, "v.qcow2")), "qcow2"),
            DiskSpec("sda", str(_disk(root, "s.raw", "raw")), "raw", bus="scsi"),
            DiskSpec("sdb", str(_disk(root, "a.qcow2")), "qcow2", bus="sata"),
            DiskSpec("sdc", str(_disk(root, "ro.raw", "raw")), "raw", bus="scsi", readonly=True),
        ],
        nics=[{"network": "user"}, {"network": "user", "model": "e1000", "mac": "52:54:00:aa:bb:cc"}],
    )
    ref = drv.define_domain(spec)
    drv.start(ref, paused=False)
    assert drv.domain_info(ref).state == DomainState.RUNNING
    assert [d.target for d in drv.disks(ref)] == ["vda", "sda", "sdb", "sdc"]
    assert drv.nics(ref)[1].mac == "52:54:00:aa:bb:cc"
    drv.destroy(ref)

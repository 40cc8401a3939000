"""Parsers of VBoxManage output on SYNTHETIC samples written here for one case each (the format as
VirtualBox's sources print it); the outputs real hosts printed are in ``real_outputs/`` and
``test_vbox_real_outputs.py``."""

from __future__ import annotations

from virtabs.spi import DomainState

from virtabs_vbox._parse import (
    VM_STATES,
    Attachment,
    Medium,
    domain_state,
    parse_colon_blocks,
    parse_list_vms,
    parse_machinereadable,
    parse_snapshots,
    parse_vminfo,
    slot_for_target,
    target_for,
)

# The minimal (illustrative, not captured) fragment of showvminfo --machinereadable in backend-protocols.md §2.3.
FRAGMENT = """name="vm1"
memory=1024
VMState="running"
storagecontrollername0="SATA Controller"
"SATA Controller-0-0"="/home/u/VirtualBox VMs/vm1/vm1.vdi"
"SATA Controller-ImageUUID-0-0"="3d1f6c2a-8b0e-4f7a-9c55-2e6b1a0d9f13"
macaddress1="080027AABBCC"
"""

# SYNTHETIC, written after the real 4.1 sample (real_outputs/showvminfo-4.1-macos-centos57.txt), not a copy of
# it: keys cut down, an empty IDE DVD slot and a SATA disk, a snapshot name.
SYNTHETIC_VM = """name="Centos5.7"
ostype="RedHat"
UUID="0fc20e1b-1d57-4e7e-9b8a-1f7e2c3a4b5d"
CfgFile="/home/u/VirtualBox VMs/Centos5.7/Centos5.7.vbox"
memory=380
cpus=1
VMState="poweroff"
VMStateChangeTime="2012-02-12T11:51:46.000000000"
storagecontrollername0="IDE Controller"
storagecontrollertype0="PIIX4"
storagecontrollermaxportcount0="2"
storagecontrollername1="SATA Controller"
storagecontrollertype1="IntelAhci"
storagecontrollermaxportcount1="30"
"IDE Controller-0-0"="none"
"IDE Controller-1-0"="emptydrive"
"SATA Controller-0-0"="/home/u/VirtualBox VMs/Centos5.7/box-disk1.vmdk"
"SATA Controller-ImageUUID-0-0"="be8b7bf1-2e0c-4a8d-9d0f-5e6a7b8c9d0e"
nic1="nat"
macaddress1="08002717511C"
nic2="none"
CurrentSnapshotName="clean"
"""

# SYNTHETIC snapshot tree in the shape of Packer's fixture (real_outputs/snapshot-list-packer-snapshot_test.txt
# is the original, tested in test_vbox_real_outputs.py): names and UUIDs after it, branches cut down.
SYNTHETIC_SNAPSHOTS = """SnapshotName="Imported"
SnapshotUUID="7e5b4165-91ec-4091-a74c-a5709d584530"
SnapshotName-1="Snapshot 1"
SnapshotUUID-1="5fc461ec-da7a-40a8-a168-03134d7cdf5c"
SnapshotName-1-1="Snapshot 2"
SnapshotUUID-1-1="8e12833b-c6b5-4cbd-b42b-09eff8ffc173"
SnapshotName-1-2="Snapshot-Export"
SnapshotUUID-1-2="c857d1b8-4fd6-4044-9d2c-c6e465b3cdd4"
SnapshotName-2="Snapshot 3"
SnapshotUUID-2="0d1b6c5d-8a40-4d3a-8e61-9c0d2e3f4a5b"
CurrentSnapshotName="Snapshot-Export"
CurrentSnapshotUUID="c857d1b8-4fd6-4044-9d2c-c6e465b3cdd4"
CurrentSnapshotNode="SnapshotName-1-2"
"""

# SYNTHETIC list hdds (a base image and its differencing child).
LIST_HDDS = """UUID:           3d1f6c2a-8b0e-4f7a-9c55-2e6b1a0d9f13
Parent UUID:    base
State:          created
Type:           normal (base)
Location:       /home/u/VirtualBox VMs/vm1/vm1.vdi
Storage format: VDI
Capacity:       65536 MBytes
Encryption:     disabled

UUID:           9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
Parent UUID:    3d1f6c2a-8b0e-4f7a-9c55-2e6b1a0d9f13
State:          created
Type:           normal (differencing)
Location:       /home/u/VirtualBox VMs/vm1/Snapshots/{9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}.vdi
Storage format: VDI
Capacity:       65536 MBytes
Encryption:     disabled
"""


def test_documented_fragment() -> None:
    info = parse_vminfo(FRAGMENT)
    assert (info.name, info.memory_mib, info.native_state, info.state) == ("vm1", 1024, "running", DomainState.RUNNING)
    assert info.attachments == (
        Attachment(
            controller="SATA Controller",
            controller_type="",
            port=0,
            device=0,
            path="/home/u/VirtualBox VMs/vm1/vm1.vdi",
            medium_uuid="3d1f6c2a-8b0e-4f7a-9c55-2e6b1a0d9f13",
        ),
    )


def test_synthetic_vm() -> None:
    info = parse_vminfo(SYNTHETIC_VM)
    assert info.uuid == "0fc20e1b-1d57-4e7e-9b8a-1f7e2c3a4b5d"
    assert (info.memory_mib, info.cpus, info.ostype, info.state) == (380, 1, "RedHat", DomainState.SHUTOFF)
    assert info.controllers == (("IDE Controller", "PIIX4"), ("SATA Controller", "IntelAhci"))
    by_slot = {(a.controller, a.port, a.device): a for a in info.attachments}
    assert set(by_slot) == {("IDE Controller", 1, 0), ("SATA Controller", 0, 0)}  # "none" is no attachment
    assert by_slot[("IDE Controller", 1, 0)].path is None  # emptydrive
    assert by_slot[("SATA Controller", 0, 0)].medium_uuid == "be8b7bf1-2e0c-4a8d-9d0f-5e6a7b8c9d0e"
    assert [(n.index, n.type, n.mac) for n in info.nics] == [(1, "nat", "08002717511C")]
    # targets on foreign controllers: hd? on IDE (2 devices per port), sd? elsewhere
    targets = [target_for(a) for a in info.attachments]
    assert targets == ["hdc", "sda"]
    # no IsEjected line: nothing says the empty IDE slot is a DVD drive, so it reads as an empty disk slot
    assert [a.kind for a in info.attachments] == ["hdd", "hdd"]


def test_quoting_and_escapes() -> None:
    text = (
        'name="we\\"ird \\\\ vm = x"\n'
        '"key=with=equals"="v"\n'
        'description="line1\\nline2"\n'
        "memory=64\n"
        "garbage line without equals\n"
        'empty=""\n'
    )
    data = parse_machinereadable(text)
    assert data["name"] == 'we"ird \\ vm = x'
    assert data["key=with=equals"] == "v"
    assert data["description"] == "line1\nline2"
    assert data["memory"] == "64"
    assert data["empty"] == ""
    assert "garbage line without equals" not in data


def test_raw_newline_inside_a_quoted_value() -> None:
    data = parse_machinereadable('name="two\nlines"\nmemory=8\n')
    assert data == {"name": "two\nlines", "memory": "8"}


def test_every_documented_vmstate_is_mapped() -> None:
    documented = {
        "poweroff", "saved", "running", "paused", "aborted", "aborted-saved",
        "teleported", "teleporting", "teleportingpausedvm", "teleportingin",
        "gurumeditation", "livesnapshotting", "starting", "stopping", "saving", "restoring",
        "deletingsnapshotlive", "deletingsnapshotlivepaused", "onlinesnapshotting", "restoringsnapshot",
        "deletingsnapshot", "snapshotting", "settingup",
    }  # fmt: skip
    assert documented <= set(VM_STATES)
    assert domain_state("saved") == DomainState.SHUTOFF  # a managed save is off, as in libvirt's vbox driver
    assert domain_state("aborted") == DomainState.CRASHED
    assert domain_state("stopping") == DomainState.SHUTDOWN
    assert domain_state("deletingsnapshotlivepaused") == DomainState.PAUSED
    assert domain_state("something-new") == DomainState.NOSTATE
    active = {s for s, d in VM_STATES.items() if d.is_active}
    assert {"running", "paused", "stopping", "livesnapshotting", "onlinesnapshotting"} <= active
    assert not {"poweroff", "saved", "aborted", "snapshotting", "restoringsnapshot"} & active


def test_snapshot_tree() -> None:
    nodes, current = parse_snapshots(parse_machinereadable(SYNTHETIC_SNAPSHOTS))
    names = [n.name for n in nodes]
    assert names == ["Imported", "Snapshot 1", "Snapshot 2", "Snapshot-Export", "Snapshot 3"]
    parents = {n.name: n.parent_uuid for n in nodes}
    by_uuid = {n.uuid: n.name for n in nodes}
    assert parents["Imported"] is None
    assert by_uuid[parents["Snapshot 1"] or ""] == "Imported"
    assert by_uuid[parents["Snapshot 2"] or ""] == "Snapshot 1"
    assert by_uuid[parents["Snapshot-Export"] or ""] == "Snapshot 1"
    assert by_uuid[parents["Snapshot 3"] or ""] == "Imported"
    assert current == "c857d1b8-4fd6-4044-9d2c-c6e465b3cdd4"


def test_no_snapshots() -> None:
    assert parse_snapshots({}) == ([], None)


def test_list_vms_names_are_verbatim() -> None:
    text = (
        '"vm1" {0fc20e1b-1d57-4e7e-9b8a-1f7e2c3a4b5d}\n"a "quoted" {name}" {7E5B4165-91EC-4091-A74C-A5709D584530}\n\n'
    )
    assert parse_list_vms(text) == [
        ("vm1", "0fc20e1b-1d57-4e7e-9b8a-1f7e2c3a4b5d"),
        ('a "quoted" {name}', "7e5b4165-91ec-4091-a74c-a5709d584530"),
    ]


def test_list_hdds_blocks() -> None:
    media = [Medium.from_block(b) for b in parse_colon_blocks(LIST_HDDS)]
    assert [m.format for m in media] == ["VDI", "VDI"]
    assert media[0].capacity_bytes == 65536 << 20
    assert media[0].parent is None and media[1].parent == media[0].uuid
    assert media[1].location.endswith("{9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}.vdi")


def test_target_slots_round_trip() -> None:
    assert slot_for_target("vda") == ("vd", 0, 0)
    assert slot_for_target("vdb") == ("vd", 1, 0)
    assert slot_for_target("sdaa") == ("sd", 26, 0)
    assert slot_for_target("hdc") == ("hd", 1, 0)
    assert slot_for_target("hdb") == ("hd", 0, 1)
    assert slot_for_target("xvdc") == ("xvd", 2, 0)
    for target in ("vda", "vdz", "sdb", "hdd", "xvda", "sdab"):
        ctl, port, device = slot_for_target(target)
        att = Attachment(ctl, "PIIX4" if ctl == "hd" else "IntelAhci", port, device, "/x", None)
        assert target_for(att) == target
    taken = Attachment("SATA Controller", "IntelAhci", 0, 0, "/x", None)
    assert target_for(taken, ["sda"]) == "sdb"


def test_dvd_slot_with_an_iso_in_7_x_form() -> None:
    # SYNTHETIC, in the form VBoxManageInfo.cpp prints from 7.0 on (tempeject/IsEjected with port and device);
    # no real 7.x capture of a DVD slot holding an ISO is in real_outputs/.
    text = (
        'storagecontrollername0="SATA"\nstoragecontrollertype0="IntelAhci"\n'
        'storagecontrollername1="Floppy"\nstoragecontrollertype1="I82078"\n'
        '"SATA-0-0"="/isos/install.iso"\n"SATA-ImageUUID-0-0"="9c3d2e1f-0000-4000-8000-00000000000a"\n'
        '"SATA-tempeject-0-0"="off"\n"SATA-IsEjected-0-0"="off"\n"SATA-hot-pluggable-0-0"="off"\n'
        '"SATA-1-0"="/vms/a/disk.vdi"\n"SATA-ImageUUID-1-0"="9c3d2e1f-0000-4000-8000-00000000000b"\n'
        '"SATA-hot-pluggable-1-0"="off"\n"SATA-nonrotational-1-0"="off"\n"SATA-discard-1-0"="off"\n'
        '"Floppy-0-0"="/vms/a/unattended.vfd"\n'
    )
    info = parse_vminfo(text)
    assert [(a.controller, a.port, a.kind) for a in info.attachments] == [
        ("Floppy", 0, "floppy"),
        ("SATA", 0, "dvd"),
        ("SATA", 1, "hdd"),
    ]

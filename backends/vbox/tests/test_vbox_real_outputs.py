"""The parsers on outputs real VirtualBox hosts printed (``real_outputs/``, sources in its SOURCES.md).

Each sample is read from its file unchanged; where a test needs more than the sample has, the addition is
built here and marked synthetic.
"""

from __future__ import annotations

from pathlib import Path

from virtabs.spi import DomainState

from virtabs_vbox._parse import (
    DhcpServer,
    HostOnlyNetwork,
    Medium,
    NatNetwork,
    host_basename,
    parse_colon_blocks,
    parse_dhcpservers,
    parse_host_interfaces,
    parse_hostonlynets,
    parse_machinereadable,
    parse_natnets,
    parse_snapshots,
    parse_version,
    parse_vminfo,
)
from virtabs_vbox.driver import VboxDriver

REAL = Path(__file__).resolve().parent / "real_outputs"


def real(name: str) -> str:
    """A sample as VBoxManage printed it (bytes decoded as UTF-8, line ends untouched)."""
    return (REAL / name).read_bytes().decode("utf-8")


def test_every_sample_has_its_source() -> None:
    sources = (REAL / "SOURCES.md").read_text()
    samples = sorted(p.name for p in REAL.iterdir() if p.name != "SOURCES.md")
    assert samples, "no real samples"
    for name in samples:
        assert f"`{name}`" in sources, f"{name} is not in SOURCES.md"


def test_virtualbox_7_0_linux() -> None:
    info = parse_vminfo(real("showvminfo-7.0-linux-vedv.txt"))
    assert (info.name, info.uuid) == ("manjaro-gnome-x64-full-clean", "19e117b3-06f4-4a1e-851d-47336ad6a142")
    assert (info.memory_mib, info.cpus, info.state) == (4096, 4, DomainState.SHUTOFF)
    assert info.ostype == "Arch Linux (64-bit)"
    assert info.controllers == (("IDE", "PIIX4"), ("SATA", "IntelAhci"))
    by_slot = {(a.controller, a.port, a.device): a for a in info.attachments}
    # "IDE-IsEjected-1-0" (7.0's form) makes the empty IDE slot a DVD drive
    assert by_slot[("IDE", 1, 0)].kind == "dvd" and by_slot[("IDE", 1, 0)].path is None
    disk = by_slot[("SATA", 0, 0)]
    assert disk.kind == "hdd" and disk.medium_uuid == "37a0bb6b-4292-464e-b766-1e8b7101ec94"
    assert disk.path == (
        "/home/user/VirtualBox VMs/manjaro-gnome-x64-full-clean/manjaro-gnome-x64-full-clean-disk001.vdi"
    )
    assert [(n.index, n.type, n.mac, n.model) for n in info.nics] == [(1, "nat", "08002744D7F6", "82540EM")]
    assert info.description == "name1=value1\nname2=value2"  # a raw newline inside a quoted value
    data = parse_machinereadable(real("showvminfo-7.0-linux-vedv.txt"))
    assert "Encryption" not in data and not any(k.startswith("Encryption") for k in data)  # 7.0's "Encryption:" line
    assert data["BIOS NVRAM File"].endswith("manjaro-gnome-x64-full-clean.nvram")
    assert [t for t, _ in VboxDriver._targets(info)] == ["sda"]


def test_virtualbox_6_0_linux_with_a_snapshot() -> None:
    info = parse_vminfo(real("showvminfo-6.0-linux-ohai.txt"))
    assert info.uuid == "6294f16b-4f05-4430-afb9-773bdb237aec"
    assert (info.memory_mib, info.cpus, info.native_state) == (1024, 1, "poweroff")
    assert [(a.controller, a.port, a.device, a.kind) for a in info.attachments] == [("SATA Controller", 0, 0, "hdd")]
    assert [(s.name, s.uuid) for s in info.snapshots] == [("base", "085cbbec-70cd-4864-9208-5d938dcabb71")]
    assert info.current_snapshot == "085cbbec-70cd-4864-9208-5d938dcabb71"
    media = {
        m.uuid: m for m in (Medium.from_block(b) for b in parse_colon_blocks(real("list-hdds-6.0-linux-ohai.txt")))
    }
    current = media[info.attachments[0].medium_uuid or ""]
    assert current.parent == "ebb6dca0-879f-480b-a50e-9efe330bd021"
    assert media[current.parent].parent is None and media[current.parent].format == "VMDK"
    assert media[current.parent].capacity_bytes == 65536 << 20
    assert media[current.parent].state == "locked read"
    assert VboxDriver._volume(current, media).name == "{1c182745-4b09-41a1-a147-d3ced46f72f6}.vmdk"


def test_virtualbox_4_1_macos_dvd_slot_before_7_0() -> None:
    info = parse_vminfo(real("showvminfo-4.1-macos-centos57.txt"))
    assert (info.name, info.memory_mib, info.ostype) == ("Centos5.7", 380, "RedHat")
    by_slot = {(a.controller, a.port, a.device): a for a in info.attachments}
    # before 7.0 the DVD line has no port and device: "IDE Controller-IsEjected" follows the slot's own line
    assert by_slot[("IDE Controller", 1, 0)].kind == "dvd"
    assert by_slot[("SATA Controller", 0, 0)].kind == "hdd"
    assert by_slot[("SATA Controller", 0, 0)].medium_uuid == "be8b7bf1-d50f-4810-b3a7-59bf1f9f7bae"
    # the DVD drive is no disk: the SATA disk keeps its own name
    assert [t for t, _ in VboxDriver._targets(info)] == ["sda"]


LOG_PREFIX = "(default) DBG | "


def windows_5x_output() -> str:
    """The docker-machine excerpt without the log prefix, after a SYNTHETIC first line: the controller's name,
    which the real output printed just before the excerpt starts (``storagecontrollername0="SATA"``, as the
    ``"SATA-0-0"`` keys name it)."""
    lines = real("showvminfo-5.x-windows-docker-machine-3286.log").splitlines()
    assert all(line.startswith(LOG_PREFIX) for line in lines)
    return 'storagecontrollername0="SATA"\n' + "".join(line[len(LOG_PREFIX) :] + "\n" for line in lines)


def test_virtualbox_5_windows_iso_and_single_backslashes() -> None:
    info = parse_vminfo(windows_5x_output())
    iso, disk = info.attachments
    # raw (5.x) Windows paths keep every backslash
    assert iso.path == r"C:\Users\johndoe\.docker\machine\machines\default\boot2docker.iso"
    assert disk.path == r"C:\Users\johndoe\.docker\machine\machines\default\disk.vmdk"
    # the ISO's slot is a DVD drive ("SATA-tempeject"/"SATA-IsEjected" follow it), the vmdk a disk
    assert (iso.port, iso.kind) == (0, "dvd")
    assert (disk.port, disk.kind, disk.medium_uuid) == (1, "hdd", "550963f3-a632-49b5-b5dc-dec4dda5bd05")
    assert [(t, a.path) for t, a in VboxDriver._targets(info)] == [("sdb", disk.path)]
    assert host_basename(disk.path or "") == "disk.vmdk"


def test_escaped_and_raw_windows_paths_in_one_output() -> None:
    # SYNTHETIC: 7.x escapes the backslashes of every value (docker-machine's logs of 5.x show CfgFile escaped
    # and attachment paths raw in the same output); both read back as the same path.
    text = (
        'CfgFile="C:\\\\Users\\\\x\\\\VirtualBox VMs\\\\vm\\\\vm.vbox"\n'
        '"SATA-0-0"="C:\\Users\\x\\VirtualBox VMs\\vm\\new disk.vdi"\n'
        'SharedFolderPathMachineMapping1="\\\\?\\c:\\Users"\n'
    )
    data = parse_machinereadable(text)
    assert data["CfgFile"] == r"C:\Users\x\VirtualBox VMs\vm\vm.vbox"
    assert data["SATA-0-0"] == r"C:\Users\x\VirtualBox VMs\vm\new disk.vdi"  # "\n" of "\new" is no newline here
    assert data["SharedFolderPathMachineMapping1"] == r"\\?\c:\Users"


def test_windows_list_hdds_names_volumes_by_file_name() -> None:
    media = [Medium.from_block(b) for b in parse_colon_blocks(real("list-hdds-windows-notes.txt"))]
    assert [m.location for m in media] == [
        r"C:\Users\Luke\VirtualBox VMs\Ubuntu 18.04 LTS\Ubuntu 18.04 LTS.vdi",
        r"E:\Ubuntu 18.04.6\Ubuntu 18.04.6.vdi",
    ]
    by_uuid = {m.uuid: m for m in media}
    assert [VboxDriver._volume(m, by_uuid).name for m in media] == ["Ubuntu 18.04 LTS.vdi", "Ubuntu 18.04.6.vdi"]
    folder = r"C:\Users\Luke\VirtualBox VMs"
    assert VboxDriver._named(media, "Ubuntu 18.04.6.vdi", folder) is media[1]
    assert VboxDriver._named(media, "Ubuntu 18.04 LTS.vdi", folder) is media[0]
    assert VboxDriver._named(media, r"E:\Ubuntu 18.04.6\Ubuntu 18.04.6.vdi", folder) is None


def test_windows_crlf_line_ends() -> None:
    # SYNTHETIC line ends: a real sample's lines joined with CRLF, as a Windows console may print them
    # (unverified: no real CRLF capture here); the records are the same as with LF.
    text = windows_5x_output()
    assert parse_vminfo(text.replace("\n", "\r\n")) == parse_vminfo(text)


def test_packer_snapshot_tree() -> None:
    nodes, current = parse_snapshots(parse_machinereadable(real("snapshot-list-packer-snapshot_test.txt")))
    by_uuid = {n.uuid: n for n in nodes}
    parent = {n.name + "@" + n.uuid[:4]: by_uuid[n.parent_uuid].name if n.parent_uuid else None for n in nodes}
    assert parent == {
        "Imported@7e5b": None,
        "Snapshot 1@5fc4": "Imported",
        "Snapshot 2@8e12": "Snapshot 1",
        "Snapshot 3@eb34": "Snapshot 2",
        "Snapshot 4@17df": "Snapshot 2",
        "Snapshot-Export@c857": "Snapshot 1",
        "Snapshot 5@8564": "Imported",
        "Snapshot 2@7b09": "Snapshot 5",  # a second "Snapshot 2": names are not unique, UUIDs are
        "Snapshot 7@0d97": "Imported",
        "Snapshot 8@f4ed": "Snapshot 7",
        "Snapshot 9@a590": "Snapshot 7",
    }
    assert current == "c857d1b8-4fd6-4044-9d2c-c6e465b3cdd4"


def test_version_after_a_kernel_module_warning() -> None:
    assert parse_version(real("version-5.2-warning-minikube.txt")) == "5.2.22r126460"
    assert parse_version(real("version-5.2-ubuntu-warning-minikube.txt")) == "5.2.34_Ubuntur133883"
    assert parse_version("7.0.14r161095\n") == "7.0.14r161095"  # SYNTHETIC: the plain form
    assert parse_version("WARNING: something\n") is None


def test_windows_error_lines_with_the_invoked_program_name() -> None:
    from virtabs.spi import CommandResult, NoDomainError

    from virtabs_vbox._vboxmanage import error_lines, has_error_line, vbox_error

    stderr = real("error-windows-vboxmanage-rest-api.txt")
    assert error_lines(stderr) == ["Could not find a registered machine named 'undefined'"]
    assert has_error_line(stderr)
    error = vbox_error(CommandResult(("vboxmanage", "startvm", "undefined"), 1, b"", stderr.encode()), "domain")
    assert isinstance(error, NoDomainError) and "VBOX_E_OBJECT_NOT_FOUND" in str(error)


# --- host networks (issue 25) --------------------------------------------------------------------


def test_hostonlyifs_6_0_linux() -> None:
    ifs = parse_host_interfaces(real("list-hostonlyifs-6.0-linux-ohai.txt"))
    assert [(i.name, i.guid, i.ipv4, i.netmask, i.up) for i in ifs] == [
        ("vboxnet0", "786f6276-656e-4074-8000-0a0027000000", "192.168.33.1", "255.255.255.0", False),
        ("vboxnet1", "786f6276-656e-4174-8000-0a0027000001", "192.168.19.1", "255.255.255.0", True),
    ]
    # "IPV6Address:" with nothing after it is no address; vboxnet1's is link-local with a /64
    assert (ifs[0].ipv6, ifs[0].ipv6_prefix) == (None, 0)
    assert (ifs[1].ipv6, ifs[1].ipv6_prefix, ifs[1].mac) == ("fe80::800:27ff:fe00:1", 64, "0a:00:27:00:00:01")
    assert not any(i.dhcp for i in ifs)


def test_bridgedifs_6_0_linux() -> None:
    (eno1,) = parse_host_interfaces(real("list-bridgedifs-6.0-linux-ohai.txt"))
    assert (eno1.name, eno1.ipv4, eno1.netmask, eno1.mac, eno1.up) == (
        "eno1",
        "10.143.72.133",
        "255.255.255.224",
        "30:9c:23:3b:62:a9",
        True,
    )


def test_natnets_6_0_format() -> None:
    """6.x's keys (NetworkName, IP = the gateway, DHCP Enabled); the indented loopback line is no key."""
    (net,) = parse_natnets(real("list-natnets-6.0-linux-ohai.txt"))
    assert net == NatNetwork(
        name="NatNetwork", network="10.0.2.0/24", gateway="10.0.2.1", dhcp=True, enabled=True, ipv6_prefix=None
    )


def test_natnets_7_0_format_synthetic() -> None:
    """7.0 prints printNATNetwork's keys (VBoxManageNATNetwork.cpp). SYNTHETIC: built here from that source's
    format strings, no real 7.0 capture of ``list --long natnets`` is in real_outputs/."""
    text = (
        "Name:         lab net\nEnabled:      No\nNetwork:      192.168.15.0/24\nGateway:      192.168.15.1\n"
        "DHCP Server:  No\nIPv6:         Yes\nIPv6 Prefix:  fd17:625c:f037:a80f::/64\nIPv6 Default: No\n"
        "Port-forwarding (ipv4)\n        ssh:tcp:[]:1022:[192.168.15.5]:22\nloopback mappings (ipv4)\n"
        "        127.0.0.1=2\n\n"
    )
    assert parse_natnets(text) == [
        NatNetwork("lab net", "192.168.15.0/24", "192.168.15.1", False, False, "fd17:625c:f037:a80f::/64")
    ]


def test_dhcpservers_6_0_format() -> None:
    """6.0's keys (``IP``, ``lowerIPAddress`` in lower camel case), a blank line after each server; the servers
    are named by the host-only interfaces' VBoxNetworkName, as the same host's hostonlyifs capture prints it."""
    servers = parse_dhcpservers(real("list-dhcpservers-6.0-linux-ohai.txt"))
    assert servers == [
        DhcpServer("HostInterfaceNetworking-vboxnet0", "192.168.56.100", "255.255.255.0", "192.168.56.101", "192.168.56.254", True),
        DhcpServer("HostInterfaceNetworking-vboxnet1", "192.168.19.2", "255.255.255.0", "192.168.19.3", "192.168.19.254", True),
    ]  # fmt: skip
    ifs = parse_host_interfaces(real("list-hostonlyifs-6.0-linux-ohai.txt"))
    assert [i.network_name for i in ifs] == [s.network_name for s in servers]


def test_dhcpservers_6_1_and_later_format() -> None:
    """6.1+'s keys (``Dhcpd IP``, ``LowerIPAddress`` before ``NetworkMask``) with the indented global
    configuration (its ``1/legacy: 255.255.255.0`` option line is no key), a host-only and a NAT network's server."""
    assert parse_dhcpservers(real("list-dhcpservers-7.x-linux-notes.txt")) == [
        DhcpServer("HostInterfaceNetworking-vboxnet0", "192.168.56.1", "255.255.255.0", "192.168.56.101", "192.168.56.104", True),
        DhcpServer("DN01_NatNetwork", "10.0.2.2", "255.255.255.0", "10.0.2.10", "10.0.2.14", True),
    ]  # fmt: skip


def test_hostonlynets_7_macos() -> None:
    """VirtualBox 7's host-only networks on macOS: a blank line inside each entry, after ``GUID``."""
    assert parse_hostonlynets(real("list-hostonlynets-7.x-macos-notes.txt")) == [
        HostOnlyNetwork(
            "vagrantnet-vbox1",
            "bc907fa2-e158-4c1b-96fb-63b8765a64d8",
            True,
            "255.255.255.0",
            "192.168.56.0",
            "192.168.56.0",
        )
    ]


def test_teleporter_settings_in_every_showvminfo_capture() -> None:
    """``teleporterenabled``/``teleporterport`` (what the teleport target's port is read back from) as the real
    4.1, 6.0 and 7.0 captures print them for a machine that is no teleporter target."""
    for name in ("showvminfo-4.1-macos-centos57.txt", "showvminfo-6.0-linux-ohai.txt", "showvminfo-7.0-linux-vedv.txt"):
        info = parse_vminfo(real(name))
        assert (info.teleporter_enabled, info.teleporter_port) == (False, 0), name
    on = parse_vminfo(
        real("showvminfo-7.0-linux-vedv.txt").replace('teleporterenabled="off"', 'teleporterenabled="on"')
    )
    assert on.teleporter_enabled  # SYNTHETIC: the 7.0 capture with the teleporter turned on

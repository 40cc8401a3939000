"""Golden-file tests of DomainSpec -> QEMU argv. Regenerate with UPDATE_GOLDEN=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from virtabs.spi import DiskSpec, DomainSpec, InvalidArgumentError, NicSpec

from virtabs_qemu._cmdline import build_argv, incoming_from_file

GOLDEN = Path(__file__).parent / "golden"
UUID = "6d2c0c5e-1f6b-4c39-9a55-0f3a4b1c2d3e"
MiB = 1024 * 1024

SPECS = {
    "minimal": DomainSpec(name="min", memory_bytes=64 * MiB, vcpus=1),
    "qcow2-virtio-user-nic": DomainSpec(
        name="web",
        memory_bytes=512 * MiB,
        vcpus=2,
        disks=[
            DiskSpec(target="vda", path="/var/lib/img/web.qcow2", format="qcow2"),
            DiskSpec(target="vdb", path="/var/lib/img/data,1.raw", format="raw", readonly=True),
        ],
        nics=[NicSpec(network="user"), NicSpec(network="tap:tap7", mac="52:54:00:12:34:56", model="e1000")],
    ),
    "scsi-sata-kernel": DomainSpec(
        name="k",
        memory_bytes=100 * MiB + 1,
        vcpus=1,
        disks=[
            DiskSpec(target="sda", path="/i/a.qcow2", format="qcow2", bus="scsi"),
            DiskSpec(target="sdb", path="/i/b.raw", format="raw", bus="sata"),
        ],
        extra={"qemu": {"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd", "append": "console=ttyS0", "cpu": "max"}},
    ),
}


def _argv(spec: DomainSpec, accel: str = "kvm", **kw: str) -> list[str]:
    return build_argv(
        spec,
        uuid=UUID,
        emulator="qemu-system-x86_64",
        accel=accel,
        qmp_socket="/run/vt/dom/qmp.sock",
        pidfile="/run/vt/dom/qemu.pid",
        **kw,
    )


@pytest.mark.no_qemu
@pytest.mark.parametrize("case", sorted(SPECS))
def test_golden_argv(case: str) -> None:
    argv = _argv(SPECS[case])
    path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(argv, indent=1) + "\n")
    assert argv == json.loads(path.read_text())


@pytest.mark.no_qemu
def test_formats_are_explicit_and_nodes_named() -> None:
    argv = _argv(SPECS["qcow2-virtio-user-nic"])
    nodes = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "-blockdev"]
    fmt_nodes = [n for n in nodes if n["driver"] not in ("file", "host_device")]
    assert [n["driver"] for n in fmt_nodes] == ["qcow2", "raw"]
    assert all(n["node-name"] for n in nodes)
    assert "-S" in argv and "-daemonize" in argv and "-nodefaults" in argv
    assert argv[argv.index("-display") + 1] == "none"
    assert argv[argv.index("-machine") + 1] == "q35"


@pytest.mark.no_qemu
def test_tcg_and_incoming() -> None:
    argv = _argv(SPECS["minimal"], accel="tcg", incoming=incoming_from_file("/x/my save", 65536))
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-incoming") + 1] == "exec:tail -c +65537 '/x/my save'"


@pytest.mark.no_qemu
def test_unknown_network_refused() -> None:
    spec = DomainSpec(name="n", memory_bytes=64 * MiB, vcpus=1, nics=[NicSpec(network="ovs:br0")])
    with pytest.raises(InvalidArgumentError, match="ovs:br0"):
        _argv(spec)

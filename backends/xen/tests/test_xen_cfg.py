"""DomainSpec -> xl.cfg: golden files, and every generated file read back by the real parser (libxlutil 4.17).

Regenerate the golden files after an intended change with ``VIRTABS_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
import xen_xlu as xlu
from virtabs import DiskSpec, DomainSpec, InvalidArgumentError, NicSpec
from xen_helpers import require

from virtabs_xen._cfg import disk_spec_string, guest_type, render_config, spec_from_config, vif_string, xen_vdev

GOLDEN = Path(__file__).parent / "golden"
MiB = 1 << 20
UUID = "6f1c5f0e-1d2b-4c1e-9a55-2f7e8c1b0a11"
KERNEL = {"kernel": "/root/guest/vmlinuz", "ramdisk": "/root/guest/initrd.gz", "cmdline": "console=hvc0 quiet"}

SPECS = {
    "pv_minimal": DomainSpec(name="tiny", memory_bytes=128 * MiB, vcpus=1, os_type="xen", extra={"xen": KERNEL}),
    "pv_full": DomainSpec(
        name="web-1.example",
        memory_bytes=200 * MiB + 1,  # rounds up to 201 MiB
        vcpus=2,
        os_type="xen",
        disks=(
            DiskSpec("vda", "/srv/xen/web-1.img"),
            DiskSpec("xvdb", '/srv/xen/odd, "name" \\ here.img', readonly=True),
            DiskSpec("sdc", "/dev/vg0/data", bus="scsi"),
        ),
        nics=(NicSpec(), NicSpec(network="xenbr1", mac="00:16:3e:00:00:01")),
        extra={
            "xen": {
                **KERNEL,
                "cmdline": 'console=hvc0 root=/dev/xvda ro quote="x"',
                "maxmem_mib": 512,
                "maxvcpus": 4,
                "on_reboot": "destroy",
                "on_crash": "preserve",
            },
            "qemu": {"machine": "q35"},  # another driver's settings are ignored
        },
    ),
    "pvh": DomainSpec(name="pvhguest", memory_bytes=128 * MiB, vcpus=1, extra={"xen": {"type": "pvh", **KERNEL}}),
    "hvm": DomainSpec(
        name="winlike",
        memory_bytes=1024 * MiB,
        vcpus=2,
        disks=(DiskSpec("hda", "/srv/xen/disk.img", bus="ide"),),
        nics=(NicSpec(network="xenbr0", model="e1000"),),
    ),
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_golden(case: str) -> None:
    text = render_config(SPECS[case], UUID)
    golden = GOLDEN / f"{case}.cfg"
    if os.environ.get("VIRTABS_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("case", sorted(SPECS))
def test_real_parser_reads_what_the_spec_says(case: str) -> None:
    require(xlu.AVAILABLE, "libxlutil.so.4.17 (apt-get install xen-utils-4.17)")
    spec = SPECS[case]
    parsed = xlu.parse_config(
        render_config(spec, UUID),
        strings=["name", "uuid", "type", "kernel", "ramdisk", "cmdline", "on_poweroff", "on_reboot", "on_crash"],
        longs=["memory", "maxmem", "vcpus", "maxvcpus"],
        lists=["disk", "vif"],
    )
    assert parsed.strings["name"] == spec.name
    assert parsed.strings["uuid"] == UUID
    assert parsed.strings["type"] == guest_type(spec)
    assert parsed.longs["memory"] == -(-spec.memory_bytes // MiB)
    assert parsed.longs["vcpus"] == spec.vcpus
    settings = spec.extra.get("xen", {})
    for key in ("kernel", "ramdisk", "cmdline"):
        assert parsed.strings.get(key) == settings.get(key)
    assert parsed.longs["maxmem"] == settings.get("maxmem_mib", parsed.longs["memory"])
    assert parsed.longs["maxvcpus"] == settings.get("maxvcpus", spec.vcpus)
    assert len(parsed.lists["disk"]) == len(spec.disks)
    for text, disk in zip(parsed.lists["disk"], spec.disks, strict=True):
        got = xlu.parse_disk(text)
        assert (got.pdev_path, got.vdev, got.readwrite) == (disk.path, xen_vdev(disk.target), not disk.readonly)
    assert parsed.lists["vif"] == [vif_string(n) for n in spec.nics]


def test_disk_backend_reaches_the_real_parser() -> None:
    """``disk_backend`` is ``backendtype=`` on every disk: libxlutil reads qdisk (3) and phy (1); none is 0."""
    require(xlu.AVAILABLE, "libxlutil.so.4.17 (apt-get install xen-utils-4.17)")
    disk = DiskSpec("vda", "/images/a, b.img", readonly=True)
    for backend, number in ((None, 0), ("phy", 1), ("qdisk", 3)):
        parsed = xlu.parse_disk(disk_spec_string(disk, backend))
        assert (parsed.backend, parsed.pdev_path, parsed.readwrite) == (number, "/images/a, b.img", False)
    spec = attrs.evolve(SPECS["pv_full"], extra={"xen": {**SPECS["pv_full"].extra["xen"], "disk_backend": "qdisk"}})
    text = render_config(spec, UUID)
    assert text.count("backendtype=qdisk, target=") == len(spec.disks) > 0
    with pytest.raises(InvalidArgumentError, match="disk_backend must be one of phy, qdisk"):
        render_config(attrs.evolve(spec, extra={"xen": {**spec.extra["xen"], "disk_backend": "tap"}}), UUID)


def test_real_parser_rejects_a_broken_file() -> None:
    """The checker above can fail: libxlutil refuses what xl would refuse."""
    require(xlu.AVAILABLE, "libxlutil.so.4.17 (apt-get install xen-utils-4.17)")
    with pytest.raises(xlu.XluError, match="syntax error"):
        xlu.parse_config('name is "x"\n', [], [], [])
    with pytest.raises(xlu.XluError, match="access"):
        xlu.parse_disk("format=raw, vdev=xvda, access=rx, target=/x")


def test_spec_round_trips_through_the_header() -> None:
    for spec in SPECS.values():
        got = spec_from_config(render_config(spec, UUID))
        assert got is not None
        back, uuid = got
        assert uuid == UUID
        assert back.to_dict() == {**spec.to_dict(), "uuid": UUID}
    assert spec_from_config('name = "handwritten"\n') is None
    assert spec_from_config("# virtabs-spec: {not json\n") is None


def test_vdev_translation() -> None:
    assert xen_vdev("vda") == "xvda"
    assert xen_vdev("xvdc") == "xvdc"
    assert xen_vdev("sdb") == "sdb"
    with pytest.raises(InvalidArgumentError, match="'nvme'"):
        xen_vdev("nvme")


def test_disk_and_vif_strings() -> None:
    assert disk_spec_string(DiskSpec("vdb", "/a,b")) == "format=raw, vdev=xvdb, access=rw, target=/a,b"
    assert vif_string(NicSpec()) == ""
    assert vif_string(NicSpec(network="br0", mac="00:16:3e:aa:bb:cc")) == "mac=00:16:3e:aa:bb:cc, bridge=br0"


@pytest.mark.parametrize(
    ("extra", "os_type", "message"),
    [
        ({"xen": {"type": "kvm", **KERNEL}}, "xen", "xen type must be one of"),
        ({"xen": {"kernal": "/x"}}, "xen", "unknown xen setting"),
        ({"xen": {}}, "xen", "needs extra\\['xen'\\]\\['kernel'\\]"),
        ({"xen": {**KERNEL, "maxmem_mib": 64}}, "xen", "below memory"),
        ({"xen": {**KERNEL, "maxvcpus": 0}}, "xen", "positive integer"),
        ({"xen": {**KERNEL, "on_crash": "explode"}}, "xen", "on_crash must be one of"),
        ({"xen": "pv"}, "xen", "must be a mapping"),
        ({}, "linux", "cannot run os_type 'linux'"),
    ],
)
def test_invalid_specs_name_the_domain(extra: dict[str, object], os_type: str, message: str) -> None:
    spec = DomainSpec(name="bad", memory_bytes=128 * MiB, vcpus=1, os_type=os_type, extra=extra)
    with pytest.raises(InvalidArgumentError, match=message):
        render_config(spec, UUID)


def test_invalid_disks_and_nics() -> None:
    with pytest.raises(InvalidArgumentError, match="vmdk"):
        disk_spec_string(DiskSpec("xvda", "/x.vmdk", format="vmdk"))
    # the core refuses control characters in every spec; the renderer refuses them again (bypassing the core)
    disk = DiskSpec("xvda", "/x.img")
    object.__setattr__(disk, "path", "/x\n.img")
    with pytest.raises(InvalidArgumentError, match="control characters"):
        disk_spec_string(disk)
    spec = DomainSpec(name="bad", memory_bytes=128 * MiB, vcpus=1, os_type="xen", extra={"xen": dict(KERNEL)})
    spec.extra["xen"]["cmdline"] = "a\nb"
    with pytest.raises(InvalidArgumentError, match="control characters"):
        render_config(spec, UUID)
    with pytest.raises(InvalidArgumentError, match="bridge name"):
        vif_string(NicSpec(network="a bridge name that is far too long"))

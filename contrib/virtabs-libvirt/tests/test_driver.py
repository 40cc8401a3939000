"""Unit tests of the libvirt driver beyond the contract suite: URIs, XML, errors, discovery."""

from __future__ import annotations

import sys

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, NicSpec, parse_uri

from virtabs_libvirt import _xml
from virtabs_libvirt.driver import ERRORS, LibvirtDriver, _on_this_host, libvirt_uri

MiB = 1 << 20


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("libvirt+qemu:///system", "qemu:///system"),
        ("libvirt+test:///default", "test:///default"),
        ("libvirt+qemu://root@host:16509/system?no_verify=1", "qemu://root@host:16509/system?no_verify=1"),
        ("libvirt:///?uri=qemu%2Bssh://root@h/system", "qemu+ssh://root@h/system"),
        ("libvirt:///", None),
        # virtabs' own parameters (where host paths may lie) stay out of libvirt's URI
        ("libvirt+qemu:///system?path_root=/srv/a:/srv/b&socket=/s", "qemu:///system?socket=/s"),
        ("libvirt+qemu:///system?block_device=/dev/sdb", "qemu:///system"),
        ("libvirt:///?uri=qemu%2Bssh://root@h/system&path_root=/srv/a", "qemu+ssh://root@h/system"),
    ],
)
def test_libvirt_uri(uri: str, expected: str | None) -> None:
    assert libvirt_uri(parse_uri(uri)) == expected


def test_found_only_through_the_entry_point() -> None:
    entry = {d.name: d for d in virtabs.installed_drivers()}["libvirt"]
    assert entry.distribution == "virtabs-libvirt"
    assert entry.target == "virtabs_libvirt.driver:LibvirtDriver"
    with virtabs.open("libvirt+test:///default") as conn:
        assert conn.driver_name == "libvirt"
        assert conn.host_info().hypervisor == "libvirt-test"


def test_missing_libvirt_python_is_driver_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", None)
    with pytest.raises(virtabs.DriverUnavailableError) as exc:
        virtabs.open("libvirt+test:///default")
    assert "pip install libvirt-python" in exc.value.message
    assert int(exc.value.code) == 1002


def test_libvirt_errors_become_virtabs_errors_naming_the_object() -> None:
    with virtabs.open("libvirt+test:///default") as conn:
        with pytest.raises(virtabs.NoDomainError) as exc:
            conn.lookup_domain("no-such-vm")
        assert int(exc.value.code) == 42 and "no-such-vm" in exc.value.message
        with pytest.raises(virtabs.NoStoragePoolError) as pexc:
            conn.lookup_storage_pool("no-such-pool")
        assert int(pexc.value.code) == 49 and "no-such-pool" in pexc.value.message
        spec = DomainSpec(name="vt-unit-dup", memory_bytes=64 * MiB, vcpus=1)
        dom = conn.define_domain(spec)
        try:
            with pytest.raises(virtabs.VirtabsError) as dexc:
                conn.define_domain(spec)
            assert "vt-unit-dup" in dexc.value.message
        finally:
            dom.undefine()


def test_capabilities_follow_the_libvirt_driver() -> None:
    with virtabs.open("libvirt+test:///default") as conn:
        assert not conn.supports("block.copy") and not conn.supports("domain.disk_hotplug")
        assert conn.supports("domain.snapshot") and conn.supports("events")
    assert LibvirtDriver._refine("QEMU") == LibvirtDriver.capabilities
    assert not LibvirtDriver._refine("LXC").supported & {virtabs.Capability.BLOCK_COPY}


def test_domain_xml_round_trip() -> None:
    spec = DomainSpec(
        name="vt-xml",
        memory_bytes=128 * MiB,
        vcpus=2,
        disks=(DiskSpec("vda", "/img/a.qcow2", format="qcow2"), DiskSpec("vdb", "/dev/sdz", readonly=True)),
        nics=(NicSpec(network="default", mac="52:54:00:00:00:01"),),
        uuid="6695eb01-f6a4-8304-79aa-97f2502e193f",
        extra={"libvirt": {"machine": "q35"}},
    )
    xml = _xml.domain_xml(spec, "kvm")
    assert '<type machine="q35">hvm</type>' in xml
    back = _xml.spec_from_xml(xml)
    assert (back.name, back.memory_bytes, back.vcpus, back.uuid) == (spec.name, spec.memory_bytes, 2, spec.uuid)
    assert back.disks == spec.disks
    assert back.nics == spec.nics


def test_domain_xml_takes_one_clock_element() -> None:
    clock = "<clock offset='absolute' start='946684800'><timer name='rtc' track='guest'/></clock>"
    spec = DomainSpec(name="vt-clock", memory_bytes=64 * MiB, vcpus=1, extra={"libvirt": {"clock": clock}})
    xml = _xml.domain_xml(spec, "kvm")
    assert '<clock offset="absolute" start="946684800"><timer name="rtc" track="guest" /></clock>' in xml
    assert xml.index("<clock") < xml.index("<devices")
    wrong = DomainSpec(name="vt-clock", memory_bytes=64 * MiB, vcpus=1, extra={"libvirt": {"clock": "<os/>"}})
    with pytest.raises(virtabs.InvalidArgumentError, match="one <clock> element"):
        _xml.domain_xml(wrong, "kvm")


def test_live_disk_xml_gives_the_backing_chain() -> None:
    xml = """<domain><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/snap2.qcow2'/>
        <backingStore type='file'><format type='qcow2'/><source file='/i/snap1.qcow2'/>
          <backingStore type='file'><format type='qcow2'/><source file='/i/base.qcow2'/><backingStore/></backingStore>
        </backingStore><target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><source file='/i/x.iso'/><target dev='sda' bus='sata'/></disk>
    </devices></domain>"""
    (disk,) = _xml.disks_from_xml(xml)
    assert (disk.target, disk.path, disk.format) == ("vda", "/i/snap2.qcow2", "qcow2")
    assert disk.backing_chain == ("/i/snap1.qcow2", "/i/base.qcow2")


def test_copy_destination_xml() -> None:
    assert (
        _xml.copy_dest_xml("/d/x.raw", "raw", False)
        == '<disk type="file"><driver type="raw" /><source file="/d/x.raw" /></disk>'
    )
    assert _xml.copy_dest_xml("/dev/loop3", None, True) == '<disk type="block"><source dev="/dev/loop3" /></disk>'


def test_libvirts_own_refusals_are_mapped_by_its_error_number() -> None:
    """libvirt's test driver refuses a resize natively (VIR_ERR_NO_SUPPORT) and the driver maps that to
    NotSupportedError; the connection does not declare storage.volume.resize, so the public call is refused
    by the core before libvirt is asked (the driver method is called directly to see libvirt's own refusal)."""
    with virtabs.open("libvirt+test:///default") as conn:
        assert conn.supports("storage.volume") and not conn.supports("storage.volume.resize")
        pool = conn.lookup_storage_pool("default-pool")
        vol = pool.create_volume("vt-unit-resize.img", MiB, format="raw")
        try:
            with pytest.raises(virtabs.NotSupportedError) as refused:
                vol.resize(2 * MiB)
            assert "storage.volume.resize" in refused.value.message and refused.value.__cause__ is None
            with pytest.raises(virtabs.NotSupportedError) as exc:
                conn._driver.resize_volume("default-pool", "vt-unit-resize.img", 2 * MiB)
            assert "resize of volume 'vt-unit-resize.img'" in exc.value.message
            assert "virStorageVolResize" in exc.value.message
            assert type(exc.value.__cause__).__name__ == "libvirtError"
        finally:
            vol.delete()


def test_the_error_map_follows_libvirts_error_numbers() -> None:
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        with pytest.raises(libvirt.libvirtError) as native:
            conn.lookupByName("vt-unit-none")
    finally:
        conn.close()
    error = ERRORS.translate(native.value, "lookup of domain 'vt-unit-none'")
    assert isinstance(error, virtabs.NoDomainError) and int(error.code) == libvirt.VIR_ERR_NO_DOMAIN
    assert error.message == f"lookup of domain 'vt-unit-none': {native.value.get_error_message()}"
    assert error.__cause__ is native.value
    other = ERRORS.translate(RuntimeError("boom"), "x")
    assert isinstance(other, virtabs.OperationFailedError)


def test_the_driver_has_no_capability_or_read_only_checks() -> None:
    """The gate does them; a driver that checks again drifts from it (issue 9). A source-level guard."""
    import inspect

    from virtabs_libvirt import driver

    source = inspect.getsource(driver)
    for needle in ("_need(", "_need_block(", "_writable", "readonly:", "NotSupportedError("):
        assert needle not in source, needle


@pytest.mark.parametrize(
    ("uri", "here"),
    [
        ("libvirt+qemu:///system", True),
        ("libvirt+test:///default", True),
        ("libvirt:///?uri=test%2Bunix:///default%3Fsocket%3D/run/x.sock", True),
        ("libvirt:///", True),
        ("libvirt+qemu://host/system", False),
        ("libvirt:///?uri=qemu%2Bssh://root@h/system", False),
    ],
)
def test_paths_are_resolved_here_only_for_a_libvirt_without_a_host(uri: str, here: bool) -> None:
    """A far host's paths are judged lexically (its symlinks and files are not visible from here)."""
    assert _on_this_host(libvirt_uri(parse_uri(uri))) is here

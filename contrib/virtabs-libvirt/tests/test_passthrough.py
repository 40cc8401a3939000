"""What a definition may hand to libvirt as raw XML (``virtabs_libvirt._passthrough``).

Through the driver on libvirt's ``test`` driver (the refusals come before libvirt is asked to define anything,
so the engine does not change what is refused): each device that would reach the host under ``qemu:///system``
is refused with nothing defined; the devices a guest keeps to itself are defined and read back by libvirt.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import virtabs
from virtabs import DomainSpec

from virtabs_libvirt._passthrough import emulators_of

MiB = 1 << 20
URI = "libvirt+test:///default"

# (what it would reach under qemu:///system, the raw device)
HOSTILE_DEVICES = [
    ("the host's / through virtiofsd as root", "<filesystem type='mount'><driver type='virtiofs'/><source dir='/'/><target dir='host'/></filesystem>"),
    ("the host's / through 9p", "<filesystem type='mount' accessmode='passthrough'><source dir='/'/><target dir='r'/></filesystem>"),
    ("a host PCI device", "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='0' slot='2' function='0'/></source></hostdev>"),
    ("the host's disk", "<disk type='block' device='disk'><source dev='/dev/sda'/><target dev='vdz' bus='virtio'/></disk>"),
    ("a host file as a disk", "<disk type='file' device='disk'><source file='/etc/shadow'/><target dev='vdz' bus='virtio'/></disk>"),
    ("a host file through a serial port", "<serial type='file'><source path='/etc/passwd'/><target port='0'/></serial>"),
    ("a host socket through a channel", "<channel type='unix'><source mode='connect' path='/run/docker.sock'/><target type='virtio' name='x'/></channel>"),
    ("a host device through rng", "<rng model='virtio'><backend model='random'>/dev/sda</backend></rng>"),
    ("a host port through graphics", "<graphics type='vnc' port='5999' listen='0.0.0.0'/>"),
    ("a host interface", "<interface type='direct'><source dev='eth0' mode='passthrough'/></interface>"),
    ("the host's vsock services", "<vsock model='virtio'><cid auto='yes'/></vsock>"),
    ("the host's TPM", "<tpm model='tpm-tis'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>"),
    ("a host input device", "<input type='passthrough' bus='virtio'><source evdev='/dev/input/event0'/></input>"),
    ("a host input device without a source", "<input type='evdev'/>"),
    ("a host render node", "<video><model type='virtio'><acceleration accel3d='yes'/></model><driver name='qemu'/><gl rendernode='/dev/dri/renderD128'/></video>"),
    ("a source hidden in an allowed element", "<controller type='usb'><source dev='/dev/bus/usb'/></controller>"),
    ("QEMU arguments of their own", "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:arg value='-x'/></qemu:commandline>"),
    ("a namespaced element in an allowed one", "<video xmlns:q='urn:x'><q:arg value='-x'/></video>"),
    ("shared host memory", "<shmem name='host'><model type='ivshmem-plain'/></shmem>"),
    ("an emulator element", "<emulator>/bin/sh</emulator>"),
    ("not XML", "<video>"),
]  # fmt: skip

# Devices that stay inside the guest (the first two are the qemu:///system contract target's).
GUEST_DEVICES = [
    "<video><model type='none'/></video>",
    "<memballoon model='none'/>",
    "<input type='tablet' bus='usb'/>",
    "<watchdog model='i6300esb' action='reset'/>",
    "<controller type='usb' index='0' model='qemu-xhci'/>",
]


@pytest.fixture
def conn() -> Iterator[virtabs.Connection]:
    with virtabs.open(URI) as c:
        yield c


def _spec(name: str, **libvirt: object) -> DomainSpec:
    return DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, extra={"libvirt": libvirt})


@pytest.mark.parametrize(("reach", "device"), HOSTILE_DEVICES, ids=[case[0] for case in HOSTILE_DEVICES])
def test_a_device_that_reaches_the_host_is_refused_before_libvirt(
    conn: virtabs.Connection, reach: str, device: str
) -> None:
    before = [d.name for d in conn.list_domains()]
    with pytest.raises(virtabs.InvalidArgumentError) as exc:
        conn.define_domain(_spec("raw-dev", devices=["<video><model type='none'/></video>", device]))
    assert "raw-dev" in str(exc.value) and "devices" in str(exc.value)
    assert [d.name for d in conn.list_domains()] == before


def test_devices_that_stay_in_the_guest_are_defined(conn: virtabs.Connection) -> None:
    dom = conn.define_domain(_spec("guest-dev", devices=GUEST_DEVICES))
    try:
        root = ET.fromstring(conn._driver._conn.lookupByName("guest-dev").XMLDesc(0))  # type: ignore[attr-defined]
        devices = root.find("devices")
        assert devices is not None
        for tag in ("video", "memballoon", "input", "watchdog", "controller"):
            assert devices.find(tag) is not None, tag
        assert devices.find("watchdog").get("model") == "i6300esb"  # type: ignore[union-attr]
    finally:
        dom.undefine()


def test_the_emulator_is_one_the_host_lists(conn: virtabs.Connection) -> None:
    listed = emulators_of(conn._driver._conn.getCapabilities())  # type: ignore[attr-defined]
    assert listed == {"/usr/bin/test-hv"}  # what libvirt's test driver lists
    for program in ("/bin/sh", "/usr/bin/test-hv/../../../bin/sh", "relative"):
        with pytest.raises(virtabs.InvalidArgumentError, match="capabilities list"):
            conn.define_domain(_spec("raw-emu", emulator=program))
        assert "raw-emu" not in [d.name for d in conn.list_domains()]
    dom = conn.define_domain(_spec("raw-emu", emulator="/usr/bin/test-hv"))
    try:
        root = ET.fromstring(conn._driver._conn.lookupByName("raw-emu").XMLDesc(0))  # type: ignore[attr-defined]
        assert root.findtext("devices/emulator") == "/usr/bin/test-hv"
    finally:
        dom.undefine()


def test_emulators_of_reads_both_places_of_the_capabilities() -> None:
    """A minimal document in the capabilities schema (written here, not a capture): an arch's emulator and a
    domain type's own."""
    caps = """<capabilities><host/>
      <guest><os_type>hvm</os_type><arch name='x86_64'><emulator>/usr/bin/qemu-system-x86_64</emulator>
        <domain type='qemu'/><domain type='kvm'><emulator>/usr/bin/kvm-spice</emulator></domain></arch></guest>
    </capabilities>"""
    assert emulators_of(caps) == {"/usr/bin/qemu-system-x86_64", "/usr/bin/kvm-spice"}

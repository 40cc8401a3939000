"""What a definition may hand to libvirt as raw XML: ``extra["libvirt"]["devices"]`` and ``["emulator"]``.

Whoever may define a domain writes ``spec.extra``; libvirtd runs as root. Under ``qemu:///system`` it opens,
relabels (``dynamic_ownership``: chown to the QEMU user) or starts as root what a device names on the host: a
``<filesystem>`` starts virtiofsd as root on a host directory (``/`` included), a ``<hostdev>`` detaches a host
PCI/USB/SCSI device for the guest, a ``<disk>`` or ``<serial type='file'>`` hands a host file or block device
to the guest after a chown, a ``<graphics>`` or ``<channel>`` listens on a host socket, an ``<emulator>`` is a
host program libvirtd runs (as the QEMU user, to probe it and to start the domain). So:

* a raw device is one of :data:`RAW_DEVICE_ELEMENTS`, whose effect stays inside the guest, and nothing in it
  names a host object: no ``<source>`` or ``<backend>`` element, no attribute or text that is an absolute path,
  no element of another XML namespace;
* an emulator is one the host's capabilities list (``virConnectGetCapabilities``).

Disks and NICs come from ``DomainSpec.disks`` and ``DomainSpec.nics``, not from raw XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from virtabs.spi import InvalidArgumentError, quote

__all__ = ["RAW_DEVICE_ELEMENTS", "REFUSED_DEVICE_ELEMENTS", "check_emulator", "emulators_of", "raw_device"]

#: Device elements ``extra["libvirt"]["devices"]`` may hold: each is a part of the virtual machine itself.
RAW_DEVICE_ELEMENTS = frozenset(
    {"video", "memballoon", "input", "sound", "watchdog", "panic", "controller", "hub", "iommu"}
)
#: Why the best-known other device elements are refused (any other element is refused too).
REFUSED_DEVICE_ELEMENTS = {
    "disk": "names a host file or block device, which libvirtd hands to QEMU (give disks as DomainSpec.disks)",
    "filesystem": "exports a host directory to the guest (virtiofsd runs as root)",
    "hostdev": "hands a host PCI, USB or SCSI device to the guest",
    "interface": "attaches to host interfaces or runs host scripts (give NICs as DomainSpec.nics)",
    "serial": "connects to a host file, socket, device or terminal",
    "console": "connects to a host file, socket, device or terminal",
    "channel": "connects to a host file or socket",
    "parallel": "connects to a host file, socket or device",
    "graphics": "listens on the host (an address or a socket path)",
    "rng": "reads a host device or socket",
    "tpm": "hands the host's TPM, or a TPM emulator's host state, to the guest",
    "shmem": "shares host memory",
    "memory": "maps a host file or device as guest memory",
    "redirdev": "redirects host USB devices",
    "smartcard": "hands a host smartcard or socket to the guest",
    "vsock": "opens a channel to the host's vsock services",
    "lease": "writes a host lock file",
    "audio": "plays to or records from the host (a file or a sound server)",
    "emulator": "names the host program libvirtd runs: use extra['libvirt']['emulator']",
}
_INPUT_TYPES = frozenset({"mouse", "keyboard", "tablet"})
_HOST_ELEMENTS = frozenset({"source", "backend"})


def raw_device(name: str, snippet: object) -> ET.Element:
    """The element of raw device XML ``snippet`` of domain ``name``, or InvalidArgumentError saying why not."""
    what = f"domain {quote(name)}: extra['libvirt']['devices'] entry {quote(str(snippet))}"
    try:
        device = ET.fromstring(str(snippet))
    except ET.ParseError as exc:
        raise InvalidArgumentError(f"{what} is not XML: {exc}") from None
    if device.tag not in RAW_DEVICE_ELEMENTS:
        why = REFUSED_DEVICE_ELEMENTS.get(device.tag, "it is not one whose effect stays inside the guest")
        raise InvalidArgumentError(
            f"{what}: element {quote(device.tag)} is refused: {why} (allowed: {', '.join(sorted(RAW_DEVICE_ELEMENTS))})"
        )
    if device.tag == "input" and device.get("type") not in _INPUT_TYPES:
        raise InvalidArgumentError(
            f"{what}: an <input> of type {quote(device.get('type'))} reads a host device (allowed types: "
            f"{', '.join(sorted(_INPUT_TYPES))})"
        )
    for element in device.iter():
        if not isinstance(element.tag, str) or element.tag.startswith("{") or ":" in element.tag:
            raise InvalidArgumentError(f"{what}: elements of another XML namespace are refused")
        if element.tag in _HOST_ELEMENTS:
            raise InvalidArgumentError(f"{what}: a <{element.tag}> names a host device, file or socket")
        for value in (*element.attrib.values(), element.text or ""):
            if value.strip().startswith("/"):
                raise InvalidArgumentError(f"{what}: {quote(value.strip())} names a host path")
    return device


def emulators_of(capabilities_xml: str) -> frozenset[str]:
    """The emulator binaries a host's capabilities XML lists (``guest/arch/emulator``, ``guest/arch/domain/emulator``)."""
    root = ET.fromstring(capabilities_xml)
    found = {e.text.strip() for e in root.iterfind("./guest/arch//emulator") if e.text and e.text.strip()}
    return frozenset(found)


def check_emulator(name: str, emulator: str, listed: Iterable[str]) -> None:
    """InvalidArgumentError unless ``emulator`` is one of the host's ``listed`` emulators."""
    known = sorted(listed)
    if emulator not in known:
        raise InvalidArgumentError(
            f"domain {quote(name)}: extra['libvirt']['emulator'] {quote(emulator)} is not an emulator the host's "
            f"capabilities list (libvirtd would run it on the host); listed: {', '.join(known) or 'none'}"
        )

"""libvirt XML <-> virtabs models (ElementTree only; no libvirt import)."""

from __future__ import annotations

import datetime as _dt
import re
import xml.etree.ElementTree as ET
from typing import Any

from virtabs.spi import (
    DiskInfo,
    DiskSpec,
    DomainSpec,
    DomainState,
    InvalidArgumentError,
    NicInfo,
    NicSpec,
    PoolInfo,
    Snapshot,
    VolumeInfo,
    quote,
)

__all__ = [
    "copy_dest_xml",
    "disk_xml",
    "disks_from_xml",
    "domain_xml",
    "nics_from_xml",
    "pool_from_xml",
    "snapshot_from_xml",
    "spec_from_xml",
    "volume_xml",
]

_UNITS = {
    "b": 1,
    "bytes": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
    "t": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def _size(elem: ET.Element | None, default_unit: str = "KiB") -> int | None:
    if elem is None or elem.text is None:
        return None
    unit = (elem.get("unit") or default_unit).lower()
    return int(elem.text.strip()) * _UNITS.get(unit, 1)


# ElementTree escapes markup (& < > and quotes in attributes) but writes any character: one that XML 1.0
# cannot hold at all (C0 controls other than tab, newline and CR; lone surrogates; U+FFFE, U+FFFF) would
# make a document libvirt refuses, or reads differently. Such a value is refused, never written.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _refuse_non_xml(root: ET.Element) -> None:
    for elem in root.iter():
        texts = [elem.text or "", elem.tail or ""]
        texts += [part for item in elem.attrib.items() for part in item]
        for text in texts:
            found = _NOT_XML.search(text)
            if found:
                raise InvalidArgumentError(
                    f"<{elem.tag}>: the value {quote(text)} holds {found.group()!r}, which XML cannot hold"
                )


def _to_string(root: ET.Element) -> str:
    _refuse_non_xml(root)
    return ET.tostring(root, encoding="unicode")


# --- domains -----------------------------------------------------------------------


def disk_xml(disk: DiskSpec) -> str:
    """A ``<disk>`` element for ``disk`` (a file, or a block device under /dev)."""
    is_dev = disk.path.startswith("/dev/")
    elem = ET.Element("disk", type="block" if is_dev else "file", device="disk")
    ET.SubElement(elem, "driver", name="qemu", type=disk.format)
    ET.SubElement(elem, "source").set("dev" if is_dev else "file", disk.path)
    ET.SubElement(elem, "target", dev=disk.target, bus=disk.bus)
    if disk.readonly:
        ET.SubElement(elem, "readonly")
    return _to_string(elem)


# libvirt writes <os><type arch='...' machine='...'> back without escaping (libvirt 9.0 formats
# machine='pc'' for pc'): its own saved XML would not parse again. These are names: a word of them.
_NAME_TOKEN = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


def _token(value: object, what: str) -> str:
    text = str(value)
    if not _NAME_TOKEN.fullmatch(text):
        raise InvalidArgumentError(f"{what} {quote(text)}: use letters, digits, '_', '.', '+' or '-'")
    return text


def domain_xml(spec: DomainSpec, domain_type: str, *, arch: str | None = None) -> str:
    """The ``<domain>`` XML for ``spec``. ``spec.extra["libvirt"]`` may set ``machine``, ``emulator``, ``arch``,
    ``devices`` (raw device XML snippets) and ``clock`` (one raw ``<clock>`` element)."""
    extra: dict[str, Any] = dict(spec.extra.get("libvirt", {}) or {})
    for key in ("domain_type", "arch", "machine"):
        if extra.get(key):
            extra[key] = _token(extra[key], f"domain {quote(spec.name)}: extra['libvirt'][{quote(key)}]")
    root = ET.Element("domain", type=str(extra.get("domain_type", domain_type)))
    ET.SubElement(root, "name").text = spec.name
    if spec.uuid:
        ET.SubElement(root, "uuid").text = spec.uuid
    ET.SubElement(root, "memory", unit="KiB").text = str(spec.memory_bytes // 1024)
    ET.SubElement(root, "vcpu").text = str(spec.vcpus)
    os_elem = ET.SubElement(root, "os")
    os_type = ET.SubElement(os_elem, "type")
    os_type.text = spec.os_type
    if extra.get("arch") or arch:
        os_type.set("arch", str(extra.get("arch") or arch))
    if extra.get("machine"):
        os_type.set("machine", str(extra["machine"]))
    if extra.get(
        "clock"
    ):  # e.g. "<clock offset='absolute' start='946684800'><timer name='rtc' track='guest'/></clock>"
        clock = ET.fromstring(str(extra["clock"]))
        if clock.tag != "clock":
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: extra['libvirt']['clock'] must be one <clock> element, got <{clock.tag}>"
            )
        root.append(clock)
    devices = ET.SubElement(root, "devices")
    if extra.get("emulator"):
        ET.SubElement(devices, "emulator").text = str(extra["emulator"])
    for disk in spec.disks:
        devices.append(ET.fromstring(disk_xml(disk)))
    for nic in spec.nics:
        if nic.network == "user":
            iface = ET.SubElement(devices, "interface", type="user")
        else:
            iface = ET.SubElement(devices, "interface", type="network")
            ET.SubElement(iface, "source", network=nic.network)
        if nic.mac:
            ET.SubElement(iface, "mac", address=nic.mac)
        ET.SubElement(iface, "model", type=nic.model)
    for device in extra.get("devices", ()):  # raw device XML snippets, e.g. "<video><model type='none'/></video>"
        devices.append(ET.fromstring(str(device)))
    return _to_string(root)


def _chain(disk: ET.Element) -> tuple[str, ...]:
    out: list[str] = []
    store = disk.find("backingStore")
    while store is not None:
        source = store.find("source")
        path = None if source is None else (source.get("file") or source.get("dev"))
        if not path:
            break
        out.append(path)
        store = store.find("backingStore")
    return tuple(out)


def disks_from_xml(xml: str) -> list[DiskInfo]:
    """The ``device='disk'`` disks of a domain XML (live XML includes the backing chain)."""
    out = []
    for disk in ET.fromstring(xml).findall("./devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        target = disk.find("target")
        source = disk.find("source")
        driver = disk.find("driver")
        path = None if source is None else (source.get("file") or source.get("dev") or source.get("name"))
        if target is None or not path:
            continue
        out.append(
            DiskInfo(
                target=target.get("dev", ""),
                path=path,
                format=(driver.get("type") if driver is not None else None) or "raw",
                bus=target.get("bus", "virtio"),
                readonly=disk.find("readonly") is not None,
                backing_chain=_chain(disk),
                pool=source.get("pool") if source is not None else None,
            )
        )
    return out


def nics_from_xml(xml: str, addresses: dict[str, tuple[str, ...]] | None = None) -> list[NicInfo]:
    """The interfaces of a domain XML; ``addresses`` maps MAC -> IPs."""
    out = []
    for iface in ET.fromstring(xml).findall("./devices/interface"):
        mac_elem = iface.find("mac")
        mac = mac_elem.get("address") if mac_elem is not None else None
        source = iface.find("source")
        network = None
        if source is not None:
            network = source.get("network") or source.get("bridge") or source.get("dev")
        elif iface.get("type") == "user":
            network = "user"
        model = iface.find("model")
        out.append(
            NicInfo(
                mac=mac,
                network=network,
                model=model.get("type") if model is not None else None,
                ips=(addresses or {}).get(mac or "", ()),
            )
        )
    return out


def spec_from_xml(xml: str) -> DomainSpec:
    """A portable DomainSpec read from a domain XML (what virtabs can express of it)."""
    root = ET.fromstring(xml)
    memory = _size(root.find("memory")) or 1024 * 1024
    vcpu_elem = root.find("vcpu")
    vcpus = int(vcpu_elem.text.strip()) if vcpu_elem is not None and vcpu_elem.text else 1
    os_type_elem = root.find("./os/type")
    os_type = (os_type_elem.text or "hvm").strip() if os_type_elem is not None else "hvm"
    disks = []
    for d in disks_from_xml(xml):
        try:
            disks.append(DiskSpec(d.target, d.path, format=d.format, bus=d.bus, readonly=d.readonly))
        except ValueError:
            continue  # a disk virtabs cannot express (exotic bus or format) is left out of the portable spec
    nics = []
    for n in nics_from_xml(xml):
        try:
            nics.append(NicSpec(network=n.network or "default", mac=n.mac, model=n.model or "virtio"))
        except ValueError:
            continue
    extra = {"libvirt": {"domain_type": root.get("type", "")}}
    return DomainSpec(
        name=(root.findtext("name") or "").strip(),
        memory_bytes=memory,
        vcpus=vcpus,
        disks=tuple(disks),
        nics=tuple(nics),
        uuid=(root.findtext("uuid") or "").strip() or None,
        os_type=os_type if os_type in ("hvm", "xen", "exe", "linux") else "hvm",
        extra=extra,
    )


def copy_dest_xml(dest: str, format: str | None, block_device: bool) -> str:
    """The destination ``<disk>`` of virDomainBlockCopy."""
    elem = ET.Element("disk", type="block" if block_device else "file")
    if format is not None:
        ET.SubElement(elem, "driver", type=format)
    ET.SubElement(elem, "source").set("dev" if block_device else "file", dest)
    return _to_string(elem)


# --- snapshots -------------------------------------------------------------------------

_SNAP_STATES = {
    "running": DomainState.RUNNING,
    "blocked": DomainState.BLOCKED,
    "paused": DomainState.PAUSED,
    "shutdown": DomainState.SHUTDOWN,
    "shutoff": DomainState.SHUTOFF,
    "crashed": DomainState.CRASHED,
    "pmsuspended": DomainState.PMSUSPENDED,
    "disk-snapshot": DomainState.SHUTOFF,
}


def snapshot_from_xml(xml: str, domain: str) -> Snapshot:
    """A Snapshot from ``<domainsnapshot>`` XML."""
    root = ET.fromstring(xml)
    created = root.findtext("creationTime")
    when = _dt.datetime.fromtimestamp(int(created), _dt.UTC) if created else _dt.datetime.now(_dt.UTC)
    state = (root.findtext("state") or "shutoff").strip()
    parent = root.findtext("./parent/name")
    disks = root.findall("./disks/disk")
    external = any(d.get("snapshot") == "external" for d in disks)
    return Snapshot(
        name=(root.findtext("name") or "").strip(),
        domain=domain,
        created_at=when,
        state=_SNAP_STATES.get(state, DomainState.NOSTATE),
        parent=parent.strip() if parent else None,
        kind="external" if external else "internal",
    )


# --- storage ---------------------------------------------------------------------------


def pool_from_xml(xml: str, info: list[int], active: bool) -> PoolInfo:
    """A PoolInfo from pool XML and ``virStoragePool.info()`` ([state, capacity, allocation, available])."""
    root = ET.fromstring(xml)
    return PoolInfo(
        name=(root.findtext("name") or "").strip(),
        type=root.get("type", "unknown"),
        capacity_bytes=int(info[1]),
        allocation_bytes=int(info[2]),
        available_bytes=int(info[3]),
        path=(root.findtext("./target/path") or "").strip() or None,
        active=active,
        uuid=(root.findtext("uuid") or "").strip() or None,
    )


def volume_xml(name: str, capacity_bytes: int, format: str, backing: str | None, backing_format: str | None) -> str:
    """``<volume>`` XML for virStorageVolCreateXML."""
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", unit="bytes").text = str(capacity_bytes)
    ET.SubElement(root, "allocation", unit="bytes").text = "0"
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=format)
    if backing is not None:
        store = ET.SubElement(root, "backingStore")
        ET.SubElement(store, "path").text = backing
        ET.SubElement(store, "format", type=backing_format or "qcow2")
    return _to_string(root)


def volume_from_xml(xml: str, pool: str, path: str, info: list[int], chain: tuple[str, ...]) -> VolumeInfo:
    """A VolumeInfo from volume XML and ``virStorageVol.info()`` ([type, capacity, allocation])."""
    root = ET.fromstring(xml)
    fmt = root.find("./target/format")
    return VolumeInfo(
        name=(root.findtext("name") or "").strip(),
        pool=pool,
        path=path,
        format=(fmt.get("type") if fmt is not None else None) or "raw",
        capacity_bytes=int(info[1]),
        allocation_bytes=int(info[2]),
        backing_chain=chain,
    )


def volume_backing(xml: str) -> str | None:
    """The backing path a volume XML names, if any."""
    path = ET.fromstring(xml).findtext("./backingStore/path")
    return path.strip() if path and path.strip() else None

"""libvirt XML <-> virtabs models (ElementTree only; no libvirt import)."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from virtabs.spi import (
    DiskInfo,
    DiskSpec,
    DomainSpec,
    DomainState,
    InvalidArgumentError,
    NetworkAttachment,
    NetworkInfo,
    NetworkKind,
    NetworkSubnet,
    NicInfo,
    NicSpec,
    PoolInfo,
    Snapshot,
    VolumeInfo,
    quote,
)

from ._passthrough import raw_device

__all__ = [
    "bridge_interfaces",
    "copy_dest_xml",
    "disk_xml",
    "disks_from_xml",
    "domain_xml",
    "network_from_xml",
    "network_keys",
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
        devices.append(raw_device(spec.name, device))  # only devices that stay inside the guest
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


NetworkKeys = Mapping[tuple[str, str], str]
"""What a NIC's source can name -> the libvirt network it is on: ``("network", NAME)`` and ``("bridge", DEVICE)``
(a ``type='bridge'`` interface on the bridge of a libvirt network). Built by :func:`network_keys`."""


def _nic_network(iface: ET.Element, networks: NetworkKeys | None) -> str | None:
    source = iface.find("source")
    kind = iface.get("type")
    if networks is None:  # the definition as written (a spec's NicSpec): whatever the source names
        if source is not None:
            return source.get("network") or source.get("bridge") or source.get("dev")
        return "user" if kind == "user" else None
    if source is None or kind not in ("network", "bridge"):
        return None
    return networks.get((str(kind), source.get(str(kind)) or ""))


def nics_from_xml(
    xml: str, addresses: dict[str, tuple[str, ...]] | None = None, networks: NetworkKeys | None = None
) -> list[NicInfo]:
    """The interfaces of a domain XML; ``addresses`` maps MAC -> IPs.

    With ``networks`` (:func:`network_keys`), a NIC's ``network`` is the libvirt network it is on, or None
    for a NIC on no libvirt network (a host bridge of its own, macvtap, user-mode, a network that is not
    defined); without, it is whatever the interface's source names (the definition as written).
    """
    out = []
    for iface in ET.fromstring(xml).findall("./devices/interface"):
        mac_elem = iface.find("mac")
        mac = mac_elem.get("address") if mac_elem is not None else None
        model = iface.find("model")
        out.append(
            NicInfo(
                mac=mac,
                network=_nic_network(iface, networks),
                model=model.get("type") if model is not None else None,
                ips=(addresses or {}).get(mac or "", ()),
            )
        )
    return out


def bridge_interfaces(xml: str) -> bool:
    """Whether a domain XML has a ``type='bridge'`` interface (naming its network needs the networks' XML)."""
    return ET.fromstring(xml).find("./devices/interface[@type='bridge']") is not None


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


# --- networks --------------------------------------------------------------------------

_FORWARD_KINDS: Mapping[str, NetworkKind] = {
    "nat": NetworkKind.NAT,
    "route": NetworkKind.ROUTED,
    "open": NetworkKind.ROUTED,
    "bridge": NetworkKind.BRIDGE,
    "private": NetworkKind.MACVLAN,
    "vepa": NetworkKind.MACVLAN,
    "passthrough": NetworkKind.MACVLAN,
}


def _forward(root: ET.Element) -> tuple[str, NetworkKind]:
    """libvirt's forward mode (``isolated`` without ``<forward>``) and its kind.

    ``<forward mode='bridge'>`` is a host bridge when the network names one (``<bridge name=...>``) and
    macvtap in bridge mode when it lists host devices instead; ``hostdev`` (SR-IOV functions passed
    through) fits no kind.
    """
    forward = root.find("forward")
    if forward is None:
        return "isolated", NetworkKind.ISOLATED
    mode = forward.get("mode") or "nat"
    if mode == "bridge" and root.find("bridge") is None:
        return mode, NetworkKind.MACVLAN
    return mode, _FORWARD_KINDS.get(mode, NetworkKind.OTHER)


def _device(root: ET.Element) -> str | None:
    bridge = root.find("bridge")
    if bridge is not None and bridge.get("name"):
        return bridge.get("name")
    forward = root.find("forward")
    if forward is None:
        return None
    for elem in (forward, forward.find("pf"), forward.find("interface")):
        if elem is not None and elem.get("dev"):
            return elem.get("dev")
    return None


def _subnets(root: ET.Element, routes: bool) -> tuple[NetworkSubnet, ...]:
    """The ``<ip>`` elements: the host's address on the network is the guests' gateway when it routes."""
    out = []
    for ip in root.findall("ip"):
        address = ip.get("address")
        if not address:
            continue
        prefix = ip.get("prefix") or ip.get("netmask")
        if prefix is None:  # libvirt's default: the address's classful prefix (IPv4), /64 (IPv6)
            first = int(address.split(".", 1)[0]) if ":" not in address else -1
            prefix = "64" if first < 0 else "8" if first < 128 else "16" if first < 192 else "24"
        cidr = str(ipaddress.ip_interface(f"{address}/{prefix}").network)
        ranges = tuple((str(r.get("start")), str(r.get("end"))) for r in ip.findall("./dhcp/range"))
        out.append(NetworkSubnet(cidr, address if routes else None, ranges))
    return tuple(out)


def _vlan_ids(root: ET.Element) -> tuple[int, ...]:
    """The network's VLAN tags, then its portgroups' (each once, in order)."""
    ids: list[int] = []
    for tag in (*root.findall("./vlan/tag"), *root.findall("./portgroup/vlan/tag")):
        vid = tag.get("id")
        if vid is not None and vid.isdigit() and int(vid) not in ids:
            ids.append(int(vid))
    return tuple(ids)


def network_keys(xmls: Iterable[str]) -> dict[tuple[str, str], str]:
    """:data:`NetworkKeys` of the networks whose XML is given: each by name, and by its bridge if it has one."""
    keys: dict[tuple[str, str], str] = {}
    for xml in xmls:
        root = ET.fromstring(xml)
        name = (root.findtext("name") or "").strip()
        keys[("network", name)] = name
        bridge = root.find("bridge")
        if bridge is not None and bridge.get("name"):
            keys.setdefault(("bridge", str(bridge.get("name"))), name)
    return keys


def network_from_xml(
    xml: str, active: bool, autostart: bool, attachments: Iterable[NetworkAttachment] = ()
) -> NetworkInfo:
    """A NetworkInfo from a network XML (``virNetworkGetXMLDesc``), its state and the NICs on it."""
    root = ET.fromstring(xml)
    mode, kind = _forward(root)
    extra: dict[str, Any] = {}
    portgroups = [p.get("name") for p in root.findall("portgroup") if p.get("name")]
    if portgroups:
        extra["portgroups"] = portgroups
    domain = root.find("domain")
    if domain is not None and domain.get("name"):
        extra["dns_domain"] = domain.get("name")
    return NetworkInfo(
        name=(root.findtext("name") or "").strip(),
        id=(root.findtext("uuid") or "").strip() or None,
        kind=kind,
        native_kind=mode,
        device=_device(root),
        vlan_ids=_vlan_ids(root),
        subnets=_subnets(root, routes=kind in (NetworkKind.NAT, NetworkKind.ROUTED)),
        active=active,
        autostart=autostart,
        attachments=tuple(attachments),
        extra=extra,
    )

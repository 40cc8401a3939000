"""Parsers of VBoxManage output (pure functions, no I/O).

Formats (VirtualBox ``src/VBox/Frontends/VBoxManage``; Vagrant's and Packer's parsers are the behavioural
references):

* ``showvminfo --machinereadable`` and ``snapshot list --machinereadable``: ``key=value`` lines. Values are
  double-quoted strings with ``\\`` and ``"`` backslash-escaped (``outputMachineReadableString``) or bare
  numbers; keys are bare, or quoted like values when they contain characters outside ``[A-Za-z0-9_]``
  (storage attachment keys ``"<controller>-<port>-<device>"``). Before VirtualBox 7.0 some values were printed
  raw: a Windows host's attachment paths come with single backslashes (``"SATA-0-0"="C:\\Users\\x\\a.iso"``
  as printed by 5.x), which :func:`parse_machinereadable` keeps as they are.
* A DVD or floppy slot has the same key as a hard disk's; what tells them apart is the lines VirtualBox prints
  only for DVD slots (``"<ctl>-IsEjected-<port>-<device>"`` and ``-tempeject-`` from 7.0; before 7.0 the same
  words without port and device, right after the slot's line: ``"<ctl>-IsEjected"``), and the controller
  type for floppies (``I82078``).
* Paths are the host's: POSIX on Linux and macOS, ``C:\\...`` (sometimes mixed with ``/``) on Windows;
  :func:`host_basename` splits either.
* ``list vms``: ``"<name>" {<uuid>}`` per line, the name NOT escaped (so it is read from the right).
* ``list hdds`` / ``showmediuminfo``: ``Key:   value`` blocks separated by blank lines.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
from collections.abc import Iterable, Mapping

import attrs
from virtabs.spi import DomainState

__all__ = [
    "VM_STATES",
    "Attachment",
    "DhcpServer",
    "HostInterface",
    "HostOnlyNetwork",
    "Medium",
    "NatNetwork",
    "Nic",
    "SnapshotNode",
    "VmInfo",
    "domain_state",
    "host_basename",
    "host_dirname",
    "host_join",
    "is_windows_path",
    "machinereadable_pairs",
    "parse_colon_blocks",
    "parse_host_interfaces",
    "parse_dhcpservers",
    "parse_hostonlynets",
    "parse_intnets",
    "parse_list_vms",
    "parse_machinereadable",
    "parse_natnets",
    "parse_snapshots",
    "parse_version",
    "parse_vminfo",
    "slot_for_target",
    "target_for",
]

MIB = 1 << 20

VM_STATES: Mapping[str, DomainState] = {
    # common
    "poweroff": DomainState.SHUTOFF,
    "saved": DomainState.SHUTOFF,
    "running": DomainState.RUNNING,
    "paused": DomainState.PAUSED,
    "aborted": DomainState.CRASHED,
    # newer releases: aborted with a saved state kept
    "aborted-saved": DomainState.SHUTOFF,
    # teleporting
    "teleported": DomainState.SHUTOFF,
    "teleporting": DomainState.RUNNING,
    "teleportingpausedvm": DomainState.PAUSED,
    "teleportingin": DomainState.PAUSED,
    # transitional
    "gurumeditation": DomainState.BLOCKED,
    "stuck": DomainState.BLOCKED,
    "livesnapshotting": DomainState.RUNNING,
    "starting": DomainState.NOSTATE,
    "stopping": DomainState.SHUTDOWN,
    "saving": DomainState.PAUSED,
    "restoring": DomainState.NOSTATE,
    # snapshot work
    "deletingsnapshotlive": DomainState.RUNNING,
    "deletingsnapshotlivepaused": DomainState.PAUSED,
    "onlinesnapshotting": DomainState.RUNNING,
    "restoringsnapshot": DomainState.SHUTOFF,
    "deletingsnapshot": DomainState.SHUTOFF,
    "snapshotting": DomainState.SHUTOFF,
    "settingup": DomainState.SHUTOFF,
}
"""Every ``VMState`` short name (``machineStateToName``) and the libvirt state it means. As in libvirt's
vbox driver: ``saved`` (a managed save) is shut off, ``aborted`` crashed, a stuck VM (guru meditation)
blocked; transitional states map to where the VM is while in them."""


def domain_state(native: str) -> DomainState:
    """The libvirt state of a ``VMState`` value; NOSTATE for one this table does not know."""
    return VM_STATES.get(native, DomainState.NOSTATE)


_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
_RAW_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:\\(?!\\)|\\\\\?\\[A-Za-z]:\\(?!\\))")
"""A value that starts like a Windows path with single backslashes (``C:\\x``, ``\\\\?\\c:\\x``): raw, as
VirtualBox before 7.0 printed paths (escaped, the same path starts ``C:\\\\``)."""


def _unescape(raw: str) -> str:
    """A quoted value's text between the quotes, unescaped; a raw one (a backslash that starts no escape, or a
    Windows path with single backslashes) is returned as it is."""
    if "\\" not in raw or _RAW_WINDOWS_PATH.match(raw):
        return raw
    out = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if nxt not in _ESCAPES:
                return raw  # not the escaped form: printed raw
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _read_token(text: str, i: int) -> tuple[str, int, bool]:
    """A quoted or bare token starting at ``text[i]``: (value, index after it, was quoted)."""
    if i < len(text) and text[i] == '"':
        start = i + 1
        i = start
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
                i += 2
            elif ch == '"':
                return _unescape(text[start:i]), i + 1, True
            else:
                i += 1
        return _unescape(text[start:i]), i, True  # unterminated: take what there is
    return "", i, False


def machinereadable_pairs(text: str) -> list[tuple[str, str]]:
    """``key=value`` lines as (key, value) pairs in the order printed (values unquoted and unescaped).

    A quoted value may span lines (an unescaped newline in a name); CRLF line ends (Windows) are read as LF;
    lines that are not ``key=value`` are skipped.
    """
    text = text.replace("\r\n", "\n")
    result: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\n":
            i += 1
            continue
        if text[i] == '"':
            key, i, _ = _read_token(text, i)
        else:
            end = i
            while end < n and text[end] not in "=\n":
                end += 1
            key, i = text[i:end], end
        if i >= n or text[i] != "=":
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        i += 1
        if i < n and text[i] == '"':
            value, i, _ = _read_token(text, i)
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
        else:
            nl = text.find("\n", i)
            end = n if nl < 0 else nl
            value, i = text[i:end].rstrip("\r"), end + 1
        result.append((key, value))
    return result


def parse_machinereadable(text: str) -> dict[str, str]:
    """``key=value`` lines into a dict (see :func:`machinereadable_pairs`; the last of a repeated key wins)."""
    return dict(machinereadable_pairs(text))


def is_windows_path(path: str) -> bool:
    """True for a path on a Windows host (``C:\\...``, ``C:/...``, ``\\\\server\\...``)."""
    return bool(re.match(r"^(?:[A-Za-z]:[\\/]|\\\\)", path))


def host_basename(path: str) -> str:
    """The file name of a path the host printed: ntpath rules (``\\`` and ``/``) for a Windows path."""
    return ntpath.basename(path) if is_windows_path(path) else posixpath.basename(path)


def host_dirname(path: str) -> str:
    """The folder of a path the host printed (see :func:`host_basename`)."""
    return ntpath.dirname(path) if is_windows_path(path) else posixpath.dirname(path)


def host_join(folder: str, name: str) -> str:
    """``name`` in a folder the host printed, joined by the host's rules."""
    return ntpath.join(folder, name) if is_windows_path(folder) else posixpath.join(folder, name)


_VERSION = re.compile(r"^\d+\.\d+\S*$")


def parse_version(text: str) -> str | None:
    """The version line of ``VBoxManage --version`` (``7.0.14r161095``, ``5.2.34_Ubuntur133883``): the first line
    that is one, after any ``WARNING:`` paragraph a host with no kernel module prints first; None without one."""
    return next((line.strip() for line in text.splitlines() if _VERSION.match(line.strip())), None)


_LIST_VMS = re.compile(r'^"(.*)" \{([0-9A-Fa-f-]+)\}\s*$')


def parse_list_vms(text: str) -> list[tuple[str, str]]:
    """``list vms`` into ``[(name, uuid)]``; the name is taken verbatim between the outer quotes."""
    result = []
    for line in text.splitlines():
        match = _LIST_VMS.match(line)
        if match:
            result.append((match.group(1), match.group(2).lower()))
    return result


def parse_colon_blocks(text: str) -> list[dict[str, str]]:
    """``Key:   value`` blocks separated by blank lines (``list hdds``, ``list systemproperties``)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip(), value.strip())
    if current:
        blocks.append(current)
    return blocks


@attrs.frozen
class HostInterface:
    """One ``list hostonlyifs`` or ``list bridgedifs`` block (VBoxManageList.cpp, listNetworkInterfaces)."""

    name: str
    guid: str | None
    dhcp: bool
    ipv4: str | None
    """``IPAddress``; None when it is empty or ``0.0.0.0`` (no IPv4 address)."""
    netmask: str | None
    ipv6: str | None
    ipv6_prefix: int
    mac: str | None
    up: bool | None
    """``Status: Up`` / ``Down``; None for ``Unknown``."""
    network_name: str = ""
    """``VBoxNetworkName`` (``HostInterfaceNetworking-vboxnet0``): what a DHCP server names its network by."""

    @classmethod
    def from_block(cls, block: Mapping[str, str]) -> HostInterface:
        """From one block of ``Key:   value`` lines."""
        ipv4 = block.get("IPAddress") or None
        status = block.get("Status", "Unknown")
        prefix = block.get("IPV6NetworkMaskPrefixLength", "0")
        return cls(
            name=block.get("Name", ""),
            guid=(block.get("GUID") or "").lower() or None,
            dhcp=block.get("DHCP") == "Enabled",
            ipv4=None if ipv4 in (None, "0.0.0.0") else ipv4,
            netmask=block.get("NetworkMask") or None,
            ipv6=block.get("IPV6Address") or None,
            ipv6_prefix=int(prefix) if prefix.isdigit() else 0,
            mac=(block.get("HardwareAddress") or "").lower() or None,
            up={"Up": True, "Down": False}.get(status),
            network_name=block.get("VBoxNetworkName") or f"HostInterfaceNetworking-{block.get('Name', '')}",
        )


def parse_host_interfaces(text: str) -> list[HostInterface]:
    """``list hostonlyifs`` / ``list bridgedifs``: one block per interface, separated by blank lines."""
    return [HostInterface.from_block(b) for b in parse_colon_blocks(text) if b.get("Name")]


def _address(value: str | None) -> str | None:
    """An IP address as VBoxManage printed it; None for an empty one or ``0.0.0.0`` (a server never set up)."""
    return None if not value or value == "0.0.0.0" else value


def _entries(text: str, first_key: str) -> list[dict[str, str]]:
    """``Key: value`` entries each starting at an unindented ``first_key:`` line, blank lines ignored (``list
    hostonlynets`` prints one inside each entry); indented lines (a DHCP server's configuration) are skipped."""
    entries: list[dict[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip() or line[0].isspace():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == first_key or not entries:
            entries.append({})
        entries[-1].setdefault(key, value.strip())
    return [e for e in entries if e.get(first_key)]


@attrs.frozen
class DhcpServer:
    """One DHCP server of ``list dhcpservers`` (of a host-only interface or a NAT network)."""

    network_name: str
    """``HostInterfaceNetworking-vboxnet0`` for a host-only interface, the network's name for a NAT network."""
    server_ip: str | None
    netmask: str | None
    lower: str | None
    upper: str | None
    enabled: bool


def parse_dhcpservers(text: str) -> list[DhcpServer]:
    """``list dhcpservers`` in both formats: 6.0's (``NetworkName``, ``IP``, ``NetworkMask``,
    ``lowerIPAddress``, ``upperIPAddress``, ``Enabled``, a blank line after each; the real capture
    tests/real_outputs/list-dhcpservers-6.0-linux-ohai.txt) and 6.1+'s (VBoxManageList.cpp listDhcpServers:
    ``Dhcpd IP``, ``LowerIPAddress``, ``UpperIPAddress`` before ``NetworkMask``, then the indented global
    configuration, ``Groups`` and ``Individual Configs``; list-dhcpservers-7.x-linux-notes.txt)."""
    servers = []
    for e in _entries(text, "NetworkName"):
        folded = {k.lower(): v for k, v in e.items()}
        servers.append(
            DhcpServer(
                network_name=e["NetworkName"],
                server_ip=_address(e.get("Dhcpd IP") or e.get("IP")),
                netmask=_address(e.get("NetworkMask")),
                lower=_address(folded.get("loweripaddress")),
                upper=_address(folded.get("upperipaddress")),
                enabled=e.get("Enabled") == "Yes",
            )
        )
    return servers


@attrs.frozen
class HostOnlyNetwork:
    """One host-only network of VirtualBox 7's ``list hostonlynets`` (macOS hosts: VBOX_WITH_VMNET)."""

    name: str
    guid: str | None
    enabled: bool
    netmask: str | None
    lower: str | None
    """``LowerIP``/``UpperIP``: the range the network's DHCP server hands out."""
    upper: str | None


def parse_hostonlynets(text: str) -> list[HostOnlyNetwork]:
    """``list hostonlynets`` (VBoxManageList.cpp listHostOnlyNetworks: ``Name``, ``GUID``, a blank line,
    ``State``, ``NetworkMask``, ``LowerIP``, ``UpperIP``, ``VBoxNetworkName``; the real capture
    tests/real_outputs/list-hostonlynets-7.x-macos-notes.txt)."""
    return [
        HostOnlyNetwork(
            name=e["Name"],
            guid=(e.get("GUID") or "").lower() or None,
            enabled=e.get("State") == "Enabled",
            netmask=_address(e.get("NetworkMask")),
            lower=_address(e.get("LowerIP")),
            upper=_address(e.get("UpperIP")),
        )
        for e in _entries(text, "Name")
    ]


def parse_intnets(text: str) -> list[str]:
    """``list intnets``: one ``Name:        <name>`` line per internal network (no blank line between them)."""
    names = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Name":
            name = value.strip()
            if name and name not in names:
                names.append(name)
    return names


@attrs.frozen
class NatNetwork:
    """One NAT network of ``list --long natnets``."""

    name: str
    network: str | None
    """The IPv4 prefix in CIDR notation (``10.0.2.0/24``)."""
    gateway: str | None
    dhcp: bool | None
    enabled: bool | None
    ipv6_prefix: str | None
    """Only when IPv6 is enabled on it."""


def parse_natnets(text: str) -> list[NatNetwork]:
    """``list --long natnets`` in both formats: 7.0's (printNATNetwork of VBoxManageNATNetwork.cpp: ``Name:``,
    ``Enabled:``, ``Network:``, ``Gateway:``, ``DHCP Server:``, ``IPv6:``, ``IPv6 Prefix:``) and 6.x's
    (``NetworkName:``, ``IP:`` for the gateway, ``Network:``, ``IPv6 Enabled:``, ``DHCP Enabled:``, ``Enabled:``).

    The indented port-forwarding and loopback lines after a title line are not network keys: a block's keys
    are read from its unindented ``Key: value`` lines only.
    """
    nets = []
    for raw_block in text.replace("\r\n", "\n").split("\n\n"):
        block: dict[str, str] = {}
        for line in raw_block.splitlines():
            if not line or line[0].isspace():
                continue
            key, sep, value = line.partition(":")
            if sep:
                block.setdefault(key.strip(), value.strip())
        name = block.get("Name") or block.get("NetworkName")
        if not name:
            continue
        yes = {"Yes": True, "No": False}
        ipv6 = yes.get(block.get("IPv6") or block.get("IPv6 Enabled") or "")
        nets.append(
            NatNetwork(
                name=name,
                network=block.get("Network") or None,
                gateway=block.get("Gateway") or block.get("IP") or None,
                dhcp=yes.get(block.get("DHCP Server") or block.get("DHCP Enabled") or ""),
                enabled=yes.get(block.get("Enabled") or ""),
                ipv6_prefix=(block.get("IPv6 Prefix") or None) if ipv6 else None,
            )
        )
    return nets


@attrs.frozen
class Medium:
    """A registered hard disk (one ``list hdds`` block)."""

    uuid: str
    location: str
    format: str
    capacity_bytes: int
    parent: str | None
    state: str = "created"

    @classmethod
    def from_block(cls, block: Mapping[str, str]) -> Medium:
        """From one ``list hdds`` / ``showmediuminfo`` block (``Capacity: N MBytes``)."""
        capacity = block.get("Capacity", "0 MBytes").split()
        size = int(capacity[0]) if capacity and capacity[0].isdigit() else 0
        unit = capacity[1] if len(capacity) > 1 else "MBytes"
        factor = {"bytes": 1, "KBytes": 1 << 10, "MBytes": MIB, "GBytes": 1 << 30, "TBytes": 1 << 40}.get(unit, MIB)
        parent = block.get("Parent UUID", "base")
        return cls(
            uuid=block.get("UUID", "").lower(),
            location=block.get("Location", ""),
            format=block.get("Storage format", ""),
            capacity_bytes=size * factor,
            parent=None if parent in ("", "base") else parent.lower(),
            state=block.get("State", "created"),
        )


@attrs.frozen
class Attachment:
    """A storage attachment ``"<controller>-<port>-<device>"``."""

    controller: str
    controller_type: str
    port: int
    device: int
    path: str | None
    """The medium's location; None for an empty drive."""
    medium_uuid: str | None
    kind: str = "hdd"
    """``hdd``, ``dvd`` (a slot VirtualBox prints ``IsEjected``/``tempeject`` lines for) or ``floppy``."""


@attrs.frozen
class Nic:
    """A network adapter ``nicN`` (N counts from 1)."""

    index: int
    type: str
    mac: str | None
    target: str | None
    model: str | None


@attrs.frozen
class SnapshotNode:
    """One node of the snapshot tree of ``snapshot list --machinereadable`` / ``showvminfo``."""

    name: str
    uuid: str
    parent_uuid: str | None
    description: str = ""


@attrs.frozen
class VmInfo:
    """What ``showvminfo --machinereadable`` says about a machine, typed."""

    name: str
    uuid: str
    native_state: str
    memory_mib: int
    cpus: int
    ostype: str
    cfgfile: str
    statefile: str | None
    controllers: tuple[tuple[str, str], ...]
    attachments: tuple[Attachment, ...]
    nics: tuple[Nic, ...]
    snapshots: tuple[SnapshotNode, ...]
    current_snapshot: str | None
    description: str = ""
    teleporter_enabled: bool = False
    """``teleporterenabled="on"``: ``startvm`` waits for a teleport instead of booting."""
    teleporter_port: int = 0
    """``teleporterport``: 0 until a target listening on a random port writes the port it chose back."""

    @property
    def state(self) -> DomainState:
        """The libvirt state of :attr:`native_state`."""
        return domain_state(self.native_state)

    @property
    def accessible(self) -> bool:
        """False for a machine whose settings file cannot be read (Vagrant's ``<inaccessible>``)."""
        return self.name != "<inaccessible>"


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def parse_snapshots(data: Mapping[str, str]) -> tuple[list[SnapshotNode], str | None]:
    """The snapshot tree from ``SnapshotName[-i[-j...]]`` keys, parents before children; and the current one."""
    nodes: list[SnapshotNode] = []
    uuid_of: dict[str, str] = {}
    suffixes = []
    for key in data:
        if key == "SnapshotName" or (key.startswith("SnapshotName-") and re.fullmatch(r"(-\d+)+", key[12:])):
            suffixes.append(key[12:])

    def order(suffix: str) -> tuple[int, ...]:
        return tuple(int(p) for p in suffix.split("-")[1:])

    for suffix in sorted(suffixes, key=order):
        snap_uuid = data.get(f"SnapshotUUID{suffix}", "").lower()
        uuid_of[suffix] = snap_uuid
        parent = suffix.rsplit("-", 1)[0] if suffix else None
        nodes.append(
            SnapshotNode(
                name=data[f"SnapshotName{suffix}"],
                uuid=snap_uuid,
                parent_uuid=uuid_of.get(parent) if parent is not None else None,
                description=data.get(f"SnapshotDescription{suffix}", ""),
            )
        )
    current = data.get("CurrentSnapshotUUID")
    return nodes, current.lower() if current else None


_DVD_MARKS = ("IsEjected", "tempeject", "dvdpassthrough")
_FLOPPY_TYPES = frozenset({"I82078"})


def _dvd_slots(pairs: Iterable[tuple[str, str]], controllers: Mapping[str, str]) -> set[tuple[str, int, int]]:
    """The (controller, port, device) slots that are DVD drives: ``"<ctl>-IsEjected-<port>-<device>"``
    (VirtualBox 7.0 on), or ``"<ctl>-IsEjected"`` after the slot's own line (before 7.0); the same for
    ``tempeject`` and ``dvdpassthrough``."""
    slots: set[tuple[str, int, int]] = set()
    last: dict[str, tuple[str, int, int]] = {}
    for key, _value in pairs:
        ctl, port, device = _attachment_key(key, controllers)
        if ctl is not None:
            last[ctl] = (ctl, port, device)
            continue
        for mark in _DVD_MARKS:
            head, sep, tail = key.rpartition(f"-{mark}")
            if sep and head in controllers:
                if not tail and head in last:  # before 7.0: no port and device, the slot printed just before
                    slots.add(last[head])
                elif tail.startswith("-"):
                    port_s, _, device_s = tail[1:].partition("-")
                    if port_s.isdigit() and device_s.isdigit():
                        slots.add((head, int(port_s), int(device_s)))
    return slots


def parse_vminfo(text: str) -> VmInfo:
    """``showvminfo --machinereadable`` output into a :class:`VmInfo`."""
    pairs = machinereadable_pairs(text)
    data = dict(pairs)
    controllers = []
    n = 0
    while f"storagecontrollername{n}" in data:
        controllers.append((data[f"storagecontrollername{n}"], data.get(f"storagecontrollertype{n}", "")))
        n += 1
    types = dict(controllers)
    dvds = _dvd_slots(pairs, types)
    attachments = []
    for key, value in data.items():
        ctl, port, device = _attachment_key(key, types)
        if ctl is None or value == "none":
            continue
        image = data.get(f"{ctl}-ImageUUID-{port}-{device}")
        empty = value == "emptydrive"
        slot_kind = "dvd" if (ctl, port, device) in dvds else "floppy" if types[ctl] in _FLOPPY_TYPES else "hdd"
        attachments.append(
            Attachment(
                controller=ctl,
                controller_type=types[ctl],
                port=port,
                device=device,
                path=None if empty else value,
                medium_uuid=image.lower() if image and not empty else None,
                kind=slot_kind,
            )
        )
    nics = []
    for index in range(1, 37):
        kind = data.get(f"nic{index}")
        if kind is None or kind == "none":
            continue
        mac = data.get(f"macaddress{index}")
        target = (
            data.get(f"bridgeadapter{index}")
            or data.get(f"intnet{index}")
            or data.get(f"hostonlyadapter{index}")
            or data.get(f"nat-network{index}")
            or data.get(f"hostonly-network{index}")
        )
        nics.append(Nic(index, kind, mac, target, data.get(f"nictype{index}")))
    snapshots, current = parse_snapshots(data)
    return VmInfo(
        name=data.get("name", ""),
        uuid=data.get("UUID", "").lower(),
        native_state=data.get("VMState", ""),
        memory_mib=_int(data.get("memory")),
        cpus=_int(data.get("cpus"), 1),
        ostype=data.get("ostype", ""),
        cfgfile=data.get("CfgFile", ""),
        statefile=data.get("VMStateFile") or None,
        controllers=tuple(controllers),
        attachments=tuple(sorted(attachments, key=lambda a: (a.controller, a.port, a.device))),
        nics=tuple(nics),
        snapshots=tuple(snapshots),
        current_snapshot=current,
        description=data.get("description", ""),
        teleporter_enabled=data.get("teleporterenabled") == "on",
        teleporter_port=_int(data.get("teleporterport")),
    )


def _attachment_key(key: str, controllers: Mapping[str, str]) -> tuple[str | None, int, int]:
    """``<controller>-<port>-<device>`` for a known controller, else (None, 0, 0)."""
    head, sep, device = key.rpartition("-")
    if not sep or not device.isdigit():
        return None, 0, 0
    ctl, sep, port = head.rpartition("-")
    if not sep or not port.isdigit() or ctl not in controllers:
        return None, 0, 0
    return ctl, int(port), int(device)


# --- disk targets <-> controller slots -----------------------------------------------------------------

_IDE_TYPES = frozenset({"PIIX3", "PIIX4", "ICH6"})
PREFIXES = ("xvd", "vd", "sd", "hd")
"""Target prefixes virtabs gives its own controllers' names (``vda`` is port 0 of controller ``vd``)."""


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def _index(letters: str) -> int:
    value = 0
    for ch in letters:
        value = value * 26 + (ord(ch) - ord("a") + 1)
    return value - 1


def slot_for_target(target: str) -> tuple[str, int, int]:
    """``vdb`` -> (controller ``vd``, port 1, device 0); ``hdc`` -> (``hd``, port 1, device 0) on IDE's two
    devices per port."""
    prefix = next((p for p in PREFIXES if target.startswith(p) and len(target) > len(p)), target[:2])
    index = _index(target[len(prefix) :])
    if prefix == "hd":
        return prefix, index // 2, index % 2
    return prefix, index, 0


def target_for(attachment: Attachment, taken: Iterable[str] = ()) -> str:
    """The guest target name virtabs reports for an attachment.

    Controllers virtabs created are named after the target prefix (``vd``, ``sd``, ``hd``, ``xvd``), so
    the name comes back exactly. On other controllers (``SATA Controller`` of a Vagrant box) the name is
    ``hd?`` on IDE and ``sd?`` elsewhere, moved past any name already ``taken``.
    """
    used = set(taken)
    if attachment.controller in PREFIXES:
        prefix = attachment.controller
    else:
        prefix = "hd" if attachment.controller_type in _IDE_TYPES else "sd"
    index = attachment.port * 2 + attachment.device if prefix == "hd" else attachment.port
    name = prefix + _letters(index)
    while name in used:
        index += 1
        name = prefix + _letters(index)
    return name

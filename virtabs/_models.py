"""Value objects: frozen attrs classes. Sizes are bytes everywhere, times are ns or UTC datetimes."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
import uuid as _uuid
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import attrs

from ._errors import InvalidArgumentError, quote
from ._flags import BlockJobStatus, BlockJobType, DomainState, LifecycleEventType, MigrateFlags, NetworkKind

__all__ = [
    "BlockCommitRequest",
    "BlockCopyRequest",
    "BlockJobEvent",
    "BlockJobInfo",
    "DiskInfo",
    "DiskSpec",
    "DomainInfo",
    "DomainRecord",
    "DomainRef",
    "DomainSpec",
    "DomainStatus",
    "Event",
    "FrozenDict",
    "HostInfo",
    "LifecycleEvent",
    "MigrationDiskExport",
    "MigrationInfo",
    "MigrationRequest",
    "MigrationTicket",
    "NetworkAttachment",
    "NetworkInfo",
    "NetworkSubnet",
    "NicInfo",
    "NicSpec",
    "PoolInfo",
    "Snapshot",
    "VolumeInfo",
]

# fullmatch everywhere: "$" would match before a trailing newline ("web\n" is not a name).
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_TARGET_RE = re.compile(r"[a-z]{2,3}[a-z]{1,3}")
_MAC_RE = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
DISK_FORMATS = frozenset({"raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx", "qed"})
DIRECTORY_FORMAT = "dir"
"""The format of a volume that is a directory, not a disk image (libvirt's volume format ``dir``): a Docker or
Podman named volume. It has no capacity (``VolumeInfo.capacity_bytes`` is None unless the host sets a limit),
no backing chain, and is created without a size."""
VOLUME_FORMATS = DISK_FORMATS | {DIRECTORY_FORMAT}
"""Every format a volume may have: the disk image formats and :data:`DIRECTORY_FORMAT`."""
DISK_BUSES = frozenset({"virtio", "scsi", "sata", "ide", "usb", "xen", "nvme"})


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
"""C0 controls (NUL, tab, newline, carriage return, escape ...) and DEL: what no spec text may hold.

Native formats split on them (an LXC config or an xl cfg is one setting a line; a shell word ends at a
newline), so one newline in a NIC's network name could add a ``lxc.hook.pre-start`` line run as root.
No text field of :class:`DomainSpec`, :class:`DiskSpec` or :class:`NicSpec`, nor any string inside
``DomainSpec.extra`` (keys and values, at any depth), is free text: each is refused here, before any
driver runs. Drivers' renderers refuse them a second time.
"""


def refuse_control_characters(value: str, what: str) -> str:
    """``value`` unchanged, or InvalidArgumentError when it holds a C0 control character or DEL."""
    found = CONTROL_CHARACTERS.search(value)
    if found:
        raise InvalidArgumentError(
            f"invalid {what} {quote(value)}: control character {found.group()!r} at position {found.start()} "
            "(newline, carriage return, NUL, tab and the other C0 controls and DEL are not allowed)"
        )
    return value


def _refuse_control_in_extra(value: Any, where: str, depth: int = 0) -> None:
    if depth > 32:
        raise InvalidArgumentError(f"invalid {where}: nested more than 32 levels deep")
    if isinstance(value, str):
        refuse_control_characters(value, where)
    elif isinstance(value, bytes):
        raise InvalidArgumentError(f"invalid {where}: bytes are not allowed in extra (use text)")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"invalid key {quote(key)} in {where}: keys are strings")
            refuse_control_characters(key, f"key of {where}")
            _refuse_control_in_extra(item, f"{where}[{quote(key, 40)}]", depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _refuse_control_in_extra(item, f"{where}[{index}]", depth + 1)


MAX_MEMORY_BYTES = 1 << 52
"""4 PiB: more memory than any hypervisor virtabs drives can give one domain."""
MAX_VCPUS = 4096
"""QEMU's and Xen's ceiling for one domain."""


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgumentError(f"{attribute.name} must be a positive integer, got {quote(value)}")


def _at_most(limit: int, unit: str) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
        if value > limit:
            raise InvalidArgumentError(f"{attribute.name} {value} is impossible (at most {limit} {unit})")

    return check


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise InvalidArgumentError(f"{attribute.name} must be a non-negative integer, got {quote(value)}")


def _domain_name(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidArgumentError(
            f"invalid domain name {quote(value)}: use 1-64 letters, digits, '_', '.', '+' or '-', starting with a letter or digit"
        )


def _uuid_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(_uuid.UUID(str(value)))
    except ValueError:
        raise InvalidArgumentError(f"invalid UUID {quote(value)}") from None


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _disk_infos(value: Iterable[DiskInfo]) -> tuple[DiskInfo, ...]:
    return tuple(value)


def _nic_infos(value: Iterable[NicInfo]) -> tuple[NicInfo, ...]:
    return tuple(value)


def _job_infos(value: Iterable[BlockJobInfo]) -> tuple[BlockJobInfo, ...]:
    return tuple(value)


def _mapping_copy(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"extra must be a mapping, not {quote(value)}")
    return dict(value)


class FrozenDict(dict[str, Any]):
    """The mapping of a record's ``extra`` (and other mapping fields): a dict that cannot change and hashes by
    its items, so a frozen record stays hashable and compares equal however it was made.

    Built by the records themselves, deeply: a list or tuple inside becomes a tuple, a mapping a FrozenDict.
    A record read back from the remote protocol (where JSON has only arrays and objects) is therefore equal to
    the one the driver made (``NetworkInfo.extra`` held tuples locally and lists after the channel before).
    ``json.dumps`` takes it as the dict it is.
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"a record's {type(self).__name__} cannot change (attrs.evolve the record instead)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]  # dict's is None: this one cannot change
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return type(self), (dict(self),)  # pickle and copy would otherwise fill it through __setitem__


_FREEZE_DEPTH = 64


def _frozen(value: Any, depth: int) -> Any:
    if depth > _FREEZE_DEPTH:  # left as it is (a spec's check refuses such depths with its own message)
        return value
    if isinstance(value, Mapping):
        return FrozenDict({key: _frozen(item, depth + 1) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(item, depth + 1) for item in value)
    return value


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    frozen: FrozenDict = _frozen(dict(value or {}), 0)
    return frozen


@attrs.frozen
class DomainRef:
    """How the public layer names a domain to a driver: its name and UUID."""

    name: str
    uuid: str


@attrs.frozen
class DiskSpec:
    """A disk to define or hot-plug: guest ``target`` (``vda``) backed by ``path``."""

    target: str
    path: str
    format: str = "raw"
    bus: str = "virtio"
    readonly: bool = False

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.target, str) or not _TARGET_RE.fullmatch(self.target):
            raise InvalidArgumentError(f"invalid disk target {quote(self.target)}: expected a name like 'vda' or 'sdb'")
        if not isinstance(self.path, str) or not self.path:
            raise InvalidArgumentError(f"disk {quote(self.target)} needs a path (a string), got {quote(self.path)}")
        refuse_control_characters(self.path, f"path of disk {quote(self.target)}")
        if not isinstance(self.readonly, bool):
            raise InvalidArgumentError(
                f"disk {quote(self.target)}: readonly must be true or false, got {quote(self.readonly)}"
            )
        if self.format not in DISK_FORMATS:
            raise InvalidArgumentError(
                f"disk {quote(self.target)}: unknown format {quote(self.format)} (known: {', '.join(sorted(DISK_FORMATS))})"
            )
        if self.bus not in DISK_BUSES:
            raise InvalidArgumentError(
                f"disk {quote(self.target)}: unknown bus {quote(self.bus)} (known: {', '.join(sorted(DISK_BUSES))})"
            )


@attrs.frozen
class NicSpec:
    """A network interface to define: ``network`` is a network, bridge or ``user``."""

    network: str = "default"
    mac: str | None = None
    model: str = "virtio"

    def __attrs_post_init__(self) -> None:
        for field in ("network", "model"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise InvalidArgumentError(f"NIC {field} must be a non-empty string, got {quote(getattr(self, field))}")
            refuse_control_characters(getattr(self, field), f"NIC {field}")
        if self.mac is not None and (not isinstance(self.mac, str) or not _MAC_RE.fullmatch(self.mac)):
            raise InvalidArgumentError(f"invalid MAC address {quote(self.mac)}: expected lower-case aa:bb:cc:dd:ee:ff")


def _records(kind: type[Any], value: Any, what: str) -> tuple[Any, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidArgumentError(f"{what} must be a list, got {quote(value)}")
    out = []
    for item in value:
        if isinstance(item, kind):
            out.append(item)
        elif isinstance(item, Mapping):
            try:
                out.append(kind(**item))
            except TypeError as exc:
                raise InvalidArgumentError(f"invalid {what[:-1]} {quote(dict(item))}: {exc}") from None
        else:
            raise InvalidArgumentError(f"each of {what} must be a mapping, got {quote(item)}")
    return tuple(out)


def _disks(value: Any) -> tuple[DiskSpec, ...]:
    return _records(DiskSpec, value, "disks")


def _nics(value: Any) -> tuple[NicSpec, ...]:
    return _records(NicSpec, value, "nics")


@attrs.frozen
class DomainSpec:
    """The definition of a domain, portable across drivers.

    ``extra`` holds driver-specific settings (``{"qemu": {"machine": "q35"}}``);
    a driver ignores keys that are not its own.
    """

    name: str = attrs.field(validator=_domain_name)
    memory_bytes: int = attrs.field(validator=[_positive, _at_most(MAX_MEMORY_BYTES, "bytes")])
    vcpus: int = attrs.field(validator=[_positive, _at_most(MAX_VCPUS, "vCPUs")])
    disks: tuple[DiskSpec, ...] = attrs.field(default=(), converter=_disks)
    nics: tuple[NicSpec, ...] = attrs.field(default=(), converter=_nics)
    uuid: str | None = attrs.field(default=None, converter=_uuid_or_none)
    os_type: str = "hvm"
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping_copy)

    def __attrs_post_init__(self) -> None:
        targets = [d.target for d in self.disks]
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise InvalidArgumentError(f"domain {quote(self.name)}: disk target {quote(dupes[0])} is used twice")
        if not isinstance(self.extra, Mapping):
            raise InvalidArgumentError(f"domain {quote(self.name)}: extra must be a mapping")
        _refuse_control_in_extra(self.extra, f"extra of domain {quote(self.name)}")
        if self.os_type not in ("hvm", "xen", "exe", "linux"):
            raise InvalidArgumentError(f"domain {quote(self.name)}: unknown os_type {quote(self.os_type)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainSpec:
        """Build a spec from plain data (JSON/YAML); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise InvalidArgumentError("a domain definition must be a mapping")
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgumentError(
                f"unknown domain field(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        missing = [k for k in ("name", "memory_bytes", "vcpus") if k not in data]
        if missing:
            raise InvalidArgumentError(f"domain definition is missing: {', '.join(missing)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidArgumentError(f"invalid domain definition: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the inverse of :meth:`from_dict`."""
        return attrs.asdict(self, recurse=True, value_serializer=_serialize)


def _serialize(_inst: object, _field: object, value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


@attrs.frozen
class DomainInfo:
    """Runtime facts of a domain (``virDomainGetInfo`` plus the names)."""

    name: str
    uuid: str
    state: DomainState
    native_state: str
    vcpus: int
    memory_bytes: int
    max_memory_bytes: int
    cpu_time_ns: int = 0
    state_reason: str | None = None
    """Why the domain is in its state, when virtabs knows (libvirt's reason): ``"saved"`` for a shut-off
    domain with a managed save image (``virsh domstate --reason``: "shut off (saved)")."""


@attrs.frozen
class DiskInfo:
    """A disk as the host sees it now. ``backing_chain`` lists the images below ``path``, nearest first."""

    target: str
    path: str
    format: str
    bus: str = "virtio"
    readonly: bool = False
    capacity_bytes: int | None = None
    allocation_bytes: int | None = None
    backing_chain: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    pool: str | None = None


@attrs.frozen
class NicInfo:
    """A network interface as the host sees it now.

    On a driver declaring ``network``, ``network`` is the name of a network ``list_networks()`` returns on
    the same connection, or None when the NIC is on nothing the host knows as a network (never an invented one).
    """

    mac: str | None
    network: str | None
    model: str | None = None
    ips: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)


@attrs.frozen
class HostInfo:
    """Facts about the hypervisor host."""

    hostname: str
    hypervisor: str
    hypervisor_version: str
    cpus: int
    memory_bytes: int
    arch: str = "x86_64"
    cpu_model: str | None = None


@attrs.frozen
class BlockJobInfo:
    """Progress of a block job. ``cur == end`` is never reported before ``ready``.

    ``bandwidth`` is in bytes/s (0 = unlimited).
    """

    type: BlockJobType
    cur: int
    end: int
    bandwidth: int
    ready: bool
    disk: str = ""

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return 1.0 if self.end <= 0 else min(1.0, self.cur / self.end)


@attrs.frozen
class DomainStatus:
    """A domain's state and its active block jobs, read together in one driver call.

    This is what the public layer's gate asks before an operation whose rules depend on the
    domain's state or on a running block job (:meth:`virtabs.spi.Driver.domain_status`).
    ``jobs`` is empty for an inactive domain.
    """

    state: DomainState
    jobs: tuple[BlockJobInfo, ...] = attrs.field(default=(), converter=_job_infos)
    persistent: bool = True
    """False for a transient domain (no persistent definition): managed save refuses it."""

    def job_on(self, disk: str) -> BlockJobInfo | None:
        """The job running on ``disk`` (its target name), if any."""
        return next((job for job in self.jobs if job.disk == disk), None)


@attrs.frozen
class Snapshot:
    """A snapshot of a domain."""

    name: str
    domain: str
    created_at: _dt.datetime
    state: DomainState
    parent: str | None = None
    kind: str = "internal"


@attrs.frozen
class PoolInfo:
    """A storage pool."""

    name: str
    type: str
    capacity_bytes: int | None
    allocation_bytes: int | None
    available_bytes: int | None
    path: str | None = None
    active: bool = True
    uuid: str | None = None


@attrs.frozen
class VolumeInfo:
    """A storage volume. ``backing_chain`` lists the images below ``path``, nearest first.

    ``format`` is a disk image format (``qcow2``, ``raw``, ``vmdk`` ...) or ``"dir"`` (:data:`DIRECTORY_FORMAT`)
    for a volume that is a directory (a Docker or Podman named volume). ``capacity_bytes`` is the size the guest
    sees: always reported for an image; None for a directory volume, which has no size of its own (a host-set
    limit, where there is one, is reported). ``allocation_bytes`` is None where the host does not report what
    the volume uses on disk (a directory volume's usage needs a walk of its tree, which a listing never does).
    """

    name: str
    pool: str
    path: str
    format: str
    capacity_bytes: int | None
    allocation_bytes: int | None = None
    backing_chain: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)


def _cidr(value: str) -> str:
    """``value`` as a network in CIDR notation (``192.168.122.1/24`` becomes ``192.168.122.0/24``)."""
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise InvalidArgumentError(f"invalid subnet {quote(value)}: expected CIDR notation like 10.0.0.0/24") from None


def _address_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise InvalidArgumentError(f"invalid IP address {quote(value)}") from None


def _address_ranges(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    ranges = []
    for pair in value:
        start, end = pair
        ranges.append((str(_address_or_none(start)), str(_address_or_none(end))))
    return tuple(ranges)


def _vlan_ids(value: Iterable[int]) -> tuple[int, ...]:
    ids = tuple(value)
    for vid in ids:
        if not isinstance(vid, int) or isinstance(vid, bool) or not 0 <= vid <= 4095:
            raise InvalidArgumentError(f"invalid VLAN id {quote(vid)}: an integer from 0 to 4095")
    return ids


@attrs.frozen
class NetworkSubnet:
    """An IPv4 or IPv6 subnet of a network, with its gateway and DHCP ranges where the host knows them.

    ``cidr`` is the network in CIDR notation (``192.168.122.0/24``, ``fd00::/64``; an interface address
    such as ``192.168.122.1/24`` is normalised to its network); ``gateway`` the router's (often the
    host's) address; ``dhcp_ranges`` the ``(first, last)`` address pairs the host leases.
    """

    cidr: str = attrs.field(converter=_cidr)
    gateway: str | None = attrs.field(default=None, converter=_address_or_none)
    dhcp_ranges: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_address_ranges)

    @property
    def family(self) -> int:
        """4 or 6."""
        return ipaddress.ip_network(self.cidr).version


@attrs.frozen
class NetworkAttachment:
    """One NIC of a domain on a network: the domain's UUID and name, and the NIC's MAC (None if unknown)."""

    domain_uuid: str
    domain_name: str
    mac: str | None = None


def _subnets(value: Iterable[NetworkSubnet]) -> tuple[NetworkSubnet, ...]:
    return tuple(value)


def _attachments(value: Iterable[NetworkAttachment]) -> tuple[NetworkAttachment, ...]:
    return tuple(value)


def _network_kind(value: NetworkKind | str) -> NetworkKind:
    try:
        return NetworkKind(value)
    except ValueError:
        known = ", ".join(k.value for k in NetworkKind)
        raise InvalidArgumentError(f"unknown network kind {quote(value)} (known: {known})") from None


@attrs.frozen
class NetworkInfo:
    """A virtual network of the host (libvirt's ``virNetwork``), read in bulk by :meth:`Driver.list_networks`.

    ``name`` is what :attr:`NicInfo.network` says for a NIC on it; ``id`` the host's stable identifier: a
    UUID where the hypervisor has one (libvirt, Hyper-V, VirtualBox), the engine's own id otherwise (Docker's
    network id, a vSphere managed object id), None where there is none (a Linux bridge). ``kind`` is the
    portable word, ``native_kind`` the host's (``"nat"``, ``"Internal"``, ``"HostOnly"``, ``"bridge"``);
    ``device`` the bridge, switch or host device it uses; ``vlan_ids`` its VLANs (empty: untagged or unknown).
    ``active``/``autostart`` are None where the host has no such notion. ``attachments`` lists every NIC of a
    domain on it; ``extra`` holds native details a backend documents (a Docker network's driver ...).
    """

    name: str
    id: str | None
    kind: NetworkKind = attrs.field(converter=_network_kind)
    native_kind: str
    device: str | None = None
    vlan_ids: tuple[int, ...] = attrs.field(default=(), converter=_vlan_ids)
    subnets: tuple[NetworkSubnet, ...] = attrs.field(default=(), converter=_subnets)
    active: bool | None = None
    autostart: bool | None = None
    attachments: tuple[NetworkAttachment, ...] = attrs.field(default=(), converter=_attachments)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)


@attrs.frozen
class DomainRecord:
    """Everything an inventory wants about one domain, served in bulk by :meth:`Driver.inventory`.

    A value that could not be read is ``None`` with the reason in ``field_errors``.
    """

    name: str
    uuid: str
    state: DomainState
    native_state: str
    vcpus: int | None
    memory_bytes: int | None
    os_type: str | None
    autostart: bool | None
    disks: tuple[DiskInfo, ...] = attrs.field(default=(), converter=_disk_infos)
    nics: tuple[NicInfo, ...] = attrs.field(default=(), converter=_nic_infos)
    snapshot_count: int | None = None
    block_jobs: tuple[BlockJobInfo, ...] = attrs.field(default=(), converter=_job_infos)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    field_errors: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    managed_save: bool | None = None
    """Whether a managed save image exists; None where the driver has no managed save."""


# --- normalised requests: what the public layer hands a driver after validation ---


@attrs.frozen
class BlockCopyRequest:
    """A validated block copy. ``format`` is the destination's format, or None when the driver
    must keep the source's format (new file) or read it from the existing file's metadata (REUSE_EXT,
    never for raw: COPY_RAW sets ``format="raw"``).

    What is copied (:data:`~virtabs._capabilities.COPY_KINDS`): the whole chain flattened into one image
    (neither ``shallow`` nor ``move_chain``), the top layer over the source's backing (``shallow``), or
    the chain as it is, every layer kept, the lower ones where the host puts them (``move_chain``)."""

    dest: str
    format: str | None = None
    shallow: bool = False
    move_chain: bool = False
    reuse_existing: bool = False
    dest_is_block_device: bool = False
    bandwidth_bytes: int = 0
    granularity: int | None = None
    buf_size: int | None = None
    synchronous_writes: bool = False
    transient: bool = False


@attrs.frozen
class BlockCommitRequest:
    """A validated commit. ``top`` None means the active layer (then ``active`` is True)."""

    base: str | None
    top: str | None
    active: bool
    bandwidth_bytes: int = 0
    delete: bool = False
    relative: bool = False


# --- migration (issue 23): what the core hands both halves, and what they hand back ---


@attrs.frozen
class MigrationRequest:
    """A validated migration (:func:`virtabs._migration.start_migration` built it from the checked flags and values).

    ``disks`` names the disks whose storage is copied (NON_SHARED_DISK / NON_SHARED_INC): every
    writable disk unless the caller chose; empty when storage is shared or the migration is offline.
    """

    flags: MigrateFlags
    bandwidth_bytes: int = 0
    """Bytes/s for memory and storage copies; 0 = the hypervisor's default."""
    max_downtime_ms: int | None = None
    """The longest pause the switch may cause; None = the hypervisor's default."""
    disks: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    @property
    def live(self) -> bool:
        """LIVE: the guest keeps running while memory is copied."""
        return bool(self.flags & MigrateFlags.LIVE)

    @property
    def offline(self) -> bool:
        """OFFLINE: only the definition moves."""
        return bool(self.flags & MigrateFlags.OFFLINE)

    @property
    def copy_storage(self) -> bool:
        """NON_SHARED_DISK or NON_SHARED_INC."""
        return bool(self.flags & (MigrateFlags.NON_SHARED_DISK | MigrateFlags.NON_SHARED_INC))

    @property
    def incremental(self) -> bool:
        """NON_SHARED_INC: only the top layer of each copied disk moves."""
        return bool(self.flags & MigrateFlags.NON_SHARED_INC)


@attrs.frozen
class MigrationDiskExport:
    """Where the destination receives one disk: ``uri`` is the channel the source writes into
    (``nbd+unix:///vda?socket=PATH`` for QEMU), ``path`` the image it lands in on the destination."""

    target: str
    uri: str
    path: str


@attrs.frozen
class MigrationTicket:
    """What the destination's prepare hands the source: the domain it made and the channels to use.

    Plain data only, so a remote transport can carry it between hosts.
    """

    domain: DomainRef
    memory_uri: str | None = None
    """Where the memory stream goes (``unix:PATH``, ``tcp:HOST:PORT``); None for an offline migration."""
    disks: tuple[MigrationDiskExport, ...] = ()
    cookie: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    """Driver-private facts the destination wants back in finish."""


MIGRATION_PHASES = ("setup", "storage", "memory", "switchover", "completed", "failed", "cancelled")


@attrs.frozen
class MigrationInfo:
    """Progress of a migration (``virDomainGetJobStats`` for a migration job). Bytes and milliseconds."""

    phase: str
    """One of :data:`MIGRATION_PHASES`."""
    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
    dirty_rate: int = 0
    """Bytes of guest memory dirtied per second (0: not measured yet)."""
    expected_downtime_ms: int | None = None
    downtime_ms: int | None = None
    """The pause the switch really caused, once completed."""
    elapsed_ms: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        """True once the migration has ended, either way."""
        return self.phase in ("completed", "failed", "cancelled")


# --- events ---


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@attrs.frozen
class LifecycleEvent:
    """A domain changed state (defined, started, stopped, ...)."""

    domain: str
    uuid: str
    type: LifecycleEventType
    detail: str = ""
    timestamp: _dt.datetime = attrs.field(factory=_now)


@attrs.frozen
class BlockJobEvent:
    """A block job became ready, completed, failed or was cancelled (``BLOCK_JOB_2``)."""

    domain: str
    uuid: str
    disk: str
    job_type: BlockJobType
    status: BlockJobStatus
    error: str | None = None
    timestamp: _dt.datetime = attrs.field(factory=_now)


Event = LifecycleEvent | BlockJobEvent

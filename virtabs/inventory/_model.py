"""The inventory document (schema v2: v1 plus each host's networks) and its conversion from virtabs' value objects.

The JSON document is the contract; the classes here hold one collection run and
turn it into that document with :meth:`Inventory.to_dict`. Rules kept here:

* sizes are integers of bytes;
* times are ISO-8601 UTC strings ending in ``Z``;
* a value that could not be read is ``None`` and its reason is in the
  ``field_errors`` of the object it belongs to (a domain's disk and NIC fields
  use keys like ``disks.vda.capacity_bytes``): a string never stands in for a
  value, and an empty list never stands in for a list that could not be read.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
import uuid as _uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from .._errors import VirtabsError
from .._models import DIRECTORY_FORMAT, BlockJobInfo, DiskInfo, DomainRecord, NetworkInfo, NicInfo, PoolInfo, VolumeInfo

__all__ = [
    "SCHEMA_VERSION",
    "HostError",
    "HostInventory",
    "Inventory",
    "PoolInventory",
    "domain_to_dict",
    "format_time",
    "network_to_dict",
    "sanitize_group",
]

SCHEMA_VERSION = 3
"""The version of the inventory document this module writes (3: version 2 except that a volume's
``capacity_bytes`` may be null, for a directory volume; 2: version 1 plus each host's ``networks``)."""

READABLE_SCHEMA_VERSIONS = frozenset({1, 2, 3})
"""Versions :func:`~virtabs.inventory.load_inventory` reads: a version 2 document is a version 3 one whose
volumes all have a capacity, a version 1 document one without ``networks`` (``--diff`` then compares no
networks)."""

EXIT_OK = 0
EXIT_ALL_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

_GROUP_RE = re.compile(r"[^A-Za-z0-9_]")


def format_time(value: _dt.datetime) -> str:
    """``2026-11-26T04:30:00.123Z``: ISO-8601, UTC, millisecond precision."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> _dt.datetime:
    """The current time, timezone-aware UTC."""
    return _dt.datetime.now(_dt.UTC)


def sanitize_group(text: str) -> str:
    """A name made only of ``[A-Za-z0-9_]`` (Ansible group names), never starting with a digit."""
    name = _GROUP_RE.sub("_", text) or "_"
    return f"_{name}" if name[0].isdigit() else name


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists, enums their lower-case name, times strings)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, _dt.datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset):
        return [jsonable(v) for v in value]
    if attrs.has(type(value)):
        return jsonable(attrs.asdict(value, recurse=False))
    return str(value)


@attrs.frozen
class HostError:
    """Why a host could not be inventoried: a virtabs error code, its name and the message."""

    code: int
    code_name: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> HostError:
        """The error of ``exc``; anything that is not a VirtabsError counts as INTERNAL_ERROR (1)."""
        if isinstance(exc, VirtabsError):
            return cls(int(exc.code), exc.code.name, exc.message)
        return cls(1, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")

    def to_dict(self) -> dict[str, Any]:
        """``{"code": 68, "code_name": "OPERATION_TIMEOUT", "message": "..."}``."""
        return {"code": self.code, "code_name": self.code_name, "message": self.message}


@attrs.frozen
class PoolInventory:
    """A storage pool with its volumes (``None`` when they could not be listed; see ``field_errors``)."""

    info: PoolInfo
    volumes: tuple[VolumeInfo, ...] | None
    field_errors: Mapping[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The pool as schema v2 data."""
        errors = dict(self.field_errors)
        info = self.info
        for key in ("capacity_bytes", "allocation_bytes", "available_bytes"):
            if getattr(info, key) is None:
                errors.setdefault(key, "NOT_REPORTED: the driver did not report it")
        volumes = None
        if self.volumes is not None:
            volumes = [
                {
                    "name": v.name,
                    "path": v.path,
                    "format": v.format,
                    "capacity_bytes": v.capacity_bytes,
                    "allocation_bytes": v.allocation_bytes,
                    "backing_chain": list(v.backing_chain),
                }
                for v in self.volumes
            ]
            for v in self.volumes:
                if v.allocation_bytes is None:
                    errors.setdefault(
                        f"volumes.{v.name}.allocation_bytes", "NOT_REPORTED: the driver did not report it"
                    )
                if v.capacity_bytes is None:
                    errors.setdefault(
                        f"volumes.{v.name}.capacity_bytes",
                        "NOT_REPORTED: a directory volume (format 'dir') has no capacity"
                        if v.format == DIRECTORY_FORMAT
                        else "NOT_REPORTED: the driver did not report it",
                    )
        else:
            errors.setdefault("volumes", "NOT_REPORTED: the volumes could not be listed")
        return {
            "name": info.name,
            "type": info.type,
            "capacity_bytes": info.capacity_bytes,
            "allocation_bytes": info.allocation_bytes,
            "available_bytes": info.available_bytes,
            "volumes": volumes,
            "field_errors": errors,
        }


def network_to_dict(network: NetworkInfo) -> dict[str, Any]:
    """One network as schema v2 data (``kind`` its value, subnets and attachments as objects)."""
    return {
        "name": network.name,
        "id": network.id,
        "kind": network.kind.value,
        "native_kind": network.native_kind,
        "device": network.device,
        "vlan_ids": list(network.vlan_ids),
        "subnets": [
            {"cidr": s.cidr, "gateway": s.gateway, "dhcp_ranges": [list(r) for r in s.dhcp_ranges]}
            for s in network.subnets
        ],
        "active": network.active,
        "autostart": network.autostart,
        "attachments": [
            {"domain_uuid": _canonical_uuid(a.domain_uuid), "domain_name": a.domain_name, "mac": a.mac}
            for a in network.attachments
        ],
        "extra": {str(k): jsonable(v) for k, v in network.extra.items()},
    }


_HOST_FIELDS = ("hypervisor", "hypervisor_version", "hostname", "cpus", "memory_bytes")


@attrs.frozen
class HostInventory:
    """What one host gave: its facts, domains, pools and networks, or the error that stopped it.

    When ``error`` is set the host's collection failed: ``domains`` is empty and
    the host fields that were not read are ``None`` (the reason is ``error``).
    """

    uri: str
    name: str | None
    driver: str | None
    collected_at: _dt.datetime
    hypervisor: str | None = None
    hypervisor_version: str | None = None
    hostname: str | None = None
    cpus: int | None = None
    memory_bytes: int | None = None
    error: HostError | None = None
    domains: tuple[DomainRecord, ...] = ()
    pools: tuple[PoolInventory, ...] | None = None
    networks: tuple[NetworkInfo, ...] | None = None
    """The host's networks; None when they could not be listed or the driver has none (``field_errors``)."""
    field_errors: Mapping[str, str] = attrs.field(factory=dict)
    duration_seconds: float = attrs.field(default=0.0, eq=False)

    @property
    def ok(self) -> bool:
        """True when the host was inventoried (possibly with some ``field_errors``)."""
        return self.error is None

    @property
    def label(self) -> str:
        """A short human name: the configured name, the hostname, or the URI."""
        return self.name or self.hostname or self.uri

    def host_fields(self) -> dict[str, Any]:
        """The host's own fields (no domains, pools or networks): what jsonl and csv rows repeat."""
        errors = dict(self.field_errors)
        if self.error is None:
            for key in _HOST_FIELDS:
                if getattr(self, key) is None:
                    errors.setdefault(key, "NOT_REPORTED: the driver did not report it")
        return {
            "uri": self.uri,
            "name": self.name,
            "driver": self.driver,
            "hypervisor": self.hypervisor,
            "hypervisor_version": self.hypervisor_version,
            "hostname": self.hostname,
            "cpus": self.cpus,
            "memory_bytes": self.memory_bytes,
            "collected_at": format_time(self.collected_at),
            "error": None if self.error is None else self.error.to_dict(),
            "field_errors": errors,
        }

    def to_dict(self) -> dict[str, Any]:
        """The host as schema v2 data."""
        data = self.host_fields()
        driver = self.driver or "unknown"
        data["domains"] = [domain_to_dict(r, driver) for r in self.domains]
        if self.pools is None and self.error is None and "pools" not in data["field_errors"]:
            data["field_errors"]["pools"] = "NOT_REPORTED: the pools could not be listed"
        data["pools"] = None if self.pools is None else [p.to_dict() for p in self.pools]
        if self.networks is None and self.error is None and "networks" not in data["field_errors"]:
            data["field_errors"]["networks"] = "NOT_REPORTED: the networks could not be listed"
        data["networks"] = None if self.networks is None else [network_to_dict(n) for n in self.networks]
        return data


@attrs.frozen
class Inventory:
    """The result of :func:`virtabs.inventory.collect`: one :class:`HostInventory` per host, in input order."""

    generated_at: _dt.datetime
    hosts: tuple[HostInventory, ...]

    @property
    def ok_hosts(self) -> list[HostInventory]:
        """Hosts that were inventoried."""
        return [h for h in self.hosts if h.ok]

    @property
    def failed_hosts(self) -> list[HostInventory]:
        """Hosts whose collection failed (each has ``error``)."""
        return [h for h in self.hosts if not h.ok]

    @property
    def domain_count(self) -> int:
        """How many domains were found, over all hosts."""
        return sum(len(h.domains) for h in self.hosts)

    @property
    def exit_status(self) -> int:
        """0 when every host was inventoried, 3 when some failed (partial), 1 when all failed."""
        failed = len(self.failed_hosts)
        if failed == 0:
            return EXIT_OK
        return EXIT_ALL_FAILED if failed == len(self.hosts) else EXIT_PARTIAL

    def summary(self) -> dict[str, int]:
        """``{"hosts": n, "hosts_ok": n, "hosts_failed": n, "domains": n}``."""
        failed = len(self.failed_hosts)
        return {
            "hosts": len(self.hosts),
            "hosts_ok": len(self.hosts) - failed,
            "hosts_failed": failed,
            "domains": self.domain_count,
        }

    def domains(self) -> Iterator[tuple[HostInventory, DomainRecord]]:
        """Every ``(host, domain record)`` pair, in output order."""
        for host in self.hosts:
            for record in host.domains:
                yield host, record

    def to_dict(self) -> dict[str, Any]:
        """The whole inventory as schema v2 data (what ``--format json`` writes)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "generated_at": format_time(self.generated_at),
            "summary": self.summary(),
            "hosts": [h.to_dict() for h in self.hosts],
        }


# --- domain records -----------------------------------------------------------------

_INFO_FIELDS = ("state", "native_state", "vcpus", "memory_bytes")
_DOMAIN_NULLABLE = ("vcpus", "memory_bytes", "os_type", "autostart", "snapshot_count", "managed_save")


def _disk_to_dict(disk: DiskInfo, errors: dict[str, str]) -> dict[str, Any]:
    for key in ("capacity_bytes", "allocation_bytes"):
        if getattr(disk, key) is None:
            errors.setdefault(f"disks.{disk.target}.{key}", "NOT_REPORTED: the driver did not report it")
    return {
        "target": disk.target,
        "path": disk.path,
        "format": disk.format,
        "capacity_bytes": disk.capacity_bytes,
        "allocation_bytes": disk.allocation_bytes,
        "backing_chain": list(disk.backing_chain),
        "pool": disk.pool,
    }


def _nic_to_dict(nic: NicInfo, index: int, errors: dict[str, str]) -> dict[str, Any]:
    for key in ("mac", "network", "model"):
        if getattr(nic, key) is None:
            errors.setdefault(f"nics.{index}.{key}", "NOT_REPORTED: the driver did not report it")
    return {"mac": nic.mac, "network": nic.network, "model": nic.model, "ips": list(nic.ips)}


def _job_to_dict(job: BlockJobInfo) -> dict[str, Any]:
    return {
        "disk": job.disk,
        "type": job.type.name.lower(),
        "cur": job.cur,
        "end": job.end,
        "bandwidth_bytes": job.bandwidth,
        "ready": job.ready,
    }


def _canonical_uuid(value: str) -> str:
    try:
        return str(_uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def domain_to_dict(record: DomainRecord, driver: str = "unknown") -> dict[str, Any]:
    """One domain as schema v2 data.

    The driver's ``field_errors`` are kept; the generic fallback's ``info`` key
    (``domain_info`` failed) is spread over the fields it covers, and every other
    ``None`` gets a ``NOT_REPORTED``/``NO_SUPPORT`` reason, so that each null in
    the output has an entry in ``field_errors``.
    """
    errors: dict[str, str] = {str(k): str(v) for k, v in record.field_errors.items()}
    info_error = errors.pop("info", None)
    state_unknown = info_error is not None or "state" in errors
    if info_error is not None:
        for key in _INFO_FIELDS:
            errors.setdefault(key, info_error)
    for key in _DOMAIN_NULLABLE:
        if getattr(record, key) is None:
            if key == "autostart":
                reason = f"NO_SUPPORT: the {driver} driver has no autostart setting"
            elif key == "snapshot_count":
                reason = f"NO_SUPPORT: the {driver} driver does not report snapshots"
            elif key == "managed_save":
                reason = f"NO_SUPPORT: the {driver} driver has no managed save"
            else:
                reason = f"NOT_REPORTED: the {driver} driver did not report it"
            errors.setdefault(key, reason)
    disks = None if "disks" in errors else [_disk_to_dict(d, errors) for d in record.disks]
    nics = None if "nics" in errors else [_nic_to_dict(n, i, errors) for i, n in enumerate(record.nics)]
    jobs = None if "block_jobs" in errors else [_job_to_dict(j) for j in record.block_jobs]
    extra = {str(k): jsonable(v) for k, v in record.extra.items()}
    raw_tags = extra.pop("tags", None)
    if isinstance(raw_tags, list) and all(isinstance(t, str) for t in raw_tags):
        tags: list[str] = raw_tags
    else:
        tags = []
        if raw_tags is not None:
            extra["tags"] = raw_tags
    return {
        "name": record.name,
        "uuid": _canonical_uuid(record.uuid),
        "state": None if state_unknown else record.state.name.lower(),
        "native_state": None if state_unknown else record.native_state,
        "vcpus": record.vcpus,
        "memory_bytes": record.memory_bytes,
        "os_type": record.os_type,
        "autostart": record.autostart,
        "disks": disks,
        "nics": nics,
        "snapshot_count": record.snapshot_count,
        "managed_save": record.managed_save,
        "block_jobs": jobs,
        "tags": tags,
        "extra": extra,
        "field_errors": errors,
    }

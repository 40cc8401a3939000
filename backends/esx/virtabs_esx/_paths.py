"""Pure translations between vSphere's vocabulary and virtabs' (no pyVmomi here, so they are unit-tested alone).

* Datastore paths: vSphere writes ``[LocalDS_0] web/web.vmdk``; virtabs paths are absolute, so a disk is
  ``/vmfs/volumes/LocalDS_0/web/web.vmdk`` (the path ESXi itself shows) and a datastore (a pool) is
  ``/vmfs/volumes/LocalDS_0``.
* Disk targets name the controller kind and the slot: ``vdX`` is a disk on a paravirtual SCSI controller
  (PVSCSI, VMware's virtio; bus ``virtio``), ``sdX`` on an LSI Logic / BusLogic SCSI controller (bus
  ``scsi``), ``hdX`` on IDE (bus ``ide``). SCSI letters count 15 slots per controller (unit 7 is the
  controller's own), IDE letters 2 per channel. Disks on other controllers (SATA, NVMe) are named
  ``<kind><bus>:<unit>`` and cannot be attached through virtabs.
* Power states: ``poweredOn`` is RUNNING; ``poweredOff`` and ``suspended`` are SHUTOFF (a suspended VM is
  stopped with its memory in a ``.vmss`` file and resumes on power-on, like libvirt's managed save).
"""

from __future__ import annotations

import re

from virtabs.spi import DomainState, InvalidArgumentError, quote

__all__ = [
    "CONTROLLER_BUS",
    "VOLUMES",
    "datastore_path",
    "domain_state",
    "posix_path",
    "slot_of",
    "split_datastore_path",
    "target_name",
]

VOLUMES = "/vmfs/volumes/"

#: controller kind -> (target prefix, virtabs bus, slots per controller)
CONTROLLER_BUS: dict[str, tuple[str, str, int]] = {
    "pvscsi": ("vd", "virtio", 15),
    "scsi": ("sd", "scsi", 15),
    "ide": ("hd", "ide", 2),
}
_PREFIX_KIND = {prefix: kind for kind, (prefix, _bus, _n) in CONTROLLER_BUS.items()}
_BUS_KIND = {bus: kind for kind, (_prefix, bus, _n) in CONTROLLER_BUS.items()}

_DS_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s*(?P<rest>.*)$")


def split_datastore_path(path: str) -> tuple[str, str]:
    """``"[ds] dir/f.vmdk"`` -> ``("ds", "dir/f.vmdk")``; InvalidArgumentError for anything else."""
    match = _DS_PATH.match(path)
    if match is None:
        raise InvalidArgumentError(f"{quote(path)} is not a datastore path ([datastore] dir/file)")
    return match.group("ds"), match.group("rest").strip("/")


def posix_path(ds_path: str) -> str:
    """``"[ds] dir/f.vmdk"`` -> ``"/vmfs/volumes/ds/dir/f.vmdk"`` (``"[ds]"`` -> ``"/vmfs/volumes/ds"``)."""
    ds, rest = split_datastore_path(ds_path)
    return f"{VOLUMES}{ds}/{rest}" if rest else f"{VOLUMES}{ds}"


def datastore_path(path: str) -> tuple[str, str]:
    """``"/vmfs/volumes/ds/dir/f.vmdk"`` -> ``("ds", "[ds] dir/f.vmdk")``; a ``[ds] ...`` path is accepted too."""
    if path.startswith("["):
        ds, rest = split_datastore_path(path)
    elif path.startswith(VOLUMES):
        ds, _, rest = path[len(VOLUMES) :].partition("/")
        rest = rest.strip("/")
        if not ds:
            raise InvalidArgumentError(f"{quote(path)} names no datastore")
    else:
        raise InvalidArgumentError(
            f"{quote(path)} is not on a datastore: VMware disks live at /vmfs/volumes/<datastore>/<dir>/<file>.vmdk"
        )
    if "[" in ds or "]" in ds:
        # "[ds] dir/file" has no escaping: "a] [b" would make the datastore path "[a] [b] ..." (datastore "a")
        raise InvalidArgumentError(f"{quote(path)}: a datastore name with '[' or ']' cannot be written as [datastore]")
    return ds, f"[{ds}] {rest}" if rest else f"[{ds}]"


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


def target_name(kind: str, bus: int, unit: int) -> str:
    """The virtabs target of the disk in slot ``unit`` of controller ``bus`` of ``kind``."""
    if kind not in CONTROLLER_BUS:
        return f"{kind}{bus}:{unit}"
    prefix, _bus, per = CONTROLLER_BUS[kind]
    slot = (unit if unit < 7 else unit - 1) if per == 15 else unit
    return prefix + _letters(bus * per + slot)


def slot_of(target: str, bus_name: str | None = None) -> tuple[str, int, int]:
    """``"vdb"`` -> ``("pvscsi", 0, 1)``: controller kind, controller bus number, unit number.

    When ``bus_name`` (a DiskSpec bus) is given it must agree with the target's prefix.
    """
    match = re.fullmatch(r"(vd|sd|hd)([a-z]+)", target)
    if match is None:
        raise InvalidArgumentError(
            f"disk target {quote(target)}: VMware disks are vdX (PVSCSI), sdX (SCSI) or hdX (IDE)"
        )
    kind = _PREFIX_KIND[match.group(1)]
    if bus_name is not None and _BUS_KIND.get(bus_name) != kind:
        raise InvalidArgumentError(
            f"disk target {quote(target)} is on the {CONTROLLER_BUS[kind][1]} bus, not {quote(bus_name)} "
            "(vdX: virtio = PVSCSI, sdX: scsi = LSI Logic, hdX: ide)"
        )
    per = CONTROLLER_BUS[kind][2]
    bus, slot = divmod(_index(match.group(2)), per)
    unit = (slot if slot < 7 else slot + 1) if per == 15 else slot
    if kind == "ide" and bus > 1:
        raise InvalidArgumentError(f"disk target {quote(target)}: IDE has two channels (hda-hdd)")
    if kind != "ide" and bus > 3:
        raise InvalidArgumentError(f"disk target {quote(target)}: at most 4 SCSI controllers (60 disks)")
    return kind, bus, unit


def domain_state(power_state: str | None) -> DomainState:
    """``runtime.powerState`` -> DomainState (unknown or missing: NOSTATE)."""
    return {
        "poweredOn": DomainState.RUNNING,
        "poweredOff": DomainState.SHUTOFF,
        "suspended": DomainState.SHUTOFF,
    }.get(power_state or "", DomainState.NOSTATE)

"""Disk target names (``vda``, ``hdb``) <-> Hyper-V controller slots.

Hyper-V addresses a drive by controller type, controller number and location. virtabs names disks the
way libvirt does, so the driver maps them one to one and back:

* ``vdX`` (and ``sdX`` on input) -> synthetic SCSI: index ``X`` (a=0 ... z=25, aa=26 ...) is controller
  ``index // 64``, location ``index % 64``; ``vda`` is SCSI 0:0, ``vdb`` SCSI 0:1;
* ``hdX`` -> IDE (generation 1 VMs only): ``hda`` 0:0, ``hdb`` 0:1, ``hdc`` 1:0, ``hdd`` 1:1.

Drives are always reported with the ``vd``/``hd`` name of their slot, so a disk defined as ``sdb`` is
listed as ``vdb``.
"""

from __future__ import annotations

__all__ = ["IDE", "SCSI", "slot_for", "target_for"]

IDE = 0
SCSI = 1
_SCSI_PER_CONTROLLER = 64


def _index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def slot_for(target: str, bus: str = "scsi") -> tuple[int, int, int]:
    """``(controller type, number, location)`` for a target; ValueError when it names no slot."""
    prefix, letters = target[:2], target[2:]
    if not letters.isalpha() or not letters.islower() or prefix not in ("vd", "sd", "hd"):
        raise ValueError(f"disk target {target!r}: expected vdX, sdX or hdX")
    index = _index(letters)
    if prefix == "hd" or bus == "ide":
        if index > 3:
            raise ValueError(f"disk target {target!r}: IDE has four slots (hda-hdd)")
        return IDE, index // 2, index % 2
    if index >= 4 * _SCSI_PER_CONTROLLER:
        raise ValueError(f"disk target {target!r}: Hyper-V has four SCSI controllers of 64 locations")
    return SCSI, index // _SCSI_PER_CONTROLLER, index % _SCSI_PER_CONTROLLER


def target_for(controller_type: int, number: int, location: int) -> str:
    """The target name of a slot."""
    if controller_type == IDE:
        return "hd" + _letters(number * 2 + location)
    return "vd" + _letters(number * _SCSI_PER_CONTROLLER + location)

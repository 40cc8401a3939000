"""The contract-kit target of the VirtualBox driver (entry point group ``virtabs.testing.targets``).

Domains get one VDI disk ``vda`` created as a volume of the driver's single pool (``createmedium``), so
VirtualBox (or the test simulator) has a real registered medium to attach; everything else is the
default target's.
"""

from __future__ import annotations

from virtabs.testing import DefaultTarget

__all__ = ["VboxTarget"]

MiB = 1 << 20


class VboxTarget(DefaultTarget):
    """Disposable VirtualBox machines with a 64 MiB VDI disk ``vda`` on a SATA controller."""

    def __init__(self) -> None:
        super().__init__(prefix="vtvb", memory_bytes=64 * MiB)

    def domain_spec(self, conn, name):  # type: ignore[no-untyped-def]
        """64 MiB, one vCPU, ``vda`` = a fresh 64 MiB VDI volume in the pool ``default``."""
        from virtabs.spi import DiskSpec, DomainSpec

        pool = conn.lookup_storage_pool("default")
        vol = pool.create_volume(f"{name}.vdi", 64 * MiB, format="vdi")
        disk = DiskSpec("vda", vol.path, format="vdi", bus="sata")
        return DomainSpec(name=name, memory_bytes=self.memory_bytes, vcpus=1, disks=(disk,))

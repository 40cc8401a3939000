"""The contract-kit target for VMware (``esx`` and ``vpx``): disposable VMs with a disk on a datastore.

Published under the entry-point group ``virtabs.testing.targets``. Disks are ``.vmdk`` files at
``/vmfs/volumes/<datastore>/...``; the driver creates a missing one (1 GiB, thin) when a VM is defined or
a disk attached, so :meth:`EsxTarget.create_image` has nothing to do for a plain image. vSphere has no
user-built backing chains (only snapshot delta disks) and no raw block devices for a copy, so the chain
and device helpers raise :class:`~virtabs.testing.TargetUnavailable`.
"""

from __future__ import annotations

import os

from virtabs import Connection, DiskSpec, Domain, DomainSpec
from virtabs.testing import DefaultTarget, TargetUnavailable

__all__ = ["EsxTarget"]

MiB = 1 << 20


class EsxTarget(DefaultTarget):
    """VMs get ``vda`` (PVSCSI) on ``datastore``; scratch files (copy destinations, hot-plugged disks) go to
    ``scratch_datastore`` (default: the same one)."""

    job_timeout: float = 60.0

    def __init__(self, *, datastore: str = "LocalDS_0", scratch_datastore: str | None = None, prefix: str = "vtc"):
        super().__init__(prefix=prefix, memory_bytes=64 * MiB)
        self.datastore = datastore
        self.scratch_datastore = scratch_datastore or datastore

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """64 MiB, one vCPU, ``vda`` = ``/vmfs/volumes/<datastore>/<name>/<name>.vmdk`` (created by define)."""
        disk = DiskSpec("vda", f"/vmfs/volumes/{self.datastore}/{name}/{name}.vmdk", format="vmdk")
        return DomainSpec(name=name, memory_bytes=self.memory_bytes, vcpus=1, disks=(disk,))

    def scratch_path(self, conn: Connection, name: str) -> str:
        """A new ``.vmdk`` path on the scratch datastore (VMware disks are .vmdk whatever the kit calls them)."""
        stem = os.path.splitext(name)[0]
        return f"/vmfs/volumes/{self.scratch_datastore}/{self.new_name(stem)}.vmdk"

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """Nothing to do for a plain image (attach creates a missing .vmdk); no backing chains on vSphere."""
        if backing is not None:
            raise TargetUnavailable("vSphere has no user-built backing chains (only snapshot delta disks)")

    def make_chain_domain(self, conn: Connection) -> Domain:
        """A running VM whose ``vda`` has the vSphere kind of chain: two snapshots (base <- delta <- delta).

        (On real vSphere each snapshot adds a delta disk; vcsim 0.24.2 records the snapshots only.)
        """
        dom = self.make_domain(conn, running=True)
        dom.create_snapshot(self.new_name("snap1"))
        dom.create_snapshot(self.new_name("snap2"))
        return dom

    def create_block_device(self, conn: Connection, name: str) -> str:
        """Not available: a Storage vMotion targets a datastore, never a raw device."""
        raise TargetUnavailable("Storage vMotion copies to a datastore, never onto a block device")

"""The contract-kit target for VMware (``esx`` and ``vpx``): disposable VMs with a disk on a datastore.

Published under the entry-point group ``virtabs.testing.targets``. Disks are ``.vmdk`` files at
``/vmfs/volumes/<datastore>/...``; the driver creates a missing one (1 GiB, thin) when a VM is defined or
a disk attached, so :meth:`EsxTarget.create_image` has nothing to do for a plain image. vSphere has no
user-built backing chains (only snapshot delta disks) and no raw block devices for a copy, so the chain
and device helpers raise :class:`~virtabs.testing.TargetUnavailable`.
"""

from __future__ import annotations

import os
import ssl
import threading
import urllib.parse
from typing import Any

from virtabs import Connection, DiskSpec, Domain, DomainSpec
from virtabs.testing import DefaultTarget, TargetUnavailable

__all__ = ["EsxTarget"]

MiB = 1 << 20


class EsxTarget(DefaultTarget):
    """VMs get ``vda`` (PVSCSI) on ``datastore``; scratch files (copy destinations, hot-plugged disks) go to
    ``scratch_datastore``. Unset, they are the connection's first datastore and its second (or the first
    again when there is only one)."""

    job_timeout: float = 60.0

    def __init__(
        self,
        *,
        datastore: str | None = None,
        scratch_datastore: str | None = None,
        prefix: str = "vtc",
        credentials: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(prefix=prefix, memory_bytes=64 * MiB)
        self.datastore = datastore
        self.scratch_datastore = scratch_datastore
        self._credentials = credentials
        self._si: Any = None
        self._si_lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str) -> EsxTarget:
        """The target the kit builds for ``uri``: datastores are found on the connection; the target's own
        vSphere session (for :meth:`boot_id`) logs in with ``VIRTABS_USERNAME``/``VIRTABS_PASSWORD``."""
        user, password = os.environ.get("VIRTABS_USERNAME"), os.environ.get("VIRTABS_PASSWORD")
        return cls(credentials=(user, password) if user and password is not None else None)

    def _own_session(self, conn: Connection) -> Any:
        """A pyVmomi session of the target's own (not the driver's), verifying TLS like the URI says."""
        with self._si_lock:
            if self._si is None:
                if self._credentials is None:
                    raise TargetUnavailable("EsxTarget needs credentials= (or VIRTABS_USERNAME/PASSWORD) for boot_id")
                import pyVim.connect

                connect: Any = pyVim.connect.SmartConnect
                url = urllib.parse.urlsplit(conn.uri)
                query = dict(urllib.parse.parse_qsl(url.query))
                http = query.get("transport") == "http"
                kwargs: dict[str, Any] = (
                    {"protocol": "http"}
                    if http
                    else {"sslContext": ssl.create_default_context(cafile=query.get("cafile"))}
                )
                self._si = connect(
                    host=url.hostname, port=url.port or (80 if http else 443), user=self._credentials[0],
                    pwd=self._credentials[1], **kwargs,
                )  # fmt: skip
            return self._si

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """How many times the VM was powered on: ``VmPoweredOnEvent``s in the host's event log (a reset
        powers it on again), read through the target's own vSphere session."""
        import pyVmomi

        vim: Any = pyVmomi.vim
        si = self._own_session(conn)
        vm = si.content.searchIndex.FindByUuid(None, dom.uuid, True)
        if vm is None:
            raise TargetUnavailable(f"domain {dom.name!r} is not in the vSphere inventory")
        spec = vim.event.EventFilterSpec(
            entity=vim.event.EventFilterSpec.ByEntity(entity=vm, recursion="self"), eventTypeId=["VmPoweredOnEvent"]
        )
        return len(si.content.eventManager.QueryEvents(spec) or [])

    def run_clock(self, conn: Connection, dom: Domain) -> float | None:
        """Seconds since vSphere last powered the VM on (``summary.runtime.bootTime``), on the server's own clock
        (``CurrentTime``), read through the target's own session; None while it is not powered on.

        vSphere's record, not the guest's own clock (that needs VMware Tools in a guest OS, which these VMs do
        not run); on vcsim 0.24.2 a resume from suspended resets ``bootTime`` like a cold boot, so a resume
        cannot be told from a boot there (the vcsim run declares ``guest.resume`` unobservable).
        """
        si = self._own_session(conn)
        vm = si.content.searchIndex.FindByUuid(None, dom.uuid, True)
        if vm is None or str(vm.runtime.powerState) != "poweredOn":
            return None
        booted = vm.summary.runtime.bootTime
        if booted is None:
            return None
        return float((si.CurrentTime() - booted).total_seconds())

    def _datastores(self, conn: Connection) -> tuple[str, str]:
        if self.datastore is None or self.scratch_datastore is None:
            names = [p.name for p in conn.list_storage_pools()]
            if not names:
                raise TargetUnavailable(f"{conn.uri}: no datastore to put test disks on")
            self.datastore = self.datastore or names[0]
            self.scratch_datastore = self.scratch_datastore or (names[1] if len(names) > 1 else names[0])
        return self.datastore, self.scratch_datastore

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """64 MiB, one vCPU, ``vda`` = ``/vmfs/volumes/<datastore>/<name>/<name>.vmdk`` (created by define)."""
        datastore = self._datastores(conn)[0]
        disk = DiskSpec("vda", f"/vmfs/volumes/{datastore}/{name}/{name}.vmdk", format="vmdk")
        return DomainSpec(name=name, memory_bytes=self.memory_bytes, vcpus=1, disks=(disk,))

    def scratch_path(self, conn: Connection, name: str) -> str:
        """A new ``.vmdk`` path on the scratch datastore (VMware disks are .vmdk whatever the kit calls them)."""
        stem = os.path.splitext(name)[0]
        return f"/vmfs/volumes/{self._datastores(conn)[1]}/{self.new_name(stem)}.vmdk"

    def volume_format(self, conn: Connection, pool: str) -> str:
        """``vmdk``: a datastore's volumes are VMware virtual disks."""
        return "vmdk"

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

    def migration_peer(self, conn: Connection) -> Connection:
        """A ``vpx://`` connection to the same vCenter scoped to its last host (another host than the one
        new VMs land on, the first in scope): vMotion's destination. Opened with the target's credentials."""
        import pyVmomi
        import virtabs

        vim: Any = pyVmomi.vim
        if self._credentials is None:
            raise TargetUnavailable("EsxTarget needs credentials= (or VIRTABS_USERNAME/PASSWORD) for migration_peer")
        content = self._own_session(conn).content
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        try:
            hosts = list(view.view)
        finally:
            view.DestroyView()
        if len(hosts) < 2:
            raise TargetUnavailable(f"{conn.uri}: vMotion needs two hosts in the vCenter, it has {len(hosts)}")
        names: list[str] = []
        entity: Any = hosts[-1]
        while not isinstance(entity, vim.Datacenter):
            if not (isinstance(entity, vim.Folder) and isinstance(entity.parent, vim.Datacenter)):
                names.append(entity.name)  # the datacenter's "host" folder is implied by the vpx path
            entity = entity.parent
        names.append(entity.name)
        url = urllib.parse.urlsplit(conn.uri)
        path = "/".join(urllib.parse.quote(n) for n in reversed(names))
        uri = urllib.parse.urlunsplit((url.scheme, url.netloc, f"/{path}", url.query, ""))
        peer = virtabs.open(uri, credentials=virtabs.Credentials(*self._credentials), timeout=conn.timeout)
        self._peers.append(peer)
        return peer

    def cleanup(self, conn: Connection) -> None:
        """Remove the run's VMs (the default sweep) and log the target's own session out."""
        super().cleanup(conn)
        with self._si_lock:
            si, self._si = self._si, None
        if si is not None:
            import pyVim.connect

            disconnect: Any = pyVim.connect.Disconnect
            disconnect(si)

    def create_block_device(self, conn: Connection, name: str) -> str:
        """Not available: a Storage vMotion targets a datastore, never a raw device."""
        raise TargetUnavailable("Storage vMotion copies to a datastore, never onto a block device")

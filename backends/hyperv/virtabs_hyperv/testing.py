"""The contract target of the hyperv driver (entry point group ``virtabs.testing.targets``, name ``hyperv``).

**Simulator URIs.** When the URI under test points at this machine (``127.0.0.1``, ``localhost`` or
``::1``) and nothing listens on its port, :meth:`HypervTarget.from_uri` starts the WS-Management
simulator there (test infrastructure, shipped as ``virtabs_hyperv_sim`` from
``backends/hyperv/tests/wsman_sim``) and :meth:`close` stops it:

* ``hyperv://127.0.0.1:15986/?auth=basic&cafile=/tmp/hv/ca.pem``: HTTPS with a throw-away CA, whose
  certificate is written to ``cafile`` so that the driver verifies the server against it;
* ``hyperv://127.0.0.1:15985/?transport=http``: HTTP with NTLM and message encryption.

The simulator accepts the credentials in ``VIRTABS_USERNAME`` / ``VIRTABS_PASSWORD``; when they are not
set, the target makes up a throw-away account and sets them in this process's environment (where
``virtabs.open`` finds them). For example::

    pytest --virtabs-uri='hyperv://127.0.0.1:15986/?auth=basic&cafile=/tmp/hv/ca.pem' --pyargs virtabs.testing

Any other URI is a real host, used as it is: the suite then creates and deletes VMs and VHDX files whose
names start with the target's prefix, and the checks that read image content or boot counters "through
another door" are unavailable (they read the simulator's host model). Nothing here was run against a
real Hyper-V host.

Domains get one SCSI disk ``vda``: a fresh 64 MiB dynamic VHDX in the host's VirtualHardDiskPath (the
pool ``default``); chains are differencing VHDX files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import secrets
import socket
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import virtabs
from virtabs.spi import DiskSpec, DomainSpec
from virtabs.testing import DefaultTarget, TargetUnavailable

__all__ = ["HypervTarget"]

MiB = 1 << 20
_LOCAL = ("127.0.0.1", "localhost", "::1")


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class HypervTarget(DefaultTarget):
    """Disposable VMs and VHDX images; starts the simulator for a local URI nobody serves."""

    job_timeout = 30.0
    shutdown_timeout = 30.0

    def __init__(self, *, copy_rate: int = 256 * 1024) -> None:
        super().__init__(prefix="vtc", pool="default", memory_bytes=64 * MiB)
        self.copy_rate = copy_rate
        self.sim: Any = None
        self._peer_sims: list[Any] = []

    @classmethod
    def from_uri(cls, uri: str) -> HypervTarget:
        """The target for ``uri``; starts the simulator when ``uri`` is local and its port is free."""
        target = cls()
        target.start_simulator(uri)
        return target

    # --- the simulator --------------------------------------------------------------------------------

    def start_simulator(self, uri: str) -> bool:
        """Start the simulator for a local ``uri`` whose port nobody serves; whether it started one."""
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if host not in _LOCAL:
            return False
        params = dict(parse_qsl(parts.query))
        http = params.get("transport", "https").lower() == "http"
        port = parts.port or (5985 if http else 5986)
        if _listening("127.0.0.1", port):
            return False
        try:
            simulator = importlib.import_module("virtabs_hyperv_sim").Simulator
        except ImportError as exc:  # pragma: no cover - shipped in the same wheel
            raise TargetUnavailable(f"the WS-Man simulator is not installed ({exc})") from None
        user = os.environ.get("VIRTABS_USERNAME")
        password = os.environ.get("VIRTABS_PASSWORD")
        if not user or not password:
            user, password = "virtabs-sim", secrets.token_urlsafe(12)
            os.environ["VIRTABS_USERNAME"], os.environ["VIRTABS_PASSWORD"] = user, password
        auth = params.get("auth", "ntlm").lower()
        cafile = params.get("cafile")
        sim = simulator(
            tls=not http,
            ntlm=http and auth == "ntlm",
            allow_unencrypted=http and auth == "basic",
            username=user,
            password=password,
            port=port,
            cafile=Path(cafile) if cafile and not http else None,
        )
        sim.host.copy_rate = self.copy_rate
        sim.start()
        self.sim = sim
        return True

    def migration_peer(self, conn: virtabs.Connection) -> virtabs.Connection:
        """A second simulated host (simulator only) that Move-VM reaches from the first: its own WS-Man
        endpoint and CA, computer name ``HV-SIM-P<n>``, virtual hard disks under ``D:\\Hyper-V``, and the
        first host's file store shared (an SMB share both see). The peer is stopped by :meth:`close`."""
        first = self._host("migration_peer")
        package = importlib.import_module("virtabs_hyperv_sim")
        n = len(self._peer_sims) + 1
        peer_host = package.HyperVHost(computer_name=f"HV-SIM-P{n}", copy_rate=self.copy_rate)
        peer_host.vhd_path = f"D:\\Hyper-V\\Virtual Hard Disks\\P{n}"
        peer_host.vm_path = f"D:\\Hyper-V\\P{n}"
        package.link_hosts(first, peer_host)
        sim = package.Simulator(
            username=os.environ["VIRTABS_USERNAME"], password=os.environ["VIRTABS_PASSWORD"], host=peer_host
        )
        sim.start()
        self._peer_sims.append(sim)
        peer = virtabs.open(f"hyperv://127.0.0.1:{sim.port}/?auth=basic&cafile={sim.cafile}", timeout=conn.timeout)
        self._peers.append(peer)
        return peer

    def close(self) -> None:
        """Stop the simulator (and the migration peers' simulators) if this target started it."""
        sim, self.sim = self.sim, None
        while self._peer_sims:
            self._peer_sims.pop().stop()
        if sim is not None:
            sim.stop()

    def _host(self, what: str) -> Any:
        if self.sim is None:
            raise TargetUnavailable(f"{what}: readable only on the simulator (this URI is a real host)")
        return self.sim.host

    # --- objects --------------------------------------------------------------------------------------

    def _vhdx(self, conn: virtabs.Connection, name: str, backing: str | None = None) -> str:
        vol = conn.lookup_storage_pool("default").create_volume(name, 64 * MiB, format="vhdx", backing=backing)
        return vol.path

    def domain_spec(self, conn: virtabs.Connection, name: str) -> DomainSpec:
        """64 MiB, one vCPU, ``vda`` = a fresh 64 MiB VHDX on SCSI 0:0."""
        path = self._vhdx(conn, f"{name}.vhdx")
        return DomainSpec(
            name=name, memory_bytes=self.memory_bytes, vcpus=1, disks=(DiskSpec("vda", path, "vhdx", "scsi"),)
        )

    def make_chain_domain(self, conn: virtabs.Connection) -> virtabs.Domain:
        """base.vhdx <- snap1.vhdx <- snap2.vhdx (differencing) and a running VM on snap2."""
        base = self._vhdx(conn, self.new_name("base.vhdx"))
        snap1 = self._vhdx(conn, self.new_name("snap1.vhdx"), backing=base)
        snap2 = self._vhdx(conn, self.new_name("snap2.vhdx"), backing=snap1)
        spec = DomainSpec(
            name=self.new_name("chain"),
            memory_bytes=self.memory_bytes,
            vcpus=1,
            disks=(DiskSpec("vda", snap2, "vhdx", "scsi"),),
        )
        dom = conn.define_domain(spec)
        dom.start()
        return dom

    def volume_format(self, conn: virtabs.Connection, pool: str) -> str:
        """Hyper-V pools create VHDX (and VHD) files."""
        return "vhdx"

    def scratch_path(self, conn: virtabs.Connection, name: str) -> str:
        """A new file name in the host's VirtualHardDiskPath (a Windows path)."""
        path = conn.lookup_storage_pool("default").info().path
        assert path is not None
        return f"{path}\\{self.new_name(name)}"

    def create_image(self, conn: virtabs.Connection, path: str, *, format: str, backing: str | None) -> None:
        """A 64 MiB VHDX at ``path`` (Hyper-V has no raw or qcow2 images, whatever ``format`` says).

        A ``.vhd``/``.vhdx`` name in the pool directory is made with New-VHD through the driver; any other
        name only on the simulator, directly in its host model.
        """
        pool_dir = conn.lookup_storage_pool("default").info().path or ""
        folder, _, name = path.replace("/", "\\").rpartition("\\")
        if folder.lower() == pool_dir.lower() and name.lower().endswith((".vhd", ".vhdx")):
            self._vhdx(conn, name, backing=backing)
            return
        host = self._host(f"image {path!r}")
        with host.lock:
            host.add_vhd(path, 64 * MiB, parent=backing)

    def create_block_device(self, conn: virtabs.Connection, name: str) -> str:
        """Not needed: the driver declares no block.copy.dev."""
        raise TargetUnavailable("the hyperv driver copies onto files only")

    # --- effects read through another door: the simulator's host model --------------------------------

    def image_digest(self, conn: virtabs.Connection, path: str) -> str | None:
        """What a guest would read from ``path``: the data of every layer of its chain (simulator only)."""
        host = self._host("image_digest")
        with host.lock:
            chain = host.chain(path)
            if not chain:
                return None
            text = f"{chain[0].size}:" + "|".join(v.data for v in reversed(chain))
        return hashlib.sha256(text.encode()).hexdigest()

    def layer_digest(self, conn: virtabs.Connection, path: str) -> str | None:
        """The data of ``path`` alone (simulator only)."""
        host = self._host("layer_digest")
        with host.lock:
            f = host.find_file(path)
            return None if f is None else hashlib.sha256(f"{f.size}:{f.data}".encode()).hexdigest()

    def boot_id(self, conn: virtabs.Connection, dom: virtabs.Domain) -> object:
        """When the VM's current run began (simulator only)."""
        host = self._host("boot_id")
        with host.lock:
            vm = host.vms.get(uuid.UUID(dom.uuid))
            if vm is None:
                raise TargetUnavailable(f"domain {dom.name!r} is not on the simulator")
            return (vm.state in (2, 9), vm.started)

    def run_clock(self, conn: virtabs.Connection, dom: virtabs.Domain) -> float | None:
        """The simulated guest's run time: banked by Save-VM, going on while it runs (simulator only)."""
        host = self._host("run_clock")
        with host.lock:
            vm = host.vms.get(uuid.UUID(dom.uuid))
            if vm is None:
                raise TargetUnavailable(f"domain {dom.name!r} is not on the simulator")
            if vm.state not in (2, 9) or vm.started is None:
                return None
            return float(vm.ran + time.monotonic() - vm.started)

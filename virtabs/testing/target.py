"""Disposable objects for the contract suite: the :class:`ContractTarget` protocol and its default.

The suite never hard-codes how a domain or a disk image comes to be: it asks a
*target*. The default (:class:`DefaultTarget`) works with any driver that can
define domains, and builds backing chains through storage volumes when the
driver declares ``storage.volume``; that is enough for ``test:///default``. A
driver whose domains need real files (QEMU needs qcow2 chains) supplies its own
target by overriding the ``virtabs_target`` fixture in its ``conftest.py``::

    @pytest.fixture(scope="session")
    def virtabs_target(tmp_path_factory):
        return MyTarget(tmp_path_factory.mktemp("images"))

Every name a target creates starts with :meth:`DefaultTarget.new_name`'s
prefix, so :meth:`ContractTarget.cleanup` can sweep what a failed test left.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import tempfile
import uuid
from typing import Protocol, runtime_checkable

from .._api import Connection, Domain, StoragePool
from .._capabilities import Capability
from .._errors import VirtabsError
from .._models import DiskSpec, DomainSpec

__all__ = ["ContractTarget", "DefaultTarget", "TargetUnavailable"]

log = logging.getLogger("virtabs.testing")

MiB = 1 << 20
GiB = 1 << 30


class TargetUnavailable(RuntimeError):
    """The target cannot build what a test asked for (supply your own ContractTarget)."""


@runtime_checkable
class ContractTarget(Protocol):
    """What the suite asks of a driver's test environment.

    ``job_timeout`` bounds how long the suite waits for an unthrottled block
    job to become ready or to finish (seconds).
    """

    job_timeout: float

    def new_name(self, kind: str) -> str:
        """A fresh object name carrying the target's sweep prefix."""
        ...

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """A definition the host accepts for a disposable domain called ``name`` (disk ``vda``)."""
        ...

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """A disposable, defined domain with disk ``vda``; running (RUNNING) or shut off."""
        ...

    def make_chain_domain(self, conn: Connection) -> Domain:
        """A disposable *running* domain whose disk ``vda`` is the chain base <- snap1 <- snap2."""
        ...

    def scratch_path(self, conn: Connection, name: str) -> str:
        """An absolute path, not existing yet, where a block copy may write its destination image."""
        ...

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """Pre-create an image at ``path`` (a REUSE_EXT destination), optionally backed by ``backing``."""
        ...

    def save_path(self, conn: Connection, name: str) -> str:
        """An absolute path, not existing yet, for a saved-memory file."""
        ...

    def create_block_device(self, conn: Connection, name: str) -> str:
        """A block device (at least as large as the chain disk) a COPY_DEV copy may overwrite; its path."""
        ...

    def cleanup(self, conn: Connection) -> None:
        """Remove everything this target (or a test using its names) created. Best effort."""
        ...


class DefaultTarget:
    """A target for drivers that define domains from a plain :class:`DomainSpec`.

    Domains get one disk ``vda`` at a path that does not have to exist
    (``test:///default`` makes images up). Backing chains and REUSE_EXT
    destinations are storage volumes of ``pool`` (the first pool with a path
    when None), so they need ``storage.volume``.
    """

    job_timeout: float = 60.0

    def __init__(
        self,
        *,
        prefix: str = "vtc",
        pool: str | None = None,
        memory_bytes: int = 64 * MiB,
        image_dir: str = "/var/lib/virtabs-contract",
    ) -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.pool_name = pool
        self.memory_bytes = memory_bytes
        self.image_dir = image_dir
        self._counter = itertools.count(1)
        self._tmpdir: str | None = None

    # --- names and paths ------------------------------------------------------

    def new_name(self, kind: str) -> str:
        """``<prefix>-<run>-<n>-<kind>``: unique within the process run, sweepable by prefix."""
        return f"{self.prefix}-{next(self._counter)}-{kind}"

    def _tmp(self) -> str:
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        return self._tmpdir

    def _pool(self, conn: Connection) -> StoragePool | None:
        if not conn.supports(Capability.STORAGE_VOLUME):
            return None
        if self.pool_name is not None:
            return conn.lookup_storage_pool(self.pool_name)
        for pool in conn.list_storage_pools():
            if pool.info().path and pool.info().active:
                return pool
        return None

    def scratch_path(self, conn: Connection, name: str) -> str:
        """A new path in the pool's directory (so :meth:`create_image` can make it), else a temp dir."""
        pool = self._pool(conn)
        base = self.new_name(name)
        if pool is not None:
            path = pool.info().path
            assert path is not None
            return f"{path.rstrip('/')}/{base}"
        return os.path.join(self._tmp(), base)

    def save_path(self, conn: Connection, name: str) -> str:
        """A new file in a temporary directory of this process."""
        return os.path.join(self._tmp(), self.new_name(name) + ".save")

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """Create a 1 GiB volume at ``path`` (which must be in a pool's directory)."""
        pool = self._pool(conn)
        pool_path = pool.info().path if pool is not None else None
        if pool is None or pool_path is None or os.path.dirname(path).rstrip("/") != pool_path.rstrip("/"):
            raise TargetUnavailable(
                f"the default ContractTarget creates images as storage volumes; {path!r} is not in a pool "
                "(or the driver lacks storage.volume): supply your own target"
            )
        pool.create_volume(os.path.basename(path), GiB, format=format, backing=backing)

    def create_block_device(self, conn: Connection, name: str) -> str:
        """A raw volume standing in for a device (drivers with a virtual image store accept that)."""
        path = self.scratch_path(conn, name)
        self.create_image(conn, path, format="raw", backing=None)
        return path

    # --- domains ----------------------------------------------------------------

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """64 MiB, one vCPU, ``vda`` = a fresh 64 MiB qcow2 volume when the driver has ``storage.volume``
        (so hypervisors that need a real image can start it), else a path under :attr:`image_dir`
        that need not exist."""
        pool = self._pool(conn)
        if pool is not None:
            vol = pool.create_volume(f"{name}.qcow2", 64 * MiB, format="qcow2")
            disk = DiskSpec("vda", vol.path, format="qcow2")
        else:
            disk = DiskSpec("vda", f"{self.image_dir}/{name}.img", format="raw")
        return DomainSpec(name=name, memory_bytes=self.memory_bytes, vcpus=1, disks=(disk,))

    def _require_define(self, conn: Connection) -> None:
        if not conn.supports(Capability.DOMAIN_DEFINE):
            raise TargetUnavailable(
                f"the default ContractTarget defines domains, and the {conn.driver_name} driver does not declare "
                "domain.define: supply your own target (override the virtabs_target fixture)"
            )

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """Define a domain from :meth:`domain_spec`; start it when ``running``."""
        self._require_define(conn)
        dom = conn.define_domain(self.domain_spec(conn, self.new_name("dom")))
        if running:
            dom.start()
        return dom

    def make_chain_domain(self, conn: Connection) -> Domain:
        """Volumes base <- snap1 <- snap2 (qcow2, 1 GiB) and a running domain on snap2."""
        self._require_define(conn)
        pool = self._pool(conn)
        if pool is None:
            raise TargetUnavailable(
                "the default ContractTarget builds backing chains from storage volumes and the "
                f"{conn.driver_name} driver has no storage.volume (or no pool with a path): supply your own target"
            )
        base = pool.create_volume(self.new_name("base.qcow2"), GiB, format="qcow2")
        snap1 = pool.create_volume(self.new_name("snap1.qcow2"), GiB, format="qcow2", backing=base.path)
        snap2 = pool.create_volume(self.new_name("snap2.qcow2"), GiB, format="qcow2", backing=snap1.path)
        name = self.new_name("chain")
        spec = self.domain_spec(conn, name)
        disk = DiskSpec("vda", snap2.path, format="qcow2")
        spec = DomainSpec(
            name=spec.name,
            memory_bytes=spec.memory_bytes,
            vcpus=spec.vcpus,
            disks=(disk, *[d for d in spec.disks if d.target != "vda"]),
            nics=spec.nics,
            os_type=spec.os_type,
            extra=spec.extra,
        )
        dom = conn.define_domain(spec)
        dom.start()
        return dom

    # --- cleanup ------------------------------------------------------------------

    def cleanup(self, conn: Connection) -> None:
        """Stop and undefine every domain, and delete every volume, whose name has this run's prefix."""
        if conn.closed:
            return
        with contextlib.suppress(VirtabsError):
            for dom in conn.list_domains():
                if dom.name.startswith(self.prefix):
                    self._remove_domain(dom)
        with contextlib.suppress(VirtabsError):
            pool = self._pool(conn)
            if pool is not None:
                self._remove_volumes(pool)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _remove_domain(self, dom: Domain) -> None:
        try:
            if dom.state().is_active:
                dom.destroy()
            dom.undefine()
        except VirtabsError as exc:
            log.warning("contract cleanup: could not remove domain %s: %s", dom.name, exc)

    def _remove_volumes(self, pool: StoragePool) -> None:
        # Delete leaves first: retry while something goes (a volume may back another one).
        for _ in range(8):
            left = [v for v in pool.list_volumes() if v.name.startswith(self.prefix)]
            if not left:
                return
            progress = False
            for vol in left:
                try:
                    vol.delete()
                    progress = True
                except VirtabsError:
                    continue
            if not progress:
                log.warning("contract cleanup: volumes left in pool %s: %s", pool.name, [v.name for v in left])
                return

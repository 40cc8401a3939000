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

Targets travel with drivers: a backend publishes its target class under the
entry-point group ``virtabs.testing.targets`` (name = the URI's driver, the
scheme before any ``+``); the plugin instantiates it with no arguments (or
through a ``from_uri(uri)`` classmethod when the class has one) and calls its
``close()`` at the end of the session when it has one. Without an entry
point, :class:`DefaultTarget` is used.

Optional methods (:data:`OPTIONAL_METHODS`) let the suite check effects
through another door than the driver that did them (the image's content read
by the target, a boot counter). A target that lacks one is still a target:
only the tests of declared capabilities that need it fail, with a message
saying "the target must provide ...". :class:`DefaultTarget` implements them
for the ``test`` driver (whose images are a simulated store: "content" there is
the amount of data each layer holds, which is what its block jobs move).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import time
import types
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._api import Connection, Domain, StoragePool
from .._capabilities import Capability
from .._errors import VirtabsError
from .._models import DiskSpec, DomainRef, DomainSpec

if TYPE_CHECKING:
    from ..drivers._test_node import Node

__all__ = [
    "OBSERVABLE_EFFECTS",
    "OPTIONAL_METHODS",
    "ContractTarget",
    "DefaultTarget",
    "NotObservable",
    "TargetUnavailable",
]

log = logging.getLogger("virtabs.testing")

MiB = 1 << 20
GiB = 1 << 30


class TargetUnavailable(RuntimeError):
    """The target cannot build what a test asked for (supply your own ContractTarget).

    A contract test that meets it fails (never skips): the message says what to
    install or provide.
    """


class NotObservable(Exception):
    """The target cannot observe the effect a test checks (a simulator that moves no data, a task that
    ends before it can be seen in flight).

    Raised by the kit only for an effect the target lists in its ``unobservable`` mapping (see
    :data:`OBSERVABLE_EFFECTS`), when the test finds the effect missing, and when the target's host holds
    nothing a check could compare (no NIC on any network for the attachment check); the test's outcome is
    "not observable", counted apart in the report and never as a pass.
    """


OBSERVABLE_EFFECTS: Mapping[str, str] = {
    "copy.in_flight": "a block copy can be seen running (not yet ended) right after it starts",
    "image.content": "the data an image holds can be read by the target (image_digest, layer_digest)",
    "volume.capacity": "the capacity a disk image volume was created with is read back by a lookup",
    "guest.resume": "a start after a managed save can be told from a boot (the target's run clock continues)",
}
"""Effects a target may declare it cannot observe: ``unobservable = {effect: reason}`` on the target."""


OPTIONAL_METHODS: Mapping[str, str] = {
    "image_digest": (
        "image_digest(conn, path) -> str | None: a digest of the guest-visible content of the image at path "
        "(read through its backing chain, by the target's own means, not through the driver); None when no "
        "image is there"
    ),
    "layer_digest": (
        "layer_digest(conn, path) -> str | None: a digest of the data stored in that one image file, not in "
        "its backing files; None when no image is there"
    ),
    "volume_format": (
        "volume_format(conn, pool) -> str: an image format (a DiskSpec format name such as 'qcow2' or 'vhdx') "
        "in which the storage pool creates volumes; a volume's file name ends in '.<format>'; or 'dir' for a pool "
        "of directory volumes (Docker named volumes), made without a size. Without it the suite asks for qcow2"
    ),
    "boot_id": (
        "boot_id(conn, dom) -> object: a value that changes every time the guest boots (a reboot included), "
        "read by the target's own means (a console line count, an init process start time)"
    ),
    "migration_peer": (
        "migration_peer(conn) -> Connection: a second, open connection of the same driver to another host "
        "(or another state root) that conn's domains can migrate to; the target closes it in cleanup"
    ),
    "run_clock": (
        "run_clock(conn, dom) -> float | None: how long the guest has run since it booted, by the guest's own "
        "clock (a tick it prints, its uptime), read by the target's own means; None while it shows none yet. "
        "It keeps counting across a managed save and start (resumed) and starts again after a boot"
    ),
}
"""The optional target methods the suite uses to check effects, and what each must return."""


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

    On the ``test`` driver it also works when the connection lacks what it
    would use (``test:///default?without=domain.define``): it then provisions
    straight in the simulated node, the way a real target uses ``qemu-img``
    rather than the driver. There it provides the optional methods too.
    """

    job_timeout: float = 60.0
    unobservable: Mapping[str, str] = types.MappingProxyType({})
    """Effects of :data:`OBSERVABLE_EFFECTS` this host cannot show, with the reason (a simulator that moves
    no data: ``{"image.content": "..."}``); a test that finds such an effect missing is "not observable"."""

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
        self._peers: list[Connection] = []

    # --- names and paths ------------------------------------------------------

    def new_name(self, kind: str) -> str:
        """``<prefix>-<run>-<n>-<kind>``: unique within the process run, sweepable by prefix."""
        return f"{self.prefix}-{next(self._counter)}-{kind}"

    def _tmp(self) -> str:
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        return self._tmpdir

    def _pool(self, conn: Connection) -> StoragePool | None:
        if not conn.supports(Capability.STORAGE_VOLUME) or not conn.supports(Capability.STORAGE_POOL):
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
        """Create a 1 GiB volume at ``path`` (which must be in a pool's directory); on the test driver
        without ``storage.volume``, an image of its store. On the test driver the new image holds no data."""
        pool = self._pool(conn)
        pool_path = pool.info().path if pool is not None else None
        node = _test_node(conn)
        if pool is not None and pool_path is not None and os.path.dirname(path).rstrip("/") == pool_path.rstrip("/"):
            pool.create_volume(os.path.basename(path), GiB, format=format, backing=backing)
            if node is not None:  # a freshly created destination holds no data (the store counts metadata)
                with node.lock:
                    node.images[path].allocation = 0
            return
        if node is not None:
            _node_image(node, path, format, GiB, backing, allocation=0)
            return
        raise TargetUnavailable(
            f"the default ContractTarget creates images as storage volumes; {path!r} is not in a pool "
            f"(or the {conn.driver_name} driver lacks storage.volume): supply your own target "
            "(publish it under the entry-point group virtabs.testing.targets)"
        )

    def create_block_device(self, conn: Connection, name: str) -> str:
        """A raw volume standing in for a device (drivers with a virtual image store accept that);
        on the test driver, a discarded (empty) raw image of its store."""
        path = self.scratch_path(conn, name)
        node = _test_node(conn)
        if node is not None:
            _node_image(node, path, "raw", GiB, None, allocation=0)
            return path
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

    def _define(self, conn: Connection, spec: DomainSpec) -> Domain:
        if conn.supports(Capability.DOMAIN_DEFINE):
            return conn.define_domain(spec)
        node = _test_node(conn)
        if node is None:
            raise TargetUnavailable(
                f"the default ContractTarget defines domains, and the {conn.driver_name} driver does not declare "
                "domain.define: supply your own target (publish it under the entry-point group "
                "virtabs.testing.targets, or override the virtabs_target fixture)"
            )
        ref = _node_define(node, spec)
        return conn.lookup_domain(ref.uuid)

    def _run(self, conn: Connection, dom: Domain) -> None:
        if conn.supports(Capability.DOMAIN_START):
            dom.start()
            return
        node = _test_node(conn)
        if node is None:
            raise TargetUnavailable(
                f"the default ContractTarget starts domains with Domain.start, and the {conn.driver_name} driver "
                "does not declare domain.start: supply a target that provides running domains"
            )
        _node_start(node, dom.uuid)

    def _require_define(self, conn: Connection) -> None:
        if not conn.supports(Capability.DOMAIN_DEFINE) and _test_node(conn) is None:
            raise TargetUnavailable(
                f"the default ContractTarget defines domains, and the {conn.driver_name} driver does not declare "
                "domain.define: supply your own target (override the virtabs_target fixture)"
            )

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """Define a domain from :meth:`domain_spec`; start it when ``running``."""
        self._require_define(conn)
        dom = self._define(conn, self.domain_spec(conn, self.new_name("dom")))
        if running:
            self._run(conn, dom)
        return dom

    def make_chain_domain(self, conn: Connection) -> Domain:
        """Volumes base <- snap1 <- snap2 (qcow2, 1 GiB) and a running domain on snap2."""
        self._require_define(conn)
        pool = self._pool(conn)
        node = _test_node(conn)
        if pool is not None:
            base = pool.create_volume(self.new_name("base.qcow2"), GiB, format="qcow2").path
            snap1 = pool.create_volume(self.new_name("snap1.qcow2"), GiB, format="qcow2", backing=base).path
            snap2 = pool.create_volume(self.new_name("snap2.qcow2"), GiB, format="qcow2", backing=snap1).path
        elif node is not None:
            directory = f"/{self.prefix}"
            base = _node_image(node, f"{directory}/{self.new_name('base.qcow2')}", "qcow2", GiB, None)
            snap1 = _node_image(node, f"{directory}/{self.new_name('snap1.qcow2')}", "qcow2", GiB, base)
            snap2 = _node_image(node, f"{directory}/{self.new_name('snap2.qcow2')}", "qcow2", GiB, snap1)
        else:
            raise TargetUnavailable(
                "the default ContractTarget builds backing chains from storage volumes and the "
                f"{conn.driver_name} driver has no storage.volume (or no pool with a path): supply your own target"
            )
        name = self.new_name("chain")
        spec = self.domain_spec(conn, name)
        disk = DiskSpec("vda", snap2, format="qcow2")
        spec = DomainSpec(
            name=spec.name,
            memory_bytes=spec.memory_bytes,
            vcpus=spec.vcpus,
            disks=(disk, *[d for d in spec.disks if d.target != "vda"]),
            nics=spec.nics,
            os_type=spec.os_type,
            extra=spec.extra,
        )
        dom = self._define(conn, spec)
        self._run(conn, dom)
        return dom

    # --- optional methods: effects seen through another door --------------------------

    def image_digest(self, conn: Connection, path: str) -> str | None:
        """The guest-visible content of ``path`` (test driver: capacity and the data of the whole chain)."""
        node = self._node_or_fail(conn, "image_digest")
        with node.lock:
            if path not in node.images:
                return None
            top = node.images[path]
            data = sum(node.images[p].allocation for p in node.chain(path) if p in node.images)
            return _digest(f"visible:{top.capacity}:{min(top.capacity, data)}")

    def layer_digest(self, conn: Connection, path: str) -> str | None:
        """The data stored in ``path`` alone (test driver: capacity and the image's own allocation)."""
        node = self._node_or_fail(conn, "layer_digest")
        with node.lock:
            img = node.images.get(path)
            return None if img is None else _digest(f"layer:{img.capacity}:{img.allocation}")

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """When the current boot of ``dom`` began (test driver: the simulated guest's run clock)."""
        node = self._node_or_fail(conn, "boot_id")
        with node.lock:
            d = node.domains.get(dom.uuid)
            if d is None:
                raise TargetUnavailable(f"domain {dom.name!r} is not in the test node")
            return (d.state.is_active, d.running_since)

    def migration_peer(self, conn: Connection) -> Connection:
        """A second test node (a JSON node in a temporary directory) to migrate to (test driver only)."""
        self._node_or_fail(conn, "migration_peer")
        from .._connection import open as open_connection

        path = os.path.join(self._tmp(), f"peer-{next(self._counter)}.json")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("{}")
        peer = open_connection(f"test://{path}")
        self._peers.append(peer)
        return peer

    def run_clock(self, conn: Connection, dom: Domain) -> float | None:
        """The simulated guest's run clock (test driver: its CPU time, which a boot sets back to zero)."""
        node = self._node_or_fail(conn, "run_clock")
        with node.lock:
            d = node.domains.get(dom.uuid)
            if d is None:
                raise TargetUnavailable(f"domain {dom.name!r} is not in the test node")
            return d.cpu_time_ns(time.monotonic()) / 1e9 if d.state.is_active else None

    def _node_or_fail(self, conn: Connection, method: str) -> Node:
        node = _test_node(conn)
        if node is None:
            raise TargetUnavailable(
                f"the target must provide {OPTIONAL_METHODS[method]}; the default ContractTarget implements it "
                f"only for the test driver, not for {conn.driver_name}: publish a target for the "
                f"{conn.driver_name} driver under the entry-point group virtabs.testing.targets"
            )
        return node

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
        node = _test_node(conn)
        if node is not None:
            _node_sweep(node, self.prefix)
        while self._peers:
            peer = self._peers.pop()
            with contextlib.suppress(VirtabsError):
                for dom in peer.list_domains():
                    if dom.name.startswith(self.prefix):
                        self._remove_domain(dom)
            peer.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _remove_domain(self, dom: Domain) -> None:
        conn = dom.connection
        try:
            if dom.state().is_active and conn.supports(Capability.DOMAIN_DESTROY):
                dom.destroy()
            if conn.supports(Capability.DOMAIN_MANAGED_SAVE) and dom.has_managed_save():
                dom.managed_save_remove()
            if conn.supports(Capability.DOMAIN_DEFINE):
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


# --- the test driver's node: the default target's own door -------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _test_node(conn: Connection) -> Node | None:
    """The simulated node behind a ``test`` driver connection (any TestDriver subclass), else None."""
    from ..drivers.test import TestDriver

    driver: Any = conn._driver
    if isinstance(driver, TestDriver):
        return driver.node
    return None


def _node_image(
    node: Node, path: str, format: str, capacity: int, backing: str | None, allocation: int | None = None
) -> str:
    from ..drivers._test_node import QCOW2_EMPTY_ALLOCATION, Image

    with node.lock:
        if allocation is None:
            allocation = capacity if format == "raw" else min(capacity, QCOW2_EMPTY_ALLOCATION)
        node.images[path] = Image(path, format, capacity, allocation, backing)
    return path


def _node_define(node: Node, spec: DomainSpec) -> DomainRef:
    import attrs

    from ..drivers._test_node import DomainData

    with node.lock:
        node.check_free(spec.name, spec.uuid)
        spec = node.with_macs(attrs.evolve(spec, uuid=spec.uuid or str(uuid.uuid4())))
        d = DomainData(spec=spec, max_memory=spec.memory_bytes)
        node.add_domain(d)
        return d.ref


def _node_start(node: Node, dom_uuid: str) -> None:
    from .._flags import DomainState

    with node.lock:
        d = node.domains[dom_uuid]
        for disk in d.spec.disks:
            node.ensure_image(disk.path, disk.format)
        d.set_state(DomainState.RUNNING, time.monotonic())
        node.lease_ips(d)


def _node_sweep(node: Node, prefix: str) -> None:
    with node.lock:
        for key, job in list(node.jobs.items()):
            if job.domain_name.startswith(prefix):
                job.ended = True
                if job.timer is not None:
                    job.timer.cancel()
                del node.jobs[key]
        for dom_uuid, d in list(node.domains.items()):
            if d.name.startswith(prefix):
                del node.domains[dom_uuid]
        for path in list(node.images):
            if prefix in path:
                del node.images[path]

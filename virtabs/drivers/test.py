"""The in-memory reference driver: ``test:///default`` and ``test:///PATH.json``.

Like libvirt's test driver, the state lives in process memory and is shared by
every connection to the same URI in one process: a domain started through one
connection is running for all of them, and every open connection receives the
events. Unlike libvirt's, it implements every capability, block jobs included:
their progress follows the bandwidth and the amount of data in time, copies
and active commits reach a READY phase and mirror until pivot or abort.

URIs
----
``test:///default``
    The built-in node (:data:`DEFAULT_NODE`): network ``default`` (libvirt's test driver's: NAT on
    ``virbr0``, ``192.168.122.0/24``), a running domain ``test``
    (uuid ``6695eb01-f6a4-8304-79aa-97f2502e193f``, 2 vCPUs, 2 GiB of 8 GiB
    max memory, ``hvm``), disk ``vda`` = ``/guest/diskimage1`` (raw, 1 GiB,
    fully allocated), one NIC on network ``default`` (``192.168.122.2``), and a
    ``dir`` pool ``default-pool`` (``/default-pool``, 100 GiB) holding
    ``base.qcow2`` and ``overlay.qcow2`` (backed by ``base.qcow2``).
``test:///ABSOLUTE/PATH.json``
    A node kept in a JSON file (format below); every connection to the same
    path shares it, and it persists between processes: every change is
    written back atomically (temp file, ``fsync``, ``rename``) under an
    exclusive ``flock`` of ``PATH.json.lock``, and a process reloads the file
    when another one changed it. So ``virtabs -c test:///tmp/lab.json define
    vm.yaml`` and then ``virtabs -c test:///tmp/lab.json start vm`` work in
    two processes (``echo '{}' > /tmp/lab.json`` makes an empty node; a
    missing file is a ConnectError). Block jobs and snapshots stay in the
    memory of the process that made them (a reload ends this process's jobs).
    See :mod:`virtabs.drivers._test_file`.

Query parameter ``latency_ms=N`` (test only: it simulates a remote host) makes
connecting and every SPI method that would reach a host sleep N milliseconds
first, as a round trip to a remote hypervisor would (``test:///default?latency_ms=20``);
``latency_ms=600000`` makes a host that hangs. Nothing else about the node changes.
Query parameter ``forget=1`` (file nodes) drops the node from the process when
its last connection closes, so that a process inventorying thousands of
simulated hosts holds only the nodes of its open connections (the next
connection reads the file again).
``bench/fleet.py`` generates fleets of such nodes (see docs/inventory.md).

Query parameter ``without=CAP[,CAP...]`` declares capabilities away for one
connection (``test:///default?without=block.copy.pivot``): the connection
reports fewer capabilities and the core's gate refuses them with
NotSupportedError before the driver runs, which lets the contract kit test
refusals. Like every driver, this one checks no capability, read-only mode or
state precondition itself: the gate does, from ``virtabs.spi.OPERATIONS``.

Module functions for tests: :func:`reset_default_node` (start clean),
:func:`reset_all_nodes` (also forget file nodes, so the next connection
reloads them), :func:`get_node` (the shared state, for white-box tests).

The image store
---------------
The node keeps a virtual store of disk images, ``path -> (format, capacity,
allocation, backing path)``. Domain disks point into it, a pool's volumes are
the images in the pool's directory, and block jobs act on it: a pull flattens
the chain, a commit merges layers, a copy creates its destination image
(deep: no backing, the source's format unless a format is requested;
shallow: the source's backing; MOVE_CHAIN: a copy of every lower layer,
``<dest>.1``, ``<dest>.2`` ..., each filled with its layer's data when the copy is ready; REUSE_EXT: the existing image, from the store
or, failing that, a real file, probed as qcow2 by its magic, else raw). A disk whose path is not in the store when a domain is
defined or a disk attached gets a made-up image (1 GiB; fully allocated when
raw, 192 KiB of metadata otherwise). Nothing is written to the real file
system except by ``save``.

Block jobs
----------
``end`` is the data a job moves: a deep copy the allocation of the whole chain
(capped at the capacity), a shallow copy the top image's, a pull the backing
data above ``base``, a commit the data of ``top`` down to ``base``.
``cur = min(end, elapsed * rate)``, re-based when the speed changes;
``bandwidth == 0`` moves 2 GiB/s (``settings.unlimited_rate_bytes``), so an
unlimited copy of the 1 GiB ``vda`` takes about half a second and one at
1 MiB/s takes 17 minutes. Before a job is ready ``cur`` is reported at most
``end - 1``. Copies and active commits emit ``READY`` (a timer fires at the
moment) and mirror until aborted (``CANCELED``; a destination the copy created
is removed) or pivoted (``COMPLETED``; the disk now names the copy, or the
commit base). Pulls and other commits apply their effect and emit
``COMPLETED`` on their own. Stopping a domain ends its jobs with ``FAILED``.
``block_job_abort`` ends the job before it returns (the core's wait then sees it gone at once).
``base``/``top`` name an image of the disk's chain by path or as ``vda[N]``
(N = position in the chain, 0 = the active image).

Migration
---------
``Domain.migrate`` between two nodes of this process (``test:///default`` and
``test:///PATH.json``, or two JSON nodes): see :mod:`virtabs.drivers._test_migration`.

JSON node format
----------------
Every key is optional unless marked; unknown keys are an error. Sizes are
bytes::

    {
      "host": {"hostname": "test-host", "cpus": 16, "memory_bytes": 17179869184,
               "arch": "x86_64", "cpu_model": "test-cpu"},
      "settings": {"unlimited_rate_bytes": 2147483648},
      "images": [                                   # free-standing images
        {"path": "/img/base.qcow2",                 # required, absolute
         "format": "qcow2",                         # default "raw"
         "capacity_bytes": 1073741824,              # default 1 GiB
         "allocation_bytes": 0,                     # default: capacity if raw, else 0
         "backing": null}                           # path of another image
      ],
      "pools": [
        {"name": "default-pool",                    # required
         "type": "dir", "path": "/default-pool",    # path default "/<name>"
         "uuid": "...", "capacity_bytes": 107374182400, "active": true,
         "volumes": [                               # images at <path>/<name>
           {"name": "a.qcow2", "format": "qcow2", "capacity_bytes": 1073741824,
            "allocation_bytes": 0, "backing": "/default-pool/b.qcow2"}]}
      ],
      "domains": [
        {"name": "test",                            # required
         "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f",   # default: random
         "memory_bytes": 2147483648, "vcpus": 2,    # required
         "max_memory_bytes": 8589934592,            # default: memory_bytes
         "os_type": "hvm", "autostart": false, "extra": {},
         "state": "running",                        # running|paused|shutoff|crashed|... (default shutoff)
         "disks": [
           {"target": "vda", "path": "/guest/top.qcow2",   # required
            "format": "qcow2", "bus": "virtio", "readonly": false,
            "capacity_bytes": 1073741824, "allocation_bytes": 1048576,
            "backing_chain": [                      # nearest first: paths or image objects
              {"path": "/guest/mid.qcow2", "format": "qcow2", "allocation_bytes": 4194304},
              "/img/base.qcow2"]}],
         "nics": [{"mac": "52:54:00:a3:41:7e", "network": "default", "model": "virtio",
                   "ips": ["192.168.122.2"]}]}
      ],
      "networks": [                                 # default: libvirt's test "default" network (below)
        {"name": "default",                         # required; what a NIC's "network" names
         "uuid": "dd8fe884-6c02-601e-7551-cca97df1c5df",   # default: random
         "kind": "nat",                             # a virtabs.NetworkKind value (default "bridge")
         "native_kind": "nat",                      # default: kind
         "device": "virbr0", "vlan_ids": [],
         "subnets": [{"cidr": "192.168.122.0/24", "gateway": "192.168.122.1",
                      "dhcp_ranges": [["192.168.122.2", "192.168.122.254"]]}],
         "active": true, "autostart": false,
         "extra": {}}                               # native details, any JSON (NetworkInfo.extra)
      ]
    }

A node without a ``networks`` key has libvirt's test ``default`` network (as above). A network's
attachments are the NICs of the node's domains that name it; a NIC naming no network of the node is
reported as it was defined (the contract kit's network tests find it).

A disk's image (and inline backing images) may be described on the disk or
listed under ``images``/``volumes``, not both; inline backing images default
to qcow2 and the disk's capacity.

Differences from libvirt, on purpose: undefining an active domain is refused
(libvirt makes it transient); undefine drops the domain's snapshots; a saved
domain file is JSON (the definition and run state); shutdown completes at once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
import threading
import time
import uuid as _uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from .._capabilities import Capabilities, Capability
from .._errors import (
    ConnectError,
    InvalidArgumentError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    VirtabsError,
)
from .._flags import BlockJobStatus, BlockJobType, DomainState, LifecycleEventType
from .._models import (
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobInfo,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    Event,
    HostInfo,
    LifecycleEvent,
    NetworkInfo,
    NicInfo,
    PoolInfo,
    Snapshot,
    VolumeInfo,
)
from .._uri import URI, parse_uri
from ..spi import SPI_METHODS, ConnectOptions, Driver, find_network, image_volume_capacity
from ._test_file import FileSync, stat_key
from ._test_json import DEFAULT_NODE, node_path, read_description
from ._test_migration import TestMigration
from ._test_node import (
    NATIVE_STATE,
    QCOW2_EMPTY_ALLOCATION,
    DomainData,
    Image,
    Job,
    ManagedSaveData,
    Node,
    SnapshotData,
    as_tuple,
    check_format,
    make_spec,
    new_job,
)

__all__ = ["DEFAULT_NODE", "SAVE_FORMAT", "TestDriver", "get_node", "reset_all_nodes", "reset_default_node"]

SAVE_FORMAT = "virtabs-test-save"
"""The ``format`` field of a file written by ``save``."""

_NODES: dict[str, Node] = {}
_NODES_LOCK = threading.Lock()


def get_node(uri: str | URI = "test:///default") -> Node:
    """The shared node a ``test:///`` URI names (loaded on first use)."""
    parsed = parse_uri(uri) if isinstance(uri, str) else uri
    if parsed.driver != "test":
        raise InvalidArgumentError(f"not a test driver URI: {parsed}")
    if parsed.host:
        raise ConnectError(f"the test driver is local only; remove host '{parsed.host}' from the URI")
    path = parsed.path
    if path in ("/default", "/default/"):
        key = "default"
    elif path in ("", "/"):
        raise ConnectError("the test driver needs a node: use test:///default or test:///ABSOLUTE/PATH.json")
    else:
        key = node_path(path)
    with _NODES_LOCK:
        node = _NODES.get(key)
        if node is None:
            if key == "default":
                node = Node(DEFAULT_NODE, key)
            else:
                seen = stat_key(key)
                node = Node(read_description(key), key)
                # the file did not change while it was read: the first locked section need not read it again
                node.lock = FileSync(node, key, seen if stat_key(key) == seen else None)
            _NODES[key] = node
        return node


def reset_default_node() -> None:
    """Put ``test:///default`` back to its initial state (in place: open connections see the fresh node)."""
    with _NODES_LOCK:
        node = _NODES.get("default")
    if node is not None:
        node.reset(DEFAULT_NODE)


def reset_all_nodes() -> None:
    """Reset the default node and forget file nodes (the next connection reloads the file)."""
    with _NODES_LOCK:
        file_nodes = [n for k, n in _NODES.items() if k != "default"]
        for key in [k for k in _NODES if k != "default"]:
            del _NODES[key]
    for node in file_nodes:
        # a node whose file is gone (a temporary node, e.g. a migration peer) has nothing left to stop
        with contextlib.suppress(ConnectError):
            node.drop_jobs()
    reset_default_node()


def _virtabs_version() -> str:
    version = getattr(sys.modules.get("virtabs"), "__version__", None)
    if isinstance(version, str):
        return version
    import importlib.metadata  # lazily: it costs milliseconds of start-up time

    try:
        return importlib.metadata.version("virtabs")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _lifecycle(dom: DomainData, type: LifecycleEventType, detail: str) -> LifecycleEvent:
    return LifecycleEvent(domain=dom.name, uuid=dom.uuid, type=type, detail=detail)


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def _probe_real_image(path: str, format: str | None) -> Image | None:
    """An image for a real file at ``path`` (REUSE_EXT onto a file the store does not know), or None.

    The format is ``format`` when given, else qcow2 when the file starts with qcow2's magic, else raw.
    """
    try:
        st = os.stat(path)
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as fh:
            header = fh.read(32)
    except OSError:
        return None
    capacity = st.st_size
    probed = "raw"
    if header[:4] == b"QFI\xfb" and len(header) >= 32:
        probed = "qcow2"
        capacity = int.from_bytes(header[24:32], "big")
    fmt = format or probed
    return Image(path, fmt, max(capacity, 1), min(max(capacity, 1), st.st_blocks * 512), None)


_LATENCY_FREE = frozenset({"close", "start_events", "stop_events", "connection_capabilities"})
"""SPI methods that reach no host, so ``latency_ms`` does not slow them."""


def _latency_seconds(uri: URI) -> float:
    text = uri.param("latency_ms")
    if text is None:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"latency_ms must be a non-negative number of milliseconds, got {text!r}")
    return value / 1000


def _add_latency(driver: Driver, seconds: float) -> None:
    """Make connecting and every host-reaching SPI method of ``driver`` sleep ``seconds`` first (test only)."""

    def slowed(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(seconds)
            return method(*args, **kwargs)

        return call

    for name in SPI_METHODS:
        if name not in _LATENCY_FREE:
            setattr(driver, name, slowed(getattr(driver, name)))
    time.sleep(seconds)  # the connection's own round trip


class TestDriver(TestMigration, Driver):
    """The in-memory reference driver (URI scheme ``test``); see the module docstring."""

    __test__ = False  # not a pytest test class

    name: ClassVar[str] = "test"
    description: ClassVar[str] = "In-memory reference driver with simulated block jobs (test:///default)"
    capabilities: ClassVar[Capabilities] = Capabilities.all()
    uri_examples: ClassVar[tuple[str, ...]] = ("test:///default", "test:///srv/nodes/lab.json")
    install_hint: ClassVar[str] = "ships with virtabs"

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        without = [n.strip() for n in (uri.param("without") or "").split(",") if n.strip()]
        self._caps = (
            type(self).capabilities.without(*without, reason="declared away by the URI's without= parameter")
            if without
            else type(self).capabilities
        )
        self._node = get_node(uri)
        self._closed = False
        self._forget = uri.param("forget") in ("1", "true", "yes") and self._node.source != "default"
        latency = _latency_seconds(uri)
        if latency:
            _add_latency(self, latency)
        with self._node.lock:
            self._node.listeners.add(self)

    # --- connection -------------------------------------------------------

    @property
    def node(self) -> Node:
        """The shared state this connection works on."""
        return self._node

    def emit(self, event: Event) -> None:
        """Deliver a node event to this connection's subscribers (nothing when ``events`` is declared away)."""
        if Capability.EVENTS in self._caps.supported:
            super().emit(event)

    def close(self) -> None:
        """Stop receiving the node's events (with ``forget=1``, the last connection to close drops the node)."""
        with self._node.lock:
            self._node.listeners.discard(self)
            last = not self._node.listeners
        self._closed = True
        if last and self._forget:
            with _NODES_LOCK:
                if _NODES.get(self._node.source) is self._node and not self._node.listeners:
                    del _NODES[self._node.source]
            self._node.drop_jobs()

    def start_events(self) -> None:
        """Nothing to start: the node pushes events to every open connection."""

    def stop_events(self) -> None:
        """Nothing to stop."""

    def connection_capabilities(self) -> Capabilities:
        """Everything, less what the URI's ``without`` parameter removes."""
        return self._caps

    def host_info(self) -> HostInfo:
        """The simulated host (16 CPUs, 16 GiB unless the node file says otherwise)."""
        with self._node.lock:
            host = dict(self._node.host)
        return HostInfo(
            hostname=host["hostname"],
            hypervisor="test",
            hypervisor_version=_virtabs_version(),
            cpus=host["cpus"],
            memory_bytes=host["memory_bytes"],
            arch=host["arch"],
            cpu_model=host["cpu_model"],
        )

    # --- domains: lookups and reads -------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every domain, sorted by name."""
        with self._node.lock:
            return sorted((d.ref for d in self._node.domains.values()), key=lambda r: r.name)

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """A domain by name or UUID."""
        with self._node.lock:
            return self._node.find_domain(name_or_uuid).ref

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State, vCPUs, memory and CPU time."""
        with self._node.lock:
            d = self._node.domain(dom)
            return self._info(d, time.monotonic())

    @staticmethod
    def _info(d: DomainData, now: float) -> DomainInfo:
        return DomainInfo(
            name=d.name,
            uuid=d.uuid,
            state=d.state,
            native_state=NATIVE_STATE[d.state],
            vcpus=d.spec.vcpus,
            memory_bytes=d.spec.memory_bytes,
            max_memory_bytes=d.max_memory,
            cpu_time_ns=d.cpu_time_ns(now),
        )

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The definition (disks as they are now, MACs filled in)."""
        with self._node.lock:
            return self._node.domain(dom).spec

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """Disks with their image's capacity, allocation, backing chain and pool."""
        with self._node.lock:
            return self._node.disk_infos(self._node.domain(dom))

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """NICs; addresses only while the domain runs."""
        with self._node.lock:
            return self._node.nic_infos(self._node.domain(dom))

    # --- networks ---------------------------------------------------------------

    def list_networks(self) -> list[NetworkInfo]:
        """The node's networks sorted by name, attachments from every domain's NICs (one pass, one lock)."""
        with self._node.lock:
            return self._node.network_infos()

    def lookup_network(self, name_or_id: str) -> NetworkInfo:
        """A network by name or UUID (NoNetworkError when the node has none)."""
        with self._node.lock:
            return find_network(self._node.network_infos(), name_or_id)

    def autostart(self, dom: DomainRef) -> bool | None:
        """The domain's autostart flag (from the node description)."""
        with self._node.lock:
            return self._node.domain(dom).autostart

    def inventory(self) -> list[DomainRecord]:
        """Every domain's record, built in one pass under the node lock."""
        with self._node.lock:
            if not self._node.jobs:  # nothing to advance: a plain read, which a file node need not save
                return self._records([])
        with self._node.txn() as events:  # a job's progress may end it and change the node
            return self._records(events)

    def _records(self, events: list[Event]) -> list[DomainRecord]:
        node = self._node
        with node.lock:
            records = []
            for d in sorted(node.domains.values(), key=lambda x: x.name):
                jobs: list[BlockJobInfo] = []
                for job in node.domain_jobs(d):
                    info = node.job_info(job, events)
                    if info is not None:
                        jobs.append(info)
                records.append(
                    DomainRecord(
                        name=d.name,
                        uuid=d.uuid,
                        state=d.state,
                        native_state=NATIVE_STATE[d.state],
                        vcpus=d.spec.vcpus,
                        memory_bytes=d.spec.memory_bytes,
                        os_type=d.spec.os_type,
                        autostart=d.autostart,
                        disks=as_tuple(node.disk_infos(d)),
                        nics=as_tuple(node.nic_infos(d)),
                        snapshot_count=len(d.snapshots),
                        block_jobs=as_tuple(jobs),
                        managed_save=d.managed_save is not None,
                    )
                )
            return records

    # --- lifecycle ----------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Define a new (shut off) domain; a taken name or UUID is an OperationInvalidError."""
        with self._node.txn() as events:
            node = self._node
            node.check_free(spec.name, spec.uuid)
            if spec.uuid is None:
                spec = attrs.evolve(spec, uuid=str(_uuid.uuid4()))
            spec = node.with_macs(spec)
            test_extra = spec.extra.get("test", {})
            max_memory = spec.memory_bytes
            if isinstance(test_extra, Mapping) and isinstance(test_extra.get("max_memory_bytes"), int):
                max_memory = max(max_memory, int(test_extra["max_memory_bytes"]))
            d = DomainData(spec=spec, max_memory=max_memory)
            node.add_domain(d)
            events.append(_lifecycle(d, LifecycleEventType.DEFINED, "added"))
            return d.ref

    def undefine(self, dom: DomainRef) -> None:
        """Remove an inactive domain (and its snapshots); an active one is refused."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            del self._node.domains[d.uuid]
            events.append(_lifecycle(d, LifecycleEventType.UNDEFINED, "removed"))

    def _stop(self, d: DomainData, events: list[Event], reason: str) -> None:
        self._node.fail_jobs(d, events, f"domain '{d.name}' stopped ({reason})")
        d.set_state(DomainState.SHUTOFF, time.monotonic())

    def _boot(self, d: DomainData, paused: bool, events: list[Event], detail: str) -> None:
        for disk in d.spec.disks:
            self._node.ensure_image(disk.path, disk.format)
        d.set_state(DomainState.RUNNING, time.monotonic())
        self._node.lease_ips(d)
        events.append(_lifecycle(d, LifecycleEventType.STARTED, detail))
        if paused:
            d.set_state(DomainState.PAUSED, time.monotonic())
            events.append(_lifecycle(d, LifecycleEventType.SUSPENDED, "paused"))

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Start a shut-off domain (running, or paused); a managed save image is resumed and discarded."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            saved = d.managed_save
            if saved is None:
                self._boot(d, paused, events, "booted")
                return
            self._boot(d, paused or saved.paused, events, "restored")  # libvirt: a paused save resumes paused
            d.managed_save = None
            # The guest resumes where it was saved: its run clock continues.
            d.cpu_ns += saved.cpu_ns

    # --- managed save ----------------------------------------------------------------

    def managed_save(self, dom: DomainRef) -> None:
        """Keep the run state (paused or not, the run clock) in the node and stop the domain."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            saved = ManagedSaveData(paused=d.state == DomainState.PAUSED, cpu_ns=d.cpu_time_ns(time.monotonic()))
            self._stop(d, events, "saved")
            d.managed_save = saved
            events.append(_lifecycle(d, LifecycleEventType.STOPPED, "saved"))

    def has_managed_save(self, dom: DomainRef) -> bool:
        """Whether the node keeps a managed save image of the domain."""
        with self._node.lock:
            return self._node.domain(dom).managed_save is not None

    def managed_save_remove(self, dom: DomainRef) -> None:
        """Discard the managed save image (the next start boots)."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            self._node.domain(dom).managed_save = None

    def shutdown(self, dom: DomainRef) -> None:
        """The simulated guest powers off at once (SHUTDOWN then STOPPED events)."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            self._stop(d, events, "shutdown")
            events.append(_lifecycle(d, LifecycleEventType.SHUTDOWN, "finished"))
            events.append(_lifecycle(d, LifecycleEventType.STOPPED, "shutdown"))

    def destroy(self, dom: DomainRef) -> None:
        """Power off at once."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            self._stop(d, events, "destroyed")
            events.append(_lifecycle(d, LifecycleEventType.STOPPED, "destroyed"))

    def reboot(self, dom: DomainRef) -> None:
        """The simulated guest restarts at once: same process and state, CPU time counted from zero again
        (what a reboot shows from outside), no lifecycle event (like libvirt)."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            d = self._node.domain(dom)
            d.cpu_ns = 0
            d.running_since = time.monotonic() if d.state == DomainState.RUNNING else None

    def suspend(self, dom: DomainRef) -> None:
        """Pause a running domain."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            d.set_state(DomainState.PAUSED, time.monotonic())
            events.append(_lifecycle(d, LifecycleEventType.SUSPENDED, "paused"))

    def resume(self, dom: DomainRef) -> None:
        """Resume a paused domain."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            d.set_state(DomainState.RUNNING, time.monotonic())
            events.append(_lifecycle(d, LifecycleEventType.RESUMED, "unpaused"))

    def save(self, dom: DomainRef, path: str) -> None:
        """Write the definition and run state to ``path`` (a real JSON file) and stop the domain."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            data = {
                "format": SAVE_FORMAT,
                "version": 1,
                "saved_at": _dt.datetime.now(_dt.UTC).isoformat(),
                "state": "paused" if d.state == DomainState.PAUSED else "running",
                "max_memory_bytes": d.max_memory,
                "ips": {mac: list(ips) for mac, ips in d.ips.items()},
                "domain": d.spec.to_dict(),
            }
            try:
                text = json.dumps(data, indent=2, default=_json_default)
                tmp = f"{path}.tmp-{os.getpid()}"
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text + "\n")
                os.replace(tmp, path)
            except OSError as exc:
                raise OperationFailedError(
                    f"cannot save domain '{d.name}' to '{path}': {exc.strerror or exc}"
                ) from None
            self._stop(d, events, "saved")
            events.append(_lifecycle(d, LifecycleEventType.STOPPED, "saved"))

    def restore(self, path: str) -> DomainRef:
        """Start a domain from a file ``save`` wrote (defining it when the node does not know it)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise OperationFailedError(f"cannot read saved domain file '{path}': {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgumentError(f"'{path}' is not a saved domain file (not JSON)") from None
        if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
            raise InvalidArgumentError(f"'{path}' is not a saved domain file of the test driver")
        try:
            spec = make_spec(data["domain"])
            paused = data.get("state") == "paused"
            max_memory = int(data.get("max_memory_bytes", spec.memory_bytes))
            ips = {str(k): tuple(str(i) for i in v) for k, v in dict(data.get("ips", {})).items()}
        except VirtabsError as exc:
            raise InvalidArgumentError(f"saved domain file '{path}' is corrupt: {exc.message}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"saved domain file '{path}' is corrupt: {exc}") from None
        with self._node.txn() as events:
            node = self._node
            assert spec.uuid is not None
            d = node.domains.get(spec.uuid)
            if d is not None:
                if d.state.is_active:
                    raise OperationInvalidError(f"domain '{d.name}' is already active")
                if d.name != spec.name:
                    raise OperationInvalidError(
                        f"saved domain '{spec.name}' has the uuid of domain '{d.name}' ({spec.uuid})"
                    )
                d.spec = spec
                d.max_memory = max_memory
            else:
                node.check_free(spec.name, spec.uuid)
                d = DomainData(spec=spec, max_memory=max_memory)
                node.add_domain(d)
                events.append(_lifecycle(d, LifecycleEventType.DEFINED, "restored"))
            d.ips.update(ips)
            self._boot(d, paused, events, "restored")
            return d.ref

    # --- snapshots ----------------------------------------------------------------

    def _snapshot(self, d: DomainData, s: SnapshotData) -> Snapshot:
        return Snapshot(name=s.name, domain=d.name, created_at=s.created_at, state=s.state, parent=s.parent)

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """Record the definition and run state; the parent is the current snapshot."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            d = self._node.domain(dom)
            if name in d.snapshots:
                raise OperationInvalidError(f"domain '{d.name}' already has a snapshot '{name}'")
            s = SnapshotData(
                name=name,
                created_at=_dt.datetime.now(_dt.UTC),
                state=d.state,
                parent=d.current_snapshot,
                spec=d.spec,
                max_memory=d.max_memory,
            )
            d.snapshots[name] = s
            d.current_snapshot = name
            return self._snapshot(d, s)

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """Snapshots in creation order."""
        with self._node.lock:
            d = self._node.domain(dom)
            return [self._snapshot(d, s) for s in d.snapshots.values()]

    def _find_snapshot(self, d: DomainData, name: str) -> SnapshotData:
        s = d.snapshots.get(name)
        if s is None:
            raise NoSnapshotError(f"domain '{d.name}' has no snapshot '{name}'")
        return s

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """Go back to the snapshot's definition and run state (jobs end, events as the state changes)."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            s = self._find_snapshot(d, name)
            was_active = d.state.is_active
            if was_active:
                self._node.fail_jobs(d, events, f"domain '{d.name}' reverted to snapshot '{name}'")
            d.spec = s.spec
            d.max_memory = s.max_memory
            d.current_snapshot = name
            for disk in d.spec.disks:
                self._node.ensure_image(disk.path, disk.format)
            now = time.monotonic()
            if s.state.is_active:
                if not was_active:
                    self._boot(d, s.state == DomainState.PAUSED, events, "from_snapshot")
                    return
                d.cpu_ns = 0
                d.running_since = None
                if s.state == DomainState.PAUSED:
                    if d.state != DomainState.PAUSED:
                        events.append(_lifecycle(d, LifecycleEventType.SUSPENDED, "from_snapshot"))
                    d.set_state(DomainState.PAUSED, now)
                else:
                    if d.state == DomainState.PAUSED:
                        events.append(_lifecycle(d, LifecycleEventType.RESUMED, "from_snapshot"))
                    d.set_state(s.state, now)
            elif was_active:
                d.set_state(s.state, now)
                events.append(_lifecycle(d, LifecycleEventType.STOPPED, "from_snapshot"))
            else:
                d.set_state(s.state, now)

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """Delete a snapshot; its children take its parent."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            d = self._node.domain(dom)
            s = self._find_snapshot(d, name)
            del d.snapshots[name]
            for other in d.snapshots.values():
                if other.parent == name:
                    other.parent = s.parent
            if d.current_snapshot == name:
                d.current_snapshot = s.parent

    # --- devices --------------------------------------------------------------

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """Add a disk (live or inactive); a taken target is an InvalidArgumentError."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            d = self._node.domain(dom)
            self._node.ensure_image(disk.path, disk.format)
            d.spec = attrs.evolve(d.spec, disks=(*d.spec.disks, disk))

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """Remove a disk by target."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            d = self._node.domain(dom)
            disk = self._disk(d, target)
            d.spec = attrs.evolve(d.spec, disks=tuple(x for x in d.spec.disks if x.target != disk.target))

    def _disk(self, d: DomainData, name: str) -> DiskSpec:
        disk = d.disk(name)
        if disk is None:
            raise InvalidArgumentError(f"disk '{name}' not found in domain '{d.name}'")
        return disk

    # --- block jobs -----------------------------------------------------------

    def _job_target(self, dom: DomainRef, disk: str) -> tuple[DomainData, DiskSpec]:
        """The domain and disk of a new job (the gate has checked state and jobs)."""
        d = self._node.domain(dom)
        spec = self._disk(d, disk)
        if spec.path not in self._node.images:
            raise OperationFailedError(f"image '{spec.path}' of disk '{spec.target}' does not exist")
        return d, spec

    def _chain_ref(self, spec: DiskSpec, chain: list[str], ref: str, what: str) -> int:
        """Position of ``ref`` (a path, or ``vda[N]``) in the disk's chain."""
        if ref.startswith(f"{spec.target}[") and ref.endswith("]"):
            try:
                index = int(ref[len(spec.target) + 1 : -1])
            except ValueError:
                index = -1
            if 0 <= index < len(chain):
                return index
        elif ref in chain:
            return chain.index(ref)
        raise InvalidArgumentError(f"{what} '{ref}' is not in the backing chain of disk '{spec.target}'")

    def _data(self, paths: list[str]) -> int:
        return sum(self._node.images[p].allocation for p in paths if p in self._node.images)

    def block_pull(self, dom: DomainRef, disk: str, base: str | None, bandwidth_bytes: int) -> None:
        """Pull the backing data above ``base`` into the active image (``base`` None: flatten)."""
        with self._node.txn() as events:
            d, spec = self._job_target(dom, disk)
            chain = self._node.chain(spec.path)
            stop = len(chain)
            base_path = None
            if base is not None:
                stop = self._chain_ref(spec, chain, base, "base")
                if stop == 0:
                    raise InvalidArgumentError(f"base '{base}' is the active image of disk '{spec.target}'")
                base_path = chain[stop]
            top = self._node.images[spec.path]
            end = min(top.capacity, self._data(chain[1:stop]))
            job = new_job(d, spec.target, BlockJobType.PULL, end, bandwidth_bytes, top=spec.path, base=base_path)
            self._node.start_job(job, events)

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Start a two-phase copy into ``request.dest`` (an image of the store)."""
        with self._node.txn() as events:
            node = self._node
            d, spec = self._job_target(dom, disk)
            src = node.images[spec.path]
            chain = node.chain(spec.path)
            dest_path = request.dest
            if request.format is not None:
                check_format(request.format, f"copy destination '{dest_path}'")
            existing = node.images.get(dest_path)
            reuse = request.reuse_existing or request.dest_is_block_device
            moved: list[Image] = []
            created = False
            if reuse:
                if existing is None and not request.dest_is_block_device:
                    existing = _probe_real_image(dest_path, request.format)
                    if existing is not None:
                        node.images[dest_path] = existing
                if existing is None:
                    kind = "block device" if request.dest_is_block_device else "destination"
                    raise OperationFailedError(f"copy {kind} '{dest_path}' does not exist (REUSE_EXT)")
                users = node.image_users(dest_path)
                if users:
                    raise OperationInvalidError(f"copy destination '{dest_path}' is in use by {users[0]}")
                dest = existing
            else:
                if existing is not None:
                    raise InvalidArgumentError(
                        f"copy destination '{dest_path}' already exists; use REUSE_EXT to copy into it"
                    )
                fmt = request.format or src.format
                backing = src.backing if request.shallow else None
                if request.move_chain:
                    moved = self._moved_layers(dest_path, chain)
                    backing = moved[0].path if moved else None
                dest = Image(dest_path, fmt, src.capacity, 0 if fmt == "raw" else QCOW2_EMPTY_ALLOCATION, backing)
                created = True
            if request.move_chain:
                data = self._data(chain)  # every layer moves, each as it is
            else:
                data = src.allocation if request.shallow else min(src.capacity, self._data(chain))
            job = new_job(
                d,
                spec.target,
                BlockJobType.COPY,
                data,
                request.bandwidth_bytes,
                two_phase=True,
                top=spec.path,
                dest=dest_path,
                dest_created=created,
                dest_format=request.format or dest.format,
                moved=tuple(zip(chain, [dest_path, *(m.path for m in moved)], strict=True))
                if request.move_chain
                else (),
            )
            if created:
                node.images[dest_path] = dest
            for layer in moved:
                node.images[layer.path] = layer
            node.start_job(job, events)

    def _moved_layers(self, dest_path: str, chain: list[str]) -> list[Image]:
        """MOVE_CHAIN: an empty copy of each layer below the top, ``<dest>.1``, ``<dest>.2`` ..., each
        backed by the next, in the layer's own format (filled when the copy is ready)."""
        paths = [f"{dest_path}.{n}" for n in range(1, len(chain))]
        for path in paths:
            if path in self._node.images:
                raise InvalidArgumentError(f"copy destination '{path}' (a moved layer) already exists")
        layers = []
        for n, (layer, path) in enumerate(zip(chain[1:], paths, strict=True)):
            src = self._node.images[layer]
            below = paths[n + 1] if n + 1 < len(paths) else None
            empty = 0 if src.format == "raw" else QCOW2_EMPTY_ALLOCATION
            layers.append(Image(path, src.format, src.capacity, empty, below))
        return layers

    def block_commit(self, dom: DomainRef, disk: str, request: BlockCommitRequest) -> None:
        """Commit ``top`` (None: the active image) down into ``base`` (None: the deepest image)."""
        with self._node.txn() as events:
            d, spec = self._job_target(dom, disk)
            chain = self._node.chain(spec.path)
            top_i = 0 if request.top is None else self._chain_ref(spec, chain, request.top, "top")
            if top_i == 0 and request.top is not None and not request.active:
                raise InvalidArgumentError(
                    f"commit of the active layer of disk '{spec.target}' requires the ACTIVE flag"
                )
            if top_i + 1 >= len(chain):
                raise InvalidArgumentError(
                    f"top '{chain[top_i]}' in the chain of disk '{spec.target}' has no backing file"
                )
            if request.base is None:
                base_i = len(chain) - 1
            else:
                base_i = self._chain_ref(spec, chain, request.base, "base")
                if base_i <= top_i:
                    raise InvalidArgumentError(
                        f"base '{request.base}' is not below top '{chain[top_i]}' in disk '{spec.target}'"
                    )
            base = self._node.images[chain[base_i]]
            end = min(base.capacity, self._data(chain[top_i:base_i]))
            active = top_i == 0
            job = new_job(
                d,
                spec.target,
                BlockJobType.ACTIVE_COMMIT if active else BlockJobType.COMMIT,
                end,
                request.bandwidth_bytes,
                two_phase=active,
                top=chain[top_i],
                base=chain[base_i],
                child=None if active else chain[top_i - 1],
                delete=request.delete,
            )
            self._node.start_job(job, events)

    def _current_job(self, d: DomainData, disk: str) -> Job | None:
        spec = self._disk(d, disk)
        return self._node.jobs.get((d.uuid, spec.target))

    def _live_job(self, d: DomainData, disk: str, events: list[Event]) -> Job:
        """The disk's job, brought up to date; a job that ended since the gate looked is a native refusal."""
        job = self._current_job(d, disk)
        if job is not None:
            self._node.tick(job, events)
        if job is None or job.ended:
            raise OperationInvalidError(f"disk '{disk}' of domain '{d.name}' has no active block job")
        return job

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """The job on ``disk`` now (None when there is none, e.g. the domain is off); ``cur < end`` until ready."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            job = self._current_job(d, disk)
            return None if job is None else self._node.job_info(job, events)

    def block_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        """Every job of the domain, in one call (none while it is off)."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            out = []
            for job in self._node.domain_jobs(d):
                info = self._node.job_info(job, events)
                if info is not None:
                    out.append(info)
            return out

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Cancel (CANCELED) or pivot (COMPLETED); the job has ended when this returns."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            job = self._live_job(d, disk, events)
            if pivot:
                self._node.pivot(job, events)
            else:
                self._node.cancel(job, events, BlockJobStatus.CANCELED)

    def block_job_set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        """Change the bandwidth; progress so far is kept."""
        with self._node.txn() as events:
            d = self._node.domain(dom)
            self._node.set_speed(self._live_job(d, disk, events), bandwidth_bytes, events)

    # --- storage --------------------------------------------------------------

    def _pool(self, name: str) -> PoolInfo:
        node = self._node
        pool = node.pools.get(name)
        if pool is None:
            raise NoStoragePoolError(f"no storage pool with matching name '{name}'")
        used = sum(img.allocation for img in node.images.values() if node.pool_of(img.path) == pool.name)
        return PoolInfo(
            name=pool.name,
            type=pool.type,
            capacity_bytes=pool.capacity,
            allocation_bytes=used,
            available_bytes=max(0, pool.capacity - used),
            path=pool.path,
            active=pool.active,
            uuid=pool.uuid,
        )

    def _volume(self, img: Image, pool: str) -> VolumeInfo:
        return VolumeInfo(
            name=os.path.basename(img.path),
            pool=pool,
            path=img.path,
            format=img.format,
            capacity_bytes=img.capacity,
            allocation_bytes=img.allocation,
            backing_chain=as_tuple(self._node.chain(img.path)[1:]),
        )

    def _volume_path(self, pool: str, name: str) -> str:
        if not name or "/" in name or name in (".", ".."):
            raise InvalidArgumentError(f"invalid volume name {name!r}")
        return f"{self._node.pools[pool].path.rstrip('/')}/{name}"

    def _find_volume(self, pool: str, name: str) -> Image:
        self._pool(pool)
        img = self._node.images.get(self._volume_path(pool, name))
        if img is None:
            raise NoStorageVolumeError(f"no storage vol with matching name '{name}' in pool '{pool}'")
        return img

    def list_storage_pools(self) -> list[PoolInfo]:
        """Every pool, sorted by name."""
        with self._node.lock:
            return [self._pool(name) for name in sorted(self._node.pools)]

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """A pool by name."""
        with self._node.lock:
            return self._pool(name)

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """The images in the pool's directory, sorted by name."""
        with self._node.lock:
            self._pool(pool)
            node = self._node
            imgs = [img for img in node.images.values() if node.pool_of(img.path) == pool]
            return [self._volume(img, pool) for img in sorted(imgs, key=lambda i: i.path)]

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A volume by pool and name."""
        with self._node.lock:
            return self._volume(self._find_volume(pool, name), pool)

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        """Create an image in the pool (raw: fully allocated; others: 192 KiB of metadata)."""
        capacity_bytes = image_volume_capacity(pool, name, capacity_bytes, format)
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            info = self._pool(pool)
            node = self._node
            path = self._volume_path(pool, name)
            check_format(format, f"volume '{name}'")
            if capacity_bytes <= 0:
                raise InvalidArgumentError(f"volume '{name}': capacity must be positive, got {capacity_bytes}")
            if path in node.images:
                raise OperationInvalidError(f"storage volume '{name}' already exists in pool '{pool}'")
            backing_path = None
            if backing is not None:
                if format == "raw":
                    raise InvalidArgumentError(f"volume '{name}': a raw volume cannot have a backing file")
                backing_path = backing if backing.startswith("/") else self._volume_path(pool, backing)
                if backing_path not in node.images:
                    raise InvalidArgumentError(f"volume '{name}': backing image '{backing}' does not exist")
            allocation = capacity_bytes if format == "raw" else min(capacity_bytes, QCOW2_EMPTY_ALLOCATION)
            if info.available_bytes is not None and allocation > info.available_bytes:
                raise OperationFailedError(
                    f"not enough space in pool '{pool}' for volume '{name}': "
                    f"{allocation} bytes needed, {info.available_bytes} available"
                )
            img = Image(path, format, capacity_bytes, allocation, backing_path)
            node.images[path] = img
            return self._volume(img, pool)

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete a volume nobody uses (no disk chain, no backing reference, no job)."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            img = self._find_volume(pool, name)
            users = self._node.image_users(img.path)
            if users:
                raise OperationInvalidError(f"storage volume '{name}' in pool '{pool}' is in use by {users[0]}")
            del self._node.images[img.path]

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """Grow a volume (raw ones stay fully allocated); shrinking is an InvalidArgumentError."""
        with self._node.lock:
            self._node.mark_dirty()  # a change a file node must save
            img = self._find_volume(pool, name)
            if capacity_bytes < img.capacity:
                raise InvalidArgumentError(
                    f"cannot shrink storage volume '{name}' from {img.capacity} to {capacity_bytes} bytes"
                )
            if img.format == "raw":
                info = self._pool(pool)
                grow = capacity_bytes - img.allocation
                if info.available_bytes is not None and grow > info.available_bytes:
                    raise OperationFailedError(f"not enough space in pool '{pool}' to resize volume '{name}'")
                img.allocation = capacity_bytes
            img.capacity = capacity_bytes
            return self._volume(img, pool)

"""The QEMU/KVM driver: daemonless, one daemonized QEMU per running domain, driven over QMP.

:class:`QemuDriver` is the entry point; the work happens in rooms, one per concept:

================  ==========================================================================
``_process``      the emulator binary (version, QMP commands, capabilities) and QEMU processes
``_store``        definitions, runtime records and locks (``_records``: their typed forms)
``_session``      QMP sessions and QEMU's refusals as virtabs errors
``_lifecycle``    define, start, shutdown, destroy, reboot, suspend, resume, save, restore
``_blockjobs``    pull, copy, commit, settling concluded jobs, abort and pivot
``_snapshots``    internal qcow2 snapshots
``_devices``      disk hot-plug
``_storage``      directory pools, volumes and disk facts from image headers
``_events``       lifecycle and block-job events, and the poller
``_live``         leased QMP monitors: state and block jobs from QEMU's own event stream
``_migration``    live migration with storage: NBD exports, mirrors, memory, the switch, rollback
``_guard``        a migration step's guard process: the rollback when the process driving the step dies
``_networks``     user-mode networking and the host bridges and taps the NICs are on (issue 25)
================  ==========================================================================

The core's gate has checked capabilities (including those this emulator lacks,
:meth:`QemuDriver.connection_capabilities`), read-only mode, state preconditions and block-job
rules before any method here runs. See ``backends/qemu/README.md`` for URIs, the state layout
and the QMP mapping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import warnings
from typing import ClassVar

from virtabs.spi import (
    IP_MISSING,
    URI,
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobInfo,
    Capabilities,
    Capability,
    ConnectError,
    ConnectOptions,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    DomainState,
    DomainStatus,
    Driver,
    DriverUnavailableError,
    HostInfo,
    HostLink,
    InvalidArgumentError,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NetworkInfo,
    NicInfo,
    OperationInvalidError,
    PoolInfo,
    Snapshot,
    VirtabsError,
    VolumeInfo,
    image_volume_capacity,
    quote,
)

from ._blockjobs import BlockJobs
from ._cmdline import KvmUnusableWarning, default_accel, mac_for
from ._devices import Devices
from ._events import Events
from ._lifecycle import Lifecycle
from ._live import LiveView
from ._migration import Migrations, check_listen_address
from ._networks import HostNetworks
from ._process import Emulator, Processes, cpu_time_ns, emulator_cache_dir
from ._records import Definition
from ._session import Sessions, state_of
from ._snapshots import Snapshots
from ._state import StateDirs
from ._storage import Storage
from ._store import DefinitionStore

__all__ = ["QemuDriver"]

log = logging.getLogger("virtabs.qemu")

_warned_kvm_unusable: set[str] = set()
"""Reasons already warned about in this process (a connection per test must not warn a thousand times)."""


def _warn_kvm_unusable(reason: str) -> None:
    """Say once per process why the driver runs guests under TCG although /dev/kvm opens."""
    if reason in _warned_kvm_unusable:
        return
    _warned_kvm_unusable.add(reason)
    message = f"qemu: using TCG, not KVM: {reason}; pass accel=kvm in the URI to use it anyway"
    # A Python warning (the CLI prints it as one "warning:" line; a service can filter or log it), and
    # an INFO record: a WARNING record would also reach stderr through logging's last-resort handler.
    log.info("%s", message)
    warnings.warn(message, KvmUnusableWarning, stacklevel=4)


class QemuDriver(Driver):
    """QEMU/KVM without a daemon: definitions are JSON files, running domains are daemonized QEMUs.

    URIs: ``qemu:///session``, ``qemu:///system``, ``qemu:///embed?root=DIR``; ``?emulator=PATH``
    overrides ``qemu-system-x86_64`` and ``?accel=kvm|tcg`` chooses the accelerator (default: KVM when
    /dev/kvm opens read-write and is not a KVM that cannot run a stock guest, such as ``kvm_pvm``; then TCG,
    with a :class:`~virtabs_qemu._cmdline.KvmUnusableWarning` saying why).
    """

    name: ClassVar[str] = "qemu"
    description: ClassVar[str] = "QEMU/KVM through QMP, daemonless (state in files, one daemonized QEMU per domain)"
    capabilities: ClassVar[Capabilities] = Capabilities.of(
        Capability.DOMAIN_DEFINE,
        Capability.DOMAIN_START,
        Capability.DOMAIN_SHUTDOWN,
        Capability.DOMAIN_DESTROY,
        Capability.DOMAIN_REBOOT,
        Capability.DOMAIN_SUSPEND,
        Capability.DOMAIN_SAVE,
        Capability.DOMAIN_MANAGED_SAVE,
        Capability.DOMAIN_SNAPSHOT,
        Capability.DOMAIN_DISK_HOTPLUG,
        Capability.BLOCK_PULL,
        Capability.BLOCK_COPY,
        Capability.BLOCK_COPY_FLATTEN,
        Capability.BLOCK_COPY_SHALLOW,
        Capability.BLOCK_COPY_REUSE_EXT,
        Capability.BLOCK_COPY_RAW,
        Capability.BLOCK_COPY_DEV,
        Capability.BLOCK_COPY_PIVOT,
        Capability.BLOCK_COMMIT,
        Capability.BLOCK_BANDWIDTH,
        Capability.STORAGE_POOL,
        Capability.STORAGE_VOLUME,
        Capability.STORAGE_VOLUME_RESIZE,
        Capability.EVENTS,
        # migration (issue 23)
        Capability.DOMAIN_MIGRATE,
        Capability.DOMAIN_MIGRATE_LIVE,
        Capability.DOMAIN_MIGRATE_OFFLINE,
        Capability.DOMAIN_MIGRATE_COPY_STORAGE,
        Capability.DOMAIN_MIGRATE_KEEP_SOURCE,
        Capability.DOMAIN_MIGRATE_ABORT,
        Capability.DOMAIN_MIGRATE_BANDWIDTH,
        Capability.DOMAIN_MIGRATE_MAX_DOWNTIME,
        # networks (issue 25)
        Capability.NETWORK,
        notes={
            Capability.DOMAIN_SHUTDOWN: "ACPI system_powerdown: needs a guest that handles the power button",
            Capability.DOMAIN_REBOOT: "system_reset (a hard reset, not an ACPI reboot)",
            Capability.DOMAIN_SNAPSHOT: "internal qcow2 snapshots (savevm/loadvm/delvm; qemu-img when inactive)",
            Capability.DOMAIN_DISK_HOTPLUG: "virtio-blk detach needs a guest that releases the slot; scsi is immediate",
            Capability.BLOCK_COMMIT: "RELATIVE is not supported",
            Capability.BLOCK_COPY_DEV: (
                "host_device; only a free block device under /dev, of the disk's size for raw; "
                "formatted unless REUSE_EXT, whose format must be named (never probed)"
            ),
            Capability.STORAGE_POOL: "directory pools: 'default' plus <config>/pools/*.json",
            Capability.DOMAIN_MIGRATE: (
                "between state roots over unix sockets, to a qemu+ssh:// host through an ssh forward (TUNNELLED "
                "is declared by qemu+ssh connections), or over TCP to the destination URI's migrate_address; the "
                "destination is always persistent (definitions are files)"
            ),
            Capability.DOMAIN_MIGRATE_COPY_STORAGE: (
                "NBD export + blockdev-mirror; copied disks land in the destination's default pool"
            ),
            Capability.DOMAIN_MIGRATE_ABORT: "migrate_cancel, or block-job-cancel of the mirrors before the memory",
            Capability.DOMAIN_MIGRATE_BANDWIDTH: "max-bandwidth of the memory stream, and each mirror's speed",
            Capability.DOMAIN_MIGRATE_MAX_DOWNTIME: "downtime-limit (QEMU's default 300 ms when not given)",
            Capability.NETWORK: (
                "'user' (QEMU's user-mode network) and the host bridges and taps the root's NICs are on "
                "(iproute2's JSON: two commands per listing)"
            ),
        },
    )
    uri_examples: ClassVar[tuple[str, ...]] = (
        "qemu:///session",
        "qemu:///system",
        "qemu:///embed?root=/tmp/vms",
        "qemu:///session?emulator=/usr/local/bin/qemu-system-x86_64",
    )
    install_hint: ClassVar[str] = "apt install qemu-system-x86 qemu-utils"
    local_reads: ClassVar[bool] = True
    """Every read is local files and the domains' own QMP sockets: the inventory reads roots one at a time."""

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if uri.host:
            raise InvalidArgumentError(f"the qemu driver is local only; {uri} names a host")
        self.dirs = StateDirs.for_uri(uri.path, dict(uri.params))
        path = uri.param("emulator") or shutil.which("qemu-system-x86_64")
        if not path or not os.access(path, os.X_OK):
            raise DriverUnavailableError(
                f"QEMU emulator {path or 'qemu-system-x86_64'} not found or not executable; {self.install_hint}"
            )
        accel = uri.param("accel")
        if not accel:
            accel, not_kvm = default_accel()
            if not_kvm is not None:
                _warn_kvm_unusable(not_kvm)
        if accel not in ("kvm", "tcg"):
            raise InvalidArgumentError(f"accel must be kvm or tcg, got {quote(accel)}")
        self.emulator = Emulator(path, accel, options.timeout, cache_dir=emulator_cache_dir())
        self.timeout = float(options.timeout or 30.0)
        self.dirs.lock_timeout = self.timeout  # every lock of this root is waited for at most this long
        if uri.path.strip("/") == "embed" and not os.path.isdir(self.dirs.config):
            raise ConnectError(
                f"the qemu:///embed root {self.dirs.config} does not exist or is not a directory: create it first "
                "(a missing root is not an empty host)"
            )
        try:
            if not options.readonly:  # a read-only connection writes nothing, not even its state root
                self.dirs.ensure()
            else:
                self.dirs.check_shared(create=False)
        except PermissionError as exc:
            raise ConnectError(
                f"cannot create the qemu driver's state directories ({exc}); qemu:///system needs root"
            ) from None
        self.store = DefinitionStore(self.dirs)
        self.processes = Processes(self.dirs, self.timeout, options.timeout)  # bounds qemu-img and QEMU's start
        self.sessions = Sessions(self.store, self.processes, self.timeout)
        self.events = Events(self.store, self.sessions, self.emit)
        self.live = LiveView(self.store, self.processes, self.timeout, self.events.dispatch)
        self.lifecycle = Lifecycle(self.store, self.processes, self.sessions, self.events, self.emulator, self.timeout)
        self.jobs = BlockJobs(self.store, self.processes, self.sessions, self.events, self.timeout, self.live)
        self.snapshots = Snapshots(self.store, self.processes, self.sessions, self.lifecycle, self.timeout)
        self.devices = Devices(self.store, self.processes, self.sessions, self.timeout)
        self.storage = Storage(self.dirs, options.timeout)
        self.migrations = Migrations(
            self.store,
            self.processes,
            self.sessions,
            self.events,
            self.lifecycle,
            self.timeout,
            listen_address=check_listen_address(uri.param("migrate_address")),
            guard_uri=None if options.readonly else str(uri),
        )
        self.networks = HostNetworks(self.store.all, self.timeout)
        # the event poller reads states the way domain_status does: leased monitor first, jobs settled
        self.events.read_status = lambda defn: self.domain_status(DomainRef(defn.name, defn.uuid)).state

    @property
    def accel(self) -> str:
        """``kvm`` or ``tcg``."""
        return self.emulator.accel

    # --- connection ---------------------------------------------------------------------------

    def qemu_version(self) -> tuple[int, int, int]:
        """The emulator's version (``-version``, asked once per binary)."""
        return self.emulator.version()

    def connection_capabilities(self) -> Capabilities:
        """The class declaration minus what this emulator lacks (``query-commands``; QEMU >= 4.2 for jobs).

        The core's gate enforces the result: this driver checks no capability itself. ``network`` is dropped
        on a host without iproute2's ``ip`` (the listing reads the host's interfaces through it).
        """
        capabilities = self.emulator.capabilities(type(self).capabilities)
        if not self.networks.ip.available():
            capabilities = capabilities.without(Capability.NETWORK, reason=IP_MISSING)
        return capabilities

    def close(self) -> None:
        """Stop the event poller and release the leased monitors. Running domains keep running (they do not
        belong to the connection)."""
        self.events.stop()
        self.live.close()

    def start_events(self) -> None:
        """Start the poller that reports state changes nobody announced and block-job transitions."""
        self.events.start()

    def stop_events(self) -> None:
        """Stop the poller."""
        self.events.stop()

    def host_info(self) -> HostInfo:
        """Host facts; the hypervisor version is the emulator's."""
        mem = 0
        with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
        model = None
        with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        return HostInfo(
            hostname=socket.gethostname(),
            hypervisor="QEMU",
            hypervisor_version=".".join(map(str, self.qemu_version())),
            cpus=os.cpu_count() or 1,
            memory_bytes=mem,
            arch=os.uname().machine,
            cpu_model=model,
        )

    # --- reads --------------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every defined domain (running ones are always defined)."""
        return [defn.ref for defn in self.store.all()]

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """By name (one file), then by UUID."""
        return self.store.lookup(name_or_uuid).ref

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The persisted definition (after a pivot it names the copy)."""
        return self.store.get(dom).spec

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State from the leased monitor (else ``query-status``); CPU time from /proc/PID/stat."""
        defn = self.store.view(dom)
        spec = defn.spec
        live = self.live.state(dom.name)
        if live is not None:
            state, native, lease = live
            pid: int | None = lease.pid
            cpu = lease.cpu_time_ns()
        else:
            state, native = self.sessions.state(dom.name)
            pid = self.processes.pid(dom.name)
            cpu = None
        return DomainInfo(
            name=dom.name,
            uuid=defn.uuid,
            state=state,
            native_state=native,
            vcpus=spec.vcpus,
            memory_bytes=spec.memory_bytes,
            max_memory_bytes=spec.memory_bytes,
            cpu_time_ns=cpu if cpu is not None else (cpu_time_ns(pid) if pid is not None else 0),
        )

    def domain_status(self, dom: DomainRef) -> DomainStatus:
        """State and active jobs: from the leased monitor when this connection holds one (no new connection;
        ``query-block-jobs`` on it only while jobs run), else from ONE QMP session (``query-status``,
        ``query-jobs``, ``query-block-jobs``)."""
        self.store.view(dom)
        live = self.live.state(dom.name)
        if live is not None:
            state, _native, lease = live
            if not lease.jobs or not state.is_active:  # QEMU has no job at all (its events would have said)
                return DomainStatus(state, ())
            jobs = self.jobs.live_infos(dom.name, lease)
            if jobs is not None:
                return DomainStatus(state, tuple(jobs))
            try:  # a job to settle: on the leased connection, under the domain lock
                with self.jobs.conversation(dom.name, lease) as q:
                    return DomainStatus(state, tuple(self.jobs.infos(dom.name, q)))
            except OperationInvalidError:
                pass  # QEMU exited meanwhile: what is left is read below
        state, _native, jobs = self._status(dom.name)
        return DomainStatus(state, tuple(jobs))

    def _status(self, name: str) -> tuple[DomainState, str, list[BlockJobInfo]]:
        """State, QEMU's word for it, and the jobs (reconciled first), from one QMP session."""
        with self.store.lock(name).hold():
            if self.processes.pid(name) is not None:
                try:
                    with self.sessions.open(name) as q:
                        state, native = state_of(q.execute("query-status"))
                        has_jobs = state.is_active and bool(self.store.run(name).jobs)
                        return state, native, self.jobs.infos(name, q) if has_jobs else []
                except OperationInvalidError:
                    pass
            return (*self.sessions.down_state(name), [])

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """Disks from the definition (settled after concluded jobs, on the leased connection when there is one),
        backing chains from the image headers."""
        if self.store.run_view(dom.name).jobs:
            lease = self.live.lease(dom.name)
            if lease is not None or self.processes.pid(dom.name) is not None:
                with contextlib.suppress(VirtabsError), self.jobs.conversation(dom.name, lease) as q:
                    self.jobs.reconcile(dom.name, q)
        return self.storage.disk_infos(self.store.get(dom))

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """NICs from the definition (MACs as QEMU gets them); ``network`` is the listed network each is on
        (``user``, a bridge, a tap), None when the host has no such network now (``_networks``)."""
        return self._nics(self.store.get(dom), {})

    @staticmethod
    def _nics(defn: Definition, links: dict[str, HostLink | None]) -> list[NicInfo]:
        """``links``: what /sys/class/net said of each interface name, shared by the NICs of one read."""
        return [
            NicInfo(
                mac=n.mac or mac_for(defn.uuid, i), network=HostNetworks.network_of_nic(n.network, links), model=n.model
            )
            for i, n in enumerate(defn.spec.nics)
        ]

    def inventory(self) -> list[DomainRecord]:
        """Every domain in one pass over the definition files (at most one QMP session per running domain)."""
        records = []
        links: dict[str, HostLink | None] = {}  # each interface the NICs name read once from /sys/class/net
        definitions, unreadable = self.store.scan()
        pool_dirs: dict[str, str] | None = None
        with contextlib.suppress(VirtabsError):  # else each domain's disks report why the pools are unreadable
            pool_dirs = self.storage.pool_dirs()
        for defn in definitions:
            errors: dict[str, str] = {}
            state, native = DomainState.NOSTATE, "unknown"
            jobs: list[BlockJobInfo] = []
            try:
                state, native, jobs = self._status(defn.name)
            except VirtabsError as exc:
                errors["state"] = str(exc)
            disks: list[DiskInfo] = []
            try:
                disks = self.storage.disk_infos(defn, pool_dirs)
            except VirtabsError as exc:
                errors["disks"] = str(exc)
            managed_save: bool | None = None
            try:
                managed_save = self.lifecycle.has_managed_save_of(defn)
            except VirtabsError as exc:
                errors["managed_save"] = str(exc)
            spec = defn.spec
            records.append(
                DomainRecord(
                    name=defn.name,
                    uuid=defn.uuid,
                    state=state,
                    native_state=native,
                    vcpus=spec.vcpus,
                    memory_bytes=spec.memory_bytes,
                    os_type=spec.os_type,
                    autostart=None,
                    disks=disks,
                    nics=self._nics(defn, links),
                    snapshot_count=len(defn.snapshots),
                    block_jobs=jobs,
                    field_errors=errors,
                    managed_save=managed_save,
                )
            )
        for name, reason in unreadable.items():  # a per-record error: the rest of the host is still listed
            records.append(
                DomainRecord(
                    name=name,
                    uuid="",
                    state=DomainState.NOSTATE,
                    native_state="unreadable definition",
                    vcpus=None,
                    memory_bytes=None,
                    os_type=None,
                    autostart=None,
                    snapshot_count=None,
                    field_errors={"definition": reason},
                )
            )
        return sorted(records, key=lambda r: r.name)

    # --- lifecycle (``_lifecycle``) ---------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Persist a new definition; a name or UUID already defined is refused."""
        return self.lifecycle.define(spec)

    def undefine(self, dom: DomainRef) -> None:
        """Remove the definition and runtime files of an inactive domain."""
        self.lifecycle.undefine(dom)

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Launch QEMU (daemonized, ``-S``), then ``cont`` unless ``paused``."""
        self.lifecycle.start(dom, paused)

    def shutdown(self, dom: DomainRef) -> None:
        """``system_powerdown`` (the ACPI power button); the core waits for QEMU to exit."""
        self.lifecycle.shutdown(dom)

    def destroy(self, dom: DomainRef) -> None:
        """``quit``, then SIGTERM/SIGKILL; always reaps and removes the runtime files."""
        self.lifecycle.destroy(dom)

    def reboot(self, dom: DomainRef) -> None:
        """``system_reset`` (a hard reset, not an ACPI reboot)."""
        self.lifecycle.reboot(dom)

    def suspend(self, dom: DomainRef) -> None:
        """``stop``."""
        self.lifecycle.suspend(dom)

    def resume(self, dom: DomainRef) -> None:
        """``cont``."""
        self.lifecycle.resume(dom)

    def save(self, dom: DomainRef, path: str) -> None:
        """Migration stream into ``path`` after a header, then QEMU quits."""
        self.lifecycle.save(dom, path)

    def restore(self, path: str) -> DomainRef:
        """``-incoming`` from a file written by :meth:`save` (defines the domain if needed)."""
        return self.lifecycle.restore(path)

    def managed_save(self, dom: DomainRef) -> None:
        """:meth:`save` into the state root's ``save/<name>.save``; the next start resumes from it."""
        self.lifecycle.managed_save(dom)

    def has_managed_save(self, dom: DomainRef) -> bool:
        """Whether ``save/<name>.save`` holds this domain's saved state."""
        return self.lifecycle.has_managed_save(dom)

    def managed_save_remove(self, dom: DomainRef) -> None:
        """Delete ``save/<name>.save``."""
        self.lifecycle.managed_save_remove(dom)

    # --- snapshots and devices --------------------------------------------------------------------

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """``savevm`` (running) or ``qemu-img snapshot -c`` (inactive)."""
        return self.snapshots.create(dom, name)

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """Oldest first."""
        return self.snapshots.list(dom)

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """``loadvm``, ``-loadvm`` at start, or ``qemu-img snapshot -a``."""
        self.snapshots.revert(dom, name)

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """``delvm`` or ``qemu-img snapshot -d``; children are re-parented."""
        self.snapshots.delete(dom, name)

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """``blockdev-add`` + ``device_add`` when running; always persisted."""
        self.devices.attach(dom, disk)

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """``device_del`` + ``blockdev-del`` when running; always persisted."""
        self.devices.detach(dom, target)

    # --- block jobs (``_blockjobs``) ----------------------------------------------------------------

    def block_pull(self, dom: DomainRef, disk: str, base: str | None, bandwidth_bytes: int) -> None:
        """``block-stream``."""
        self.jobs.pull(dom, disk, base, bandwidth_bytes)

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """``drive-mirror``."""
        self.jobs.copy(dom, disk, request)

    def block_commit(self, dom: DomainRef, disk: str, request: BlockCommitRequest) -> None:
        """``block-commit``."""
        self.jobs.commit(dom, disk, request)

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """``query-block-jobs``; ``cur`` is held at ``end - 1`` until the job is ready."""
        return self.jobs.info(dom, disk)

    def block_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        """Every job of the domain, in one QMP session."""
        return self.jobs.all(dom)

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Cancel (returns; the core waits) or pivot (awaited here, a failed pivot raises)."""
        self.jobs.abort(dom, disk, pivot)

    def block_job_set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        """``block-job-set-speed``."""
        self.jobs.set_speed(dom, disk, bandwidth_bytes)

    # --- migration (``_migration``, issue 23) -------------------------------------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Destination: images, definition, paused ``-incoming defer`` QEMU, NBD exports, incoming socket."""
        return self.migrations.prepare(spec, request, disks)

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """Source: mirrors into the exports, memory once they are READY, the switch at pre-switchover."""
        self.migrations.perform(dom, request, ticket)

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """The migration's figures from its last look (``query-block-jobs``, ``query-migrate``)."""
        return self.migrations.job_info(dom)

    def migrate_abort(self, dom: DomainRef) -> None:
        """Stop the migration under way; perform rolls back (``migrate_cancel``, forced mirror cancel)."""
        self.migrations.abort(dom)

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Destination: wait for the stream, ``nbd-server-stop``, ``cont``; or kill and remove everything."""
        return self.migrations.finish(ticket, request, success)

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Source: destroy (and undefine) after success; ``cont`` a stopped source after a failure."""
        self.migrations.confirm(dom, request, success)

    # --- storage (``_storage``) -------------------------------------------------------------------------

    def list_storage_pools(self) -> list[PoolInfo]:
        """``default`` plus <config>/pools/NAME.json."""
        return self.storage.list_pools()

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """A pool by name."""
        return self.storage.lookup_pool(name)

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Regular files of the pool directory."""
        return self.storage.list_volumes(pool)

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A volume by name."""
        return self.storage.lookup_volume(pool, name)

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        """``qemu-img create -f FORMAT [-b BACKING -F BACKING_FORMAT]``."""
        capacity_bytes = image_volume_capacity(pool, name, capacity_bytes, format)
        return self.storage.create_volume(pool, name, capacity_bytes, format, backing)

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove the file and its recorded format."""
        self.storage.delete_volume(pool, name)

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``qemu-img resize -f FORMAT``."""
        return self.storage.resize_volume(pool, name, capacity_bytes)

    # --- networks (``_networks``, issue 25) ---------------------------------------------------------------

    def list_networks(self) -> list[NetworkInfo]:
        """``user``, then the bridges and taps the NICs are on, with their attachments: two ``ip -json``
        commands and one pass over the definitions, whatever the number of networks and NICs."""
        return self.networks.list()

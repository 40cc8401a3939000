"""The QEMU/KVM driver: daemonless, one daemonized QEMU per running domain, driven over QMP.

See ``backends/qemu/README.md`` for URIs, the state layout and the QMP mapping.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid as _uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from virtabs.spi import (
    URI,
    BlockCommitRequest,
    BlockCopyActiveError,
    BlockCopyRequest,
    BlockJobEvent,
    BlockJobInfo,
    BlockJobStatus,
    BlockJobType,
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
    Driver,
    DriverUnavailableError,
    HostInfo,
    InvalidArgumentError,
    LifecycleEvent,
    LifecycleEventType,
    NicInfo,
    NoDomainError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    NotSupportedError,
    OperationDeniedError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    PoolInfo,
    Snapshot,
    VirtabsError,
    VolumeInfo,
)

from . import _img
from ._cmdline import (
    HOTPLUG_PORTS,
    blockdev_nodes,
    build_argv,
    default_accel,
    device_for_disk,
    file_node_name,
    fmt_node_name,
    incoming_from_file,
    mac_for,
    outgoing_to_file,
)
from ._qmp import QMPClient, QMPError
from ._state import DomainLock, StateDirs, file_lock, read_json, write_json_atomic

__all__ = ["QemuDriver"]

_log = logging.getLogger("virtabs.qemu")

SAVE_MAGIC = b"VIRTABS-QEMU-SAVE-1\n"
SAVE_HEADER_SIZE = 65536
"""A saved-state file: this many bytes of header (magic + JSON, NUL padded), then QEMU's migration stream."""

_JOB_PREFIX = "vtb-"
_KIND_TYPES = {
    "pull": BlockJobType.PULL,
    "copy": BlockJobType.COPY,
    "commit": BlockJobType.COMMIT,
    "active_commit": BlockJobType.ACTIVE_COMMIT,
}

_RUNNING_STATES = {"running": DomainState.RUNNING, "debug": DomainState.RUNNING}
_PAUSED_STATES = {
    "paused",
    "prelaunch",
    "inmigrate",
    "postmigrate",
    "finish-migrate",
    "restore-vm",
    "save-vm",
    "suspended",
    "watchdog",
    "colo",
}


_NEEDS_COMMANDS: dict[Capability, frozenset[str]] = {
    Capability.DOMAIN_SHUTDOWN: frozenset({"system_powerdown"}),
    Capability.DOMAIN_REBOOT: frozenset({"system_reset"}),
    Capability.DOMAIN_SUSPEND: frozenset({"stop", "cont"}),
    Capability.DOMAIN_SAVE: frozenset({"migrate", "query-migrate"}),
    Capability.DOMAIN_SNAPSHOT: frozenset({"human-monitor-command"}),
    Capability.DOMAIN_DISK_HOTPLUG: frozenset({"blockdev-add", "blockdev-del", "device_add", "device_del"}),
    Capability.BLOCK_PULL: frozenset({"block-stream", "query-jobs", "job-dismiss", "block-job-cancel"}),
    Capability.BLOCK_COPY: frozenset({"drive-mirror", "query-jobs", "job-dismiss", "job-complete"}),
    Capability.BLOCK_COMMIT: frozenset({"block-commit", "query-jobs", "job-dismiss", "job-complete"}),
}
_NEEDS_COMMANDS_ALL = frozenset().union(*_NEEDS_COMMANDS.values())
_COMMANDS_CACHE: dict[str, frozenset[str]] = {}


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def _job_id(target: str) -> str:
    return f"{_JOB_PREFIX}{target}"


class QemuDriver(Driver):
    """QEMU/KVM without a daemon: definitions are JSON files, running domains are daemonized QEMUs.

    URIs: ``qemu:///session``, ``qemu:///system``, ``qemu:///embed?root=DIR``; ``?emulator=PATH``
    overrides ``qemu-system-x86_64`` and ``?accel=tcg`` forces TCG.
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
        Capability.DOMAIN_SNAPSHOT,
        Capability.DOMAIN_DISK_HOTPLUG,
        Capability.BLOCK_PULL,
        Capability.BLOCK_COPY,
        Capability.BLOCK_COPY_SHALLOW,
        Capability.BLOCK_COPY_REUSE_EXT,
        Capability.BLOCK_COPY_RAW,
        Capability.BLOCK_COPY_PIVOT,
        Capability.BLOCK_COMMIT,
        Capability.STORAGE_POOL,
        Capability.STORAGE_VOLUME,
        Capability.EVENTS,
        notes={
            Capability.DOMAIN_SHUTDOWN: "ACPI system_powerdown: needs a guest that handles the power button",
            Capability.DOMAIN_REBOOT: "system_reset (a hard reset, not an ACPI reboot)",
            Capability.DOMAIN_SNAPSHOT: "internal qcow2 snapshots (savevm/loadvm/delvm; qemu-img when inactive)",
            Capability.DOMAIN_DISK_HOTPLUG: "virtio-blk detach needs a guest that releases the slot; scsi is immediate",
            Capability.BLOCK_COMMIT: "RELATIVE is not supported",
            Capability.STORAGE_POOL: "directory pools: 'default' plus <config>/pools/*.json",
        },
    )
    uri_examples: ClassVar[tuple[str, ...]] = (
        "qemu:///session",
        "qemu:///system",
        "qemu:///embed?root=/tmp/vms",
        "qemu:///session?emulator=/usr/local/bin/qemu-system-x86_64",
    )
    install_hint: ClassVar[str] = "apt install qemu-system-x86 qemu-utils"

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if uri.host:
            raise InvalidArgumentError(f"the qemu driver is local only; {uri} names a host")
        self.dirs = StateDirs.for_uri(uri.path, dict(uri.params))
        emulator = uri.param("emulator") or shutil.which("qemu-system-x86_64")
        if not emulator or not os.access(emulator, os.X_OK):
            raise DriverUnavailableError(
                f"QEMU emulator {emulator or 'qemu-system-x86_64'} not found or not executable; {self.install_hint}"
            )
        self.emulator = emulator
        self.accel = uri.param("accel") or default_accel()
        if self.accel not in ("kvm", "tcg"):
            raise InvalidArgumentError(f"accel must be kvm or tcg, got {self.accel!r}")
        self.timeout = float(options.timeout or 30.0)
        self.readonly = options.readonly
        try:
            self.dirs.ensure()
        except PermissionError as exc:
            raise ConnectError(
                f"cannot create the qemu driver's state directories ({exc}); qemu:///system needs root"
            ) from None
        self._locks: dict[str, DomainLock] = {}
        self._locks_guard = threading.Lock()
        self._ready_emitted: set[tuple[str, str, str]] = set()
        self._outcomes: dict[tuple[str, str], tuple[BlockJobStatus, str | None]] = {}
        self._poller: threading.Thread | None = None
        self._poller_stop = threading.Event()
        self._last_states: dict[str, DomainState] = {}
        self._version: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------ helpers: definitions

    def _lock(self, name: str) -> DomainLock:
        with self._locks_guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = DomainLock(self.dirs.lockfile(name))
            return lock

    def _global_lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(os.path.join(self.dirs.domains, ".lock"))

    def _load(self, name: str) -> dict[str, Any]:
        rec = read_json(self.dirs.domain_file(name)) if name and "/" not in name else None
        if not isinstance(rec, dict):
            raise NoDomainError(f"no domain named {name!r}")
        return rec

    def _record(self, dom: DomainRef) -> dict[str, Any]:
        rec = self._load(dom.name)
        if dom.uuid and rec["uuid"] != dom.uuid:
            raise NoDomainError(f"domain {dom.name!r} with UUID {dom.uuid} no longer exists")
        return rec

    def _store(self, name: str, rec: dict[str, Any]) -> None:
        write_json_atomic(self.dirs.domain_file(name), rec)

    @staticmethod
    def _spec(rec: dict[str, Any]) -> DomainSpec:
        return DomainSpec.from_dict(rec["spec"])

    def _ref(self, rec: dict[str, Any]) -> DomainRef:
        return DomainRef(name=rec["spec"]["name"], uuid=rec["uuid"])

    def _check_writable(self) -> None:
        if self.readonly:
            raise OperationDeniedError("this qemu connection is read-only")

    # ------------------------------------------------------------------ helpers: runtime

    def _pid(self, name: str) -> int | None:
        """The pid of the domain's live QEMU, or None (a dead or foreign pid is None)."""
        pidfile = self.dirs.pidfile(name)
        try:
            with open(pidfile) as fh:
                pid = int(fh.read().strip() or "0")
        except (FileNotFoundError, ValueError):
            return None
        if pid <= 0 or not _alive(pid):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            return None
        if os.fsencode(pidfile) not in cmdline:
            return None
        return pid

    def _crashed(self, name: str) -> bool:
        """A pidfile that outlived its QEMU: QEMU removes it on every clean exit."""
        return os.path.exists(self.dirs.pidfile(name)) and self._pid(name) is None

    def _run(self, name: str) -> dict[str, Any]:
        data = read_json(self.dirs.runfile(name))
        if not isinstance(data, dict):
            data = {}
        data.setdefault("ports", {})
        data.setdefault("jobs", {})
        return data

    def _store_run(self, name: str, run: dict[str, Any]) -> None:
        write_json_atomic(self.dirs.runfile(name), run)

    def _cleanup_runtime(self, name: str) -> None:
        for path in (self.dirs.pidfile(name), self.dirs.qmp_socket(name), self.dirs.runfile(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @contextlib.contextmanager
    def _monitor(self, dom: DomainRef | str) -> Iterator[QMPClient]:
        """Hold the domain lock and a fresh QMP connection; dispatch its events afterwards."""
        name = dom if isinstance(dom, str) else dom.name
        with self._lock(name).hold():
            if self._pid(name) is None:
                raise OperationInvalidError(f"domain {name!r} is not running")
            client = QMPClient(self.dirs.qmp_socket(name), timeout=self.timeout, what=f"domain {name!r}")
            try:
                client.connect()
            except ConnectError:
                if self._pid(name) is None:
                    raise OperationInvalidError(f"domain {name!r} is not running") from None
                raise
            try:
                yield client
            finally:
                events = client.take_events()
                client.close()
                self._dispatch(name, events)

    def _dispatch(self, name: str, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("event") == "BLOCK_JOB_READY":
                dev = str(ev.get("data", {}).get("device", ""))
                if dev.startswith(_JOB_PREFIX):
                    self._emit_ready(name, dev[len(_JOB_PREFIX) :])

    def _emit_ready(self, name: str, target: str) -> None:
        try:
            rec = self._load(name)
        except NoDomainError:
            return
        run = self._run(name)
        job = run["jobs"].get(target)
        if job is None:
            return
        key = (name, target, str(job.get("started", "")))
        if key in self._ready_emitted:
            return
        self._ready_emitted.add(key)
        self.emit(
            BlockJobEvent(
                domain=name,
                uuid=rec["uuid"],
                disk=target,
                job_type=_KIND_TYPES[job["kind"]],
                status=BlockJobStatus.READY,
            )
        )

    def _lifecycle(self, rec: dict[str, Any], kind: LifecycleEventType, detail: str = "") -> None:
        try:
            self.emit(LifecycleEvent(domain=rec["spec"]["name"], uuid=rec["uuid"], type=kind, detail=detail))
        finally:
            self._note_state(rec, kind)

    def _note_state(self, rec: dict[str, Any], kind: LifecycleEventType) -> None:
        if kind in (LifecycleEventType.STARTED, LifecycleEventType.RESUMED):
            self._last_states[rec["spec"]["name"]] = DomainState.RUNNING
        elif kind == LifecycleEventType.SUSPENDED:
            self._last_states[rec["spec"]["name"]] = DomainState.PAUSED
        elif kind in (LifecycleEventType.STOPPED, LifecycleEventType.UNDEFINED, LifecycleEventType.CRASHED):
            self._last_states[rec["spec"]["name"]] = DomainState.SHUTOFF

    def _wait_gone(self, name: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.05)
        return not _alive(pid)

    def _kill(self, name: str, pid: int) -> None:
        """Make sure QEMU ``pid`` is gone: SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if self._wait_gone(name, pid, wait):
                return
        raise OperationFailedError(f"domain {name!r}: QEMU process {pid} does not die")

    def _native_state(self, name: str) -> tuple[DomainState, str]:
        with self._lock(name).hold():
            if self._pid(name) is None:
                if self._crashed(name):
                    return DomainState.CRASHED, "crashed"
                return DomainState.SHUTOFF, "shutoff"
            try:
                with self._monitor(name) as q:
                    status = q.execute("query-status")
            except OperationInvalidError:
                return (DomainState.CRASHED, "crashed") if self._crashed(name) else (DomainState.SHUTOFF, "shutoff")
            native = str(status.get("status", "unknown"))
            if native in _RUNNING_STATES:
                return DomainState.RUNNING, native
            if native in _PAUSED_STATES:
                return DomainState.PAUSED, native
            if native == "shutdown":
                return DomainState.SHUTDOWN, native
            if native in ("guest-panicked", "internal-error", "io-error"):
                return DomainState.CRASHED if native == "guest-panicked" else DomainState.PAUSED, native
            return DomainState.NOSTATE, native

    # ------------------------------------------------------------------ connection

    def qemu_version(self) -> tuple[int, int, int]:
        """The emulator's version, from ``-version``."""
        if self._version is None:
            try:
                out = subprocess.run(
                    [self.emulator, "-version"], capture_output=True, text=True, timeout=30, check=False
                ).stdout
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OperationFailedError(f"cannot run {self.emulator} -version: {exc}") from None
            word = out.split("version", 1)[-1].split()[0] if "version" in out else "0.0.0"
            parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in word.split(".")[:3]]
            while len(parts) < 3:
                parts.append(0)
            self._version = (parts[0], parts[1], parts[2])
        return self._version

    def qmp_commands(self) -> frozenset[str]:
        """The emulator's QMP commands (``query-commands`` of a throw-away ``-machine none`` QEMU), cached."""
        cached = _COMMANDS_CACHE.get(self.emulator)
        if cached is not None:
            return cached
        script = "".join(
            json.dumps({"execute": c}) + "\n" for c in ("qmp_capabilities", "query-version", "query-commands", "quit")
        )
        try:
            res = subprocess.run(
                [self.emulator, "-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"],
                input=script,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OperationFailedError(f"cannot query the commands of {self.emulator}: {exc}") from None
        names: set[str] = set()
        for line in res.stdout.splitlines():
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                ret = msg.get("return") if isinstance(msg, dict) else None
                if isinstance(ret, list):
                    names.update(str(c.get("name")) for c in ret if isinstance(c, dict))
                elif isinstance(ret, dict) and "qemu" in ret:
                    q = ret["qemu"]
                    self._version = (int(q["major"]), int(q["minor"]), int(q["micro"]))
        result = frozenset(names)
        _COMMANDS_CACHE[self.emulator] = result
        return result

    def connection_capabilities(self) -> Capabilities:
        """The class declaration, minus what this emulator lacks (``query-version``, ``query-commands``).

        Block jobs need QEMU >= 4.2 (``-blockdev`` and the job model with ``job-dismiss``).
        """
        caps = type(self).capabilities
        commands = self.qmp_commands()
        if not commands:  # could not ask: keep the declaration, the version check below still applies
            commands = frozenset(_NEEDS_COMMANDS_ALL)
        drop = [cap for cap, needed in _NEEDS_COMMANDS.items() if not needed <= commands]
        if self.qemu_version() < (4, 2, 0):
            drop += [Capability.BLOCK_PULL, Capability.BLOCK_COPY, Capability.BLOCK_COMMIT]
        return caps.without(*drop) if drop else caps

    def close(self) -> None:
        """Stop the event poller. Running domains keep running (they do not belong to the connection)."""
        self.stop_events()

    def start_events(self) -> None:
        """Start a poller thread that reports state changes and block-job transitions."""
        if self._poller is not None:
            return
        self._poller_stop.clear()
        for rec in self._all_records():
            with contextlib.suppress(VirtabsError):
                self._last_states[rec["spec"]["name"]] = self._native_state(rec["spec"]["name"])[0]
        self._poller = threading.Thread(target=self._poll_loop, name="virtabs-qemu-events", daemon=True)
        self._poller.start()

    def stop_events(self) -> None:
        """Stop the poller."""
        thread, self._poller = self._poller, None
        if thread is not None:
            self._poller_stop.set()
            thread.join(timeout=10)

    def _poll_loop(self) -> None:
        while not self._poller_stop.wait(0.25):
            try:
                self._poll_once()
            except Exception:
                _log.exception("qemu event poller: iteration failed")

    def _poll_once(self) -> None:
        for known in self._all_records():
            if self._poller_stop.is_set():
                return
            name = known["spec"]["name"]
            try:
                self._poll_domain(name)
            except VirtabsError as exc:
                _log.debug("qemu event poller: domain %s: %s", name, exc)
            except Exception:
                _log.exception("qemu event poller: domain %s", name)

    def _poll_domain(self, name: str) -> None:
        try:
            rec = self._load(name)
            state, _ = self._native_state(name)
        except NoDomainError:
            return
        last = self._last_states.get(name)
        if last is not None and last.is_active and not state.is_active:
            kind = LifecycleEventType.CRASHED if state == DomainState.CRASHED else LifecycleEventType.STOPPED
            self._lifecycle(rec, kind, "crashed" if kind == LifecycleEventType.CRASHED else "shutdown")
        self._last_states[name] = state
        if state.is_active and self._run(name)["jobs"]:
            with self._monitor(name) as q:
                self._reconcile(name, q)

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

    # ------------------------------------------------------------------ domains: reads

    def _all_records(self) -> list[dict[str, Any]]:
        out = []
        try:
            names = sorted(os.listdir(self.dirs.domains))
        except FileNotFoundError:
            return []
        for fname in names:
            if not fname.endswith(".json") or fname.startswith("."):
                continue
            with contextlib.suppress(ValueError):
                rec = read_json(os.path.join(self.dirs.domains, fname))
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    def list_domains(self) -> list[DomainRef]:
        """Every defined domain (running ones are always defined)."""
        return [self._ref(rec) for rec in self._all_records()]

    def inventory(self) -> list[DomainRecord]:
        """Every domain in one pass over the definition files (one QMP conversation per running domain)."""
        records = []
        for rec in self._all_records():
            name = rec["spec"]["name"]
            errors: dict[str, str] = {}
            spec = self._spec(rec)
            try:
                state, native = self._native_state(name)
            except VirtabsError as exc:
                state, native = DomainState.NOSTATE, "unknown"
                errors["state"] = str(exc)
            disks: list[DiskInfo] = []
            try:
                disks = self._disk_infos(name, rec)
            except VirtabsError as exc:
                errors["disks"] = str(exc)
            jobs: list[BlockJobInfo] = []
            if state.is_active and self._run(name)["jobs"]:
                for d in spec.disks:
                    try:
                        info = self._job_info(name, d.target)
                    except VirtabsError as exc:
                        errors["block_jobs"] = str(exc)
                        break
                    if info is not None:
                        jobs.append(info)
            records.append(
                DomainRecord(
                    name=name,
                    uuid=rec["uuid"],
                    state=state,
                    native_state=native,
                    vcpus=spec.vcpus,
                    memory_bytes=spec.memory_bytes,
                    os_type=spec.os_type,
                    autostart=None,
                    disks=disks,
                    nics=self._nic_infos(rec),
                    snapshot_count=len(rec.get("snapshots", [])),
                    block_jobs=jobs,
                    field_errors=errors,
                )
            )
        return records

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """By name, then by UUID."""
        with contextlib.suppress(NoDomainError):
            return self._ref(self._load(name_or_uuid))
        for rec in self._all_records():
            if rec["uuid"] == name_or_uuid.lower():
                return self._ref(rec)
        raise NoDomainError(f"no domain with name or UUID {name_or_uuid!r}")

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The persisted definition (after a pivot it names the copy)."""
        return self._spec(self._record(dom))

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State from ``query-status``; CPU time from /proc/PID/stat."""
        rec = self._record(dom)
        spec = self._spec(rec)
        state, native = self._native_state(dom.name)
        cpu_ns = 0
        pid = self._pid(dom.name)
        if pid is not None:
            cpu_ns = _cpu_time_ns(pid)
        return DomainInfo(
            name=dom.name,
            uuid=rec["uuid"],
            state=state,
            native_state=native,
            vcpus=spec.vcpus,
            memory_bytes=spec.memory_bytes,
            max_memory_bytes=spec.memory_bytes,
            cpu_time_ns=cpu_ns,
        )

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """Disks from the definition, with the backing chain read from the image headers."""
        rec = self._record(dom)
        if self._run(dom.name)["jobs"] and self._pid(dom.name) is not None:
            with contextlib.suppress(VirtabsError), self._monitor(dom) as q:
                self._reconcile(dom.name, q)
            rec = self._record(dom)
        return self._disk_infos(dom.name, rec)

    def _disk_infos(self, name: str, rec: dict[str, Any]) -> list[DiskInfo]:
        out = []
        for d in self._spec(rec).disks:
            chain: tuple[str, ...] = ()
            capacity = allocation = None
            if os.path.exists(d.path):
                try:
                    layers = _img.chain(d.path, d.format)
                    chain = _img.backing_paths(layers)
                    capacity = int(layers[0].get("virtual-size", 0)) or None
                    allocation = layers[0].get("actual-size")
                except VirtabsError:
                    pass
            out.append(
                DiskInfo(
                    target=d.target,
                    path=d.path,
                    format=d.format,
                    bus=d.bus,
                    readonly=d.readonly,
                    capacity_bytes=capacity,
                    allocation_bytes=allocation,
                    backing_chain=chain,
                    pool=self._pool_of(d.path),
                )
            )
        return out

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """NICs from the definition (MACs as QEMU gets them)."""
        return self._nic_infos(self._record(dom))

    def _nic_infos(self, rec: dict[str, Any]) -> list[NicInfo]:
        return [
            NicInfo(mac=n.mac or mac_for(rec["uuid"], i), network=n.network, model=n.model)
            for i, n in enumerate(self._spec(rec).nics)
        ]

    # ------------------------------------------------------------------ domains: lifecycle

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Persist a new definition; a name (or UUID) already defined is refused."""
        self._check_writable()
        with self._global_lock():
            existing = read_json(self.dirs.domain_file(spec.name))
            uid = spec.uuid
            if isinstance(existing, dict):
                raise OperationInvalidError(f"a domain named {spec.name!r} already exists (UUID {existing['uuid']})")
            for other in self._all_records():
                if uid and other["uuid"] == uid:
                    raise OperationInvalidError(f"UUID {uid} is already used by domain {other['spec']['name']!r}")
            uid = uid or str(_uuid.uuid4())
            spec_dict = spec.to_dict()
            spec_dict["uuid"] = uid
            final = DomainSpec.from_dict(spec_dict)
            # Reject what the command line cannot express now, not at start.
            build_argv(final, uuid=uid, emulator=self.emulator, accel=self.accel, qmp_socket="s", pidfile="p")
            rec = {"snapshots": [], "created": _now_iso(), "uuid": uid, "spec": final.to_dict(), "version": 1}
            self._store(spec.name, rec)
        self._lifecycle(rec, LifecycleEventType.DEFINED, "added")
        return self._ref(rec)

    def undefine(self, dom: DomainRef) -> None:
        """Remove an inactive domain's definition (a running one is refused)."""
        self._check_writable()
        with self._global_lock(), self._lock(dom.name).hold():
            rec = self._record(dom)
            if self._pid(dom.name) is not None:
                raise OperationInvalidError(f"domain {dom.name!r} is running; destroy it before undefining")
            self._cleanup_runtime(dom.name)
            with contextlib.suppress(OSError):
                shutil.rmtree(self.dirs.run_dir(dom.name))
            os.unlink(self.dirs.domain_file(dom.name))
        self._lifecycle(rec, LifecycleEventType.UNDEFINED, "removed")

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Launch QEMU (daemonized, ``-S``), then ``cont`` unless ``paused``."""
        self._check_writable()
        rec = self._record(dom)
        self._launch(rec, paused=paused)
        self._lifecycle(rec, LifecycleEventType.STARTED, "booted")
        if paused:
            self._lifecycle(rec, LifecycleEventType.SUSPENDED, "paused")

    def _launch(
        self,
        rec: dict[str, Any],
        paused: bool,
        incoming: str | None = None,
        loadvm: str | None = None,
    ) -> None:
        spec = self._spec(rec)
        name = spec.name
        with self._lock(name).hold():
            if self._pid(name) is not None:
                raise OperationInvalidError(f"domain {name!r} is already running")
            self._cleanup_runtime(name)
            for disk in spec.disks:
                if not os.path.exists(disk.path):
                    raise OperationFailedError(f"domain {name!r}: disk {disk.target} image {disk.path} does not exist")
                try:
                    _img.chain(disk.path, disk.format, force_share=True)
                except VirtabsError as exc:
                    raise OperationFailedError(f"domain {name!r}: disk {disk.target}: {exc}") from None
            os.makedirs(self.dirs.run_dir(name), mode=0o700, exist_ok=True)
            sock = self.dirs.qmp_socket(name)
            os.makedirs(os.path.dirname(sock), mode=0o700, exist_ok=True)
            argv = build_argv(
                spec,
                uuid=rec["uuid"],
                emulator=self.emulator,
                accel=self.accel,
                qmp_socket=sock,
                pidfile=self.dirs.pidfile(name),
                console_log=self.dirs.console_log(name),
                incoming=incoming,
                loadvm=loadvm,
            )
            try:
                res = subprocess.run(
                    argv, capture_output=True, text=True, timeout=max(60.0, self.timeout), check=False, cwd="/"
                )
                failure = None if res.returncode == 0 else (res.stderr.strip() or f"exit status {res.returncode}")
            except subprocess.TimeoutExpired:
                failure = "QEMU did not finish starting in time"
            except OSError as exc:
                failure = str(exc)
            if failure is None and self._pid(name) is None:
                failure = "QEMU exited right after starting"
            if failure is not None:
                self._reap_failed_start(name)
                raise OperationFailedError(f"domain {name!r} failed to start: {_trim(failure)}")
            run: dict[str, Any] = {"ports": {}, "jobs": {}, "started": _now_iso(), "pid": self._pid(name)}
            self._store_run(name, run)
            try:
                with self._monitor(name) as q:
                    if incoming:
                        deadline = time.monotonic() + max(600.0, self.timeout)
                        while True:
                            status = q.execute("query-status")["status"]
                            if status != "inmigrate":
                                break
                            if time.monotonic() > deadline:
                                raise OperationTimeoutError(f"domain {name!r}: restoring the saved state timed out")
                            time.sleep(0.05)
                        mig = q.execute("query-migrate")
                        if mig.get("status") == "failed":
                            raise OperationFailedError(f"domain {name!r}: restore failed: {mig.get('error-desc', '')}")
                    if not paused:
                        q.execute("cont")
            except BaseException:
                self._reap_failed_start(name)
                raise

    def _reap_failed_start(self, name: str) -> None:
        pidfile = self.dirs.pidfile(name)
        with contextlib.suppress(FileNotFoundError, ValueError), open(pidfile) as fh:
            pid = int(fh.read().strip() or "0")
            if pid > 0 and _alive(pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as cf:
                        ours = os.fsencode(pidfile) in cf.read()
                except OSError:
                    ours = False
                if ours:
                    self._kill(name, pid)
        self._cleanup_runtime(name)

    def shutdown(self, dom: DomainRef) -> None:
        """``system_powerdown`` (the ACPI power button); the core waits for QEMU to exit."""
        if self._pid(dom.name) is None:
            raise OperationInvalidError(f"domain {dom.name!r} is not running")
        with self._monitor(dom) as q:
            q.execute("system_powerdown")

    def destroy(self, dom: DomainRef) -> None:
        """``quit``, then SIGTERM/SIGKILL if needed; always reaps and cleans up (also after a crash)."""
        self._check_writable()
        rec = self._record(dom)
        with self._lock(dom.name).hold():
            pid = self._pid(dom.name)
            if pid is None:
                if self._crashed(dom.name):
                    self._cleanup_runtime(dom.name)
                    return
                raise OperationInvalidError(f"domain {dom.name!r} is not running")
            with contextlib.suppress(VirtabsError):
                client = QMPClient(self.dirs.qmp_socket(dom.name), timeout=2.0, what=f"domain {dom.name!r}")
                with client:
                    client.execute("quit")
            if not self._wait_gone(dom.name, pid, 3.0):
                self._kill(dom.name, pid)
            self._cleanup_runtime(dom.name)
        self._lifecycle(rec, LifecycleEventType.STOPPED, "destroyed")

    def reboot(self, dom: DomainRef) -> None:
        """``system_reset``: a hard reset of the vCPUs and devices (not an ACPI reboot)."""
        self._check_writable()
        with self._monitor(dom) as q:
            q.execute("system_reset")

    def suspend(self, dom: DomainRef) -> None:
        """``stop``."""
        self._check_writable()
        rec = self._record(dom)
        with self._monitor(dom) as q:
            q.execute("stop")
        self._lifecycle(rec, LifecycleEventType.SUSPENDED, "paused")

    def resume(self, dom: DomainRef) -> None:
        """``cont``."""
        self._check_writable()
        rec = self._record(dom)
        with self._monitor(dom) as q:
            q.execute("cont")
        self._lifecycle(rec, LifecycleEventType.RESUMED, "unpaused")

    def save(self, dom: DomainRef, path: str) -> None:
        """Stop the vCPUs, stream the migration state after a header into ``path``, then quit QEMU."""
        self._check_writable()
        rec = self._record(dom)
        path = os.path.abspath(path)
        with self._monitor(dom) as q:
            running = q.execute("query-status").get("running", False)
            header = json.dumps(
                {"name": dom.name, "uuid": rec["uuid"], "spec": rec["spec"], "running": running, "saved": _now_iso()}
            ).encode()
            if len(SAVE_MAGIC) + len(header) > SAVE_HEADER_SIZE:
                raise OperationFailedError(f"domain {dom.name!r}: definition too large for the save header")
            try:
                with open(path, "wb") as fh:
                    fh.write(SAVE_MAGIC + header)
                    fh.write(b"\0" * (SAVE_HEADER_SIZE - len(SAVE_MAGIC) - len(header)))
            except OSError as exc:
                raise OperationFailedError(f"domain {dom.name!r}: cannot write {path}: {exc}") from None
            if running:
                q.execute("stop")
            try:
                q.execute("migrate", {"uri": outgoing_to_file(path)})
                deadline = time.monotonic() + max(600.0, self.timeout)
                while True:
                    mig = q.execute("query-migrate")
                    status = mig.get("status")
                    if status == "completed":
                        break
                    if status in ("failed", "cancelled"):
                        raise OperationFailedError(
                            f"domain {dom.name!r}: saving to {path} failed: {mig.get('error-desc', status)}"
                        )
                    if time.monotonic() > deadline:
                        q.execute("migrate_cancel")
                        raise OperationTimeoutError(f"domain {dom.name!r}: saving to {path} timed out")
                    time.sleep(0.05)
            except BaseException:
                with contextlib.suppress(VirtabsError):
                    if running:
                        q.execute("cont")
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
            pid = self._pid(dom.name)
            with contextlib.suppress(VirtabsError):
                q.execute("quit")
        if pid is not None and not self._wait_gone(dom.name, pid, 5.0):
            self._kill(dom.name, pid)
        with self._lock(dom.name).hold():
            self._cleanup_runtime(dom.name)
        self._lifecycle(rec, LifecycleEventType.STOPPED, "saved")

    def restore(self, path: str) -> DomainRef:
        """Start QEMU with ``-incoming`` from a file written by :meth:`save` (defines the domain if needed)."""
        self._check_writable()
        path = os.path.abspath(path)
        try:
            with open(path, "rb") as fh:
                head = fh.read(SAVE_HEADER_SIZE)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read saved state {path}: {exc}") from None
        if not head.startswith(SAVE_MAGIC) or len(head) < SAVE_HEADER_SIZE:
            raise InvalidArgumentError(f"{path} is not a virtabs qemu saved-state file")
        try:
            meta = json.loads(head[len(SAVE_MAGIC) :].rstrip(b"\0"))
        except ValueError:
            raise InvalidArgumentError(f"{path}: corrupt saved-state header") from None
        name = meta["name"]
        try:
            rec = self._load(name)
            if rec["uuid"] != meta["uuid"]:
                raise OperationInvalidError(f"{path} belongs to another domain named {name!r} (UUID {meta['uuid']})")
        except NoDomainError:
            self.define_domain(DomainSpec.from_dict(meta["spec"]))
            rec = self._load(name)
        saved_spec = DomainSpec.from_dict(meta["spec"])
        rec_for_launch = dict(rec)
        rec_for_launch["spec"] = saved_spec.to_dict()
        incoming = incoming_from_file(path, SAVE_HEADER_SIZE)
        self._launch(rec_for_launch, paused=not meta.get("running", True), incoming=incoming)
        self._lifecycle(rec, LifecycleEventType.STARTED, "restored")
        return self._ref(rec)

    # ------------------------------------------------------------------ snapshots (internal qcow2)

    def _snap_meta(self, rec: dict[str, Any], name: str) -> dict[str, Any]:
        for s in rec.get("snapshots", []):
            if s["name"] == name:
                return dict(s)
        raise NoSnapshotError(f"domain {rec['spec']['name']!r} has no snapshot named {name!r}")

    @staticmethod
    def _snapshot(rec: dict[str, Any], meta: dict[str, Any]) -> Snapshot:
        return Snapshot(
            name=meta["name"],
            domain=rec["spec"]["name"],
            created_at=_dt.datetime.fromisoformat(meta["created"]),
            state=DomainState(meta["state"]),
            parent=meta.get("parent"),
            kind="internal",
        )

    def _writable_disks(self, spec: DomainSpec) -> list[DiskSpec]:
        disks = [d for d in spec.disks if not d.readonly]
        bad = [d.target for d in disks if d.format != "qcow2"]
        if bad:
            raise OperationFailedError(
                f"domain {spec.name!r}: internal snapshots need qcow2 disks; {', '.join(bad)} is not qcow2"
            )
        return disks

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """``savevm`` (running: disks + RAM) or ``qemu-img snapshot -c`` on every disk (inactive: disks only)."""
        self._check_writable()
        if not name or any(c in name for c in "\0\n\"'"):
            raise InvalidArgumentError(f"invalid snapshot name {name!r}")
        with self._lock(dom.name).hold():
            rec = self._record(dom)
            spec = self._spec(rec)
            if any(s["name"] == name for s in rec.get("snapshots", [])):
                raise OperationInvalidError(f"domain {dom.name!r} already has a snapshot named {name!r}")
            disks = self._writable_disks(spec)
            state, _ = self._native_state(dom.name)
            if state.is_active:
                with self._monitor(dom) as q:
                    out = q.hmp(f"savevm {name}", timeout=max(600.0, self.timeout))
                if out.strip():
                    raise OperationFailedError(f"domain {dom.name!r}: savevm {name} failed: {out.strip()}")
            else:
                state = DomainState.SHUTOFF
                done: list[DiskSpec] = []
                try:
                    for d in disks:
                        _img.snapshot("-c", d.path, d.format, name)
                        done.append(d)
                except VirtabsError:
                    for d in done:
                        with contextlib.suppress(VirtabsError):
                            _img.snapshot("-d", d.path, d.format, name)
                    raise
            meta = {"name": name, "created": _now_iso(), "state": int(state), "parent": rec.get("current_snapshot")}
            rec.setdefault("snapshots", []).append(meta)
            rec["current_snapshot"] = name
            self._store(dom.name, rec)
            return self._snapshot(rec, meta)

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """From the definition's snapshot metadata, oldest first."""
        rec = self._record(dom)
        return [self._snapshot(rec, m) for m in rec.get("snapshots", [])]

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """``loadvm`` (running snapshot), ``-loadvm`` at start, or ``qemu-img snapshot -a`` (disk-only)."""
        self._check_writable()
        with self._lock(dom.name).hold():
            rec = self._record(dom)
            meta = self._snap_meta(rec, name)
            spec = self._spec(rec)
            snap_state = DomainState(meta["state"])
            state, _ = self._native_state(dom.name)
            if snap_state == DomainState.SHUTOFF:
                if state.is_active:
                    raise OperationInvalidError(
                        f"snapshot {name!r} of domain {dom.name!r} is disk-only; stop the domain before reverting"
                    )
                for d in self._writable_disks(spec):
                    _img.snapshot("-a", d.path, d.format, name)
            elif state.is_active:
                with self._monitor(dom) as q:
                    out = q.hmp(f"loadvm {name}", timeout=max(600.0, self.timeout))
                    if out.strip():
                        raise OperationFailedError(f"domain {dom.name!r}: loadvm {name} failed: {out.strip()}")
                    q.execute("cont" if snap_state == DomainState.RUNNING else "stop")
            else:
                self._launch(rec, paused=snap_state != DomainState.RUNNING, loadvm=name)
                self._lifecycle(rec, LifecycleEventType.STARTED, "from-snapshot")
            rec["current_snapshot"] = name
            self._store(dom.name, rec)

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """``delvm`` (running) or ``qemu-img snapshot -d`` (inactive); children are re-parented."""
        self._check_writable()
        with self._lock(dom.name).hold():
            rec = self._record(dom)
            meta = self._snap_meta(rec, name)
            spec = self._spec(rec)
            state, _ = self._native_state(dom.name)
            if state.is_active:
                with self._monitor(dom) as q:
                    out = q.hmp(f"delvm {name}", timeout=max(600.0, self.timeout))
                if out.strip():
                    raise OperationFailedError(f"domain {dom.name!r}: delvm {name} failed: {out.strip()}")
            else:
                for d in self._writable_disks(spec):
                    with contextlib.suppress(VirtabsError):
                        _img.snapshot("-d", d.path, d.format, name)
            snaps = []
            for s in rec.get("snapshots", []):
                if s["name"] == name:
                    continue
                if s.get("parent") == name:
                    s["parent"] = meta.get("parent")
                snaps.append(s)
            rec["snapshots"] = snaps
            if rec.get("current_snapshot") == name:
                rec["current_snapshot"] = meta.get("parent")
            self._store(dom.name, rec)

    # ------------------------------------------------------------------ devices

    def _device_node(self, q: QMPClient, target: str) -> dict[str, Any] | None:
        """The ``inserted`` entry of the device whose qdev id is ``target`` (query-block)."""
        for entry in q.execute("query-block"):
            qdev = str(entry.get("qdev", ""))
            if qdev in (target, f"/machine/peripheral/{target}") or qdev.startswith(f"/machine/peripheral/{target}/"):
                inserted = entry.get("inserted")
                return dict(inserted) if isinstance(inserted, dict) else None
        return None

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """Running: ``blockdev-add`` (file + format node) and ``device_add``. Always persisted."""
        self._check_writable()
        with self._lock(dom.name).hold():
            rec = self._record(dom)
            spec = self._spec(rec)
            if any(d.target == disk.target for d in spec.disks):
                raise OperationInvalidError(f"domain {dom.name!r} already has a disk {disk.target}")
            if not os.path.exists(disk.path):
                raise InvalidArgumentError(f"disk {disk.target}: image {disk.path} does not exist")
            _img.chain(disk.path, disk.format)
            disk = DiskSpec(
                target=disk.target,
                path=os.path.abspath(disk.path),
                format=disk.format,
                bus=disk.bus,
                readonly=disk.readonly,
            )
            if self._pid(dom.name) is not None:
                run = self._run(dom.name)
                with self._monitor(dom) as q:
                    added: list[str] = []
                    try:
                        port = None
                        if disk.bus == "virtio":
                            used = set(run["ports"].values())
                            free = [p for p in HOTPLUG_PORTS if p not in used]
                            if not free:
                                raise OperationFailedError(f"domain {dom.name!r}: no free PCIe port for {disk.target}")
                            port = free[0]
                        elif disk.bus == "scsi" and not any(d.bus == "scsi" for d in spec.disks):
                            if "scsi0" not in run["ports"]:
                                used = set(run["ports"].values())
                                free = [p for p in HOTPLUG_PORTS if p not in used]
                                if not free:
                                    raise OperationFailedError(f"domain {dom.name!r}: no free PCIe port for scsi0")
                                q.execute("device_add", {"driver": "virtio-scsi-pci", "id": "scsi0", "bus": free[0]})
                                run["ports"]["scsi0"] = free[0]
                        elif disk.bus not in ("scsi",):
                            raise NotSupportedError(f"hot-plug of {disk.bus} disk {disk.target} is not supported")
                        for node in blockdev_nodes(disk):
                            q.execute("blockdev-add", node)
                            added.append(node["node-name"])
                        q.execute("device_add", device_for_disk(disk, port))
                    except BaseException:
                        for node_name in reversed(added):
                            with contextlib.suppress(VirtabsError):
                                q.execute("blockdev-del", {"node-name": node_name})
                        raise
                    if port:
                        run["ports"][disk.target] = port
                    self._store_run(dom.name, run)
            new = spec.to_dict()
            new["disks"] = [*new["disks"], DomainSpec.from_dict({**new, "disks": [disk]}).to_dict()["disks"][0]]
            rec["spec"] = DomainSpec.from_dict(new).to_dict()
            self._store(dom.name, rec)

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """Running: ``device_del``, wait for DEVICE_DELETED, ``blockdev-del``. Always persisted."""
        self._check_writable()
        with self._lock(dom.name).hold():
            rec = self._record(dom)
            spec = self._spec(rec)
            if not any(d.target == target for d in spec.disks):
                raise InvalidArgumentError(f"domain {dom.name!r} has no disk {target}")
            if self._pid(dom.name) is not None:
                run = self._run(dom.name)
                with self._monitor(dom) as q:
                    inserted = self._device_node(q, target)
                    q.execute("device_del", {"id": target})
                    wait = min(self.timeout, 10.0)
                    if q.wait_event({"DEVICE_DELETED"}, wait, {"device": target}) is None:
                        raise OperationTimeoutError(
                            f"domain {dom.name!r}: the guest did not release disk {target} within {wait:g}s "
                            "(virtio-blk unplug needs the guest's cooperation); the removal stays requested"
                        )
                    for node in (inserted or {}).get("node-name"), fmt_node_name(target), file_node_name(target):
                        if node:
                            with contextlib.suppress(VirtabsError):
                                q.execute("blockdev-del", {"node-name": node})
                run["ports"].pop(target, None)
                self._store_run(dom.name, run)
            new = spec.to_dict()
            new["disks"] = [d for d in new["disks"] if d["target"] != target]
            rec["spec"] = DomainSpec.from_dict(new).to_dict()
            self._store(dom.name, rec)

    # ------------------------------------------------------------------ block jobs

    def _disk(self, spec: DomainSpec, target: str) -> DiskSpec:
        for d in spec.disks:
            if d.target == target:
                return d
        raise InvalidArgumentError(f"domain {spec.name!r} has no disk {target}")

    def _node_for_path(self, q: QMPClient, path: str) -> str:
        """The format node whose image is ``path`` (query-named-block-nodes)."""
        want = os.path.realpath(path)
        for node in q.execute("query-named-block-nodes", {"flat": True}):
            if node.get("drv") in ("file", "host_device"):
                continue
            if os.path.realpath(str(node.get("file", ""))) == want:
                return str(node["node-name"])
        raise InvalidArgumentError(f"image {path} is not part of the disk's open backing chain")

    def _start_job(
        self, dom: DomainRef, target: str, job: dict[str, Any], command: str, args: dict[str, Any], q: QMPClient
    ) -> None:
        run = self._run(dom.name)
        self._reconcile(dom.name, q, run)
        run = self._run(dom.name)
        if target in run["jobs"]:
            raise OperationInvalidError(f"disk {target} of domain {dom.name!r} already has an active block job")
        job.update({"id": _job_id(target), "started": _now_iso(), "intent": None})
        run["jobs"][target] = job
        self._store_run(dom.name, run)  # before QEMU knows the job: a crash leaves a record, never a lost job
        try:
            q.execute(command, args)
        except BaseException:
            run = self._run(dom.name)
            run["jobs"].pop(target, None)
            self._store_run(dom.name, run)
            raise

    def block_pull(self, dom: DomainRef, disk: str, base: str | None, bandwidth_bytes: int) -> None:
        """``block-stream`` (``base-node`` when ``base`` is given), ``auto-dismiss: false``."""
        self._check_writable()
        with self._monitor(dom) as q:
            spec = self._spec(self._record(dom))
            self._disk(spec, disk)
            top = self._device_node(q, disk)
            if top is None:
                raise OperationFailedError(f"domain {dom.name!r}: disk {disk} has no medium")
            args: dict[str, Any] = {"job-id": _job_id(disk), "device": top["node-name"], "auto-dismiss": False}
            if base:
                args["base-node"] = self._node_for_path(q, base)
            if bandwidth_bytes:
                args["speed"] = bandwidth_bytes
            self._start_job(dom, disk, {"kind": "pull", "base": base}, "block-stream", args, q)

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """``drive-mirror`` into ``request.dest`` with an explicit format (``auto-dismiss: false``)."""
        if request.dest_is_block_device:
            raise NotSupportedError(f"the qemu driver does not copy disk {disk} onto a block device (block.copy.dev)")
        self._check_writable()
        dest = request.dest  # the public layer has checked it is absolute
        with self._monitor(dom) as q:
            spec = self._spec(self._record(dom))
            src = self._disk(spec, disk)
            top = self._device_node(q, disk)
            if top is None:
                raise OperationFailedError(f"domain {dom.name!r}: disk {disk} has no medium")
            chain = _img.backing_paths(_img.chain(src.path, src.format))
            shallow = request.shallow and bool(chain)
            exists = os.path.exists(dest)
            if request.reuse_existing:
                if not exists:
                    raise InvalidArgumentError(f"block copy of disk {disk}: reused destination {dest} does not exist")
                # With COPY_RAW the public layer sets format="raw": we never probe then.
                fmt = request.format or _img.probe_format(dest)
                mode = "existing"
            else:
                if exists and not request.dest_is_block_device and os.path.getsize(dest) > 0:
                    raise OperationInvalidError(
                        f"block copy of disk {disk}: destination {dest} exists and is not empty (use REUSE_EXT)"
                    )
                fmt = request.format or src.format
                if shallow and fmt == "raw":
                    raise InvalidArgumentError(
                        f"shallow copy of disk {disk} of domain {dom.name!r} into a raw file is not possible"
                    )
                mode = "absolute-paths"
                if exists:
                    os.unlink(dest)
            node = f"mirror{int(time.time() * 1000) % 10**9}-{disk}"[:31]
            args: dict[str, Any] = {
                "job-id": _job_id(disk),
                "device": top["node-name"],
                "target": dest,
                "format": fmt,
                "sync": "top" if shallow else "full",
                "mode": mode,
                "node-name": node,
                "auto-dismiss": False,
            }
            if request.bandwidth_bytes:
                args["speed"] = request.bandwidth_bytes
            if request.granularity:
                args["granularity"] = request.granularity
            if request.buf_size:
                args["buf-size"] = request.buf_size
            if request.synchronous_writes:
                args["copy-mode"] = "write-blocking"
            job = {
                "kind": "copy",
                "dest": dest,
                "dest_format": fmt,
                "source": src.path,
                "source_node": top["node-name"],
                "target_node": node,
            }
            self._start_job(dom, disk, job, "drive-mirror", args, q)

    def block_commit(self, dom: DomainRef, disk: str, request: BlockCommitRequest) -> None:
        """``block-commit`` (``top-node``/``base-node``); active layer: two-phase, pivot with ``job-complete``."""
        self._check_writable()
        if request.relative:
            raise NotSupportedError(f"the qemu driver cannot keep relative backing names (disk {disk})")
        with self._monitor(dom) as q:
            spec = self._spec(self._record(dom))
            src = self._disk(spec, disk)
            top_entry = self._device_node(q, disk)
            if top_entry is None:
                raise OperationFailedError(f"domain {dom.name!r}: disk {disk} has no medium")
            layers = _img.chain(src.path, src.format)
            paths = [os.path.abspath(src.path), *_img.backing_paths(layers)]
            formats = [src.format] + [str(layer.get("format")) for layer in layers[1:]]
            if len(paths) < 2:
                raise OperationInvalidError(f"disk {disk} of domain {dom.name!r} has no backing image to commit into")
            real = [os.path.realpath(p) for p in paths]
            base = request.base or paths[-1]
            top = None if request.active else request.top
            if os.path.realpath(base) not in real:
                raise InvalidArgumentError(f"base {base} is not in the backing chain of disk {disk}")
            ib = real.index(os.path.realpath(base))
            it = 0 if top is None else (real.index(os.path.realpath(top)) if os.path.realpath(top) in real else -1)
            if it < 0:
                raise InvalidArgumentError(f"top {top} is not in the backing chain of disk {disk}")
            if it >= ib:
                raise InvalidArgumentError(f"top {top} of disk {disk} is not above base {base}")
            args: dict[str, Any] = {
                "job-id": _job_id(disk),
                "device": top_entry["node-name"],
                "base-node": self._node_for_path(q, paths[ib]),
                "auto-dismiss": False,
            }
            if top is not None:
                args["top-node"] = self._node_for_path(q, paths[it])
            if request.bandwidth_bytes:
                args["speed"] = request.bandwidth_bytes
            job = {
                "kind": "commit" if top is not None else "active_commit",
                "base": paths[ib],
                "base_format": formats[ib],
                "top": paths[it],
                "delete": paths[it:ib] if request.delete else [],
                "source_node": top_entry["node-name"],
            }
            self._start_job(dom, disk, job, "block-commit", args, q)

    def _reconcile(self, name: str, q: QMPClient, run: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Finish concluded jobs (update the definition, dismiss, emit); return QEMU's live jobs by id."""
        run = self._run(name) if run is None else run
        live = {str(j["id"]): j for j in q.execute("query-jobs")}
        changed = False
        for target, job in list(run["jobs"].items()):
            qjob = live.get(job["id"])
            if qjob is not None and qjob.get("status") not in ("concluded", "null"):
                if qjob.get("status") in ("ready", "standby") or (
                    qjob.get("type") == "mirror" and qjob.get("status") == "ready"
                ):
                    self._emit_ready(name, target)
                continue
            error = qjob.get("error") if qjob else None
            status = self._finish_job(name, q, target, job, error)
            if qjob is not None:
                with contextlib.suppress(QMPError):
                    q.execute("job-dismiss", {"id": job["id"]})
                live.pop(job["id"], None)
            del run["jobs"][target]
            changed = True
            self._outcomes[(name, target)] = (status, error)
            rec = self._load(name)
            self.emit(
                BlockJobEvent(
                    domain=name,
                    uuid=rec["uuid"],
                    disk=target,
                    job_type=_KIND_TYPES[job["kind"]],
                    status=status,
                    error=error,
                )
            )
        if changed:
            self._store_run(name, run)
        return live

    def _finish_job(
        self, name: str, q: QMPClient, target: str, job: dict[str, Any], error: str | None
    ) -> BlockJobStatus:
        """Decide how a concluded job ended from what QEMU's graph shows, and persist the result."""
        kind = job["kind"]
        inserted = self._device_node(q, target) or {}
        current = os.path.realpath(str(inserted.get("file", "")))
        new_path: str | None = None
        new_format: str | None = None
        if kind == "copy":
            if current == os.path.realpath(job["dest"]):
                status, new_path, new_format = BlockJobStatus.COMPLETED, job["dest"], job["dest_format"]
            elif error and job.get("intent") != "abort":
                status = BlockJobStatus.FAILED
            else:
                status = BlockJobStatus.CANCELED
        elif kind == "active_commit":
            if current == os.path.realpath(job["base"]):
                status, new_path, new_format = BlockJobStatus.COMPLETED, job["base"], job["base_format"]
            elif error and job.get("intent") != "abort":
                status = BlockJobStatus.FAILED
            else:
                status = BlockJobStatus.CANCELED
        elif job.get("intent") == "abort":
            status = BlockJobStatus.CANCELED
        else:
            status = BlockJobStatus.FAILED if error else BlockJobStatus.COMPLETED
        if new_path is not None and new_format is not None:
            rec = self._load(name)
            spec = rec["spec"]
            for d in spec["disks"]:
                if d["target"] == target:
                    d["path"] = new_path
                    d["format"] = new_format
            rec["spec"] = DomainSpec.from_dict(spec).to_dict()
            self._store(name, rec)
            for node in (job.get("source_node"), file_node_name(target)):
                if node and node != inserted.get("node-name"):
                    with contextlib.suppress(VirtabsError):
                        q.execute("blockdev-del", {"node-name": node})
        if status == BlockJobStatus.COMPLETED and job.get("delete"):
            for path in job["delete"]:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        return status

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """``query-block-jobs``; ``cur`` is held at ``end - 1`` until the job is ready."""
        self._record(dom)
        return self._job_info(dom.name, disk)

    def _job_info(self, name: str, disk: str) -> BlockJobInfo | None:
        if self._pid(name) is None:
            return None
        with self._monitor(name) as q:
            self._reconcile(name, q)
            run = self._run(name)
            job = run["jobs"].get(disk)
            if job is None:
                return None
            for bj in q.execute("query-block-jobs"):
                if bj.get("device") == job["id"]:
                    cur, end, ready = int(bj.get("offset", 0)), int(bj.get("len", 0)), bool(bj.get("ready"))
                    if not ready:
                        end = max(end, 1)  # QEMU starts at 0/0: that would read as "done"
                        cur = min(cur, end - 1)
                    return BlockJobInfo(
                        type=_KIND_TYPES[job["kind"]],
                        cur=cur,
                        end=end,
                        bandwidth=int(bj.get("speed", 0)),
                        ready=ready,
                        disk=disk,
                    )
            # Recorded but not (yet/anymore) in QEMU: report it as just starting.
            return BlockJobInfo(type=_KIND_TYPES[job["kind"]], cur=0, end=1, bandwidth=0, ready=False, disk=disk)

    def block_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        """Every job of the domain."""
        return [i for d in self._spec(self._record(dom)).disks if (i := self._job_info(dom.name, d.target))]

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Pivot: ``job-complete``. Cancel: ``block-job-cancel`` (stay on the source).

        A pivot is awaited here: only this driver can tell a completed pivot from one QEMU failed
        (the core then sees the job gone at once); a cancel returns and the core waits.
        """
        wait = pivot
        self._check_writable()
        with self._monitor(dom) as q:
            live = self._reconcile(dom.name, q)
            run = self._run(dom.name)
            job = run["jobs"].get(disk)
            if job is None:
                raise OperationInvalidError(f"disk {disk} of domain {dom.name!r} has no active block job")
            qjob = live.get(job["id"])
            # An intent whose command QEMU never got (the asking process died in between) may be retried.
            if job.get("intent") and (qjob is None or qjob.get("status") in ("aborting", "waiting", "pending")):
                raise OperationInvalidError(f"block job on disk {disk} of domain {dom.name!r} is still being ended")
            if pivot:
                if job["kind"] not in ("copy", "active_commit"):
                    raise OperationInvalidError(f"a {job['kind']} job on disk {disk} cannot pivot")
                if qjob is None or qjob.get("status") != "ready":
                    raise BlockCopyActiveError(
                        f"block job on disk {disk} of domain {dom.name!r} not ready for pivot yet"
                    )
                job["intent"] = "pivot"
                self._store_run(dom.name, run)
                try:
                    q.execute("job-complete", {"id": job["id"]})
                except BaseException:
                    job["intent"] = None
                    self._store_run(dom.name, run)
                    raise
            else:
                job["intent"] = "abort"
                self._store_run(dom.name, run)
                with contextlib.suppress(QMPError):  # already concluding by itself: reconcile settles it
                    q.execute("block-job-cancel", {"device": job["id"], "force": False})
            self._outcomes.pop((dom.name, disk), None)
        if not wait:
            return
        deadline = time.monotonic() + max(120.0, self.timeout)
        while True:
            with self._monitor(dom) as q:
                self._reconcile(dom.name, q)
            outcome = self._outcomes.get((dom.name, disk))
            if outcome is not None:
                status, error = outcome
                if pivot and status != BlockJobStatus.COMPLETED:
                    raise OperationFailedError(
                        f"block job on disk {disk} of domain {dom.name!r} failed while pivoting: {error or status.name}"
                    )
                return
            if time.monotonic() > deadline:
                raise OperationTimeoutError(f"block job on disk {disk} of domain {dom.name!r} did not end in time")
            time.sleep(0.05)

    def block_job_set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        """``block-job-set-speed``."""
        self._check_writable()
        with self._monitor(dom) as q:
            self._reconcile(dom.name, q)
            job = self._run(dom.name)["jobs"].get(disk)
            if job is None:
                raise OperationInvalidError(f"disk {disk} of domain {dom.name!r} has no active block job")
            q.execute("block-job-set-speed", {"device": job["id"], "speed": bandwidth_bytes})

    # ------------------------------------------------------------------ storage (directory pools)

    def _pools(self) -> dict[str, str]:
        pools = {"default": self.dirs.images}
        with contextlib.suppress(FileNotFoundError):
            for fname in sorted(os.listdir(self.dirs.pools)):
                if fname.endswith(".json") and not fname.startswith("."):
                    data = read_json(os.path.join(self.dirs.pools, fname))
                    if isinstance(data, dict) and data.get("type", "dir") == "dir" and data.get("path"):
                        pools[fname[:-5]] = os.path.abspath(str(data["path"]))
        return pools

    def _pool_path(self, pool: str) -> str:
        path = self._pools().get(pool)
        if path is None:
            raise NoStoragePoolError(f"no storage pool named {pool!r}")
        os.makedirs(path, exist_ok=True)
        return path

    def _pool_of(self, path: str) -> str | None:
        directory = os.path.dirname(os.path.realpath(path))
        for name, ppath in self._pools().items():
            if os.path.realpath(ppath) == directory:
                return name
        return None

    def _pool_info(self, name: str, path: str) -> PoolInfo:
        os.makedirs(path, exist_ok=True)
        st = os.statvfs(path)
        cap = st.f_blocks * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        return PoolInfo(
            name=name,
            type="dir",
            capacity_bytes=cap,
            allocation_bytes=cap - st.f_bfree * st.f_frsize,
            available_bytes=avail,
            path=path,
            active=True,
        )

    def list_storage_pools(self) -> list[PoolInfo]:
        """``default`` (the images directory) plus <config>/pools/NAME.json ``{"type": "dir", "path": ...}``."""
        return [self._pool_info(n, p) for n, p in self._pools().items()]

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """A pool by name."""
        return self._pool_info(name, self._pool_path(name))

    def _vol_meta_file(self, pool_path: str) -> str:
        return os.path.join(pool_path, ".virtabs-volumes.json")

    def _vol_formats(self, pool_path: str) -> dict[str, str]:
        data = read_json(self._vol_meta_file(pool_path))
        return dict(data) if isinstance(data, dict) else {}

    def _vol_format(self, pool_path: str, name: str) -> str:
        fmt = self._vol_formats(pool_path).get(name)
        if fmt:
            return fmt
        # Not created here: read the magic only (display; never used to open it for a guest unchecked).
        try:
            with open(os.path.join(pool_path, name), "rb") as fh:
                magic = fh.read(4)
        except OSError:
            return "raw"
        return "qcow2" if magic == b"QFI\xfb" else "raw"

    def _volume(self, pool: str, pool_path: str, name: str) -> VolumeInfo:
        path = os.path.join(pool_path, name)
        if not os.path.isfile(path):
            raise NoStorageVolumeError(f"no volume {name!r} in storage pool {pool!r}")
        fmt = self._vol_format(pool_path, name)
        layers = _img.chain(path, fmt)
        return VolumeInfo(
            name=name,
            pool=pool,
            path=path,
            format=fmt,
            capacity_bytes=int(layers[0].get("virtual-size", 0)),
            allocation_bytes=layers[0].get("actual-size"),
            backing_chain=_img.backing_paths(layers),
        )

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Regular files of the pool directory (``qemu-img info -f FORMAT --backing-chain``)."""
        path = self._pool_path(pool)
        out = []
        for fname in sorted(os.listdir(path)):
            if fname.startswith(".") or not os.path.isfile(os.path.join(path, fname)):
                continue
            with contextlib.suppress(VirtabsError):
                out.append(self._volume(pool, path, fname))
        return out

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A volume by name."""
        return self._volume(pool, self._pool_path(pool), name)

    def create_volume(self, pool: str, name: str, capacity_bytes: int, format: str, backing: str | None) -> VolumeInfo:
        """``qemu-img create -f FORMAT [-b BACKING -F BACKING_FORMAT]``."""
        self._check_writable()
        path = self._pool_path(pool)
        if not name or "/" in name or name.startswith("."):
            raise InvalidArgumentError(f"invalid volume name {name!r}")
        vpath = os.path.join(path, name)
        if os.path.exists(vpath):
            raise OperationInvalidError(f"volume {name!r} already exists in storage pool {pool!r}")
        backing_path = backing_fmt = None
        if backing:
            backing_path = backing if os.path.isabs(backing) else os.path.join(path, backing)
            if not os.path.exists(backing_path):
                raise InvalidArgumentError(f"backing volume {backing} does not exist")
            bpool = os.path.dirname(os.path.realpath(backing_path))
            backing_fmt = self._vol_format(bpool, os.path.basename(backing_path))
        with file_lock(os.path.join(path, ".virtabs-volumes.lock")):
            _img.create(vpath, format, capacity_bytes or None, backing_path, backing_fmt)
            meta = self._vol_formats(path)
            meta[name] = format
            write_json_atomic(self._vol_meta_file(path), meta)
        return self._volume(pool, path, name)

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove the file and its recorded format."""
        self._check_writable()
        path = self._pool_path(pool)
        vpath = os.path.join(path, name)
        if not os.path.isfile(vpath):
            raise NoStorageVolumeError(f"no volume {name!r} in storage pool {pool!r}")
        with file_lock(os.path.join(path, ".virtabs-volumes.lock")):
            os.unlink(vpath)
            meta = self._vol_formats(path)
            if meta.pop(name, None) is not None:
                write_json_atomic(self._vol_meta_file(path), meta)

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``qemu-img resize -f FORMAT`` (``--shrink`` when smaller)."""
        self._check_writable()
        path = self._pool_path(pool)
        vol = self._volume(pool, path, name)
        _img.resize(vol.path, vol.format, capacity_bytes, shrink=capacity_bytes < vol.capacity_bytes)
        return self._volume(pool, path, name)


# ---------------------------------------------------------------------- process helpers


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cpu_time_ns(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _trim(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "..."

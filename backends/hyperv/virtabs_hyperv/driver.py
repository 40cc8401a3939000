"""The ``hyperv`` driver: Microsoft Hyper-V through its PowerShell cmdlets over WinRM.

Every operation is one PowerShell script (``_scripts``) run through one WinRM command; every value goes
into the script as base64 JSON data, never as script text. Bulk reads (the domain list, the inventory)
are one script each. PowerShell errors (CLIXML on stderr) become virtabs errors carrying the cmdlet's
message; WinRM failures become AuthError, ConnectError or OperationTimeoutError.

Nothing here was run against a real Hyper-V host: the tests drive it through pywinrm against the
WS-Management simulator in ``tests/wsman_sim`` (see ``docs/drivers/hyperv.md``).

This module imports only ``virtabs.spi`` at import time; pywinrm is imported when a connection opens.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from virtabs.spi import (
    URI,
    AuthError,
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
    DomainStatus,
    Driver,
    DriverUnavailableError,
    EventPoller,
    HostInfo,
    InvalidArgumentError,
    NetworkAttachment,
    NetworkInfo,
    NetworkKind,
    NicInfo,
    NicSpec,
    NoDomainError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    PoolInfo,
    Snapshot,
    VirtabsError,
    VolumeInfo,
    quote,
)

from ._clixml import ErrorRecord, parse_errors, trapped_error
from ._migration import HypervMigration
from ._psjson import PSJsonError, as_datetime, as_int, as_list, as_str, parse
from ._scripts import SCRIPTS, ScriptTooLong, command_line
from ._states import libvirt_state, native_name
from ._targets import IDE, SCSI, slot_for, target_for

if TYPE_CHECKING:
    from ._winrm import RunningCommand, WinRMClient

__all__ = ["HypervDriver"]

log = logging.getLogger("virtabs.hyperv")

POOL = "default"
_FORMATS = {2: "vhd", 3: "vhdx", 4: "vhdset"}
_FAILURE_CLASSES: dict[str, type[VirtabsError]] = {
    "auth": AuthError,
    "connect": ConnectError,
    "timeout": OperationTimeoutError,
    "usage": InvalidArgumentError,
}


def _mac(raw: str | None) -> str | None:
    """``00155D0001A2`` -> ``00:15:5d:00:01:a2``."""
    if not raw:
        return None
    hexdigits = raw.replace(":", "").replace("-", "").lower()
    if len(hexdigits) != 12:
        return None
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def _state(value: Any) -> tuple[DomainState, str]:
    native = native_name(value if isinstance(value, int | str) else None)
    return DomainState[libvirt_state(native).upper()], native


def _basename(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


def _dirname(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[0] if "\\" in path.replace("/", "\\") else ""


class _CopyJob:
    """One Move-VMStorage running in a WinRM shell of its own."""

    def __init__(self, dom: DomainRef, disk: str, src: str, dst: str, end: int, cmd: RunningCommand) -> None:
        self.dom, self.disk, self.src, self.dst, self.end, self.cmd = dom, disk, src, dst, end, cmd
        self.done = threading.Event()
        self.error: str | None = None
        self.aborted = False


_SAVED = ("Saved", "FastSaved")
"""The VM states that hold a saved state (a managed save: Start-VM resumes it)."""
_SWITCH_KINDS = {
    "External": NetworkKind.EXTERNAL_SWITCH,
    "Internal": NetworkKind.INTERNAL_SWITCH,
    "Private": NetworkKind.PRIVATE_SWITCH,
}
"""Get-VMSwitch's SwitchType (VMSwitchType's names) -> the portable kind."""


def _networks(raw: Any) -> list[NetworkInfo]:
    """Switches and adapters of one ``network.list`` run: a switch's VLANs are its adapters' access VLANs and
    trunks' native VLANs (a trunk's allowed list stays in ``extra["hyperv.trunk_vlans"]``, it can be 1-4094)."""
    raw = raw or {}
    attached: dict[str, list[NetworkAttachment]] = {}
    vlans: dict[str, set[int]] = {}
    trunks: dict[str, list[str]] = {}
    for n in as_list(raw.get("Nics")):
        switch = as_str(n.get("Switch"))
        if not switch:
            continue  # not connected
        attached.setdefault(switch, []).append(
            NetworkAttachment(as_str(n.get("Vm")).lower(), as_str(n.get("VmName")), _mac(as_str(n.get("Mac"))))
        )
        mode = as_str(n.get("Mode"))
        vid = as_int(n.get("Access")) if mode == "Access" else as_int(n.get("Native")) if mode == "Trunk" else 0
        if vid and 0 < vid < 4095:
            vlans.setdefault(switch, set()).add(vid)
        if mode == "Trunk" and as_str(n.get("Allowed")):
            trunks.setdefault(switch, []).append(as_str(n.get("Allowed")))
    out = []
    for sw in as_list(raw.get("Switches")):
        name, native = as_str(sw.get("Name")), as_str(sw.get("Type"))
        adapter = as_str(sw.get("Adapter")) or None
        out.append(
            NetworkInfo(
                name=name,
                id=as_str(sw.get("Id")).lower() or None,
                kind=_SWITCH_KINDS.get(native, NetworkKind.OTHER),
                native_kind=native,
                device=adapter,
                vlan_ids=tuple(sorted(vlans.get(name, ()))),
                attachments=tuple(attached.get(name, ())),
                extra={"hyperv.trunk_vlans": tuple(trunks[name])} if name in trunks else {},
            )
        )
    return out


class HypervDriver(HypervMigration, Driver):
    """Hyper-V over WinRM: ``hyperv://HOST/`` (HTTPS 5986, certificate verified, NTLM)."""

    name = "hyperv"
    description = "Microsoft Hyper-V over WinRM (Hyper-V PowerShell cmdlets through pywinrm)"
    capabilities = Capabilities.of(
        Capability.DOMAIN_DEFINE,
        Capability.DOMAIN_START,
        Capability.DOMAIN_SHUTDOWN,
        Capability.DOMAIN_DESTROY,
        Capability.DOMAIN_REBOOT,
        Capability.DOMAIN_SUSPEND,
        Capability.DOMAIN_MANAGED_SAVE,
        Capability.DOMAIN_SNAPSHOT,
        Capability.DOMAIN_DISK_HOTPLUG,
        Capability.BLOCK_COPY,
        Capability.BLOCK_COPY_MOVE_CHAIN,
        Capability.STORAGE_POOL,
        Capability.STORAGE_VOLUME,
        Capability.STORAGE_VOLUME_RESIZE,
        Capability.EVENTS,
        Capability.DOMAIN_MIGRATE,
        Capability.DOMAIN_MIGRATE_LIVE,
        Capability.DOMAIN_MIGRATE_COPY_STORAGE,
        Capability.NETWORK,
        notes={
            Capability.NETWORK: "Get-VMSwitch (External, Internal, Private) and every adapter's "
            "Get-VMNetworkAdapterVlan in one WinRM command; no subnets (a switch has none); read-only",
            Capability.DOMAIN_MIGRATE: "Move-VM -DestinationHost (live migration enabled between the hosts); "
            "always removes the source VM (UNDEFINE_SOURCE needed), no bandwidth or downtime limit, no abort",
            Capability.DOMAIN_MIGRATE_COPY_STORAGE: "Move-VM -IncludeStorage into the destination's "
            "VirtualHardDiskPath (whole disks: no NON_SHARED_INC)",
            Capability.DOMAIN_SHUTDOWN: "Stop-VM -Force through the guest's Shutdown integration service",
            Capability.DOMAIN_REBOOT: "Restart-VM -Force: a hard reset, not a guest reboot",
            Capability.DOMAIN_MANAGED_SAVE: "Save-VM (state Saved); Start-VM resumes; Remove-VMSavedState (2016+)",
            Capability.DOMAIN_DISK_HOTPLUG: "live only on SCSI (vdX); IDE (hdX) only while off",
            Capability.BLOCK_COPY: (
                "Move-VMStorage: copies, switches the VM over and deletes the source by itself; no ready phase, "
                "no bandwidth limit (block.bandwidth undeclared, reported as 0); abort terminates the command, jobs are seen by the "
                "connection that started them"
            ),
            Capability.BLOCK_COPY_MOVE_CHAIN: (
                "Move-VMStorage -Vhds moves a differencing VHDX with its parents (RetainVhdCopiesOnSource keeps "
                "them); no flattening copy: copy with BlockCopyFlags.MOVE_CHAIN"
            ),
            Capability.STORAGE_POOL: "one pool 'default': the host's VirtualHardDiskPath",
            Capability.STORAGE_VOLUME: "VHD/VHDX files (New-VHD, Remove-Item); no qcow2",
            Capability.STORAGE_VOLUME_RESIZE: "Resize-VHD",
            Capability.EVENTS: "lifecycle events by polling Get-VM (1 s)",
        },
    )
    uri_examples = (
        "hyperv://hv1.example.com/",
        "hyperv://hv1.example.com/?transport=http",
        "hyperv://hv1.example.com/?auth=basic&cafile=/etc/ssl/hv-ca.pem",
    )
    install_hint = "pip install virtabs-hyperv (installs pywinrm)"

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        try:
            from ._winrm import Endpoint, TransportFailure, WinRMClient
        except ImportError as exc:
            raise DriverUnavailableError(
                f"the hyperv driver needs pywinrm ({exc.name} is missing): {self.install_hint}"
            ) from None
        try:
            endpoint = Endpoint.from_uri(uri.host, uri.port, dict(uri.params))
        except TransportFailure as exc:
            raise InvalidArgumentError(exc.message) from None
        creds = options.credentials
        username = uri.user or (creds.username if creds else None)  # the URI's user wins, as in libvirt
        password = creds.password if creds else None
        if not username or not password:
            raise AuthError(
                f"hyperv://{endpoint.host}/ needs a username and password: pass credentials=, set "
                "VIRTABS_USERNAME and VIRTABS_PASSWORD, or add them to the virtabs config file"
            )
        self._client: WinRMClient = WinRMClient(endpoint, username, password, options.timeout)
        self._jobs: dict[tuple[str, str], _CopyJob] = {}
        self._jobs_lock = threading.Lock()
        self._poller: EventPoller | None = None
        self._host = self._run("host.info", {}, f"host {endpoint.host}")

    # --- running scripts -------------------------------------------------------------------------------

    def _run(
        self,
        op: str,
        args: dict[str, Any],
        what: str,
        not_found: type[VirtabsError] = OperationFailedError,
    ) -> Any:
        """Run the template ``op`` with ``args``; the parsed JSON it printed (None when nothing)."""
        from ._winrm import TransportFailure

        try:
            line = command_line(SCRIPTS[op].render(args))
        except ScriptTooLong as exc:
            raise InvalidArgumentError(f"{what}: {exc}") from None
        try:
            out, err, code = self._client.run(line)
        except TransportFailure as exc:
            raise _FAILURE_CLASSES[exc.kind](exc.message) from None
        trapped = trapped_error(out) if code != 0 else None
        records = [trapped] if trapped is not None else parse_errors(err)
        if code != 0 or records:
            raise self._error(records, code, what, not_found)
        try:
            return parse(out)
        except PSJsonError as exc:
            raise OperationFailedError(f"{what}: {exc}") from None

    @staticmethod
    def _error(records: list[ErrorRecord], code: int, what: str, not_found: type[VirtabsError]) -> VirtabsError:
        if not records:
            return OperationFailedError(f"{what}: PowerShell exited with code {code} and no error record")
        rec = records[0]
        if rec.has_id("VirtabsNoDomain"):
            return NoDomainError(f"{what} not found")
        if rec.has_id("VirtabsNoSnapshot"):
            return NoSnapshotError(f"{what} not found")
        if rec.has_id("VirtabsNoDisk"):
            return InvalidArgumentError(f"{what} not found")
        if rec.has_id("VirtabsTargetInUse"):
            return InvalidArgumentError(f"{what}: the target's controller slot already holds a disk")
        if rec.has_id("VirtabsDomainExists"):
            return OperationFailedError(f"{what} already exists (Hyper-V allows duplicates; virtabs does not)")
        message = f"{what}: {rec.message}"
        if rec.exception == "VirtualizationException" and rec.has_id("InvalidParameter"):
            # Get-VM / Get-VMSnapshot of something missing, had the host made it a terminating error (by the
            # error id and exception type: the message is in the host's language)
            return not_found(message)
        if rec.exception in ("ParameterBindingException", "CommandNotFoundException", "ParseException"):
            return OperationFailedError(f"{message} (the host's PowerShell rejected the driver's script)")
        if rec.category == "ObjectNotFound":
            return not_found(message)
        if rec.category in ("InvalidOperation", "ResourceBusy"):
            return OperationInvalidError(message)
        if rec.category == "InvalidArgument":
            return InvalidArgumentError(message)
        if rec.category in ("PermissionDenied", "SecurityError"):
            return AuthError(message)
        return OperationFailedError(message)

    # --- connection ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the event poller, terminate copy jobs still running, close the shells."""
        self.stop_events()
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.done.is_set():
                job.aborted = True
                job.cmd.terminate()
        self._client.close()

    def host_info(self) -> HostInfo:
        """Get-VMHost (read once when the connection opened)."""
        h = self._host or {}
        return HostInfo(
            hostname=as_str(h.get("Fqdn")) or as_str(h.get("Name")) or str(self.uri.host),
            hypervisor="Hyper-V",
            hypervisor_version=as_str(h.get("Os")),
            cpus=as_int(h.get("Cpus"), 0) or 0,
            memory_bytes=as_int(h.get("Mem"), 0) or 0,
        )

    def start_events(self) -> None:
        """Poll Get-VM every second and emit lifecycle events for changes."""
        if self._poller is None:
            self._poller = EventPoller(self._states, self.emit, interval=1.0, name="virtabs-hyperv-events")
            self._poller.start()

    def stop_events(self) -> None:
        """Stop the poller."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()

    def _states(self) -> dict[DomainRef, DomainState]:
        return {self._ref(v): _state(v.get("State"))[0] for v in as_list(self._run("vm.list", {}, "virtual machines"))}

    # --- domains: reads --------------------------------------------------------------------------------

    @staticmethod
    def _ref(v: dict[str, Any]) -> DomainRef:
        return DomainRef(as_str(v.get("Name")), as_str(v.get("Id")).lower())

    @staticmethod
    def _what(dom: DomainRef) -> str:
        return f"domain {quote(dom.name)}"

    def list_domains(self) -> list[DomainRef]:
        """Get-VM, one call."""
        return [self._ref(v) for v in as_list(self._run("vm.list", {}, "virtual machines"))]

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """By exact name, else by VMId (one Get-VM). Names are not unique on Hyper-V: a name that several
        VMs carry is refused (InvalidArgumentError naming their VMIds); look such a VM up by VMId."""
        refs = self.list_domains()
        named = [r for r in refs if r.name == name_or_uuid]
        if len(named) > 1:
            ids = ", ".join(r.uuid for r in named)
            raise InvalidArgumentError(
                f"{len(named)} virtual machines are called {quote(name_or_uuid)} (VMIds {ids}): look one up by its VMId"
            )
        if named:
            return named[0]
        wanted = name_or_uuid.lower()
        for r in refs:
            if r.uuid == wanted:
                return r
        raise NoDomainError(f"domain {quote(name_or_uuid)} not found")

    def _vm(self, dom: DomainRef) -> dict[str, Any]:
        v = self._run("vm.get", {"id": dom.uuid}, self._what(dom), NoDomainError)
        if not isinstance(v, dict):
            raise OperationFailedError(f"{self._what(dom)}: unexpected answer from Get-VM")
        return v

    def _info(self, v: dict[str, Any]) -> DomainInfo:
        state, native = _state(v.get("State"))
        startup = as_int(v.get("Mem"), 0) or 0
        assigned = as_int(v.get("Assigned"), 0) or 0
        return DomainInfo(
            name=as_str(v.get("Name")),
            uuid=as_str(v.get("Id")).lower(),
            state=state,
            native_state=native,
            vcpus=as_int(v.get("Cpu"), 1) or 1,
            memory_bytes=assigned or startup,
            max_memory_bytes=max(startup, assigned),
        )

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """Get-VM -Id: state (VMState mapped, the native name kept), vCPUs, memory. No CPU time."""
        return self._info(self._vm(dom))

    def domain_status(self, dom: DomainRef) -> DomainStatus:
        """One Get-VM plus the copy jobs this connection runs (no host call for jobs when there are none)."""
        state = _state(self._vm(dom).get("State"))[0]
        return DomainStatus(state, tuple(self.block_jobs(dom)))

    def _disks(self, raw: Any) -> list[DiskInfo]:
        out = []
        pool_dir = as_str((self._host or {}).get("VhdPath")).rstrip("\\").lower()
        for d in as_list(raw):
            ct = as_int(d.get("Ct"), SCSI)
            target = target_for(SCSI if ct is None else ct, as_int(d.get("Cn"), 0) or 0, as_int(d.get("Cl"), 0) or 0)
            path = as_str(d.get("Path"))
            out.append(
                DiskInfo(
                    target=target,
                    path=path,
                    format=_FORMATS.get(as_int(d.get("Fmt"), 0) or 0, "vhdx"),
                    bus="ide" if ct == IDE else "scsi",
                    capacity_bytes=as_int(d.get("Size")),
                    allocation_bytes=as_int(d.get("File")),
                    backing_chain=tuple(as_str(p) for p in as_list(d.get("Chain"))),
                    pool=POOL if _dirname(path).lower() == pool_dir else None,
                )
            )
        return sorted(out, key=lambda d: d.target)

    @staticmethod
    def _nics(raw: Any) -> list[NicInfo]:
        return [
            NicInfo(
                mac=_mac(as_str(n.get("Mac"))),
                network=as_str(n.get("Switch")) or None,
                model="synthetic",
                ips=tuple(as_str(ip) for ip in as_list(n.get("Ips"))),
            )
            for n in as_list(raw)
        ]

    def list_networks(self) -> list[NetworkInfo]:
        """Every virtual switch with the adapters connected to it and their VLANs: ONE WinRM command."""
        return _networks(self._run("network.list", {}, "list of virtual switches"))

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """Get-VMHardDiskDrive with Get-VHD (format, sizes, parent chain), one call."""
        return self._disks(self._run("vm.disks", {"id": dom.uuid}, self._what(dom), NoDomainError))

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """Get-VMNetworkAdapter, one call."""
        return self._nics(self._run("vm.nics", {"id": dom.uuid}, self._what(dom), NoDomainError))

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The VM, its drives and adapters in one call."""
        d = self._run("vm.detail", {"id": dom.uuid}, self._what(dom), NoDomainError)
        v = d.get("Vm") or {}
        return DomainSpec(
            name=as_str(v.get("Name")),
            memory_bytes=as_int(v.get("Mem"), 0) or 1,
            vcpus=as_int(v.get("Cpu"), 1) or 1,
            disks=tuple(DiskSpec(x.target, x.path, format=x.format, bus=x.bus) for x in self._disks(d.get("Disks"))),
            nics=tuple(NicSpec(network=n.network or "", mac=n.mac, model="virtio") for n in self._nics(d.get("Nics"))),
            uuid=as_str(v.get("Id")).lower(),
            extra={"hyperv": {"generation": as_int(v.get("Gen"), 2)}},
        )

    def inventory(self) -> list[DomainRecord]:
        """Every VM with drives (and VHD facts), adapters and checkpoint count: ONE WinRM command."""
        records = []
        for item in as_list(self._run("vm.inventory", {}, "inventory")):
            v = item.get("Vm") or {}
            ref = self._ref(v)
            state, native = _state(v.get("State"))
            records.append(
                DomainRecord(
                    name=ref.name,
                    uuid=ref.uuid,
                    state=state,
                    native_state=native,
                    vcpus=as_int(v.get("Cpu")),
                    memory_bytes=as_int(v.get("Assigned")) or as_int(v.get("Mem")),
                    os_type="hvm",
                    autostart=None,
                    disks=tuple(self._disks(item.get("Disks"))),
                    nics=tuple(self._nics(item.get("Nics"))),
                    snapshot_count=as_int(item.get("Snaps")),
                    block_jobs=tuple(self._local_jobs(ref)),
                    extra={"hyperv": {"generation": as_int(v.get("Gen"))}},
                    managed_save=native in _SAVED,
                )
            )
        return records

    # --- lifecycle -------------------------------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """New-VM (generation 2, no VHD), Set-VM -ProcessorCount, then the drives and adapters.

        Hyper-V assigns the VMId itself, so a spec carrying a UUID is refused; NIC ``network`` names a
        virtual switch (``default`` means the ``Default Switch``).
        """
        if spec.uuid is not None:
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: Hyper-V assigns VMIds itself; define it without a uuid"
            )
        disks = []
        for d in spec.disks:
            ct, cn, cl = self._slot(spec.name, d)
            disks.append({"path": d.path, "ct": "IDE" if ct == IDE else "SCSI", "cn": cn, "cl": cl})
        nics = [
            {
                "switch": "Default Switch" if n.network == "default" else n.network,
                "mac": n.mac.replace(":", "").upper() if n.mac else None,
            }
            for n in spec.nics
        ]
        args = {"name": spec.name, "mem": spec.memory_bytes, "cpu": spec.vcpus, "disks": disks, "nics": nics}
        v = self._run("vm.define", args, f"domain {quote(spec.name)}")
        return self._ref(v)

    @staticmethod
    def _slot(name: str, d: DiskSpec) -> tuple[int, int, int]:
        try:
            return slot_for(d.target, d.bus)
        except ValueError as exc:
            raise InvalidArgumentError(f"domain {quote(name)}: {exc}") from None

    def _act(self, op: str, dom: DomainRef, **extra: Any) -> None:
        self._run(op, {"id": dom.uuid, **extra}, self._what(dom), NoDomainError)

    def undefine(self, dom: DomainRef) -> None:
        """Remove-VM -Force (the VHD files stay)."""
        self._act("vm.undefine", dom)

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Start-VM (also restores a Saved VM); with ``paused``, Suspend-VM right after."""
        self._act("vm.start", dom, paused=paused)

    def shutdown(self, dom: DomainRef) -> None:
        """Stop-VM -Force: the Shutdown integration service asks the guest; the cmdlet returns when it is off."""
        self._act("vm.shutdown", dom)

    def destroy(self, dom: DomainRef) -> None:
        """Stop-VM -TurnOff -Force: power off at once."""
        self._act("vm.destroy", dom)

    def reboot(self, dom: DomainRef) -> None:
        """Restart-VM -Force (a hard reset)."""
        self._act("vm.reboot", dom)

    def suspend(self, dom: DomainRef) -> None:
        """Suspend-VM (state Paused)."""
        self._act("vm.suspend", dom)

    def resume(self, dom: DomainRef) -> None:
        """Resume-VM."""
        self._act("vm.resume", dom)

    def managed_save(self, dom: DomainRef) -> None:
        """Save-VM: Hyper-V's managed save (state Saved; start() restores it). Not ``domain.save``, which
        saves to a file of the caller's choosing: Hyper-V keeps the state in the VM's own directory."""
        self._act("vm.save", dom)

    def has_managed_save(self, dom: DomainRef) -> bool:
        """The VM is in state Saved (or FastSaved)."""
        return self.domain_info(dom).native_state in _SAVED

    def managed_save_remove(self, dom: DomainRef) -> None:
        """Remove-VMSavedState (Windows Server 2016 and later), only when the VM has a saved state."""
        if self.has_managed_save(dom):
            self._act("vm.discard_saved", dom)

    # --- snapshots (checkpoints) -----------------------------------------------------------------------

    def _snapshot(self, dom: DomainRef, s: dict[str, Any]) -> Snapshot:
        created = as_datetime(s.get("Created"))
        if created is None:
            raise OperationFailedError(f"{self._what(dom)}: checkpoint without a creation time")
        return Snapshot(
            name=as_str(s.get("Name")),
            domain=dom.name,
            created_at=created,
            state=_state(s.get("State"))[0],
            parent=as_str(s.get("Parent")) or None,
            kind="checkpoint",
        )

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """Checkpoint-VM -SnapshotName (a standard checkpoint: memory too when running)."""
        s = self._run("snapshot.create", {"id": dom.uuid, "name": name}, self._what(dom), NoDomainError)
        return self._snapshot(dom, s)

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """Get-VMSnapshot, oldest first."""
        raw = self._run("snapshot.list", {"id": dom.uuid}, self._what(dom), NoDomainError)
        return sorted((self._snapshot(dom, s) for s in as_list(raw)), key=lambda s: s.created_at)

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """Restore-VMSnapshot, then Start-VM (and Suspend-VM) when the checkpoint was taken running (paused)."""
        self._run(
            "snapshot.revert",
            {"id": dom.uuid, "name": name},
            f"snapshot {quote(name)} of domain {quote(dom.name)}",
            NoSnapshotError,
        )

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """Remove-VMSnapshot (Hyper-V merges the checkpoint's AVHDX into its parent)."""
        self._run(
            "snapshot.delete",
            {"id": dom.uuid, "name": name},
            f"snapshot {quote(name)} of domain {quote(dom.name)}",
            NoSnapshotError,
        )

    # --- disks -----------------------------------------------------------------------------------------

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """Add-VMHardDiskDrive into the target's controller slot (the VHD must exist)."""
        ct, cn, cl = self._slot(dom.name, disk)
        args = {
            "id": dom.uuid,
            "path": disk.path,
            "ct": "IDE" if ct == IDE else "SCSI",
            "cti": ct,
            "cn": cn,
            "cl": cl,
            "target": disk.target,
        }
        self._run("disk.attach", args, f"disk {quote(disk.target)} of domain {quote(dom.name)}", NoDomainError)

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """Remove-VMHardDiskDrive of the target's slot (the VHD file stays)."""
        try:
            ct, cn, cl = slot_for(target)
        except ValueError as exc:
            raise InvalidArgumentError(f"domain {quote(dom.name)}: {exc}") from None
        args = {"id": dom.uuid, "cti": ct, "cn": cn, "cl": cl, "target": target}
        self._run("disk.detach", args, f"disk {quote(target)} of domain {quote(dom.name)}", NoDomainError)

    # --- block copy: Move-VMStorage --------------------------------------------------------------------

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Start Move-VMStorage of the disk's VHD to ``request.dest`` in a WinRM shell of its own.

        Only a chain move (``block.copy.move_chain``; the core refuses other kinds): a differencing VHDX
        moves with its parents, never flattened. Hyper-V copies, switches the running VM over to the copy
        and deletes the source by itself: the
        job has no ready phase and ends with the disk naming the copy. It has no bandwidth limit
        (``block.bandwidth`` is not declared, so the core refuses a limit; job info reports 0).
        """
        from ._winrm import TransportFailure

        src = next((d for d in self.disks(dom) if d.target == disk), None)
        if src is None:
            raise InvalidArgumentError(f"domain {quote(dom.name)} has no disk {quote(disk)}")
        args = {"id": dom.uuid, "src": src.path, "dst": request.dest}
        what = f"block copy of disk {quote(disk)} of domain {quote(dom.name)}"
        try:
            cmd = self._client.start(command_line(SCRIPTS["storage.move"].render(args)))
        except TransportFailure as exc:
            raise _FAILURE_CLASSES[exc.kind](exc.message) from None
        job = _CopyJob(dom, disk, src.path, request.dest, max(1, src.allocation_bytes or src.capacity_bytes or 1), cmd)
        with self._jobs_lock:
            self._jobs[(dom.uuid, disk)] = job
        threading.Thread(target=self._watch, args=(job, what), name="virtabs-hyperv-copy", daemon=True).start()

    def _watch(self, job: _CopyJob, what: str) -> None:
        from ._winrm import TransportFailure

        status = BlockJobStatus.COMPLETED
        try:
            _out, err, code = job.cmd.wait()
            if code != 0:
                trapped = trapped_error(_out)
                records = [trapped] if trapped is not None else parse_errors(err)
                job.error = f"{what}: " + (records[0].message if records else f"exit code {code}")
                status = BlockJobStatus.CANCELED if job.aborted else BlockJobStatus.FAILED
        except TransportFailure as exc:
            job.error = f"{what}: {exc.message}"
            status = BlockJobStatus.CANCELED if job.aborted else BlockJobStatus.FAILED
        if job.error and not job.aborted:
            log.warning("%s", job.error)
        with self._jobs_lock:
            if self._jobs.get((job.dom.uuid, job.disk)) is job:
                del self._jobs[(job.dom.uuid, job.disk)]
        job.done.set()
        try:
            self.emit(BlockJobEvent(job.dom.name, job.dom.uuid, job.disk, BlockJobType.COPY, status, error=job.error))
        except Exception:  # a closed connection's sink; the job's end is recorded either way
            log.debug("block job event for %s not delivered", job.disk, exc_info=True)

    def _job_info(self, job: _CopyJob) -> BlockJobInfo | None:
        if job.done.is_set():
            return None
        p = self._run("storage.progress", {"dst": job.dst}, f"block copy of disk {quote(job.disk)}") or {}
        copied = as_int(p.get("Copied"), 0) or 0
        if job.done.is_set():
            return None
        # the copy switches over by itself: it is never "ready", so cur stays below end until it is gone
        return BlockJobInfo(BlockJobType.COPY, min(copied, job.end - 1), job.end, 0, False, job.disk)

    def _local_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        with self._jobs_lock:
            jobs = [j for (uuid, _d), j in self._jobs.items() if uuid == dom.uuid]
        return [BlockJobInfo(BlockJobType.COPY, 0, j.end, 0, False, j.disk) for j in jobs if not j.done.is_set()]

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        """The Move-VMStorage this connection started on ``disk``: progress = the destination file's size."""
        with self._jobs_lock:
            job = self._jobs.get((dom.uuid, disk))
        return self._job_info(job) if job is not None else None

    def block_jobs(self, dom: DomainRef) -> list[BlockJobInfo]:
        """This connection's copy jobs on the domain (no host call when there are none)."""
        with self._jobs_lock:
            jobs = [j for (uuid, _d), j in self._jobs.items() if uuid == dom.uuid]
        return [info for info in (self._job_info(j) for j in jobs) if info is not None]

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        """Terminate the Move-VMStorage command (WS-Man Signal); the core waits until the job is gone.

        Pivot never reaches here (``block.copy.pivot`` is not declared). Whether Hyper-V rolls a storage
        migration back when the PowerShell process running it is stopped was not verified on a real host;
        if the switch-over already happened, the disk names the copy.
        """
        with self._jobs_lock:
            job = self._jobs.get((dom.uuid, disk))
        if job is None or job.done.is_set():
            return
        job.aborted = True
        job.cmd.terminate()

    # --- storage: the VirtualHardDiskPath as pool 'default' -------------------------------------------------

    def _pool_dir(self) -> str:
        return as_str((self._host or {}).get("VhdPath")).rstrip("\\")

    def _pool_info(self) -> PoolInfo:
        return PoolInfo(POOL, "dir", None, None, None, path=self._pool_dir(), active=True)

    def _check_pool(self, pool: str) -> None:
        if pool != POOL:
            raise NoStoragePoolError(f"storage pool {quote(pool)} not found (Hyper-V has one: {quote(POOL)})")

    def _volume(self, v: dict[str, Any]) -> VolumeInfo:
        path = as_str(v.get("Path"))
        return VolumeInfo(
            name=_basename(path),
            pool=POOL,
            path=path,
            format=_FORMATS.get(as_int(v.get("Fmt"), 0) or 0, "vhdx"),
            capacity_bytes=as_int(v.get("Size"), 0) or 0,
            allocation_bytes=as_int(v.get("File")),
            backing_chain=tuple(as_str(p) for p in as_list(v.get("Chain"))),
        )

    def list_storage_pools(self) -> list[PoolInfo]:
        """The one pool (no host call)."""
        return [self._pool_info()]

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """``default`` or NoStoragePoolError."""
        self._check_pool(name)
        return self._pool_info()

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """The .vhd/.vhdx files of the pool directory with Get-VHD facts, one call."""
        self._check_pool(pool)
        raw = self._run("volume.list", {"dir": self._pool_dir()}, f"storage pool {quote(pool)}")
        return [self._volume(v) for v in as_list(raw)]

    def _vol_path(self, name: str) -> str:
        if not name or "\\" in name or "/" in name:
            raise InvalidArgumentError(f"invalid volume name {quote(name)}")
        return f"{self._pool_dir()}\\{name}"

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """Get-VHD of ``<pool dir>\\name``."""
        self._check_pool(pool)
        v = self._run(
            "volume.get", {"path": self._vol_path(name)}, f"storage volume {quote(name)}", NoStorageVolumeError
        )
        return self._volume(v)

    def create_volume(self, pool: str, name: str, capacity_bytes: int, format: str, backing: str | None) -> VolumeInfo:
        """New-VHD -Dynamic (or -Differencing -ParentPath for a backed volume). VHD and VHDX only."""
        self._check_pool(pool)
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if format not in ("vhd", "vhdx") or ext != format:
            raise InvalidArgumentError(
                f"storage volume {quote(name)}: Hyper-V creates VHD and VHDX files only (format {quote(format)}; the file "
                "name must end in .vhd or .vhdx to match)"
            )
        args = {"path": self._vol_path(name), "size": capacity_bytes, "parent": backing}
        return self._volume(self._run("volume.create", args, f"storage volume {quote(name)}", NoStorageVolumeError))

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove-Item of the file (Get-VHD first, so a missing volume is NoStorageVolumeError)."""
        self._check_pool(pool)
        self._run(
            "volume.delete", {"path": self._vol_path(name)}, f"storage volume {quote(name)}", NoStorageVolumeError
        )

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """Resize-VHD -SizeBytes."""
        self._check_pool(pool)
        args = {"path": self._vol_path(name), "size": capacity_bytes}
        return self._volume(self._run("volume.resize", args, f"storage volume {quote(name)}", NoStorageVolumeError))

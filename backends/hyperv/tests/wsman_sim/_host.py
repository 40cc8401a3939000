"""An in-memory Hyper-V host and the cmdlets the simulator understands (test infrastructure).

The model follows the Hyper-V PowerShell module's objects as far as the virtabs backend reads them:
``VirtualMachine`` (VMId, Name, State as ``Microsoft.HyperV.PowerShell.VMState``, ProcessorCount,
MemoryStartup, CreationTime, ...), checkpoints (``VMSnapshot``), hard disk drives with controller slots,
VHD files with parent chains (``Get-VHD``), network adapters and the host (``Get-VMHost``). Guests do not
run: state transitions happen on the host's clock (a graceful shutdown takes ``shutdown_delay`` seconds,
``Move-VMStorage`` copies at ``copy_rate`` bytes/s).

Error messages and ids follow the shapes documented for the cmdlets where known; exact wording on a real
host may differ (nothing here was checked against Windows).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._json51 import from_json, to_json
from ._ps import (
    CommandTable,
    Invocation,
    Param,
    PSEnum,
    PSError,
    PSObject,
    ScriptBlock,
    TimeSpan,
    get_member,
    to_bool,
    to_string,
)

__all__ = ["VM_STATES", "HyperVHost", "build_commands"]

VM_STATES = {
    1: "Other",
    2: "Running",
    3: "Off",
    4: "Stopping",
    6: "Saved",
    9: "Paused",
    10: "Starting",
    11: "Reset",
    32773: "Saving",
    32776: "Pausing",
    32777: "Resuming",
    32779: "FastSaved",
    32780: "FastSaving",
}


def vm_state(value: int) -> PSEnum:
    """A ``Microsoft.HyperV.PowerShell.VMState`` value."""
    return PSEnum("Microsoft.HyperV.PowerShell.VMState", VM_STATES[value], value)


def _ctl(value: int) -> PSEnum:
    return PSEnum("Microsoft.HyperV.PowerShell.ControllerType", ["IDE", "SCSI"][value], value)


VHD_FORMAT = {"vhd": 2, "vhdx": 3}
VHD_TYPE = {2: "Fixed", 3: "Dynamic", 4: "Differencing"}


def _norm(path: str) -> str:
    return path.replace("/", "\\").rstrip("\\").lower()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


@dataclass(eq=False)
class VHD:
    """A virtual hard disk file."""

    path: str
    format: int
    vhd_type: int
    size: int
    file_size: int
    parent_path: str | None = None
    data: str = field(default_factory=lambda: uuid.uuid4().hex)
    """What this layer stores (a token: guests do not run, so content is an identity that copies carry)."""
    type_name = "Microsoft.Vhd.PowerShell.VirtualHardDisk"

    def ps_props(self) -> dict[str, Any]:
        return {
            "ComputerName": "HV-SIM",
            "Path": self.path,
            "VhdFormat": PSEnum("Microsoft.Vhd.PowerShell.VhdFormat", {2: "VHD", 3: "VHDX"}[self.format], self.format),
            "VhdType": PSEnum("Microsoft.Vhd.PowerShell.VhdType", VHD_TYPE[self.vhd_type], self.vhd_type),
            "FileSize": self.file_size,
            "Size": self.size,
            "MinimumSize": self.size,
            "LogicalSectorSize": 512,
            "PhysicalSectorSize": 4096,
            "BlockSize": 33554432 if self.vhd_type != 2 else 0,
            "ParentPath": self.parent_path or "",
            "DiskIdentifier": "",
            "FragmentationPercentage": 0,
            "Alignment": 1,
            "Attached": False,
            "DiskNumber": None,
        }


@dataclass(eq=False)
class FileItem:
    """What ``Get-Item`` / ``Get-ChildItem`` return for a file."""

    path: str
    length: int
    type_name = "System.IO.FileInfo"

    def ps_props(self) -> dict[str, Any]:
        name = self.path.replace("/", "\\").rsplit("\\", 1)[-1]
        return {"Name": name, "FullName": self.path, "Length": self.length, "Extension": "." + name.rsplit(".", 1)[-1]}


@dataclass(eq=False)
class Drive:
    """A ``HardDiskDrive`` attached to a VM."""

    vm: VM
    controller_type: int
    number: int
    location: int
    path: str
    type_name = "Microsoft.HyperV.PowerShell.HardDiskDrive"

    def ps_props(self) -> dict[str, Any]:
        return {
            "VMName": self.vm.name,
            "VMId": self.vm.id,
            "ControllerType": _ctl(self.controller_type),
            "ControllerNumber": self.number,
            "ControllerLocation": self.location,
            "Path": self.path,
            "DiskNumber": None,
            "Name": "Hard Drive",
            "PoolName": "Primordial",
        }


@dataclass(eq=False)
class Adapter:
    """A ``VMNetworkAdapter``."""

    vm: VM
    name: str
    mac: str
    switch_name: str | None
    ips: list[str] = field(default_factory=list)
    vlan_mode: int = 0
    """VMNetworkAdapterVlanMode: 0 Untagged, 1 Access, 2 Trunk (Set-VMNetworkAdapterVlan)."""
    access_vlan: int = 0
    native_vlan: int = 0
    allowed_vlans: str = ""
    type_name = "Microsoft.HyperV.PowerShell.VMNetworkAdapter"

    def ps_props(self) -> dict[str, Any]:
        running = self.vm.state == 2
        return {
            "VMName": self.vm.name,
            "VMId": self.vm.id,
            "Name": self.name,
            "MacAddress": self.mac,
            "SwitchName": self.switch_name,
            "IPAddresses": list(self.ips) if running else [],
            "Status": ["Ok"] if running else [],
            "Connected": self.switch_name is not None,
        }


VLAN_MODES = ("Untagged", "Access", "Trunk", "Private")
"""Microsoft.HyperV.PowerShell.VMNetworkAdapterVlanMode, by value."""


@dataclass(eq=False)
class VlanSetting:
    """A ``VMNetworkAdapterVlanSetting`` (Get-VMNetworkAdapterVlan): the adapter's VLAN settings now."""

    adapter: Adapter
    type_name = "Microsoft.HyperV.PowerShell.VMNetworkAdapterVlanSetting"

    def ps_props(self) -> dict[str, Any]:
        a = self.adapter
        return {
            "OperationMode": PSEnum(
                "Microsoft.HyperV.PowerShell.VMNetworkAdapterVlanMode", VLAN_MODES[a.vlan_mode], a.vlan_mode
            ),
            "AccessVlanId": a.access_vlan,
            "NativeVlanId": a.native_vlan,
            "AllowedVlanIdList": a.allowed_vlans.split(",") if a.allowed_vlans else [],
            "AllowedVlanIdListString": a.allowed_vlans,
            "ParentAdapter": a,
            "VMName": a.vm.name,
            "VMId": a.vm.id,
        }


SWITCH_TYPES = ("Private", "Internal", "External")
"""Microsoft.HyperV.PowerShell.VMSwitchType, by value."""
DEFAULT_SWITCH_ID = uuid.UUID("c08cb7b8-9b3c-408e-8e30-5e16a3aeb444")
"""The Id Windows gives every host's ``Default Switch`` (an internal switch with NAT and DHCP behind it)."""


@dataclass(eq=False)
class VSwitch:
    """A ``VMSwitch`` (Get-VMSwitch): its type, and the physical adapter an external switch is bound to."""

    id: uuid.UUID
    name: str
    switch_type: int
    adapter: str | None = None
    computer_name: str = ""
    type_name = "Microsoft.HyperV.PowerShell.VMSwitch"

    def ps_props(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Id": self.id,
            "SwitchType": PSEnum(
                "Microsoft.HyperV.PowerShell.VMSwitchType", SWITCH_TYPES[self.switch_type], self.switch_type
            ),
            "NetAdapterInterfaceDescription": self.adapter,
            "NetAdapterInterfaceDescriptions": [self.adapter] if self.adapter else [],
            "AllowManagementOS": self.switch_type != 0,
            "ComputerName": self.computer_name,
            "Notes": "",
            "IsDeleted": False,
        }


@dataclass(eq=False)
class Checkpoint:
    """A ``VMSnapshot`` (checkpoint): the configuration and state captured."""

    id: uuid.UUID
    name: str
    vm: VM
    created: _dt.datetime
    parent: Checkpoint | None
    state: int
    cpu: int
    memory: int
    drives: list[tuple[int, int, int, str]]
    type_name = "Microsoft.HyperV.PowerShell.VMSnapshot"

    def ps_props(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": self.name,
            "VMName": self.vm.name,
            "VMId": self.vm.id,
            "CreationTime": self.created,
            "ParentSnapshotName": self.parent.name if self.parent else None,
            "ParentSnapshotId": self.parent.id if self.parent else None,
            "State": vm_state(self.state),
            "SnapshotType": PSEnum("Microsoft.HyperV.PowerShell.SnapshotType", "Standard", 0),
            "ProcessorCount": self.cpu,
            "MemoryStartup": self.memory,
        }


@dataclass(eq=False)
class VM:
    """A ``VirtualMachine``."""

    host: HyperVHost
    id: uuid.UUID
    name: str
    generation: int
    cpu: int
    memory: int
    path: str
    created: _dt.datetime
    state: int = 3
    notes: str = ""
    drives: list[Drive] = field(default_factory=list)
    adapters: list[Adapter] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    current: Checkpoint | None = None
    started: float | None = None
    ran: float = 0.0
    """The simulated guest's run time banked by a save (Save-VM keeps its memory; Start-VM resumes it)."""
    shutdown_service: bool = True
    type_name = "Microsoft.HyperV.PowerShell.VirtualMachine"

    def ps_props(self) -> dict[str, Any]:
        up = time.monotonic() - self.started if self.started is not None and self.state in (2, 9) else 0.0
        return {
            "VMId": self.id,
            "Id": self.id,
            "VMName": self.name,
            "Name": self.name,
            "State": vm_state(self.state),
            "Generation": self.generation,
            "ProcessorCount": self.cpu,
            "MemoryStartup": self.memory,
            "MemoryAssigned": self.memory if self.state in (2, 9, 4) else 0,
            "CPUUsage": 1 if self.state == 2 else 0,
            "Uptime": TimeSpan(up),
            "CreationTime": self.created,
            "Path": self.path,
            "Notes": self.notes,
            "Status": "Operating normally",
            "Version": "9.0",
            "ComputerName": self.host.computer_name,
            "ParentSnapshotName": self.current.name if self.current else None,
            "AutomaticStartAction": PSEnum("Microsoft.HyperV.PowerShell.StartAction", "StartIfRunning", 3),
            "HardDrives": list(self.drives),
            "NetworkAdapters": list(self.adapters),
        }


class HyperVHost:
    """The whole host: VMs, VHD files, switches. Thread-safe through one lock."""

    def __init__(
        self, *, computer_name: str = "HV-SIM", shutdown_delay: float = 0.2, copy_rate: int = 256 << 20
    ) -> None:
        self.computer_name = computer_name
        self.lock = threading.RLock()
        self.vms: dict[uuid.UUID, VM] = {}
        self.files: dict[str, VHD] = {}
        self.vm_path = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V"
        self.vhd_path = "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual Hard Disks"
        self.switches = ["Default Switch"]
        """Switch names (tests append names); :attr:`switch_facts` holds the type and Id of those that have them."""
        self.switch_facts: dict[str, VSwitch] = {
            "Default Switch": VSwitch(DEFAULT_SWITCH_ID, "Default Switch", 1, None, computer_name)
        }
        self.shutdown_delay = shutdown_delay
        self.copy_rate = copy_rate
        self.capacity = 1 << 40
        self.calls: dict[str, int] = {}
        self._mac = itertools.count(0x100)
        self.peers: dict[str, HyperVHost] = {}
        """Hosts Move-VM reaches by computer name (lower case): see :func:`link_hosts`."""

    # --- helpers used by cmdlets -----------------------------------------------------------------------

    def find_file(self, path: str) -> VHD | None:
        return self.files.get(_norm(path))

    def add_switch(self, name: str, switch_type: str, adapter: str | None = None) -> VSwitch:
        """A new switch like New-VMSwitch: ``Private``, ``Internal`` or ``External`` (bound to ``adapter``)."""
        sw = VSwitch(uuid.uuid4(), name, SWITCH_TYPES.index(switch_type), adapter, self.computer_name)
        self.switches.append(name)
        self.switch_facts[name] = sw
        return sw

    def vswitch(self, name: str) -> VSwitch:
        """The VMSwitch called ``name`` (a name appended without facts is an internal switch)."""
        sw = self.switch_facts.get(name)
        if sw is None:
            sw = self.switch_facts[name] = VSwitch(
                uuid.uuid5(uuid.NAMESPACE_URL, name), name, 1, None, self.computer_name
            )
        return sw

    def new_mac(self) -> str:
        return f"00155D{next(self._mac):06X}"

    def add_vm(self, name: str, memory: int = 512 << 20, cpu: int = 1, generation: int = 2) -> VM:
        vm = VM(self, uuid.uuid4(), name, generation, cpu, memory, self.vm_path, _now())
        self.vms[vm.id] = vm
        return vm

    def add_vhd(self, path: str, size: int, parent: str | None = None, vhd_type: int = 3) -> VHD:
        fmt = VHD_FORMAT.get(path.rsplit(".", 1)[-1].lower(), 3)
        vhd = VHD(
            path.replace("/", "\\"), fmt, 4 if parent else vhd_type, size, 4 << 20 if vhd_type != 2 else size, parent
        )
        self.files[_norm(path)] = vhd
        return vhd

    def chain(self, path: str) -> list[VHD]:
        """The VHD at ``path`` and its parents, top first (missing files end the chain)."""
        out: list[VHD] = []
        f = self.find_file(path)
        while f is not None and len(out) < 64:
            out.append(f)
            f = self.find_file(f.parent_path) if f.parent_path else None
        return out

    def attached(self, path: str) -> VM | None:
        for vm in self.vms.values():
            for d in vm.drives:
                if _norm(d.path) == _norm(path):
                    return vm
        return None

    def later(self, delay: float, fn: Any) -> None:
        t = threading.Timer(delay, self._locked, (fn,))
        t.daemon = True
        t.start()

    def _locked(self, fn: Any) -> None:
        with self.lock:
            fn()


# --- cmdlet implementations -------------------------------------------------------------------------

_VIRT_EXC = "Microsoft.HyperV.PowerShell.VirtualizationException"


def _vm_arg(inv: Invocation, host: HyperVHost) -> list[VM]:
    """The VMs a cmdlet works on: ``-VM`` objects, ``-Name`` (wildcards) or ``-VMName``."""
    if inv.has("VM"):
        vms = inv.get("VM")
        out = vms if isinstance(vms, list) else [vms]
        for v in out:
            if not isinstance(v, VM):
                raise inv.error(
                    f"Cannot bind parameter 'VM'. Cannot convert the \"{to_string(v)}\" value of type "
                    f'"{type(v).__name__}" to type "Microsoft.HyperV.PowerShell.VirtualMachine".',
                    category="InvalidArgument",
                    error_id="CannotConvertArgumentNoMessage",
                    exception="ParameterBindingException",
                )
            if v.id not in host.vms:
                raise inv.error(
                    f"The operation cannot be performed because the object '{v.name}' is not in a valid "
                    "state: the virtual machine was deleted.",
                    category="InvalidOperation",
                    error_id="ObjectNotFound",
                    exception=_VIRT_EXC,
                )
        return out
    name = inv.get("Name", inv.get("VMName"))
    if name is None:
        raise inv.error(
            "Cannot process command because of one or more missing mandatory parameters: VM.",
            category="InvalidArgument",
            error_id="MissingMandatoryParameter",
            exception="ParameterBindingException",
        )
    import fnmatch

    pattern = to_string(name).lower()
    found = [v for v in host.vms.values() if fnmatch.fnmatchcase(v.name.lower(), pattern)]
    if not found and not any(c in pattern for c in "*?["):
        raise inv.error(
            f'Hyper-V was unable to find a virtual machine with name "{to_string(name)}".',
            category="InvalidArgument",
            error_id="InvalidParameter",
            target=to_string(name),
            target_type="String",
            exception=_VIRT_EXC,
            terminating=False,
        )
    return found


def _bank_run_time(vm: VM) -> None:
    """Save-VM keeps the guest's memory: its run clock stops here and goes on at the next Start-VM."""
    if vm.started is not None:
        vm.ran += time.monotonic() - vm.started
    vm.started = None


def _state_error(inv: Invocation, vm: VM, action: str) -> PSError:
    return inv.error(
        f"'{vm.name}' failed to {action}.\n\nThe operation cannot be performed while the object is in its current "
        f"state ({VM_STATES[vm.state]}).",
        category="InvalidOperation",
        error_id="InvalidState",
        target=vm.name,
        target_type="VirtualMachine",
        exception=_VIRT_EXC,
    )


def link_hosts(a: HyperVHost, b: HyperVHost, *, shared_storage: bool = True) -> None:
    """Let Move-VM go between ``a`` and ``b`` (SIMULATED: two hosts with live migration enabled on one
    network). ``shared_storage``: both hosts see one file store (an SMB share or a cluster volume), so a
    migration without -IncludeStorage finds the VM's disks on the destination."""
    if a.computer_name.lower() == b.computer_name.lower():
        raise ValueError("two linked hosts need two computer names")
    a.peers[b.computer_name.lower()] = b
    b.peers[a.computer_name.lower()] = a
    if shared_storage:
        b.files = a.files


def build_commands(host: HyperVHost) -> CommandTable:
    """Every cmdlet the simulator knows, bound to ``host``."""
    t = CommandTable()

    def count(name: str) -> None:
        host.calls[name] = host.calls.get(name, 0) + 1

    # --- Microsoft.PowerShell.Utility / Core / Management -------------------------------------------------

    def convert_to_json(inv: Invocation) -> Iterator[Any]:
        depth = int(inv.get("Depth", 2))
        compress = inv.switch("Compress")
        if inv.has("InputObject") and not inv.has_input:
            yield to_json(inv.get("InputObject"), depth, compress)
            return
        items = inv.input if inv.has_input else []
        if not items:
            return
        yield to_json(items[0] if len(items) == 1 else items, depth, compress)

    convert_to_json.collects = True  # type: ignore[attr-defined]
    t.add(
        "ConvertTo-Json",
        "Microsoft.PowerShell.Utility",
        [Param("InputObject", position=0, pipeline=True), Param("Depth"), Param("Compress", switch=True)],
        convert_to_json,
    )

    def convert_from_json(inv: Invocation) -> Iterator[Any]:
        text = to_string(inv.get("InputObject"))
        try:
            yield from_json(text)
        except ValueError:
            raise inv.error(
                "Invalid JSON primitive: " + text[:20] + ".",
                category="NotSpecified",
                error_id="System.ArgumentException,Microsoft.PowerShell.Commands.ConvertFromJsonCommand",
                exception="ArgumentException",
            ) from None

    t.add(
        "ConvertFrom-Json",
        "Microsoft.PowerShell.Utility",
        [Param("InputObject", position=0, pipeline=True, mandatory=True)],
        convert_from_json,
    )

    def foreach_object(inv: Invocation) -> Iterator[Any]:
        sb = inv.get("Process")
        if not isinstance(sb, ScriptBlock):
            raise inv.error(
                "Cannot bind parameter 'Process': a script block is required.",
                category="InvalidArgument",
                error_id="CannotConvertArgument",
                exception="ParameterBindingException",
            )
        if inv.has_input:
            yield from inv.interp.run_scriptblock(sb, inv.input)

    t.add(
        "ForEach-Object",
        "Microsoft.PowerShell.Core",
        [Param("Process", position=0, mandatory=True), Param("InputObject", pipeline=True)],
        foreach_object,
    )

    def where_object(inv: Invocation) -> Iterator[Any]:
        sb = inv.get("FilterScript")
        if not isinstance(sb, ScriptBlock):
            raise inv.error(
                "Cannot bind parameter 'FilterScript': a script block is required.",
                category="InvalidArgument",
                error_id="CannotConvertArgument",
                exception="ParameterBindingException",
            )
        if inv.has_input and to_bool(_first(inv.interp.run_scriptblock(sb, inv.input))):
            yield inv.input

    t.add(
        "Where-Object",
        "Microsoft.PowerShell.Core",
        [Param("FilterScript", position=0, mandatory=True), Param("InputObject", pipeline=True)],
        where_object,
    )

    def out_null(inv: Invocation) -> Iterator[Any]:
        return iter(())

    t.add("Out-Null", "Microsoft.PowerShell.Core", [Param("InputObject", pipeline=True)], out_null, common=False)

    def write_error(inv: Invocation) -> Iterator[Any]:
        raise inv.error(
            to_string(inv.get("Message")),
            category=to_string(inv.get("Category", "NotSpecified")),
            error_id=to_string(inv.get("ErrorId", "Microsoft.PowerShell.Commands.WriteErrorException")),
            target=to_string(inv.get("TargetObject", "")),
            target_type="String" if inv.has("TargetObject") else "",
            exception="WriteErrorException",
            terminating=False,
        )

    t.add(
        "Write-Error",
        "Microsoft.PowerShell.Utility",
        [Param("Message", position=0, mandatory=True), Param("Category"), Param("ErrorId"), Param("TargetObject")],
        write_error,
    )

    def start_sleep(inv: Invocation) -> Iterator[Any]:
        ms = float(inv.get("Milliseconds", 0)) / 1000 + float(inv.get("Seconds", 0))
        if inv.interp.cancel.wait(ms):
            from ._ps import Stopped

            raise Stopped()
        return iter(())

    t.add(
        "Start-Sleep",
        "Microsoft.PowerShell.Utility",
        [Param("Seconds", position=0), Param("Milliseconds")],
        start_sleep,
    )

    def get_item(inv: Invocation) -> Iterator[Any]:
        path = to_string(inv.get("LiteralPath"))
        f = host.find_file(path)
        if f is None:
            raise inv.error(
                f"Cannot find path '{path}' because it does not exist.",
                category="ObjectNotFound",
                error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand",
                target=path,
                target_type="String",
                exception="ItemNotFoundException",
                terminating=False,
            )
        yield FileItem(f.path, f.file_size)

    t.add("Get-Item", "Microsoft.PowerShell.Management", [Param("LiteralPath", position=0, mandatory=True)], get_item)

    def test_path(inv: Invocation) -> Iterator[Any]:
        path = _norm(to_string(inv.get("LiteralPath")))
        yield (
            path in host.files
            or any(k.startswith(path + "\\") for k in host.files)
            or path in (_norm(host.vhd_path), _norm(host.vm_path))
        )

    t.add("Test-Path", "Microsoft.PowerShell.Management", [Param("LiteralPath", position=0, mandatory=True)], test_path)

    def get_child_item(inv: Invocation) -> Iterator[Any]:
        d = _norm(to_string(inv.get("LiteralPath"))) + "\\"
        import fnmatch

        flt = to_string(inv.get("Filter", "*")).lower()
        for k, f in sorted(host.files.items()):
            rest = k[len(d) :]
            if k.startswith(d) and "\\" not in rest and fnmatch.fnmatchcase(rest, flt):
                yield FileItem(f.path, f.file_size)

    t.add(
        "Get-ChildItem",
        "Microsoft.PowerShell.Management",
        [Param("LiteralPath", position=0, mandatory=True), Param("Filter"), Param("File", switch=True)],
        get_child_item,
    )

    def remove_item(inv: Invocation) -> Iterator[Any]:
        path = to_string(inv.get("LiteralPath"))
        f = host.find_file(path)
        if f is None:
            raise inv.error(
                f"Cannot find path '{path}' because it does not exist.",
                category="ObjectNotFound",
                error_id="PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand",
                target=path,
                target_type="String",
                exception="ItemNotFoundException",
                terminating=False,
            )
        if host.attached(path) is not None:
            raise inv.error(
                f"Cannot remove item {path}: The process cannot access the file '{path}' because it is "
                "being used by another process.",
                category="WriteError",
                error_id="RemoveFileSystemItemIOError,Microsoft.PowerShell.Commands.RemoveItemCommand",
                target=path,
                target_type="FileInfo",
                exception="IOException",
                terminating=False,
            )
        del host.files[_norm(path)]
        return
        yield

    t.add(
        "Remove-Item",
        "Microsoft.PowerShell.Management",
        [Param("LiteralPath", position=0, mandatory=True), Param("Force", switch=True)],
        remove_item,
    )

    # --- Hyper-V ----------------------------------------------------------------------------------------

    def hv(name: str, params: list[Param], func: Any) -> None:
        def wrapped(inv: Invocation) -> Iterator[Any]:
            count(name)
            with host.lock:
                out = list(func(inv))
            return iter(out)

        t.add(name, "Hyper-V", params, wrapped)

    vm_params = [
        Param("VM", position=0, pipeline=True),
        Param("Name"),
        Param("Passthru", switch=True),
        Param("AsJob", switch=True),
    ]

    def get_vm(inv: Invocation) -> Iterator[Any]:
        if inv.has("Id"):
            raw = to_string(inv.get("Id"))
            try:
                vid = uuid.UUID(raw)
            except ValueError:
                raise inv.error(
                    f'Cannot bind parameter \'Id\'. Cannot convert value "{raw}" to type "System.Guid". '
                    'Error: "Guid should contain 32 digits with 4 dashes '
                    '(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."',
                    category="InvalidArgument",
                    error_id="CannotConvertArgumentNoMessage",
                    exception="ParameterBindingException",
                ) from None
            vm = host.vms.get(vid)
            if vm is None:
                raise inv.error(
                    f'Hyper-V was unable to find a virtual machine with id "{raw}".',
                    category="InvalidArgument",
                    error_id="InvalidParameter",
                    target=raw,
                    target_type="Guid",
                    exception=_VIRT_EXC,
                    terminating=False,
                )
            yield vm
            return
        if inv.has("Name"):
            yield from _vm_arg(inv, host)
            return
        yield from sorted(host.vms.values(), key=lambda v: (v.name.lower(), str(v.id)))

    hv("Get-VM", [Param("Name", position=0), Param("Id")], get_vm)

    def new_vm(inv: Invocation) -> Iterator[Any]:
        name = to_string(inv.get("Name"))
        gen = int(inv.get("Generation", 1))
        if gen not in (1, 2):
            raise inv.error(
                "The generation is not valid.",
                category="InvalidArgument",
                error_id="InvalidParameter",
                exception=_VIRT_EXC,
            )
        mem = int(inv.get("MemoryStartupBytes", 512 << 20))
        if mem < 32 << 20 or mem % (2 << 20):
            raise inv.error(
                f"Failed to modify device 'Memory'. Invalid startup memory amount assigned for '{name}'. "
                "The amount must be a multiple of 2 MB and at least 32 MB.",
                category="InvalidArgument",
                error_id="InvalidParameter",
                exception=_VIRT_EXC,
            )
        vm = host.add_vm(name, mem, 1, gen)
        # New-VM always adds one network adapter, connected when -SwitchName is given.
        if not inv.has("SwitchName"):
            vm.adapters.append(Adapter(vm, "Network Adapter", host.new_mac(), None))
        if inv.has("SwitchName"):
            sw = to_string(inv.get("SwitchName"))
            if sw not in host.switches:
                del host.vms[vm.id]
                raise inv.error(
                    f'Hyper-V was unable to find a virtual switch with name "{sw}".',
                    category="InvalidArgument",
                    error_id="InvalidParameter",
                    target=sw,
                    target_type="String",
                    exception=_VIRT_EXC,
                )
            vm.adapters.append(Adapter(vm, "Network Adapter", host.new_mac(), sw))
        if not inv.switch("NoVHD") and not inv.has("VHDPath"):
            raise inv.error("simulator: New-VM needs -NoVHD or -VHDPath", category="NotImplemented")
        if inv.has("VHDPath"):
            p = to_string(inv.get("VHDPath"))
            if host.find_file(p) is None:
                del host.vms[vm.id]
                raise inv.error(
                    f"Failed to add device 'Virtual Hard Disk'. The system cannot find the file specified. ('{p}')",
                    category="ObjectNotFound",
                    error_id="ObjectNotFound",
                    exception=_VIRT_EXC,
                )
            vm.drives.append(Drive(vm, 1 if gen == 2 else 0, 0, 0, host.find_file(p).path))  # type: ignore[union-attr]
        yield vm

    hv(
        "New-VM",
        [
            Param("Name", position=0, mandatory=True),
            Param("MemoryStartupBytes"),
            Param("Generation"),
            Param("NoVHD", switch=True),
            Param("VHDPath"),
            Param("SwitchName"),
            Param("Path"),
        ],
        new_vm,
    )

    def set_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if inv.has("ProcessorCount"):
                if vm.state != 3:
                    raise _state_error(inv, vm, "modify device 'Processor'")
                vm.cpu = int(inv.get("ProcessorCount"))
            if inv.has("Notes"):
                vm.notes = to_string(inv.get("Notes"))
            if inv.switch("Passthru"):
                yield vm

    hv("Set-VM", [*vm_params, Param("ProcessorCount"), Param("Notes")], set_vm)

    def remove_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if vm.state not in (3,):
                raise _state_error(inv, vm, "delete")
            del host.vms[vm.id]
        return iter(())

    hv("Remove-VM", [*vm_params, Param("Force", switch=True)], remove_vm)

    def start_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if vm.state not in (3, 6):
                raise _state_error(inv, vm, "start")
            for d in vm.drives:
                if host.find_file(d.path) is None:
                    raise inv.error(
                        f"'{vm.name}' failed to start.\n\nSynthetic SCSI Controller: Failed to Power on "
                        f"with Error 'The system cannot find the file specified.' ('{d.path}')",
                        category="NotSpecified",
                        error_id="Unspecified",
                        exception=_VIRT_EXC,
                    )
            if vm.state != 6:
                vm.ran = 0.0  # a cold boot; from Saved the guest resumes where it was
            vm.state = 2
            vm.started = time.monotonic()
            if inv.switch("Passthru"):
                yield vm

    hv("Start-VM", vm_params, start_vm)

    def stop_vm(inv: Invocation) -> Iterator[Any]:
        vms = _vm_arg(inv, host)
        for vm in vms:
            if inv.switch("TurnOff"):
                if vm.state == 3:
                    continue
                vm.state, vm.started = 3, None
            elif inv.switch("Save"):
                if vm.state not in (2, 9):
                    raise _state_error(inv, vm, "save")
                _bank_run_time(vm)
                vm.state = 6
            else:
                if vm.state == 3:
                    continue
                if vm.state != 2:
                    raise _state_error(inv, vm, "shut down")
                if not vm.shutdown_service:
                    raise inv.error(
                        f"'{vm.name}' failed to shut down. (Virtual machine ID {vm.id})\n\nThe "
                        "Shutdown integration service is not available.",
                        category="NotSpecified",
                        error_id="Unspecified",
                        exception=_VIRT_EXC,
                    )
                vm.state = 4
        if not inv.switch("TurnOff") and not inv.switch("Save"):
            # Stop-VM waits until the guest powered off (the lock is released while it waits).
            deadline = time.monotonic() + host.shutdown_delay
            host.lock.release()
            try:
                while time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                host.lock.acquire()
            for vm in vms:
                if vm.state == 4:
                    vm.state, vm.started = 3, None
        if inv.switch("Passthru"):
            yield from vms

    hv(
        "Stop-VM",
        [*vm_params, Param("Force", switch=True), Param("TurnOff", switch=True), Param("Save", switch=True)],
        stop_vm,
    )

    def restart_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if vm.state != 2:
                raise _state_error(inv, vm, "restart")
            vm.started, vm.ran = time.monotonic(), 0.0
        return iter(())

    hv("Restart-VM", [*vm_params, Param("Force", switch=True), Param("Type")], restart_vm)

    def suspend_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if vm.state != 2:
                raise _state_error(inv, vm, "pause")
            vm.state = 9
        return iter(())

    hv("Suspend-VM", vm_params, suspend_vm)

    def resume_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if vm.state != 9:
                raise _state_error(inv, vm, "resume")
            vm.state = 2
        return iter(())

    hv("Resume-VM", vm_params, resume_vm)

    def save_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            if vm.state not in (2, 9):
                raise _state_error(inv, vm, "save")
            _bank_run_time(vm)
            vm.state = 6
        return iter(())

    hv("Save-VM", vm_params, save_vm)

    def remove_saved_state(inv: Invocation) -> Iterator[Any]:
        # Remove-VMSavedState (Windows Server 2016+): discards the saved state, the VM is Off. The refusal of a
        # VM that is not Saved uses the module's generic invalid-state error (its exact text is approximated).
        for vm in _vm_arg(inv, host):
            if vm.state != 6:
                raise _state_error(inv, vm, "delete the saved state")
            vm.state, vm.ran = 3, 0.0
        return iter(())

    hv("Remove-VMSavedState", vm_params, remove_saved_state)

    def move_vm(inv: Invocation) -> Iterator[Any]:
        # SIMULATED Move-VM (live migration to another Hyper-V host), after Microsoft's documentation of the
        # cmdlet: -DestinationHost names the host; without -IncludeStorage the VM's files must already be
        # reachable from the destination (shared storage); -IncludeStorage -DestinationStoragePath moves every
        # virtual hard disk there and deletes the source files; a running VM stays running (live migration),
        # and the VM is gone from the source. The destination is a host linked with link_hosts (the
        # simulator's stand-in for a network of hosts with migration enabled). The error texts are
        # approximations of Hyper-V's; nothing here was checked against real hosts.
        name = to_string(inv.get("DestinationHost"))
        dest = host.peers.get(name.lower())
        include = inv.switch("IncludeStorage")
        storage = to_string(inv.get("DestinationStoragePath")) if inv.has("DestinationStoragePath") else None
        if storage is not None and not include:
            raise inv.error(
                "Parameter set cannot be resolved using the specified named parameters.",
                category="InvalidArgument",
                error_id="AmbiguousParameterSet",
                exception="ParameterBindingException",
            )
        if include and storage is None:
            raise inv.error(
                "-IncludeStorage needs -DestinationStoragePath (or the per-file paths).",
                category="InvalidArgument",
                error_id="InvalidParameter",
                exception=_VIRT_EXC,
            )
        for vm in _vm_arg(inv, host):
            where = f"Virtual machine migration operation for '{vm.name}' failed at migration source '{host.computer_name}'."
            if dest is None or dest is host:
                raise inv.error(
                    f"{where} (Virtual machine ID {vm.id})\n\nFailed to establish a connection with host "
                    f"'{name}': No such host is known. (0x80072AF9).",
                    category="NotSpecified",
                    error_id="Unspecified",
                    exception=_VIRT_EXC,
                )
            if vm.state not in (2, 3):
                raise _state_error(inv, vm, "migrate")
            with dest.lock:
                if vm.id in dest.vms:
                    raise inv.error(
                        f"{where}\n\nThe virtual machine with ID {vm.id} already exists on '{dest.computer_name}'.",
                        category="ResourceExists",
                        error_id="Unspecified",
                        exception=_VIRT_EXC,
                    )
                moves: list[tuple[Drive, VHD, str]] = []
                for d in vm.drives:
                    vhd = host.find_file(d.path)
                    if vhd is None:
                        continue
                    if not include:
                        if dest.find_file(d.path) is None:
                            raise inv.error(
                                f"{where}\n\n'{dest.computer_name}' cannot access the virtual hard disk "
                                f"'{d.path}': the system cannot find the file specified. Move it with "
                                "-IncludeStorage, or keep it on storage both hosts reach.",
                                category="NotSpecified",
                                error_id="Unspecified",
                                exception=_VIRT_EXC,
                            )
                        continue
                    assert storage is not None  # checked above
                    target = storage.rstrip("\\") + "\\" + d.path.replace("/", "\\").rsplit("\\", 1)[-1]
                    if dest.find_file(target) is not None:
                        raise inv.error(
                            f"{where}\n\nThe file '{target}' already exists on '{dest.computer_name}'.",
                            category="ResourceExists",
                            error_id="Unspecified",
                            exception=_VIRT_EXC,
                        )
                    moves.append((d, vhd, target))
                for d, vhd, target in moves:
                    copy = dest.add_vhd(target, vhd.size, vhd.parent_path, vhd.vhd_type)
                    copy.data = vhd.data
                    copy.file_size = vhd.file_size
                    host.files.pop(_norm(d.path), None)
                    d.path = copy.path
                del host.vms[vm.id]
                vm.host = dest
                dest.vms[vm.id] = vm
            if inv.switch("Passthru"):
                yield vm

    hv(
        "Move-VM",
        [
            *vm_params,
            Param("DestinationHost", mandatory=True),
            Param("IncludeStorage", switch=True),
            Param("DestinationStoragePath"),
        ],
        move_vm,
    )

    # checkpoints
    def checkpoint_vm(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            name = to_string(inv.get("SnapshotName")) or f"{vm.name} - ({_now():%m/%d/%Y - %I:%M:%S %p})"
            cp = Checkpoint(
                uuid.uuid4(),
                name,
                vm,
                _now(),
                vm.current,
                vm.state,
                vm.cpu,
                vm.memory,
                [(d.controller_type, d.number, d.location, d.path) for d in vm.drives],
            )
            vm.checkpoints.append(cp)
            vm.current = cp
            if inv.switch("Passthru"):
                yield cp

    hv("Checkpoint-VM", [*vm_params, Param("SnapshotName")], checkpoint_vm)

    def _snapshots(inv: Invocation) -> list[Checkpoint]:
        if inv.has("VMSnapshot"):
            s = inv.get("VMSnapshot")
            out = s if isinstance(s, list) else [s]
            for c in out:
                if not isinstance(c, Checkpoint):
                    raise inv.error(
                        "Cannot bind parameter 'VMSnapshot' to the target.",
                        category="InvalidArgument",
                        error_id="CannotConvertArgumentNoMessage",
                        exception="ParameterBindingException",
                    )
            return out
        vms = _vm_arg(inv, host)
        found = [c for vm in vms for c in vm.checkpoints]
        if inv.has("Name"):
            import fnmatch

            pat = to_string(inv.get("Name")).lower()
            found = [c for c in found if fnmatch.fnmatchcase(c.name.lower(), pat)]
            if not found and not any(ch in pat for ch in "*?["):
                raise inv.error(
                    f'Hyper-V was unable to find a checkpoint with name "{to_string(inv.get("Name"))}".',
                    category="InvalidArgument",
                    error_id="InvalidParameter",
                    target=to_string(inv.get("Name")),
                    target_type="String",
                    exception=_VIRT_EXC,
                    terminating=False,
                )
        return found

    snap_params = [
        Param("VM", position=0),
        Param("VMSnapshot", pipeline=True),
        Param("Name"),
        Param("Passthru", switch=True),
        Param("AsJob", switch=True),
    ]

    def get_vm_snapshot(inv: Invocation) -> Iterator[Any]:
        yield from sorted(_snapshots(inv), key=lambda c: c.created)

    hv("Get-VMSnapshot", [Param("VM", position=0, pipeline=True), Param("Name")], get_vm_snapshot)

    def restore_vm_snapshot(inv: Invocation) -> Iterator[Any]:
        for cp in _snapshots(inv):
            vm = cp.vm
            if vm.state not in (3, 6):
                vm.state = 3
            vm.cpu, vm.memory = cp.cpu, cp.memory
            vm.drives = [Drive(vm, a, b, c, p) for a, b, c, p in cp.drives]
            vm.state = 6 if cp.state in (2, 9) else 3
            vm.current = cp
        return iter(())

    hv("Restore-VMSnapshot", snap_params, restore_vm_snapshot)

    def remove_vm_snapshot(inv: Invocation) -> Iterator[Any]:
        for cp in _snapshots(inv):
            vm = cp.vm
            for other in vm.checkpoints:
                if other.parent is cp:
                    other.parent = cp.parent
            if vm.current is cp:
                vm.current = cp.parent
            vm.checkpoints.remove(cp)
        return iter(())

    hv("Remove-VMSnapshot", [*snap_params, Param("IncludeAllChildSnapshots", switch=True)], remove_vm_snapshot)

    # drives and VHDs
    def get_hdd(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            yield from sorted(vm.drives, key=lambda d: (d.controller_type, d.number, d.location))

    hv(
        "Get-VMHardDiskDrive",
        [
            Param("VM", position=0, pipeline=True),
            Param("VMName"),
            Param("ControllerType"),
            Param("ControllerNumber"),
            Param("ControllerLocation"),
        ],
        get_hdd,
    )

    def add_hdd(inv: Invocation) -> Iterator[Any]:
        ct = to_string(inv.get("ControllerType", "IDE")).upper()
        if ct not in ("IDE", "SCSI"):
            raise inv.error(
                f"Cannot bind parameter 'ControllerType'. Cannot convert value \"{ct}\" to type "
                '"Microsoft.HyperV.PowerShell.ControllerType".',
                category="InvalidArgument",
                error_id="CannotConvertArgumentNoMessage",
                exception="ParameterBindingException",
            )
        cti = 1 if ct == "SCSI" else 0
        path = to_string(inv.get("Path"))
        for vm in _vm_arg(inv, host):
            if cti == 0 and vm.generation == 2:
                raise inv.error(
                    "Generation 2 virtual machines do not support IDE controllers.",
                    category="InvalidArgument",
                    error_id="InvalidParameter",
                    exception=_VIRT_EXC,
                )
            if cti == 0 and vm.state != 3:
                raise _state_error(inv, vm, "add device 'Virtual Hard Disk'")
            f = host.find_file(path)
            if f is None:
                raise inv.error(
                    f"Failed to add device 'Virtual Hard Disk'.\nThe system cannot find the file specified. ('{path}')",
                    category="ObjectNotFound",
                    error_id="ObjectNotFound",
                    target=path,
                    exception=_VIRT_EXC,
                )
            other = host.attached(path)
            if other is not None:
                raise inv.error(
                    f"Failed to add device 'Virtual Hard Disk'.\nThe file '{path}' is in use by '{other.name}'.",
                    category="ResourceBusy",
                    error_id="ObjectInUse",
                    exception=_VIRT_EXC,
                )
            num = int(inv.get("ControllerNumber", 0))
            if inv.has("ControllerLocation"):
                loc = int(inv.get("ControllerLocation"))
            else:
                used = {d.location for d in vm.drives if d.controller_type == cti and d.number == num}
                loc = next(i for i in range(64) if i not in used)
            if any(d.controller_type == cti and d.number == num and d.location == loc for d in vm.drives):
                raise inv.error(
                    f"Failed to add device 'Virtual Hard Disk'. The controller location {num}:{loc} is already in use.",
                    category="ResourceExists",
                    error_id="ObjectInUse",
                    exception=_VIRT_EXC,
                )
            d = Drive(vm, cti, num, loc, f.path)
            vm.drives.append(d)
            if inv.switch("Passthru"):
                yield d

    hv(
        "Add-VMHardDiskDrive",
        [
            Param("VM", position=0, pipeline=True),
            Param("VMName"),
            Param("Path"),
            Param("ControllerType"),
            Param("ControllerNumber"),
            Param("ControllerLocation"),
            Param("Passthru", switch=True),
        ],
        add_hdd,
    )

    def remove_hdd(inv: Invocation) -> Iterator[Any]:
        d = inv.get("VMHardDiskDrive")
        drives = d if isinstance(d, list) else [d]
        for drv in drives:
            if not isinstance(drv, Drive):
                raise inv.error(
                    "Cannot bind parameter 'VMHardDiskDrive'.",
                    category="InvalidArgument",
                    error_id="CannotConvertArgumentNoMessage",
                    exception="ParameterBindingException",
                )
            vm = drv.vm
            if drv.controller_type == 0 and vm.state != 3:
                raise _state_error(inv, vm, "remove device 'Virtual Hard Disk'")
            vm.drives = [
                x
                for x in vm.drives
                if x is not drv
                and (x.controller_type, x.number, x.location) != (drv.controller_type, drv.number, drv.location)
            ]
        return iter(())

    hv("Remove-VMHardDiskDrive", [Param("VMHardDiskDrive", position=0, pipeline=True, mandatory=True)], remove_hdd)

    def new_vhd(inv: Invocation) -> Iterator[Any]:
        path = to_string(inv.get("Path"))
        if host.find_file(path) is not None:
            raise inv.error(
                f"Failed to create the virtual hard disk.\nThe system failed to create '{path}': The file "
                "exists. (0x80070050).",
                category="ResourceExists",
                error_id="ObjectAlreadyExists",
                target=path,
                exception=_VIRT_EXC,
            )
        if path.rsplit(".", 1)[-1].lower() not in VHD_FORMAT:
            raise inv.error(
                f"Failed to create the virtual hard disk.\nThe system failed to create '{path}': The "
                "file name extension must be .vhd or .vhdx.",
                category="InvalidArgument",
                error_id="InvalidParameter",
                target=path,
                exception=_VIRT_EXC,
            )
        if inv.switch("Differencing"):
            parent = to_string(inv.get("ParentPath"))
            pv = host.find_file(parent)
            if pv is None:
                raise inv.error(
                    f"Failed to create the virtual hard disk.\nThe system cannot find the file specified. ('{parent}')",
                    category="ObjectNotFound",
                    error_id="ObjectNotFound",
                    target=parent,
                    exception=_VIRT_EXC,
                )
            yield host.add_vhd(path, pv.size, parent=pv.path)
            return
        size = int(inv.get("SizeBytes", 0))
        if size < 3 << 20 or size % 512:
            raise inv.error(
                "Failed to create the virtual hard disk. The size must be a multiple of 512 bytes and at least 3 MB.",
                category="InvalidArgument",
                error_id="InvalidParameter",
                exception=_VIRT_EXC,
            )
        yield host.add_vhd(path, size, vhd_type=2 if inv.switch("Fixed") else 3)

    hv(
        "New-VHD",
        [
            Param("Path", position=0, mandatory=True),
            Param("SizeBytes", position=1),
            Param("Dynamic", switch=True),
            Param("Fixed", switch=True),
            Param("Differencing", switch=True),
            Param("ParentPath"),
        ],
        new_vhd,
    )

    def get_vhd(inv: Invocation) -> Iterator[Any]:
        path = to_string(inv.get("Path"))
        f = host.find_file(path)
        if f is None:
            raise inv.error(
                f"Getting the mounted storage instance for the path '{path}' failed.\nThe operation "
                "cannot be performed while the object is in use.",
                category="ObjectNotFound",
                error_id="ObjectNotFound,Microsoft.Vhd.PowerShell.Cmdlets.GetVHD",
                target=path,
                exception=_VIRT_EXC,
                terminating=False,
            )
        yield f

    hv("Get-VHD", [Param("Path", position=0, pipeline=True, mandatory=True)], get_vhd)

    def resize_vhd(inv: Invocation) -> Iterator[Any]:
        path = to_string(inv.get("Path"))
        f = host.find_file(path)
        if f is None:
            raise inv.error(
                f"Failed to resize the virtual disk.\nThe system cannot find the file specified. ('{path}')",
                category="ObjectNotFound",
                error_id="ObjectNotFound",
                exception=_VIRT_EXC,
            )
        size = int(inv.get("SizeBytes"))
        if size < f.size:
            raise inv.error(
                "Failed to resize the virtual disk.\nThe size specified for the virtual disk is smaller "
                "than the minimum size.",
                category="InvalidArgument",
                error_id="InvalidParameter",
                exception=_VIRT_EXC,
            )
        f.size = size
        if inv.switch("Passthru"):
            yield f

    hv(
        "Resize-VHD",
        [Param("Path", position=0, mandatory=True), Param("SizeBytes", mandatory=True), Param("Passthru", switch=True)],
        resize_vhd,
    )

    def get_nic(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            yield from vm.adapters

    hv("Get-VMNetworkAdapter", [Param("VM", position=0, pipeline=True), Param("VMName")], get_nic)

    def get_switch(inv: Invocation) -> Iterator[Any]:
        name = to_string(inv.get("Name")) if inv.has("Name") else None
        found = [host.vswitch(n) for n in host.switches if name is None or n.lower() == name.lower()]
        if name is not None and not found:
            raise inv.error(
                f'Hyper-V was unable to find a virtual switch with name "{name}".',
                category="InvalidArgument",
                error_id="InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVMSwitch",
                target=name,
                exception=_VIRT_EXC,
            )
        yield from found

    hv("Get-VMSwitch", [Param("Name", position=0)], get_switch)

    def _adapters_arg(inv: Invocation) -> list[Adapter]:
        if inv.has("VMNetworkAdapter"):
            a = inv.get("VMNetworkAdapter")
            out = a if isinstance(a, list) else [a]
            if not all(isinstance(x, Adapter) for x in out):
                raise inv.error(
                    "Cannot bind parameter 'VMNetworkAdapter'.",
                    category="InvalidArgument",
                    error_id="CannotConvertArgumentNoMessage",
                    exception="ParameterBindingException",
                )
            return out
        name = to_string(inv.get("VMNetworkAdapterName")) if inv.has("VMNetworkAdapterName") else None
        return [a for vm in _vm_arg(inv, host) for a in vm.adapters if name is None or a.name == name]

    def get_vlan(inv: Invocation) -> Iterator[Any]:
        for a in _adapters_arg(inv):
            yield VlanSetting(a)

    hv(
        "Get-VMNetworkAdapterVlan",
        [
            Param("VMNetworkAdapter", position=0, pipeline=True),
            Param("VM"),
            Param("VMName"),
            Param("VMNetworkAdapterName"),
        ],
        get_vlan,
    )

    def set_vlan(inv: Invocation) -> Iterator[Any]:
        modes = [m for m in ("Untagged", "Access", "Trunk") if inv.switch(m)]
        if len(modes) != 1:
            raise inv.error(
                "Parameter set cannot be resolved using the specified named parameters.",
                category="InvalidArgument",
                error_id="AmbiguousParameterSet,Microsoft.HyperV.PowerShell.Commands.SetVMNetworkAdapterVlan",
                exception="ParameterBindingException",
            )
        for a in _adapters_arg(inv):
            a.vlan_mode = VLAN_MODES.index(modes[0])
            if modes[0] == "Access":
                a.access_vlan = int(inv.get("VlanId", 0))
            elif modes[0] == "Trunk":
                a.native_vlan = int(inv.get("NativeVlanId", 0))
                a.allowed_vlans = to_string(inv.get("AllowedVlanIdList", ""))
            else:
                a.access_vlan = a.native_vlan = 0
                a.allowed_vlans = ""
        return iter(())

    hv(
        "Set-VMNetworkAdapterVlan",
        [
            Param("VMNetworkAdapter", position=0, pipeline=True),
            Param("VM"),
            Param("VMName"),
            Param("VMNetworkAdapterName"),
            Param("Untagged", switch=True),
            Param("Access", switch=True),
            Param("Trunk", switch=True),
            Param("VlanId"),
            Param("NativeVlanId"),
            Param("AllowedVlanIdList"),
        ],
        set_vlan,
    )

    def add_nic(inv: Invocation) -> Iterator[Any]:
        for vm in _vm_arg(inv, host):
            sw = to_string(inv.get("SwitchName")) if inv.has("SwitchName") else None
            if sw is not None and sw not in host.switches:
                raise inv.error(
                    f'Hyper-V was unable to find a virtual switch with name "{sw}".',
                    category="InvalidArgument",
                    error_id="InvalidParameter",
                    target=sw,
                    exception=_VIRT_EXC,
                )
            mac = to_string(inv.get("StaticMacAddress")) or host.new_mac()
            a = Adapter(vm, to_string(inv.get("Name", "Network Adapter")), mac.replace(":", "").upper(), sw)
            vm.adapters.append(a)
            if inv.switch("Passthru"):
                yield a

    hv(
        "Add-VMNetworkAdapter",
        [
            Param("VM", position=0, pipeline=True),
            Param("Name"),
            Param("SwitchName"),
            Param("StaticMacAddress"),
            Param("Passthru", switch=True),
        ],
        add_nic,
    )

    def remove_nic(inv: Invocation) -> Iterator[Any]:
        a = inv.get("VMNetworkAdapter")
        for ad in a if isinstance(a, list) else [a]:
            if not isinstance(ad, Adapter):
                raise inv.error(
                    "Cannot bind parameter 'VMNetworkAdapter'.",
                    category="InvalidArgument",
                    error_id="CannotConvertArgumentNoMessage",
                    exception="ParameterBindingException",
                )
            ad.vm.adapters = [x for x in ad.vm.adapters if x is not ad]
        return iter(())

    hv("Remove-VMNetworkAdapter", [Param("VMNetworkAdapter", position=0, pipeline=True, mandatory=True)], remove_nic)

    def get_vmhost(inv: Invocation) -> Iterator[Any]:
        yield PSObject(
            {
                "ComputerName": host.computer_name,
                "Name": host.computer_name,
                "LogicalProcessorCount": 8,
                "MemoryCapacity": 32 << 30,
                "VirtualHardDiskPath": host.vhd_path,
                "VirtualMachinePath": host.vm_path,
                "FullyQualifiedDomainName": host.computer_name.lower() + ".sim.invalid",
            }
        )

    hv("Get-VMHost", [], get_vmhost)

    def move_vm_storage(inv: Invocation) -> Iterator[Any]:
        # Copies at host.copy_rate while the lock is released, then switches the VM over and deletes the source.
        vms = _vm_arg(inv, host)
        if len(vms) != 1:
            raise inv.error(
                "Move-VMStorage takes one virtual machine.",
                category="InvalidArgument",
                error_id="InvalidParameter",
                exception=_VIRT_EXC,
            )
        vm = vms[0]
        moves = []
        for spec in inv.get("Vhds") if isinstance(inv.get("Vhds"), list) else [inv.get("Vhds")]:
            src = to_string(get_member(spec, "SourceFilePath"))
            dst = to_string(get_member(spec, "DestinationFilePath"))
            f = host.find_file(src)
            if f is None or not any(_norm(d.path) == _norm(src) for d in vm.drives):
                raise inv.error(
                    f"The virtual machine '{vm.name}' does not have a virtual hard disk '{src}'.",
                    category="InvalidArgument",
                    error_id="InvalidParameter",
                    target=src,
                    exception=_VIRT_EXC,
                )
            if host.find_file(dst) is not None:
                raise inv.error(
                    f"Storage migration for virtual machine '{vm.name}' failed: the file '{dst}' already exists.",
                    category="ResourceExists",
                    error_id="ObjectAlreadyExists",
                    target=dst,
                    exception=_VIRT_EXC,
                )
            moves.append((f, dst))
        copies = []
        for f, dst in moves:
            c = VHD(dst.replace("/", "\\"), f.format, f.vhd_type, f.size, 0, f.parent_path, data=f.data)
            host.files[_norm(dst)] = c
            copies.append((f, c))
        total = sum(f.file_size for f, _ in moves) or 1
        done = 0
        host.lock.release()
        try:
            while done < total:
                if inv.interp.cancel.wait(0.05):
                    with host.lock:
                        for _, c in copies:
                            host.files.pop(_norm(c.path), None)
                    from ._ps import Stopped

                    raise Stopped()
                step = max(1, int(host.copy_rate * 0.05))
                done = min(total, done + step)
                with host.lock:
                    left = done
                    for f, c in copies:
                        c.file_size = min(f.file_size, left)
                        left -= c.file_size
        finally:
            host.lock.acquire()
        for f, c in copies:
            for d in vm.drives:
                if _norm(d.path) == _norm(f.path):
                    d.path = c.path
            host.files.pop(_norm(f.path), None)
        return iter(())

    hv(
        "Move-VMStorage",
        [
            Param("VM", position=0, pipeline=True),
            Param("VMName"),
            Param("Vhds"),
            Param("DestinationStoragePath"),
            Param("AsJob", switch=True),
        ],
        move_vm_storage,
    )

    return t


def _first(vals: list[Any]) -> Any:
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else vals


def seed_demo(host: HyperVHost, count: int = 3) -> None:
    """A few VMs with disks and NICs (for the bench and manual runs)."""
    rnd = random.Random(42)
    with host.lock:
        for i in range(count):
            vm = host.add_vm(f"demo-{i:03d}", memory=(512 + 512 * (i % 4)) << 20, cpu=1 + i % 4)
            path = f"{host.vhd_path}\\demo-{i:03d}.vhdx"
            host.add_vhd(path, 20 << 30)
            vm.drives.append(Drive(vm, 1, 0, 0, path))
            vm.adapters.append(
                Adapter(vm, "Network Adapter", host.new_mac(), "Default Switch", [f"10.0.{i // 250}.{i % 250 + 2}"])
            )
            if rnd.random() < 0.5:
                vm.state, vm.started = 2, time.monotonic()

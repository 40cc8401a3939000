"""The PowerShell the driver runs: fixed templates, every value passed as data.

A script is constant text plus ONE argument: the operation's values as JSON, UTF-8, base64. The prelude
decodes it into ``$a`` inside PowerShell::

    $a = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('eyJpZCI6Li4ufQ==')) | ConvertFrom-Json

Base64 has no quote, so no value (a VM named ``x'; Remove-VM -Name * -Force; '``) can end the string
and become code; templates only ever read ``$a.<field>``. Cmdlets are module-qualified (``Hyper-V\\Get-VM``)
so same-named cmdlets of other modules (VMware PowerCLI) cannot shadow them, ``$ErrorActionPreference``
is ``Stop`` so the first error ends the script: a ``catch`` around the body prints the error's structured fields
(:data:`ERROR_TRAP`: FullyQualifiedErrorId, the category's enum name, the exception's type) as one JSON line
and exits 1 (an error the trap cannot catch, a parse error of the script itself, still comes as CLIXML on
stderr), and results are flat hashtables serialised with ``ConvertTo-Json -Compress``.

The whole command line (``powershell -NoProfile -NonInteractive -EncodedCommand <UTF-16LE base64>``) must
stay under cmd.exe's 8,191 characters: :func:`command_line` refuses longer ones.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["CMD_LIMIT", "ERROR_TRAP", "SCRIPTS", "Script", "ScriptTooLong", "command_line", "encode_data"]

CMD_LIMIT = 8191
_B64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class ScriptTooLong(ValueError):
    """The encoded command line would exceed cmd.exe's limit."""


def encode_data(args: dict[str, Any]) -> str:
    """The operation's values as base64 of compact UTF-8 JSON (only ``[A-Za-z0-9+/=]``)."""
    raw = json.dumps(args, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
    out = base64.b64encode(raw).decode("ascii")
    if not _B64_RE.match(out):  # pragma: no cover - base64 cannot produce anything else
        raise ValueError("base64 produced an unexpected character")
    return out


PRELUDE = (
    "$ErrorActionPreference = 'Stop'\n"
    "$ProgressPreference = 'SilentlyContinue'\n"
    "try {\n"
    "$a = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{data}')) | ConvertFrom-Json\n"
)

# The end of every script: the first error, as the structured fields PowerShell does not translate (the error id,
# the category's enum name, the exception's type name), one JSON line on stdout, and exit code 1. The error view
# on stderr is wrapped at the console width and localized ("In Zeile:1 Zeichen:46", "Sicherheitsfehler"); this
# is what the driver classifies by.
ERROR_TRAP = (
    "} catch {\n"
    "@{VirtabsError = @{Id = [string]$_.FullyQualifiedErrorId; Category = [string]$_.CategoryInfo.Category; "
    "Exception = [string]$_.Exception.GetType().FullName; Target = [string]$_.TargetObject; "
    "Message = [string]$_.Exception.Message}} | ConvertTo-Json -Compress\n"
    "exit 1\n"
    "}\n"
)

# Find the VM by VMId; a missing VM is a clean, recognisable error (id VirtabsNoDomain).
VM_BY_ID = (
    "$vm = Hyper-V\\Get-VM -Id $a.id -ErrorAction SilentlyContinue\n"
    "if ($null -eq $vm) { Write-Error -Message 'no virtual machine with this VMId' -Category ObjectNotFound "
    "-ErrorId VirtabsNoDomain -TargetObject $a.id }\n"
)


def _vm_record(v: str) -> str:
    return (
        f"@{{Id = [string]{v}.VMId; Name = {v}.Name; State = {v}.State; Cpu = {v}.ProcessorCount; "
        f"Mem = {v}.MemoryStartup; Assigned = {v}.MemoryAssigned; Gen = {v}.Generation; "
        f"Created = {v}.CreationTime}}"
    )


VM_RECORD = _vm_record("$_")

# Disks of $vm with the VHD facts and the parent chain (one Get-VHD per layer).
DISKS = (
    "@(Hyper-V\\Get-VMHardDiskDrive -VM $vm | ForEach-Object { "
    "$v = Hyper-V\\Get-VHD -Path $_.Path -ErrorAction SilentlyContinue; "
    "@{Path = $_.Path; Ct = $_.ControllerType; Cn = $_.ControllerNumber; Cl = $_.ControllerLocation; "
    "Size = $v.Size; File = $v.FileSize; Fmt = $v.VhdFormat; "
    "Chain = @($p = $v.ParentPath; while ($p) { $p; $p = (Hyper-V\\Get-VHD -Path $p).ParentPath })} })"
)

NICS = (
    "@(Hyper-V\\Get-VMNetworkAdapter -VM $vm | ForEach-Object { "
    "@{Name = $_.Name; Mac = $_.MacAddress; Switch = $_.SwitchName; Ips = @($_.IPAddresses)} })"
)

SNAPSHOT_RECORD = (
    "@{Name = $_.Name; Id = [string]$_.Id; Created = $_.CreationTime; Parent = $_.ParentSnapshotName; State = $_.State}"
)

# The snapshot called $a.name (exact, case-sensitive match is the driver's; -Name would be a wildcard).
SNAPSHOT_BY_NAME = (
    "$s = @(Hyper-V\\Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq $a.name })\n"
    "if ($s.Count -eq 0) { Write-Error -Message 'no checkpoint with this name' -Category ObjectNotFound "
    "-ErrorId VirtabsNoSnapshot -TargetObject $a.name }\n"
)

VHD_RECORD = (
    "@{Path = $v.Path; Size = $v.Size; File = $v.FileSize; Fmt = $v.VhdFormat; Type = $v.VhdType; "
    "Chain = @($p = $v.ParentPath; while ($p) { $p; $p = (Hyper-V\\Get-VHD -Path $p).ParentPath })}"
)


@dataclass(frozen=True)
class Script:
    """A named template: ``# virtabs-op: <op>``, the prelude, then ``body`` (constant text)."""

    op: str
    body: str

    def render(self, args: dict[str, Any]) -> str:
        """The script text with ``args`` embedded as base64 data."""
        return f"# virtabs-op: {self.op}\n" + PRELUDE.replace("{data}", encode_data(args)) + self.body + ERROR_TRAP


def command_line(script: str) -> str:
    """``powershell -NoProfile -NonInteractive -EncodedCommand <UTF-16LE base64>``; ScriptTooLong past 8,191."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    line = f"powershell -NoProfile -NonInteractive -EncodedCommand {encoded}"
    if len(line) > CMD_LIMIT:
        raise ScriptTooLong(f"the PowerShell command line would be {len(line)} characters (cmd.exe allows {CMD_LIMIT})")
    return line


def _s(op: str, body: str) -> Script:
    return Script(op, body)


SCRIPTS: dict[str, Script] = {
    s.op: s
    for s in [
        _s("vm.list", f"@(Hyper-V\\Get-VM | ForEach-Object {{ {VM_RECORD} }}) | ConvertTo-Json -Depth 3 -Compress\n"),
        _s("vm.get", VM_BY_ID + f"$vm | ForEach-Object {{ {VM_RECORD} }} | ConvertTo-Json -Depth 3 -Compress\n"),
        _s(
            "vm.by_name",
            "@(Hyper-V\\Get-VM | Where-Object { $_.Name -eq $a.name } | ForEach-Object { "
            f"{VM_RECORD} }}) | ConvertTo-Json -Depth 3 -Compress\n",
        ),
        _s(
            "vm.inventory",
            "@(Hyper-V\\Get-VM | ForEach-Object { $vm = $_; "
            f"@{{Vm = {_vm_record('$vm')}; Disks = {DISKS}; Nics = {NICS}; "
            "Snaps = @(Hyper-V\\Get-VMSnapshot -VM $vm).Count} }) | ConvertTo-Json -Depth 6 -Compress\n",
        ),
        _s(
            "vm.detail",
            VM_BY_ID + f"@{{Vm = {_vm_record('$vm')}; Disks = {DISKS}; Nics = {NICS}}} | "
            "ConvertTo-Json -Depth 6 -Compress\n",
        ),
        _s("vm.disks", VM_BY_ID + f"ConvertTo-Json -InputObject {DISKS} -Depth 4 -Compress\n"),
        _s("vm.nics", VM_BY_ID + f"ConvertTo-Json -InputObject {NICS} -Depth 4 -Compress\n"),
        _s("vm.start", VM_BY_ID + "Hyper-V\\Start-VM -VM $vm\nif ($a.paused) { Hyper-V\\Suspend-VM -VM $vm }\n"),
        _s("vm.shutdown", VM_BY_ID + "Hyper-V\\Stop-VM -VM $vm -Force\n"),
        _s("vm.destroy", VM_BY_ID + "Hyper-V\\Stop-VM -VM $vm -TurnOff -Force\n"),
        _s("vm.reboot", VM_BY_ID + "Hyper-V\\Restart-VM -VM $vm -Force\n"),
        _s("vm.suspend", VM_BY_ID + "Hyper-V\\Suspend-VM -VM $vm\n"),
        _s("vm.resume", VM_BY_ID + "Hyper-V\\Resume-VM -VM $vm\n"),
        _s("vm.save", VM_BY_ID + "Hyper-V\\Save-VM -VM $vm\n"),
        _s("vm.discard_saved", VM_BY_ID + "Hyper-V\\Remove-VMSavedState -VM $vm\n"),
        _s(
            "vm.move",
            VM_BY_ID + "if ($a.storage) { Hyper-V\\Move-VM -VM $vm -DestinationHost $a.host -IncludeStorage "
            "-DestinationStoragePath $a.storage } else { Hyper-V\\Move-VM -VM $vm -DestinationHost $a.host }\n",
        ),
        _s(
            "vm.define",
            "if (@(Hyper-V\\Get-VM | Where-Object { $_.Name -eq $a.name }).Count -gt 0) { Write-Error -Message "
            "'a virtual machine with this name exists' -Category ResourceExists -ErrorId VirtabsDomainExists "
            "-TargetObject $a.name }\n"
            "$vm = Hyper-V\\New-VM -Name $a.name -MemoryStartupBytes $a.mem -Generation 2 -NoVHD\n"
            "Hyper-V\\Set-VM -VM $vm -ProcessorCount $a.cpu\n"
            "Hyper-V\\Get-VMNetworkAdapter -VM $vm | Hyper-V\\Remove-VMNetworkAdapter\n"
            "foreach ($d in $a.disks) { Hyper-V\\Add-VMHardDiskDrive -VM $vm -Path $d.path -ControllerType $d.ct "
            "-ControllerNumber $d.cn -ControllerLocation $d.cl }\n"
            "foreach ($n in $a.nics) { if ($n.mac) { Hyper-V\\Add-VMNetworkAdapter -VM $vm -SwitchName $n.switch "
            "-StaticMacAddress $n.mac } else { Hyper-V\\Add-VMNetworkAdapter -VM $vm -SwitchName $n.switch } }\n"
            f"$vm | ForEach-Object {{ {VM_RECORD} }} | ConvertTo-Json -Depth 3 -Compress\n",
        ),
        _s("vm.undefine", VM_BY_ID + "Hyper-V\\Remove-VM -VM $vm -Force\n"),
        _s(
            "snapshot.create",
            VM_BY_ID + "Hyper-V\\Checkpoint-VM -VM $vm -SnapshotName $a.name -Passthru | ForEach-Object { "
            f"{SNAPSHOT_RECORD} }} | ConvertTo-Json -Compress\n",
        ),
        _s(
            "snapshot.list",
            VM_BY_ID + f"@(Hyper-V\\Get-VMSnapshot -VM $vm | ForEach-Object {{ {SNAPSHOT_RECORD} }}) | "
            "ConvertTo-Json -Compress\n",
        ),
        _s(
            "snapshot.revert",
            VM_BY_ID + SNAPSHOT_BY_NAME + "Hyper-V\\Restore-VMSnapshot -VMSnapshot $s[0] -Confirm:$false\n"
            "if ($s[0].State -eq 'Running') { Hyper-V\\Start-VM -VM $vm }\n"
            "if ($s[0].State -eq 'Paused') { Hyper-V\\Start-VM -VM $vm; Hyper-V\\Suspend-VM -VM $vm }\n",
        ),
        _s("snapshot.delete", VM_BY_ID + SNAPSHOT_BY_NAME + "Hyper-V\\Remove-VMSnapshot -VMSnapshot $s[0]\n"),
        _s(
            "disk.attach",
            VM_BY_ID + "if (@(Hyper-V\\Get-VMHardDiskDrive -VM $vm | Where-Object { [int]$_.ControllerType -eq "
            "$a.cti -and $_.ControllerNumber -eq $a.cn -and $_.ControllerLocation -eq $a.cl }).Count -gt 0) { "
            "Write-Error -Message 'the controller slot is in use' -Category ResourceExists -ErrorId VirtabsTargetInUse "
            "-TargetObject $a.target }\n"
            "Hyper-V\\Add-VMHardDiskDrive -VM $vm -Path $a.path -ControllerType $a.ct "
            "-ControllerNumber $a.cn -ControllerLocation $a.cl\n",
        ),
        _s(
            "disk.detach",
            VM_BY_ID + "$d = @(Hyper-V\\Get-VMHardDiskDrive -VM $vm | Where-Object { [int]$_.ControllerType -eq "
            "$a.cti -and $_.ControllerNumber -eq $a.cn -and $_.ControllerLocation -eq $a.cl })\n"
            "if ($d.Count -eq 0) { Write-Error -Message 'no hard disk drive in this controller slot' "
            "-Category ObjectNotFound -ErrorId VirtabsNoDisk -TargetObject $a.target }\n"
            "Hyper-V\\Remove-VMHardDiskDrive -VMHardDiskDrive $d[0]\n",
        ),
        _s(
            "network.list",
            "@{Switches = @(Hyper-V\\Get-VMSwitch | ForEach-Object { @{Name = $_.Name; Id = [string]$_.Id; "
            "Type = [string]$_.SwitchType; Adapter = $_.NetAdapterInterfaceDescription} }); "
            "Nics = @(Hyper-V\\Get-VM | ForEach-Object { $vm = $_; Hyper-V\\Get-VMNetworkAdapter -VM $vm | "
            "ForEach-Object { $v = Hyper-V\\Get-VMNetworkAdapterVlan -VMNetworkAdapter $_; "
            "@{Vm = [string]$vm.VMId; VmName = $vm.Name; Mac = $_.MacAddress; Switch = $_.SwitchName; "
            "Mode = [string]$v.OperationMode; Access = $v.AccessVlanId; Native = $v.NativeVlanId; "
            "Allowed = [string]$v.AllowedVlanIdListString} } })} | ConvertTo-Json -Depth 4 -Compress\n",
        ),
        _s(
            "host.info",
            "Hyper-V\\Get-VMHost | ForEach-Object { @{Name = $_.ComputerName; Fqdn = $_.FullyQualifiedDomainName; "
            "Cpus = $_.LogicalProcessorCount; Mem = $_.MemoryCapacity; VhdPath = $_.VirtualHardDiskPath; "
            "Os = [string][Environment]::OSVersion.Version} } | ConvertTo-Json -Compress\n",
        ),
        _s(
            "volume.list",
            "$h = Hyper-V\\Get-VMHost\n"
            "$dir = $h.VirtualHardDiskPath\n"
            "if ($a.dir) { $dir = $a.dir }\n"
            "ConvertTo-Json -Depth 4 -Compress -InputObject @(Get-ChildItem -LiteralPath $dir -File | "
            "Where-Object { $_.Extension -eq '.vhdx' -or $_.Extension -eq '.vhd' } | ForEach-Object { "
            f"$v = Hyper-V\\Get-VHD -Path $_.FullName; {VHD_RECORD} }})\n",
        ),
        _s("volume.get", f"$v = Hyper-V\\Get-VHD -Path $a.path\n{VHD_RECORD} | ConvertTo-Json -Depth 4 -Compress\n"),
        _s(
            "volume.create",
            "if ($a.parent) { $v = Hyper-V\\New-VHD -Path $a.path -Differencing -ParentPath $a.parent } "
            "else { $v = Hyper-V\\New-VHD -Path $a.path -SizeBytes $a.size -Dynamic }\n"
            f"{VHD_RECORD} | ConvertTo-Json -Depth 4 -Compress\n",
        ),
        _s(
            "volume.resize",
            "$v = Hyper-V\\Resize-VHD -Path $a.path -SizeBytes $a.size -Passthru\n"
            f"{VHD_RECORD} | ConvertTo-Json -Depth 4 -Compress\n",
        ),
        _s("volume.delete", "Hyper-V\\Get-VHD -Path $a.path | Out-Null\nRemove-Item -LiteralPath $a.path\n"),
        _s(
            "storage.move",
            VM_BY_ID + "Hyper-V\\Move-VMStorage -VM $vm -Vhds @(@{SourceFilePath = $a.src; "
            "DestinationFilePath = $a.dst})\n",
        ),
        _s(
            "storage.progress",
            "$f = Get-Item -LiteralPath $a.dst -ErrorAction SilentlyContinue\n"
            "@{Copied = $f.Length; Exists = [bool]$f} | ConvertTo-Json -Compress\n",
        ),
    ]
}

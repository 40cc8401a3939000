"""``Microsoft.HyperV.PowerShell.VMState`` (what ``Get-VM`` reports) and its libvirt equivalent.

Values from the Hyper-V PowerShell module as the Terraform provider models them (``api/vm_status.go``);
the mapping to libvirt states follows libvirt's own hyperv driver where it has one (a saved VM is shut
off, transitions count as the state they leave). ``*Critical`` states map like their base state (the VM
needs attention but is still running, off, ...); the native name keeps the difference.
"""

from __future__ import annotations

__all__ = ["VM_STATE_NAMES", "libvirt_state", "native_name"]

VM_STATE_NAMES: dict[int, str] = {
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
    32781: "ForceShutdown",
    32782: "ForceReboot",
    32783: "RunningCritical",
    32784: "OffCritical",
    32785: "StoppingCritical",
    32786: "SavedCritical",
    32787: "PausedCritical",
    32788: "StartingCritical",
    32789: "ResetCritical",
    32790: "SavingCritical",
    32791: "PausingCritical",
    32792: "ResumingCritical",
    32793: "FastSavedCritical",
    32794: "FastSavingCritical",
}

_LIBVIRT: dict[str, str] = {
    "Other": "nostate",
    "Running": "running",
    "Off": "shutoff",
    "Stopping": "shutdown",
    "Saved": "shutoff",
    "Paused": "paused",
    "Starting": "running",
    "Reset": "running",
    "Saving": "running",
    "Pausing": "running",
    "Resuming": "paused",
    "FastSaved": "shutoff",
    "FastSaving": "running",
    "ForceShutdown": "shutdown",
    "ForceReboot": "running",
}


def native_name(value: int | str | None) -> str:
    """The VMState name for a number (5.1 JSON) or a name (a string-interpolated enum); unknown -> ``"Unknown(N)"``."""
    if value is None:
        return "Unknown"
    if isinstance(value, str):
        if value.isdigit():
            value = int(value)
        else:
            return value
    return VM_STATE_NAMES.get(value, f"Unknown({value})")


def libvirt_state(native: str) -> str:
    """The libvirt state name (``running``, ``shutoff``, ...) for a VMState name."""
    base = native.removesuffix("Critical")
    return _LIBVIRT.get(base, "nostate")

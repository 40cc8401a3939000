"""virtabs-hyperv: the virtabs driver for Microsoft Hyper-V over WinRM.

The driver (``virtabs_hyperv.driver``, URI scheme ``hyperv``) runs the Hyper-V PowerShell cmdlets on the
host through pywinrm. This module imports nothing heavy: pywinrm is loaded when a connection opens.
"""

from __future__ import annotations

__all__: list[str] = []

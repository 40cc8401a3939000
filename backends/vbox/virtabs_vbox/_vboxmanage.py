"""Calling ``VBoxManage`` through a command transport, and turning its error lines into virtabs errors."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

import attrs
from virtabs.spi import (
    ConnectError,
    InvalidArgumentError,
    NoDomainError,
    NoSnapshotError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    VirtabsError,
    quote,
)

from ._parse import (
    DhcpServer,
    HostInterface,
    HostOnlyNetwork,
    Medium,
    NatNetwork,
    VmInfo,
    parse_colon_blocks,
    parse_dhcpservers,
    parse_host_interfaces,
    parse_hostonlynets,
    parse_intnets,
    parse_list_vms,
    parse_natnets,
    parse_vminfo,
)
from ._transport import CommandResult, CommandTransport

__all__ = ["Batch", "VBoxManage", "error_lines", "has_error_line", "vbox_error"]

_CODE = re.compile(r"Details: code (\w+) \((0x[0-9a-fA-F]+)\)")
_STATE_CODES = frozenset({"VBOX_E_INVALID_VM_STATE", "VBOX_E_INVALID_OBJECT_STATE", "VBOX_E_OBJECT_IN_USE"})

# One host round trip for a bulk read: ``list hdds``, the host's networks (``list hostonlyifs``, ``bridgedifs``,
# ``intnets``, ``dhcpservers``, ``--long natnets``, and ``hostonlynets``, which only VirtualBox 7 on macOS has:
# elsewhere it fails and means none) and/or ``list vms`` and ``showvminfo`` of each machine.
# A fixed script: the tool path, a random section marker and the UUIDs arrive as positional parameters,
# never as shell text. Each section starts with "<marker> <kind> [uuid]" and ends with "<marker> rc <status>".
_BATCH = r"""
v=$1; n=$2; hdds=$3; nets=$4; mode=$5; shift 5
end() { printf '\n%s rc %s\n' "$n" "$1"; }
if [ "$hdds" = 1 ]; then echo "$n hdds"; "$v" list hdds; end $?; fi
if [ "$nets" = 1 ]; then
  for l in hostonlyifs bridgedifs intnets dhcpservers; do echo "$n $l"; "$v" list "$l"; end $?; done
  echo "$n natnets"; "$v" list --long natnets; end $?
  echo "$n hostonlynets"; "$v" list hostonlynets 2>/dev/null; end $?
fi
if [ "$mode" = all ]; then
  echo "$n vms"; vms=$("$v" list vms); rc=$?; printf '%s\n' "$vms"; end $rc
  set -- $(printf '%s\n' "$vms" | sed -n 's/.*{\([0-9A-Fa-f-]*\)}[[:space:]]*$/\1/p')
fi
for u in "$@"; do echo "$n vm $u"; "$v" showvminfo "$u" --machinereadable; end $?; done
"""


_ERROR_LINE = re.compile(r"^\s*(?:\S*[/\\])?vboxmanage(?:\.exe)?: error: (.*)$", re.IGNORECASE)
"""An error line: the program name as it was invoked (``VBoxManage``, ``vboxmanage.exe`` on Windows, any case)."""


def error_lines(stderr: str) -> list[str]:
    """The ``VBoxManage: error:`` messages (without the Details/Context lines)."""
    lines = []
    for line in stderr.splitlines():
        match = _ERROR_LINE.match(line)
        if match and not match.group(1).startswith(("Details:", "Context:")):
            lines.append(match.group(1).strip())
    return lines


def has_error_line(stderr: str) -> bool:
    """Whether stderr holds a ``VBoxManage: error:`` line (a failure even with exit status 0, as Packer says)."""
    return any(_ERROR_LINE.match(line) for line in stderr.splitlines())


def vbox_error(result: CommandResult, what: str) -> VirtabsError:
    """The virtabs error for a failed VBoxManage call about ``what`` (a phrase naming the object)."""
    stderr = result.err
    messages = error_lines(stderr) or [line for line in stderr.splitlines() if line.strip()][-1:]
    message = "; ".join(messages) or f"exit status {result.returncode}"
    match = _CODE.search(stderr)
    code = match.group(1) if match else ""
    text = f"{what}: {message}" + (f" [{code}]" if code else "")
    if result.returncode == 2 or "Invalid command" in message or "Unknown option" in message:
        return OperationFailedError(f"{what}: VBoxManage refused the command line: {message}")
    if code == "VBOX_E_OBJECT_NOT_FOUND":
        if "registered machine" in message:
            return NoDomainError(text)
        if "snapshot" in message.lower():
            return NoSnapshotError(text)
        if "medium" in message.lower() or "hard disk" in message.lower():
            return NoStorageVolumeError(text)
        return InvalidArgumentError(text)
    if code in _STATE_CODES or "is not currently running" in message:
        return OperationInvalidError(text)
    return OperationFailedError(text)


@attrs.frozen
class Batch:
    """The result of one bulk read."""

    listed: tuple[tuple[str, str], ...]
    """``list vms`` as (name, uuid), when asked for all machines."""
    machines: dict[str, VmInfo]
    """By UUID; machines that vanished between the listing and ``showvminfo`` are missing."""
    media: tuple[Medium, ...]
    hostonly: tuple[HostInterface, ...] = ()
    """``list hostonlyifs``, when networks were asked for (likewise the three below)."""
    bridged: tuple[HostInterface, ...] = ()
    intnets: tuple[str, ...] = ()
    natnets: tuple[NatNetwork, ...] = ()
    dhcpservers: tuple[DhcpServer, ...] = ()
    hostonlynets: tuple[HostOnlyNetwork, ...] = ()
    """VirtualBox 7's host-only networks (macOS hosts); none where ``list hostonlynets`` does not exist."""


class VBoxManage:
    """``VBoxManage`` on the host a transport reaches."""

    def __init__(self, transport: CommandTransport, program: str = "VBoxManage") -> None:
        self.transport = transport
        self.program = program

    def raw(self, args: Sequence[str], *, timeout: float | None = None, input: bytes | None = None) -> CommandResult:
        """Run ``VBoxManage args`` and return what it did, whatever the exit status."""
        result = self.transport.run([self.program, *args], timeout=timeout, check=False, input=input)
        if result.returncode == 127 and self.transport.is_remote:
            raise ConnectError(
                f"{self.program} is not installed (or not on PATH) on {self.transport.where}: {result.err.strip()}"
            )
        return result

    def __call__(self, *args: str, what: str, timeout: float | None = None) -> str:
        """Run ``VBoxManage args``; a failure (exit status, or an error line even with status 0, as Packer
        treats it) raises the matching virtabs error about ``what``."""
        result = self.raw(args, timeout=timeout)
        if result.returncode != 0 or has_error_line(result.err):
            raise vbox_error(result, what)
        return result.out

    def machine(self, key: str) -> VmInfo:
        """``showvminfo --machinereadable -- <key>``; NoDomainError when there is no such machine.

        ``--`` ends VBoxManage's options (IPRT's ``RTGetOpt``), so a machine called ``--details`` or
        ``-h`` is looked up as a name instead of being read as an option.
        """
        return parse_vminfo(self("showvminfo", "--machinereadable", "--", key, what=f"domain {quote(key)}"))

    def batch(self, uuids: Sequence[str] | None, *, media: bool, networks: bool = False) -> Batch:
        """One host call: every machine (``uuids`` None) or the given ones, the media registry (``media``), and
        the host's networks (``networks``)."""
        marker = "@virtabs-" + secrets.token_hex(8)
        argv = ["sh", "-c", _BATCH, "sh", self.program, marker, "1" if media else "0", "1" if networks else "0"]
        argv += ["all"] if uuids is None else ["some", *uuids]
        result = self.transport.run(argv, check=False)
        if result.returncode == 127 or (result.returncode != 0 and not result.stdout):
            raise OperationFailedError(f"bulk read with {self.program} on {self.transport.where} failed: {result.err}")
        sections: list[tuple[list[str], list[str], int]] = []
        header: list[str] | None = None
        body: list[str] = []
        for line in result.out.split("\n"):
            if line.startswith(marker + " "):
                words = line[len(marker) + 1 :].split()
                if words and words[0] == "rc" and header is not None:
                    sections.append((header, body, int(words[1]) if len(words) > 1 else 1))
                    header, body = None, []
                else:
                    header, body = words, []
            elif header is not None:
                body.append(line)
        listed: tuple[tuple[str, str], ...] = ()
        machines: dict[str, VmInfo] = {}
        media_list: tuple[Medium, ...] = ()
        found: dict[str, str] = {}
        for head, lines, rc in sections:
            text = "\n".join(lines) + "\n"
            if head[0] == "hostonlynets":
                found[head[0]] = text if rc == 0 else ""  # not a VirtualBox 7 macOS host: none
            elif head[0] in ("hostonlyifs", "bridgedifs", "intnets", "natnets", "dhcpservers"):
                if rc != 0:
                    raise OperationFailedError(f"list {head[0]} on {self.transport.where} failed: {result.err.strip()}")
                found[head[0]] = text
            elif head[0] == "hdds":
                if rc != 0:
                    raise OperationFailedError(f"list hdds on {self.transport.where} failed: {result.err.strip()}")
                media_list = tuple(Medium.from_block(b) for b in parse_colon_blocks(text) if "UUID" in b)
            elif head[0] == "vms":
                if rc != 0:
                    raise OperationFailedError(f"list vms on {self.transport.where} failed: {result.err.strip()}")
                listed = tuple(parse_list_vms(text))
            elif head[0] == "vm" and rc == 0:
                info = parse_vminfo(text)
                machines[info.uuid or head[1].lower()] = info
        return Batch(
            listed,
            machines,
            media_list,
            hostonly=tuple(parse_host_interfaces(found.get("hostonlyifs", ""))),
            bridged=tuple(parse_host_interfaces(found.get("bridgedifs", ""))),
            intnets=tuple(parse_intnets(found.get("intnets", ""))),
            natnets=tuple(parse_natnets(found.get("natnets", ""))),
            dhcpservers=tuple(parse_dhcpservers(found.get("dhcpservers", ""))),
            hostonlynets=tuple(parse_hostonlynets(found.get("hostonlynets", ""))),
        )

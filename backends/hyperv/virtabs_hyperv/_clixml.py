"""PowerShell error records from CLIXML on stderr (what powershell.exe writes when stderr is redirected).

``#< CLIXML`` then ``<Objs>`` holding one ``<S S="Error">`` per console line, with ``_xHHHH_`` escapes
(``_x000D__x000A_`` is CR LF). The lines form PowerShell's error view::

    Get-VM : Hyper-V was unable to find a virtual machine with name "x".
    At line:3 char:7
    + $vm = Hyper-V\\Get-VM -Name x
    +       ~~~~~~~~~~~~~~~~~~~~~~
        + CategoryInfo          : InvalidArgument: (x:String) [Get-VM], VirtualizationException
        + FullyQualifiedErrorId : InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM

Several records may follow each other. Stderr that is not CLIXML (cmd.exe's own messages) is kept as text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

__all__ = ["ErrorRecord", "parse_errors"]

_ESC_RE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_CAT_RE = re.compile(r"^\+\s*CategoryInfo\s*:\s*(\w+):\s*\((.*)\)\s*\[([^\]]*)\],\s*(\S+)\s*$")
_FQ_RE = re.compile(r"^\+\s*FullyQualifiedErrorId\s*:\s*(.+?)\s*$")


@dataclass(frozen=True)
class ErrorRecord:
    """One PowerShell error: the message and what the error view says about it."""

    message: str
    category: str = ""
    target: str = ""
    command: str = ""
    exception: str = ""
    error_id: str = ""

    def has_id(self, error_id: str) -> bool:
        """Whether the FullyQualifiedErrorId starts with ``error_id`` (ids carry ``,<command>`` suffixes)."""
        return self.error_id == error_id or self.error_id.startswith(error_id + ",")


def _unescape(text: str) -> str:
    return _ESC_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _records(lines: list[str]) -> list[ErrorRecord]:
    records: list[ErrorRecord] = []
    msg: list[str] = []
    in_position = False
    cat = target = cmd = exc = ""
    for raw in lines:
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("+ CategoryInfo"):
            m = _CAT_RE.match(stripped)
            if m:
                cat, target, cmd, exc = m.group(1), m.group(2), m.group(3), m.group(4)
            continue
        if stripped.startswith("+ FullyQualifiedErrorId"):
            m = _FQ_RE.match(stripped)
            records.append(_finish(msg, cat, target, cmd, exc, m.group(1) if m else ""))
            msg, in_position, cat, target, cmd, exc = [], False, "", "", "", ""
            continue
        if re.match(r"^At (line:\d+ char:\d+|[^:]+:\d+ char:\d+)", stripped):
            in_position = True
            continue
        if in_position and stripped.startswith("+"):
            continue
        if not stripped:
            continue
        if not in_position:
            msg.append(stripped)
    if msg:
        records.append(_finish(msg, cat, target, cmd, exc, ""))
    return records


def _finish(msg: list[str], cat: str, target: str, cmd: str, exc: str, fqid: str) -> ErrorRecord:
    # Console lines are wrapped at the host's width: join them (a real line break reads as a space).
    text = " ".join(m.strip() for m in msg).strip()
    head, sep, rest = text.partition(" : ")
    if sep and (head == cmd or (cmd and cmd.lower() in head.lower()) or (not cmd and " " not in head)):
        # "<command> : <message>": the prefix is the command or the invoking command line
        text = rest
    return ErrorRecord(text, cat, target, cmd, exc, fqid)


def parse_errors(stderr: bytes | str) -> list[ErrorRecord]:
    """Every error record in ``stderr``; plain (non-CLIXML) text becomes one record with only a message."""
    text = stderr.decode("utf-8", errors="replace") if isinstance(stderr, bytes) else stderr
    if not text.strip():
        return []
    if not text.startswith("#< CLIXML"):
        return [ErrorRecord(text.strip())]
    xml = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return [ErrorRecord(_unescape(re.sub(r"<[^>]+>", "", xml)).strip() or "unparseable CLIXML on stderr")]
    out: list[str] = []
    for node in root.iter():
        if node.tag.rsplit("}", 1)[-1] == "S" and node.get("S") == "Error":
            out.append(_unescape(node.text or ""))
    lines = "".join(out).replace("\r\n", "\n").split("\n")
    return _records(lines)

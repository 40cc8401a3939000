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

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

__all__ = ["ErrorRecord", "parse_errors", "trapped_error"]

_ESC_RE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_CAT_RE = re.compile(r"^\+\s*CategoryInfo\s*:\s*(\w+):\s*\((.*)\)\s*\[([^\]]*)\],\s*(\S+)\s*$")
_FQ_RE = re.compile(r"^\+\s*FullyQualifiedErrorId\s*:\s*(.+?)\s*$")
_POS_RE = re.compile(r"^\S.*:\s*\d+\s+\S+:\s*\d+$")


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


def _is_position(line: str) -> bool:
    """A position line of the error view in any language (``At line:1 char:46``, ``In Zeile:1 Zeichen:46``,
    ``En línea: 4 Carácter: 21``, ``At C:\\x\\a.ps1:3 char:7``): ``<words>:<n> <word>:<n>``."""
    return bool(_POS_RE.match(line.strip()))


def _message(body: list[str]) -> list[str]:
    """The message lines of one record's lines before its CategoryInfo: without the position lines (the line
    before each run of ``+ <code>`` / ``+ ~~~`` lines, in whatever language, wrapped or not) and the code."""
    code = [line.lstrip().startswith("+") for line in body]
    drop = set()
    for i, is_code in enumerate(code):
        if not is_code:
            continue
        drop.add(i)
        if i > 0 and not code[i - 1]:
            j = i - 1
            if body[j].strip().isdigit() and j > 0:  # a position line wrapped before its last number
                drop.add(j)
                j -= 1
            if _is_position(body[j]) or _is_position(body[j] + (body[j + 1] if j + 1 < i else "")):
                drop.add(j)
    return [line for i, line in enumerate(body) if i not in drop and line.strip()]


def _records(lines: list[str]) -> list[ErrorRecord]:
    """Records from the console lines of the error view.

    The console wraps at its width (80 columns over WinRM unless the host says otherwise): a long
    ``+ CategoryInfo`` or ``+ FullyQualifiedErrorId`` line goes on in the next line indented by three
    spaces, cut wherever the width ended (mid-word), so such continuations are joined without a space;
    message lines are joined with one.
    """
    records: list[ErrorRecord] = []
    body: list[str] = []
    field = ""  # "cat" or "fq" while reading those lines and their continuations
    cat_text = fq_text = ""

    def finish() -> None:
        nonlocal body, field, cat_text, fq_text
        m = _CAT_RE.match(cat_text)
        cat, target, cmd, exc = (m.group(1), m.group(2), m.group(3), m.group(4)) if m else ("", "", "", "")
        fq = _FQ_RE.match(fq_text)
        records.append(_finish(_message(body), cat, target, cmd, exc, fq.group(1) if fq else ""))
        body, field, cat_text, fq_text = [], "", "", ""

    for raw in lines:
        line = raw.rstrip("\r")
        stripped = line.strip()
        if stripped.startswith("+ CategoryInfo"):
            field, cat_text = "cat", stripped
            continue
        if stripped.startswith("+ FullyQualifiedErrorId"):
            field, fq_text = "fq", stripped
            continue
        if field and stripped and line[:1].isspace() and not stripped.startswith("+"):
            # a wrapped CategoryInfo / FullyQualifiedErrorId line
            if field == "cat":
                cat_text += stripped
            else:
                fq_text += stripped
            continue
        if field == "fq":
            finish()
        elif field == "cat":
            field = ""
        if stripped:
            body.append(line)
    if field or body:
        finish()
    return [r for r in records if r.message or r.error_id or r.category]


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


def trapped_error(stdout: bytes | str) -> ErrorRecord | None:
    """The error a script's ``catch`` printed as its last stdout line (``{"VirtabsError": {...}}``, see
    ``_scripts.ERROR_TRAP``): id, category and exception type as PowerShell has them, in no language; None when
    the last line is not one."""
    text = stdout.decode("utf-8", errors="replace") if isinstance(stdout, bytes) else stdout
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = json.loads(lines[-1].strip().lstrip("\ufeff"))
    except ValueError:
        return None
    fields = value.get("VirtabsError") if isinstance(value, dict) else None
    if not isinstance(fields, dict):
        return None

    def field(name: str) -> str:
        item = fields.get(name)
        return item if isinstance(item, str) else ""

    return ErrorRecord(
        message=field("Message").strip(),
        category=field("Category"),
        target=field("Target"),
        exception=field("Exception").rsplit(".", 1)[-1],
        error_id=field("Id"),
    )

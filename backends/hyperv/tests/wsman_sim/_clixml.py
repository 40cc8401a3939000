"""Error records as powershell.exe writes them to a redirected stderr: ``#< CLIXML`` (test infrastructure).

The shape (pywinrm's fixture ``get_ps_output_response``): one ``<S S="Error">`` element per console line,
CR LF encoded as ``_x000D__x000A_``::

    <cmd> : <message>
    At line:L char:C
    + <the line>
    + ~~~~~
        + CategoryInfo          : <Category>: (<target>:<type>) [<cmd>], <exception>
        + FullyQualifiedErrorId : <id>
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from ._ps import PSError

__all__ = ["clixml_escape", "error_clixml"]


def clixml_escape(text: str) -> str:
    """CLIXML string escaping: a literal ``_x`` becomes ``_x005F_x``; control characters become ``_xHHHH_``."""
    out = []
    for i, ch in enumerate(text):
        o = ord(ch)
        if ch == "_" and text[i + 1 : i + 2] == "x":
            out.append("_x005F_")
        elif o < 0x20 or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF):
            out.append(f"_x{o:04X}_")
        else:
            out.append(ch)
    return escape("".join(out))


def _lines(err: PSError, script: str) -> list[str]:
    short_exc = err.exception.rsplit(".", 1)[-1]
    cmd = err.command
    msg_lines = err.message.split("\n")
    head = f"{cmd} : {msg_lines[0]}" if cmd else msg_lines[0]
    lines = [head, *msg_lines[1:]]
    if err.pos >= 0:
        line_no = script.count("\n", 0, err.pos) + 1
        start = script.rfind("\n", 0, err.pos) + 1
        end = script.find("\n", err.pos)
        text = script[start : end if end >= 0 else len(script)].rstrip("\r")
        col = err.pos - start
        lines += [
            f"At line:{line_no} char:{col + 1}",
            f"+ {text}",
            "+ " + " " * col + "~" * max(1, min(20, len(text) - col)),
        ]
    target = f"{err.target}:{err.target_type}" if err.target or err.target_type else ":"
    lines.append(f"    + CategoryInfo          : {err.category}: ({target}) [{cmd}], {short_exc}")
    lines.append(f"    + FullyQualifiedErrorId : {err.error_id}")
    lines.append(" ")
    return lines


def error_clixml(errors: list[PSError], script: str) -> bytes:
    """The stderr bytes for ``errors``."""
    parts = []
    for err in errors:
        for line in _lines(err, script):
            parts.append(f'<S S="Error">{clixml_escape(line + chr(13) + chr(10))}</S>')
    body = (
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">' + "".join(parts) + "</Objs>"
    )
    return ("#< CLIXML\r\n" + body).encode("utf-8")

"""``ConvertTo-Json`` / ``ConvertFrom-Json`` as Windows PowerShell 5.1 behaves (test infrastructure).

The quirks a client must survive: enums are their numbers, DateTime is ``"\\/Date(ms)\\/"``, a pipeline
holding one object serialises as that object (not a one-element array) and an empty pipeline prints nothing,
objects deeper than ``-Depth`` (default 2) become their type name, JavaScriptSerializer escapes ``< > & '``,
and the indented form puts two spaces after the colon.
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid
from typing import Any

from ._ps import PSEnum, PSObject, TimeSpan, get_member, to_string, type_name

__all__ = ["from_json", "to_json"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _escape(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "<>&'" or o < 0x20:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _props(v: Any) -> dict[str, Any] | None:
    if isinstance(v, dict):
        return {str(k): x for k, x in v.items()}
    if isinstance(v, TimeSpan):
        return v.ps_props()
    if hasattr(v, "ps_props"):
        return dict(v.ps_props())
    return None


def _convert(v: Any, depth: int, max_depth: int) -> Any:
    """Python value -> a JSON-ready tree (str values pre-escaped are wrapped)."""
    if v is None or isinstance(v, bool | int | float):
        return v
    if isinstance(v, PSEnum):
        return v.value
    if isinstance(v, str):
        return v
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, _dt.datetime):
        ms = int((v.astimezone(_dt.UTC) - _EPOCH).total_seconds() * 1000)
        return _Raw(f'"\\/Date({ms})\\/"')
    if isinstance(v, bytes):
        v = list(v)
    if isinstance(v, list | tuple):
        if depth > max_depth:
            return " ".join(to_string(x) for x in v)
        return [_convert(x, depth + 1, max_depth) for x in v]
    props = _props(v)
    if props is not None:
        if depth > max_depth:
            return type_name(v) if not isinstance(v, PSObject) else ""
        return {k: _convert(x, depth + 1, max_depth) for k, x in props.items()}
    return to_string(v)


class _Raw(str):
    """Already-encoded JSON text (the DateTime form)."""


def _dump(v: Any, compress: bool, indent: int) -> str:
    if isinstance(v, _Raw):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v != int(v) else str(int(v))
    if isinstance(v, str):
        return _escape(v)
    pad = "" if compress else " " * (indent + 4)
    end = "" if compress else "\n" + " " * indent
    nl = "" if compress else "\n"
    if isinstance(v, list):
        if not v:
            return "[]" if compress else "[\n" + " " * indent + "]"
        return "[" + nl + ("," + nl).join(pad + _dump(x, compress, indent + 4) for x in v) + end + "]"
    sep = ":" if compress else ":  "
    items = [pad + _escape(k) + sep + _dump(x, compress, indent + 4) for k, x in v.items()]
    return "{" + nl + ("," + nl).join(items) + end + "}"


def to_json(v: Any, depth: int = 2, compress: bool = False) -> str:
    """One object as ConvertTo-Json 5.1 prints it."""
    return _dump(_convert(v, 0, depth), compress, 0)


def _to_ps(v: Any) -> Any:
    if isinstance(v, dict):
        return PSObject({k: _to_ps(x) for k, x in v.items()})
    if isinstance(v, list):
        return [_to_ps(x) for x in v]
    return v


def from_json(text: str) -> Any:
    """ConvertFrom-Json: objects become PSCustomObjects; raises ValueError on invalid JSON."""
    return _to_ps(json.loads(text))


# re-exported for the cmdlet implementations
member = get_member

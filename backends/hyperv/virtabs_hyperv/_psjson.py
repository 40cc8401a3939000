"""Windows PowerShell 5.1 ``ConvertTo-Json`` output, read defensively.

What 5.1 does that a client must undo (learn.microsoft.com, ``ConvertTo-Json`` for 5.1 vs 7):

* an enum is its number (``"State":2``), unless a script interpolated it to a string;
* ``DateTime`` is ``"\\/Date(1234567890123)\\/"`` (milliseconds since the epoch, UTC), sometimes with an
  offset suffix ``\\/Date(1234567890123+0100)\\/``;
* a pipeline holding one object serialises as that object, not a one-element array, and an empty pipeline
  prints nothing at all;
* output arrives with Windows line ends, possibly after blank lines.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

__all__ = ["PSJsonError", "as_datetime", "as_int", "as_list", "as_str", "parse"]

_DATE_RE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


class PSJsonError(ValueError):
    """The output is not JSON (a script printed something else)."""


def parse(text: str | bytes) -> Any:
    """The JSON value printed by a script; ``None`` when it printed nothing."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip().lstrip("\ufeff")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        first = text.splitlines()[0][:80] if text else ""
        raise PSJsonError(f"expected JSON from PowerShell, got {first!r}") from exc


def as_list(value: Any) -> list[Any]:
    """Undo the one-item unwrapping: ``None`` -> ``[]``, an object -> ``[object]``, a list stays."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def as_datetime(value: Any) -> _dt.datetime | None:
    """``/Date(ms)/`` (as json.loads leaves ``\\/Date(ms)\\/``) or ISO 8601 -> an aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        m = _DATE_RE.match(value)
        if m:
            return _dt.datetime.fromtimestamp(int(m.group(1)) / 1000, tz=_dt.UTC)
        try:
            parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)
    return None


def as_int(value: Any, default: int | None = None) -> int | None:
    """An integer field (JSON number, numeric string, or a missing value)."""
    if value is None or isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


def as_str(value: Any) -> str:
    """A string field; ``None`` -> ``""``."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)

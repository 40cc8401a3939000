"""Output helpers of the CLI: JSON conversion, sizes, rich tables and key/value blocks.

Nothing here imports :mod:`rich` at module import time: ``virtabs --help``
must stay fast, so tables and progress bars import it when first used.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import attrs
import click

from .._errors import quote
from .._flags import DomainState

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "STATE_WORDS",
    "enum_word",
    "emit_json",
    "format_size",
    "make_console",
    "TableData",
    "add_row",
    "make_table",
    "parse_size",
    "size_callback",
    "print_kv",
    "print_table",
    "state_word",
    "to_jsonable",
]

STATE_WORDS: Mapping[DomainState, str] = {
    DomainState.NOSTATE: "no state",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "idle",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "in shutdown",
    DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed",
    DomainState.PMSUSPENDED: "pmsuspended",
}
"""virsh's words for the portable domain states (human output only; JSON uses the lower-case enum names)."""


def state_word(state: DomainState) -> str:
    """The human word for a state, as virsh prints it (``"shut off"``)."""
    return STATE_WORDS.get(state, state.name.lower())


# --- JSON ---------------------------------------------------------------------------------


def enum_word(value: enum.Enum) -> str:
    """An enum member as JSON shows it: its name in lower case (``DomainState.RUNNING`` -> ``"running"``,
    ``BlockJobType.ACTIVE_COMMIT`` -> ``"active_commit"``); a combination of flags joins them with ``|``."""
    if isinstance(value, enum.StrEnum):
        return value.value
    if value.name is None:  # a combination of flags without a name of its own
        return "|".join(m.name.lower() for m in type(value) if m.name and m in value)
    return value.name.lower()


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for ``value``: attrs models become objects, enums their lower-case names
    (the one convention of every JSON output, CLI and inventory: ``"running"``, ``"copy"``, ``"ready"``;
    capabilities their dotted values), datetimes ISO-8601 strings, tuples and sets lists.
    Sizes are left alone: every model already counts bytes."""
    if attrs.has(type(value)):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, enum.StrEnum):
        return value.value
    if isinstance(value, enum.Enum):
        return enum_word(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted((to_jsonable(v) for v in value), key=str)
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def _json_key(key: Any) -> str:
    converted = to_jsonable(key)
    return converted if isinstance(converted, str) else str(converted)


def emit_json(value: Any) -> None:
    """Write ``value`` as indented JSON (plus a newline) to stdout."""
    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


# --- sizes ----------------------------------------------------------------------------------

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SUFFIX_EXP: Mapping[str, tuple[int, int]] = {
    "": (1024, 0),
    "b": (1024, 0),
    "byte": (1024, 0),
    "bytes": (1024, 0),
    "k": (1024, 1),
    "kib": (1024, 1),
    "m": (1024, 2),
    "mib": (1024, 2),
    "g": (1024, 3),
    "gib": (1024, 3),
    "t": (1024, 4),
    "tib": (1024, 4),
    "p": (1024, 5),
    "pib": (1024, 5),
    "kb": (1000, 1),
    "mb": (1000, 2),
    "gb": (1000, 3),
    "tb": (1000, 4),
    "pb": (1000, 5),
}


def format_size(size: int | None) -> str:
    """``2147483648`` -> ``"2.0 GiB"``; ``None`` -> ``"-"``."""
    if size is None:
        return "-"
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def parse_size(text: str | int) -> int:
    """Bytes from ``"10G"``, ``"512M"``, ``"1.5GiB"``, ``"4096"`` (binary units, like virsh;
    ``KB``/``MB``/``GB`` are decimal). Raises ``ValueError`` with a readable message."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"size must not be negative, got {text}")
        return text
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ValueError(f"invalid size {quote(text)}: expected bytes or a number with a unit such as 512M or 10G")
    number, suffix = match.groups()
    try:
        base, exp = _SUFFIX_EXP[suffix.lower()]
    except KeyError:
        raise ValueError(
            f"invalid size {quote(text)}: unknown unit {quote(suffix)} (use K, M, G, T, P, KB, MB, GB ...)"
        ) from None
    result = float(number) * base**exp
    if result != int(result) and exp == 0:
        raise ValueError(f"invalid size {quote(text)}: bytes must be a whole number")
    return int(result)


def size_callback(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A click callback turning a size argument (``10G``, ``512M``, bytes) into bytes; a bad one is a usage error."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


# --- human output ---------------------------------------------------------------------------


def _stream(stderr: bool) -> TextIO:
    return sys.stderr if stderr else sys.stdout


def make_console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) that is plain, uncoloured and wide when not a TTY."""
    from rich.console import Console

    stream = _stream(stderr)
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(
        file=stream,
        force_terminal=None if tty else False,
        no_color=not tty,
        highlight=False,
        width=None if tty else 250,
        soft_wrap=not tty,
    )


class TableData:
    """Rows of text under column headings; rendered by :func:`print_table`."""

    def __init__(self, columns: Sequence[str], title: str | None = None) -> None:
        self.columns = list(columns)
        self.title = title
        self.rows: list[list[str]] = []


def make_table(*columns: str, title: str | None = None) -> TableData:
    """An empty table with ``columns``; fill it with :func:`add_row`, show it with :func:`print_table`."""
    return TableData(columns, title)


def add_row(table: TableData, *cells: object) -> None:
    """Add a row of cells converted to text (``None`` shows as ``-``)."""
    if len(cells) != len(table.columns):
        raise ValueError(f"a row of {len(cells)} cells for {len(table.columns)} columns")
    table.rows.append(["-" if c is None else str(c) for c in cells])


def print_table(table: TableData) -> None:
    """Print a table to stdout: a rich table on a terminal (drawn without importing rich when it is a
    simple one, see :func:`_terminal_lines`); otherwise plain columns separated by two spaces, without
    colours or trailing blanks (rich is not even imported then)."""
    if sys.stdout.isatty():
        lines = _terminal_lines(table)
        if lines is None:
            _print_rich_table(table)
        else:
            click.echo("\n".join(lines))
        return
    widths = [max(len(row[i]) for row in [table.columns, *table.rows]) for i in range(len(table.columns))]
    if table.title:
        click.echo(table.title)
    for row in [table.columns, *table.rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def _terminal_lines(table: TableData, width: int | None = None) -> list[str] | None:
    """The lines rich draws for a simple table on a terminal (bold headings, a rule, three spaces between
    columns), without importing rich: it costs more start-up time than the rest of ``virtabs list``.

    None when rich has to lay the table out itself: a title, a cell that is not plain printable ASCII
    (wide or combining characters), or a table wider than the terminal (rich folds cells to fit).
    """
    cells = [table.columns, *table.rows]
    if table.title or not all(cell.isascii() and cell.isprintable() for row in cells for cell in row):
        return None
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    total = sum(widths) + 3 * (len(widths) - 1)
    dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")  # rich draws no styles there
    if width is None:
        width = 80 if dumb else _terminal_width()
    if total > width:
        return None
    bold, reset = ("", "") if dumb else (_BOLD, _RESET)
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    rule = "\u2500" if encoding.startswith("utf") else "-"
    head = "   ".join(f"{bold}{cell.ljust(w)}{reset}" for cell, w in zip(table.columns, widths, strict=True))
    body = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table.rows]
    return [head, rule * total, *body]


def _terminal_width() -> int:
    """The width rich would use: the first standard stream that is a terminal, $COLUMNS over it, else 80."""
    width = 0
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (OSError, ValueError):
            continue
        break
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        width = int(columns)
    return width or 80


def _rich_table(table: TableData) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rich_table = Table(
        title=table.title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        title_justify="left",
    )
    for column in table.columns:
        rich_table.add_column(column, overflow="fold")
    for row in table.rows:
        rich_table.add_row(*(Text(cell) for cell in row))
    return rich_table


def _print_rich_table(table: TableData) -> None:
    make_console().print(_rich_table(table))


def print_kv(rows: Iterable[tuple[str, object]]) -> None:
    """Print ``Key:   value`` lines, values aligned (virsh's dominfo layout); ``None`` shows as ``-``."""
    items: Sequence[tuple[str, object]] = list(rows)
    width = max((len(k) for k, _ in items), default=0) + 2
    for key, value in items:
        click.echo(f"{key + ':':<{width}}{'-' if value is None else value}".rstrip())

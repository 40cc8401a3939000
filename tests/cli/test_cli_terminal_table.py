"""Tables on a terminal: the common simple table is drawn without importing rich, and looks as rich draws it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from virtabs.cli._output import TableData, _rich_table, _terminal_lines, add_row, make_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _visible(lines: list[str]) -> list[str]:
    return [ANSI.sub("", line).rstrip() for line in lines]


def _rich_lines(table: TableData, width: int) -> list[str]:
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, width=width, color_system="standard", highlight=False).print(
        _rich_table(table)
    )
    return buffer.getvalue().rstrip("\n").split("\n")


def _table(columns: tuple[str, ...], *rows: tuple[object, ...]) -> TableData:
    table = make_table(*columns)
    for row in rows:
        add_row(table, *row)
    return table


TABLES = [
    _table(("Name", "UUID", "State"), ("test", "6695eb01-f6a4-8304-79aa-97f2502e193f", "running")),
    _table(("Name", "UUID", "State"), ("a-much-longer-domain-name", "u", "shut off"), ("b", "uuid-2", None)),
    _table(("Target", "Source", "Format", "Backing chain")),  # no rows
    _table(("Pool",), ("default-pool",), ("x",)),
    _table(("Capability", "docker", "esx"), ("block.copy", "-", "yes*"), ("domain.start", "yes", "yes")),
    _table(("Name", "Capacity", "Note"), ("p", " 99.4 GiB", ""), ("q", "100.0 GiB", "  two  spaces ")),
]


@pytest.mark.parametrize("table", TABLES, ids=range(len(TABLES)))
def test_the_fast_table_shows_what_rich_shows(table: TableData) -> None:
    lines = _terminal_lines(table, width=120)
    assert lines is not None
    assert _visible(lines) == _visible(_rich_lines(table, 120))
    assert lines[0].startswith("\x1b[1m")  # bold headings, as rich's header_style


def test_rich_lays_out_what_the_fast_table_cannot() -> None:
    wide = _table(("Name", "UUID", "State"), ("test", "6695eb01-f6a4-8304-79aa-97f2502e193f", "running"))
    assert _terminal_lines(wide, width=40) is None  # rich folds cells to fit the terminal
    titled = make_table("Name", title="Domains")
    assert _terminal_lines(titled, width=120) is None
    assert _terminal_lines(_table(("Name",), ("caf\u00e9",)), width=120) is None
    assert _terminal_lines(_table(("Name",), ("\u6f22\u5b57",)), width=120) is None  # wide characters


def test_list_on_a_terminal_does_not_import_rich(tmp_path: Path) -> None:
    """`virtabs list` with stdout on a pseudo-terminal: the table is drawn and rich is never imported."""
    script = Path(sys.executable).with_name("virtabs")
    code = (
        f"import sys\nsys.argv = {[str(script), '-c', 'test:///default', 'list']!r}\n"
        f"try:\n    exec(compile(open({str(script)!r}).read(), {str(script)!r}, 'exec'), {{'__name__': '__main__'}})\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "finally:\n    sys.stderr.write('RICH ' + str(sorted(m for m in sys.modules if m.split('.')[0] == 'rich')) + '\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    env.update(VIRTABS_CONFIG=str(tmp_path / "none.toml"), TERM="xterm", COLUMNS="120")
    controller, terminal = os.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], stdout=terminal, stderr=subprocess.PIPE, env=env, cwd=tmp_path, timeout=60
        )
        os.close(terminal)
        terminal = -1
        out = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0, proc.stderr
    assert b"RICH []" in proc.stderr
    text = ANSI.sub("", out.decode()).replace("\r\n", "\n").splitlines()
    assert text[0].split() == ["Name", "UUID", "State"] and set(text[1]) <= {"\u2500", "-"}
    assert text[2].split() == ["test", "6695eb01-f6a4-8304-79aa-97f2502e193f", "running"]
    assert b"\x1b[1m" in out

"""docs/writing-a-driver.md stays true: its generated table is fresh and its code is contrib/virtabs-example's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "writing-a-driver.md"
EXAMPLE = ROOT / "contrib" / "virtabs-example"
CONTINUED = "class ExampleDriver(Driver):  # continued"
"""The first line of a guide block that goes on inside the class (not part of the file)."""
BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def titled_blocks() -> dict[str, list[str]]:
    """``title -> [block, ...]`` for every code block the guide labels with a file name."""
    blocks: dict[str, list[str]] = {}
    for _lang, title, body in BLOCK.findall(GUIDE.read_text()):
        blocks.setdefault(title, []).append(body)
    return blocks


def code_lines(text: str) -> list[str]:
    """The non-blank lines (blank lines between the guide's pieces are the only freedom)."""
    return [line for line in text.splitlines() if line.strip()]


def test_the_capability_table_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-driver-guide-table"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_table_names_every_method_of_every_capability() -> None:
    from virtabs.spi import Capability, methods_for

    text = GUIDE.read_text()
    for cap in Capability:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{cap.value}` |"))
        for method in methods_for(cap):
            assert f"`{method}`" in row, (cap, method)


def test_the_guide_imports_nothing_private() -> None:
    private = re.compile(r"^\s*(from|import)\s+virtabs(\.spi)?\._", re.MULTILINE)
    assert not private.findall(GUIDE.read_text())


def test_the_driver_in_the_guide_is_the_example_driver_in_order() -> None:
    pieces = titled_blocks()["virtabs_example/driver.py"]
    assert len(pieces) > 5, "the guide walks through the driver piece by piece"
    guide = [line for line in code_lines("\n".join(pieces)) if line != CONTINUED]
    real = code_lines((EXAMPLE / "virtabs_example" / "driver.py").read_text())
    assert guide == real, "docs/writing-a-driver.md shows a driver that differs from contrib/virtabs-example"


def test_the_other_files_in_the_guide_are_the_examples() -> None:
    blocks = titled_blocks()
    for title in ("virtabs_example/__init__.py", "virtabs_example/testing.py", "tests/test_example_contract.py"):
        (body,) = blocks[title]
        assert code_lines(body) == code_lines((EXAMPLE / title).read_text()), title


def test_the_guides_pyproject_registers_what_the_examples_does() -> None:
    import tomllib

    guide = tomllib.loads(titled_blocks()["pyproject.toml"][0])
    real = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert guide["project"]["entry-points"] == real["project"]["entry-points"]
    assert guide["project"]["name"] == real["project"]["name"]
    assert guide["build-system"] == real["build-system"]


def test_every_python_block_compiles() -> None:
    for lang, title, body in BLOCK.findall(GUIDE.read_text()):
        if lang == "python" and title != "virtabs_example/driver.py":  # the driver's pieces compile as a whole
            compile(body, title, "exec")
    pieces = titled_blocks()["virtabs_example/driver.py"]
    compile("\n".join(line for p in pieces for line in p.splitlines() if line != CONTINUED), "driver.py", "exec")

"""The entry-point module stays light and the driver imports nothing from virtabs but virtabs.spi."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "virtabs_docker"


def test_driver_module_does_not_import_the_docker_sdk() -> None:
    code = "import sys, virtabs_docker.driver; print('docker' in sys.modules, 'requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["False", "False"]


def test_driver_modules_import_only_virtabs_spi() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name == "testing.py":  # the contract target is test infrastructure (virtabs.testing)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("virtabs") or name == "virtabs.spi", f"{path.name} imports {name}"

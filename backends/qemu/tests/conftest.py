"""pytest wiring of the qemu driver tests; fixtures and helpers live in ``qemu_helpers``."""

from __future__ import annotations

import os
import sys

import pytest

# The helpers are plain modules next to this file (no package: other suites also have a "tests" dir).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qemu_helpers import _qemu_required, chain, driver, root

__all__ = ["_qemu_required", "chain", "driver", "root"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_qemu: the test does not need QEMU installed")

"""pytest wiring of the LXC backend tests; helpers live in ``lxc_helpers``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers are plain modules next to this file (no package: other suites also have a "tests" dir).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lxc_helpers import build_busybox_rootfs, private_lxcpath, require_engine


@pytest.fixture(scope="session")
def lxcpath() -> Iterator[str]:
    """A private lxcpath for the whole session (containers stopped and files removed at the end)."""
    require_engine()
    with private_lxcpath() as path:
        yield path


@pytest.fixture(scope="session")
def lxc_uri(lxcpath: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URI of the private lxcpath, with pytest's temporary directory (where the tests' ``tmp_path`` root file
    systems lie) as the connection's ``rootfs_dir``."""
    return f"lxc:///?path={lxcpath}&rootfs_dir={tmp_path_factory.getbasetemp()}"


@pytest.fixture(scope="session")
def rootfs_template(lxcpath: str) -> Path:
    """One busybox-static root file system, copied by tests that need their own. It lies in the lxcpath, two
    levels down, where the driver takes a root file system (``virtabs_lxc._rootfs``), so a test may also define
    a container on it; it goes with the lxcpath."""
    require_engine()
    return build_busybox_rootfs(Path(lxcpath) / "images" / "busybox")

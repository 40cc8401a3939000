"""The virtabs contract kit against qemu:///embed, through the published target (``virtabs_qemu.testing``).

The same run from anywhere: ``pytest --pyargs virtabs.testing --virtabs-uri='qemu:///embed?root=DIR&accel=tcg'``.
Here the root is a fresh temporary directory, removed at the end; the guest runs under TCG because the
Debian kernel hangs under the CI machine's nested KVM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from virtabs.testing.plugin import load_target
from virtabs.testing.suite import *  # noqa: F403

from virtabs_qemu.testing import QemuTarget


@pytest.fixture(scope="session")
def _contract_root() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="vtqc-")
    yield root
    for pidfile in Path(root).glob("run/*/qemu.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 9)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def virtabs_uri(_contract_root: str) -> str:
    return f"qemu:///embed?root={_contract_root}&accel=tcg"


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str) -> Iterator[QemuTarget]:
    """The target the kit itself loads for this URI (the entry point), so this run tests what is published."""
    target = load_target(virtabs_uri)
    assert isinstance(target, QemuTarget), f"the qemu entry point published {type(target).__name__}"
    yield target
    target.close()

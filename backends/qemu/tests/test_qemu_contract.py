"""The virtabs contract kit against qemu:///embed.

Domains get a small real qcow2 disk and boot the tiny test guest (``guest.py``) so that graceful
shutdown and virtio-blk hot-unplug are exercised for real; the guest runs under TCG because the
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
from qemu_guest import guest_extra, wait_console
from virtabs._api import Connection, Domain
from virtabs._models import DiskSpec, DomainSpec
from virtabs.testing import DefaultTarget
from virtabs.testing.suite.test_core import *  # noqa: F403
from virtabs.testing.suite.test_lifecycle import *  # noqa: F403
from virtabs.testing.suite.test_snapshots_devices import *  # noqa: F403

MiB = 1 << 20


class QemuTarget(DefaultTarget):
    """Real qcow2 disks in the connection's ``default`` pool and a guest that answers the power button."""

    job_timeout = 120.0

    def __init__(self, root: str, extra: dict[str, object]) -> None:
        super().__init__(memory_bytes=128 * MiB)
        self.root = root
        self.extra = extra

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        pool = conn.lookup_storage_pool("default")
        path = os.path.join(str(pool.info().path), f"{name}.qcow2")
        if not os.path.exists(path):
            pool.create_volume(os.path.basename(path), 64 * MiB, format="qcow2")
        return DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            disks=(DiskSpec("vda", path, format="qcow2"),),
            extra=self.extra,
        )

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        dom = super().make_domain(conn, running=running)
        if running:
            wait_console(Path(self.root) / "run" / dom.name / "console.log", "virtabs-guest: ready", timeout=90)
        return dom


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
def virtabs_target(_contract_root: str) -> QemuTarget:
    try:
        extra = guest_extra()
    except Exception as exc:  # no apt, no network
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot build the test guest: {exc}")
        pytest.skip(f"cannot build the test guest: {exc}")
    return QemuTarget(_contract_root, extra)

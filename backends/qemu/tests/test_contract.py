"""The virtabs contract kit against qemu:///embed, with a target that makes real qcow2 images."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from virtabs._api import Connection
from virtabs._models import DiskSpec, DomainSpec
from virtabs.testing import DefaultTarget
from virtabs.testing.suite.test_core import *  # noqa: F403
from virtabs.testing.suite.test_lifecycle import *  # noqa: F403
from virtabs.testing.suite.test_snapshots_devices import *  # noqa: F403

MiB = 1 << 20


class QemuTarget(DefaultTarget):
    """Domains get a real (small, qcow2) disk in the connection's default pool."""

    job_timeout = 120.0

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        pool = conn.lookup_storage_pool("default")
        path = os.path.join(str(pool.info().path), f"{name}.qcow2")
        if not os.path.exists(path):
            pool.create_volume(os.path.basename(path), 64 * MiB, format="qcow2")
        return DomainSpec(
            name=name, memory_bytes=self.memory_bytes, vcpus=1, disks=(DiskSpec("vda", path, format="qcow2"),)
        )


@pytest.fixture(scope="session")
def _contract_root() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="vtqc-")
    yield root
    for pidfile in subprocess.run(["find", root, "-name", "qemu.pid"], capture_output=True, text=True).stdout.split():
        try:
            os.kill(int(open(pidfile).read().strip()), 9)
        except (OSError, ValueError):
            pass
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def virtabs_uri(_contract_root: str) -> str:
    return f"qemu:///embed?root={_contract_root}"


@pytest.fixture(scope="session")
def virtabs_target() -> QemuTarget:
    return QemuTarget()

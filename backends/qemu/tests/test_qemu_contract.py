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
from qemu_helpers import LAYERS, SIZE, qemu_img, write_pattern
from virtabs import Connection, Domain
from virtabs.spi import DiskSpec, DomainSpec
from virtabs.testing import DefaultTarget
from virtabs.testing.suite import *  # noqa: F403

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

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """A REUSE_EXT destination the size of the chain's disks (64 MiB); backing formats explicit."""
        args = ["create", "-q", "-f", format]
        if backing:
            magic = Path(backing).read_bytes()[:4]
            args += ["-b", backing, "-F", "qcow2" if magic == b"QFI\xfb" else "raw"]
        qemu_img(*args, path, str(SIZE))

    def make_chain_domain(self, conn: Connection) -> Domain:
        """base <- snap1 <- snap2 (64 MiB qcow2, a data pattern per layer) so throttled jobs stay busy."""
        pool_path = str(conn.lookup_storage_pool("default").info().path)
        below: str | None = None
        for layer, pattern, offset, length in LAYERS:
            path = os.path.join(pool_path, self.new_name(f"{layer}.qcow2"))
            args = ["create", "-q", "-f", "qcow2"] + (["-b", below, "-F", "qcow2"] if below else [])
            qemu_img(*args, path, str(SIZE))
            write_pattern(Path(path), "qcow2", pattern, offset, length)
            below = path
        assert below is not None
        name = self.new_name("chain")
        spec = self.domain_spec(conn, name)
        spec = DomainSpec(
            name=name,
            memory_bytes=spec.memory_bytes,
            vcpus=1,
            disks=(DiskSpec("vda", below, format="qcow2"),),
            extra=self.extra,
        )
        dom = conn.define_domain(spec)
        dom.start()
        return dom

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

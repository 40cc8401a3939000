"""The virtabs contract kit against qemu:///embed.

Domains get a small real qcow2 disk and boot the tiny test guest (``guest.py``) so that graceful
shutdown and virtio-blk hot-unplug are exercised for real; the guest runs under TCG because the
Debian kernel hangs under the CI machine's nested KVM.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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

from virtabs_qemu._qmp import QMPClient
from virtabs_qemu._state import DomainLock, StateDirs

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

    # --- effects seen through another door: qemu-img and the serial console, not the driver ---------

    def image_digest(self, conn: Connection, path: str) -> str | None:
        """sha256 of what the guest sees at ``path`` (the whole chain), read by ``qemu-img convert``."""
        return self._digest(path, with_backing=True)

    def layer_digest(self, conn: Connection, path: str) -> str | None:
        """sha256 of the data stored in the file at ``path`` alone (opened without its backing file)."""
        return self._digest(path, with_backing=False)

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """The QEMU pid and how often the guest has printed its boot line on the serial console."""
        run = Path(self.root) / "run" / dom.name
        try:
            pid = (run / "qemu.pid").read_text().strip()
        except FileNotFoundError:
            return None
        try:
            boots = (run / "console.log").read_text(errors="replace").count("virtabs-guest: up")
        except FileNotFoundError:
            boots = 0
        return (pid, boots)

    def _digest(self, path: str, *, with_backing: bool) -> str | None:
        if not os.path.exists(path):
            return None
        self._flush_running_domains()
        fmt = "qcow2" if Path(path).read_bytes()[:4] == b"QFI\xfb" else "raw"  # test images: trusted
        # A running QEMU holds the image (a mirror target even against consistent reads): no locks.
        spec: dict[str, object] = {
            "driver": fmt,
            "read-only": True,
            "file": {"driver": "file", "filename": path, "read-only": True, "locking": "off"},
        }
        if fmt == "qcow2" and not with_backing:
            spec["backing"] = None
        out = os.path.join(tempfile.mkdtemp(prefix="vtqd-"), "digest.raw")
        try:
            qemu_img("convert", "-O", "raw", f"json:{json.dumps(spec)}", out)
            digest = hashlib.sha256()
            with open(out, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
        finally:
            shutil.rmtree(os.path.dirname(out), ignore_errors=True)

    def _flush_running_domains(self) -> None:
        """``stop`` + ``cont`` this run's running domains over their own QMP socket (under the driver's
        domain lock): only a stop writes QEMU's cached qcow2 metadata out, so images read consistently."""
        dirs = StateDirs.for_uri("/embed", {"root": self.root})
        for run in (Path(self.root) / "run").glob(f"{self.prefix}*"):
            if not run.is_dir() or not os.path.exists(sock := dirs.qmp_socket(run.name)):
                continue
            lock = DomainLock(dirs.lockfile(run.name))
            with lock.hold(), contextlib.suppress(Exception), QMPClient(sock, timeout=30) as q:
                if q.execute("query-status").get("running"):
                    q.execute("stop")
                    q.execute("cont")

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

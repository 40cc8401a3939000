"""The contract kit against libvirt: ``libvirt+test:///default?path_root=<a temporary directory>`` by default, or
``--virtabs-uri``.

The bridge hands libvirt only paths inside the connection's roots (``virtabs_libvirt._paths``): on libvirt's test
driver the kit's save images go into the URI's ``path_root``, its disks are volumes of the test driver's pool.

``--virtabs-uri=libvirt+qemu:///system`` (libvirtd running) uses :class:`QemuTarget`,
which builds real qcow2 chains with qemu-img.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from virtabs import Connection, parse_uri
from virtabs.testing import ContractTarget, DefaultTarget
from virtabs.testing.plugin import in_ci, load_known_failures

from virtabs_libvirt.driver import libvirt_uri as libvirt_uri_of

from .peers import SYSTEM
from .qemu_target import QemuTarget

COPY_DEVICES = 3
"""Loop devices a ``libvirt+qemu`` run makes for the kit's COPY_DEV copies (one per test that asks for one)."""


@pytest.fixture(scope="session")
def virtabs_uri(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI under test. A ``libvirt+qemu`` one gets ``block_device=`` naming loop devices made for the kit's
    COPY_DEV copies: the bridge takes a device outside a storage pool only when the URI names it."""
    uris = pytestconfig.getoption("--virtabs-uri") or []
    uri = str(uris[0]) if uris else os.environ.get("VIRTABS_LIBVIRT_URI")
    if uri is None:
        yield f"libvirt+test:///default?path_root={tmp_path_factory.mktemp('save-images')}"
        return
    if not uri.startswith("libvirt+qemu") or "block_device=" in uri:
        yield uri
        return
    parent = "/var/lib/libvirt/images" if os.path.isdir("/var/lib/libvirt/images") else None
    directory = tempfile.mkdtemp(prefix="virtabs-contract-devices-", dir=parent)
    loops: list[str] = []
    try:
        for n in range(COPY_DEVICES):
            backing = os.path.join(directory, f"dev{n}.raw")
            with open(backing, "wb") as fh:
                fh.truncate(64 << 20)
            done = subprocess.run(["losetup", "-f", "--show", backing], check=True, capture_output=True, text=True)
            loops.append(done.stdout.strip())
        yield f"{uri}{'&' if '?' in uri else '?'}block_device={':'.join(loops)}"
    finally:
        for loop in loops:
            subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(directory, ignore_errors=True)


class TestDriverTarget(DefaultTarget):
    """The default target, with its save images in ``save_dir`` (the URI's ``path_root``) instead of a temporary
    directory of its own, which the bridge would refuse."""

    __test__ = False  # not a test class

    def __init__(self, save_dir: str) -> None:
        super().__init__()
        self.save_dir = save_dir

    def save_path(self, conn: Connection, name: str) -> str:
        """A new file in ``save_dir``."""
        return os.path.join(self.save_dir, self.new_name(name) + ".save")


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str) -> Iterator[ContractTarget]:
    if virtabs_uri.startswith("libvirt+qemu"):
        # libvirtd's QEMU runs as libvirt-qemu: the images must be in a directory it can reach
        parent = "/var/lib/libvirt/images" if os.path.isdir("/var/lib/libvirt/images") else None
        directory = tempfile.mkdtemp(prefix="virtabs-contract-", dir=parent)
        parsed = parse_uri(virtabs_uri)
        libvirt_uri = libvirt_uri_of(parsed) or "qemu:///system"
        pool = _transient_dir_pool(libvirt_uri, directory)
        devices = (parsed.param("block_device") or "").split(":")
        target = QemuTarget(directory, libvirt_uri, pool=pool, devices=[d for d in devices if d])
        yield target
        target.close()
        _destroy_pool(libvirt_uri, pool)
        shutil.rmtree(directory, ignore_errors=True)
    else:
        save_dir = parse_uri(virtabs_uri).param("path_root")
        yield TestDriverTarget(save_dir.split(":")[0]) if save_dir else DefaultTarget()


@pytest.fixture(scope="session")
def virtabs_known_failures(virtabs_uri: str, pytestconfig: pytest.Config) -> Mapping[str, str]:
    """The known-failures file of the libvirt backend under test, plus ``--virtabs-known-failures``."""
    known: dict[str, str] = {}
    backend = _libvirt_driver(virtabs_uri)
    path = Path(__file__).with_name(f"known-failures-libvirt-{backend}.yaml")
    if path.exists():
        known.update(load_known_failures(path))
    extra = pytestconfig.getoption("--virtabs-known-failures")
    if extra:
        known.update(load_known_failures(extra))
    return known


def _libvirt_driver(uri: str) -> str:
    """libvirt's driver behind a virtabs URI: ``test`` for ``libvirt+test:///default`` and for
    ``libvirt:///?uri=test%2Bunix...`` (libvirt's test driver served by a libvirtd)."""
    parsed = parse_uri(uri)
    target = parsed.param("uri") if not parsed.transport else None
    scheme = target.split("://", 1)[0] if target else (parsed.transport or "")
    return scheme.split("+", 1)[0]


def _transient_dir_pool(uri: str, directory: str) -> str:
    """A transient libvirt dir pool over ``directory`` (storage tests need a pool; qemu:///system has none)."""
    import libvirt

    name = os.path.basename(directory)
    conn = libvirt.open(uri)
    try:
        xml = f"<pool type='dir'><name>{name}</name><target><path>{directory}</path></target></pool>"
        conn.storagePoolCreateXML(xml, 0)
    finally:
        conn.close()
    return name


def _destroy_pool(uri: str, name: str) -> None:
    import libvirt

    conn = libvirt.open(uri)
    try:
        conn.storagePoolLookupByName(name).destroy()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


@pytest.fixture(scope="module")
def system() -> Iterator[Any]:
    """A libvirt-python connection to the system libvirtd (``qemu:///system``), for the tests that define on it
    directly; a failure under CI, a skip elsewhere, when it does not answer."""
    import libvirt

    try:
        native = libvirt.open(SYSTEM)
    except libvirt.libvirtError as exc:
        message = f"libvirtd does not answer on {SYSTEM} ({exc}); start it as .ci/run does"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    yield native
    native.close()

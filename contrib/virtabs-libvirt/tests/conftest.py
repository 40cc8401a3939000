"""The contract kit against libvirt: ``libvirt+test:///default`` by default, or ``--virtabs-uri``.

``--virtabs-uri=libvirt+qemu:///system`` (libvirtd running) uses :class:`QemuTarget`,
which builds real qcow2 chains with qemu-img.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from virtabs.testing import ContractTarget, DefaultTarget
from virtabs.testing.plugin import load_known_failures

from .qemu_target import QemuTarget


@pytest.fixture(scope="session")
def virtabs_uri(pytestconfig: pytest.Config) -> str:
    uris = pytestconfig.getoption("--virtabs-uri") or []
    return uris[0] if uris else os.environ.get("VIRTABS_LIBVIRT_URI", "libvirt+test:///default")


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str, tmp_path_factory: pytest.TempPathFactory) -> ContractTarget:
    if virtabs_uri.startswith("libvirt+qemu"):
        return QemuTarget(str(tmp_path_factory.mktemp("libvirt-images")))
    return DefaultTarget()


@pytest.fixture(scope="session")
def virtabs_known_failures(virtabs_uri: str, pytestconfig: pytest.Config) -> Mapping[str, str]:
    """The known-failures file of the libvirt backend under test, plus ``--virtabs-known-failures``."""
    known: dict[str, str] = {}
    backend = virtabs_uri.split("://", 1)[0].removeprefix("libvirt+")
    path = Path(__file__).with_name(f"known-failures-libvirt-{backend}.yaml")
    if path.exists():
        known.update(load_known_failures(path))
    extra = pytestconfig.getoption("--virtabs-known-failures")
    if extra:
        known.update(load_known_failures(extra))
    return known

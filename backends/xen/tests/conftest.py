"""Session fixture of the Xen lab: a real Xen 4.17 hypervisor with a Debian dom0 inside QEMU (TCG).

Under CI, ``ci/setup`` starts the lab in the background; the fixture waits for its ready marker (with a
deadline) and fails if it never comes. Outside CI the fixture starts the lab itself when the host can
(root, QEMU, debootstrap, the Xen hypervisor package) and skips with an install hint otherwise. The lab
is stopped at the end of the session if this session (or CI) started it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import virtabs

# the repository runs pytest with --import-mode=importlib: make this directory's helpers importable
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xen_helpers import SCRIPT, Lab, build_wheels, in_ci, install_in_dom0, lab_tools_present, require, wait_for_lab

from virtabs_xen.testing import XenTarget

if TYPE_CHECKING:
    from test_xen_fast_driver import Standin


@pytest.fixture(scope="session")
def xenlab() -> Iterator[Lab]:
    """A running lab dom0 reachable over ssh on 127.0.0.1."""
    lab = Lab.from_env()
    started_here = False
    if not lab.running():
        if in_ci() and (lab.dir / "setup.started").exists():
            wait_for_lab(lab, float(os.environ.get("VIRTABS_XENLAB_WAIT", "900")))
        else:
            ok, what = lab_tools_present()
            require(ok, what)
            proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=1500)
            if proc.returncode != 0:
                pytest.fail(f"xenlab.sh start failed: {proc.stderr[-2000:]}")
            started_here = True
    yield lab
    if started_here or in_ci():
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def dom0_virtabs(xenlab: Lab, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The virtabs wheel built from this checkout and installed in the lab's dom0: the helper's path there."""
    return install_in_dom0(xenlab, build_wheels(tmp_path_factory.mktemp("dom0-wheels")))


@pytest.fixture(scope="module")
def conn(xenlab: Lab) -> Iterator[virtabs.Connection]:
    """A connection to the lab dom0 (``xen+ssh://``), one per module; the fast modules define their own ``conn``
    (on the ``xl`` stand-in), which wins over this one."""
    with virtabs.open(xenlab.uri()) as c:
        yield c


@pytest.fixture(scope="module")
def target(xenlab: Lab) -> Iterator[XenTarget]:
    """The contract kit's Xen target on the lab dom0 (guests, images, console logs), one per module."""
    t = XenTarget.from_uri(xenlab.uri())
    yield t
    t.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests here talk to a dom0 nested under TCG (and may first wait for it to boot): 900 s per test."""
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.path).startswith(here + os.sep) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(900))


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Standin:
    """The fast suite's seam: the driver module's transport replaced, for this test only, by the recorded ``xl``
    stand-in's (``test_xen_fast_driver.StandinTransport``)."""
    from test_xen_fast_driver import install_standin

    return install_standin(tmp_path, monkeypatch)

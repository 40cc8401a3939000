"""Drivers the remote helper finds through their ``virtabs.drivers`` entry points, over a real sshd: the
example driver (a distribution of its own, installed on both ends here), and a third-party distribution
installed on the far side only, as ``pip install`` on that host would leave it (a ``.dist-info`` directory
with its ``entry_points.txt`` on the helper's ``sys.path``). The client never imports either."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import virtabs
from virtabs import DomainSpec, DomainState

MiB = 1 << 20

FAR_DRIVER_SOURCE = """
    from typing import ClassVar

    from virtabs_example.driver import ExampleDriver


    class FarDriver(ExampleDriver):
        name: ClassVar[str] = "farfake"
        description: ClassVar[str] = "the example driver, installed on the far host only"
"""


def _install_far_only(root: Path) -> None:
    """A distribution ``virtabs-farfake`` (scheme ``farfake``) in ``root``, as pip lays it out."""
    info = root / "virtabs_farfake-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: virtabs-farfake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[virtabs.drivers]\nfarfake = farfake_driver:FarDriver\n")
    (root / "farfake_driver.py").write_text(textwrap.dedent(FAR_DRIVER_SOURCE))


def test_the_example_driver_is_served_through_its_entry_point(sshd: Any) -> None:
    host = f"remote-{uuid.uuid4().hex[:8]}"
    with virtabs.open(sshd.uri("example", f"/{host}"), timeout=60) as conn:
        assert conn.host_info().hostname == f"example-{host}"
        dom = conn.define_domain(DomainSpec(name="vm", memory_bytes=64 * MiB, vcpus=1))
        dom.start()
        assert dom.state() == DomainState.RUNNING
        dom.destroy()
        dom.undefine()


def test_a_driver_installed_on_the_far_host_only_is_found_there(
    sshd_with_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    far_site = tmp_path / "far-host-dists"
    _install_far_only(far_site)
    server = sshd_with_env({"PYTHONPATH": str(far_site)})
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(far_site)])
    with pytest.raises(virtabs.DriverNotFoundError, match="'farfake'"):
        virtabs.open("farfake:///here")  # not installed on this side
    host = f"far-{uuid.uuid4().hex[:8]}"
    with virtabs.open(server.uri("farfake", f"/{host}"), timeout=60) as conn:
        assert conn.host_info().hostname == f"example-{host}"
        assert conn.list_domains() == []
    assert "farfake_driver" not in sys.modules

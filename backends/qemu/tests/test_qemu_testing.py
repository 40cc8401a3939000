"""The published contract target (``virtabs_qemu.testing``): found by the kit, and honest when it cannot build."""

from __future__ import annotations

from pathlib import Path

import pytest
from virtabs.testing import TargetUnavailable
from virtabs.testing.plugin import load_target

from virtabs_qemu import testing
from virtabs_qemu.testing import INSTALL_HINT, QemuTarget


@pytest.mark.no_qemu
def test_kit_loads_the_published_target_from_the_uri(tmp_path: Path) -> None:
    target = load_target(f"qemu:///embed?root={tmp_path}&accel=tcg")
    assert isinstance(target, QemuTarget)
    assert target.dirs.run == str(tmp_path / "run")
    target.close()


@pytest.mark.no_qemu
def test_guest_that_cannot_be_built_fails_naming_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kernel/busybox on the host and no apt: TargetUnavailable (a failure in the kit), never a skip."""
    monkeypatch.setattr(testing, "_host_parts", lambda: None)
    monkeypatch.setenv("VIRTABS_GUEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    target = QemuTarget.from_uri(f"qemu:///embed?root={tmp_path}")
    with pytest.raises(TargetUnavailable) as info:
        _ = target.extra
    assert INSTALL_HINT in str(info.value)
    assert not issubclass(TargetUnavailable, pytest.skip.Exception)

"""How the driver picks the accelerator when the URI names none: KVM only where a stock guest boots under it.

On a host whose /dev/kvm is ``kvm_pvm`` (a paravirtual nested KVM: ``/sys/module/kvm_pvm``), a stock Debian
kernel never boots under ``-accel kvm`` while TCG boots it in seconds; the driver must fall back to TCG and
say why, and ``accel=kvm`` must still force KVM.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from qemu_helpers import make_driver

from virtabs_qemu import _cmdline, driver
from virtabs_qemu._cmdline import KvmUnusableWarning, default_accel, kvm_unusable_reason


def _kvm_opens() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def test_a_pvm_module_makes_kvm_unusable_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "kvm").mkdir()
    (tmp_path / "kvm_intel").mkdir()
    device = tmp_path / "dev-kvm"
    device.write_bytes(b"")
    assert default_accel(str(tmp_path), str(device)) == ("kvm", None)
    assert default_accel(str(tmp_path), str(tmp_path / "absent")) == ("tcg", None)
    assert kvm_unusable_reason(str(tmp_path)) is None
    assert default_accel(str(tmp_path)) == (("kvm", None) if _kvm_opens() else ("tcg", None))
    (tmp_path / "kvm_pvm").mkdir()
    reason = kvm_unusable_reason(str(tmp_path))
    assert reason is not None and "kvm_pvm" in reason and str(tmp_path / "kvm_pvm") in reason
    accel, why = default_accel(str(tmp_path))
    assert accel == "tcg"
    assert why == (reason if _kvm_opens() else None)  # no /dev/kvm: TCG anyway, nothing to explain


def test_the_driver_uses_what_this_host_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine, as it is: the driver's choice follows /dev/kvm and /sys/module, and a fallback warns."""
    monkeypatch.setattr(driver, "_warned_kvm_unusable", set())
    pvm = kvm_unusable_reason() is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = make_driver(tmp_path).accel
    said = [str(w.message) for w in caught if issubclass(w.category, KvmUnusableWarning)]
    if _kvm_opens() and not pvm:
        assert chosen == "kvm" and said == []
    else:
        assert chosen == "tcg"
        if _kvm_opens():  # a KVM that cannot run the guest: the warning names the module and the way out
            assert len(said) == 1 and "kvm_pvm" in said[0] and "accel=kvm" in said[0], said


def test_a_pvm_host_falls_back_to_tcg_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose /dev/kvm opens (a stand-in file) and whose kernel has kvm_pvm loaded (a stand-in dir)."""
    sys_module = tmp_path / "sys-module"
    (sys_module / "kvm_pvm").mkdir(parents=True)
    kvm = tmp_path / "kvm"
    kvm.write_bytes(b"")
    monkeypatch.setattr(driver, "default_accel", lambda: _cmdline.default_accel(str(sys_module), str(kvm)))
    monkeypatch.setattr(driver, "_warned_kvm_unusable", set())
    root = tmp_path / "root"
    root.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert make_driver(root).accel == "tcg"
        assert make_driver(root).accel == "tcg"
    said = [w for w in caught if issubclass(w.category, KvmUnusableWarning)]
    assert len(said) == 1, [str(w.message) for w in said]
    assert "using TCG, not KVM" in str(said[0].message)


def test_accel_in_the_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "_warned_kvm_unusable", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert make_driver(tmp_path, accel="kvm").accel == "kvm"  # forced, even on a pvm host
        assert make_driver(tmp_path, accel="tcg").accel == "tcg"
    assert not [w for w in caught if issubclass(w.category, KvmUnusableWarning)]

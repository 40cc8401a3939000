"""A real guest (Debian kernel + busybox initramfs): graceful shutdown, reboot and PCIe hot-unplug."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import virtabs
from qemu_helpers import MiB, make_driver, qemu_img, qemu_pids
from virtabs import DomainState
from virtabs.spi import DiskSpec, DomainSpec
from virtabs.testing.plugin import in_ci

from virtabs_qemu.testing import guest_extra, wait_console


@pytest.fixture(scope="module")
def extra() -> dict[str, object]:
    try:
        return guest_extra()
    except Exception as exc:  # no apt, no network
        if in_ci():
            pytest.fail(f"cannot build the test guest: {exc}")
        pytest.skip(f"cannot build the test guest: {exc}")


def _guest(root: Path, extra: dict[str, object], name: str = "g") -> tuple[object, object, Path]:
    # TCG: on the nested-KVM CI machine the Debian kernel hangs right after decompression under KVM.
    drv = make_driver(root, accel=os.environ.get("VIRTABS_GUEST_ACCEL", "tcg"))
    ref = drv.define_domain(DomainSpec(name=name, memory_bytes=128 * MiB, vcpus=1, extra=extra))
    drv.start(ref, paused=False)
    console = root / "run" / name / "console.log"
    wait_console(console, "virtabs-guest: ready")
    return drv, ref, console


def test_graceful_shutdown(root: Path, extra: dict[str, object]) -> None:
    drv, ref, console = _guest(root, extra)
    accel = os.environ.get("VIRTABS_GUEST_ACCEL", "tcg")
    virtabs.open(f"qemu:///embed?root={root}&accel={accel}").lookup_domain("g").shutdown(timeout=30)
    assert "virtabs-guest: power button" in console.read_text()
    info = drv.domain_info(ref)  # type: ignore[attr-defined]
    assert info.state == DomainState.SHUTOFF  # a clean exit, not CRASHED
    assert qemu_pids(root) == set()


def test_reboot_restarts_the_guest(root: Path, extra: dict[str, object]) -> None:
    drv, ref, console = _guest(root, extra)
    drv.reboot(ref)  # type: ignore[attr-defined]
    wait_console(console, "virtabs-guest: ready", count=2)
    assert drv.domain_info(ref).state == DomainState.RUNNING  # type: ignore[attr-defined]
    drv.destroy(ref)  # type: ignore[attr-defined]


def test_virtio_hot_unplug_with_a_guest(root: Path, extra: dict[str, object]) -> None:
    drv, ref, _console = _guest(root, extra)
    img = root / "hp.raw"
    qemu_img("create", "-q", "-f", "raw", str(img), str(8 * MiB))
    drv.attach_disk(ref, DiskSpec("vdb", str(img), "raw"))  # type: ignore[attr-defined]
    drv.detach_disk(ref, "vdb")  # type: ignore[attr-defined]
    assert drv.domain_spec(ref).disks == ()  # type: ignore[attr-defined]
    drv.destroy(ref)  # type: ignore[attr-defined]


def test_async_shutdown_is_reported_by_the_event_poller(root: Path, extra: dict[str, object]) -> None:
    import time

    from virtabs.spi import LifecycleEventType

    events: list[object] = []
    drv = make_driver(root, events, accel=os.environ.get("VIRTABS_GUEST_ACCEL", "tcg"))
    ref = drv.define_domain(DomainSpec(name="g", memory_bytes=128 * MiB, vcpus=1, extra=extra))
    drv.start(ref, paused=False)
    wait_console(root / "run" / "g" / "console.log", "virtabs-guest: ready")
    drv.start_events()
    try:
        drv.shutdown(ref)  # returns at once; the guest powers off by itself
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(getattr(e, "type", None) == LifecycleEventType.STOPPED for e in events):
                break
            time.sleep(0.1)
        stopped = [e for e in events if getattr(e, "type", None) == LifecycleEventType.STOPPED]
        assert stopped, events
        assert drv.domain_info(ref).state == DomainState.SHUTOFF
    finally:
        drv.stop_events()

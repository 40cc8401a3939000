"""A tiny bootable guest built from Debian packages: the linux-image-amd64 kernel and a busybox initramfs.

The init script loads the evdev and ACPI button drivers, prints ``virtabs-guest: up`` and ``ready`` on the serial
console and powers off (``poweroff -f``) as soon as the ACPI power button is pressed. That is enough
to test graceful shutdown (``system_powerdown``) for real, and PCIe hot-unplug (the kernel's pciehp).

Packages are fetched with ``apt-get download`` into ``$VIRTABS_GUEST_CACHE`` (default
``~/.cache/virtabs-qemu-guest``) once; the initramfs is written with a small newc cpio writer.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "virtabs-guest: up" > /dev/ttyS0
insmod /evdev.ko
insmod /button.ko
# Under load the button's event device can take a while to appear: wait for it (up to ~30 s).
n=0
found=""
while [ -z "$found" ] && [ $n -lt 300 ]; do
  for e in /sys/class/input/event*; do
    if grep -q "Power Button" "$e/device/name" 2>/dev/null && [ -c "/dev/input/${e##*/}" ]; then
      found="$found ${e##*/}"
    fi
  done
  [ -z "$found" ] && sleep 0.1
  n=$((n + 1))
done
for ev in $found; do
  ( dd if=/dev/input/$ev of=/dev/null bs=24 count=1 2>/dev/null
    echo "virtabs-guest: power button" > /dev/ttyS0
    poweroff -f ) &
done
sleep 0.2
echo "virtabs-guest: ready ($found )" > /dev/ttyS0
while true; do sleep 3600; done
"""

CMDLINE = "console=ttyS0 panic=-1 quiet"


def cache_dir() -> Path:
    return Path(os.environ.get("VIRTABS_GUEST_CACHE") or Path.home() / ".cache" / "virtabs-qemu-guest")


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 1) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = header + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def _write_cpio(path: Path, busybox: bytes, button: bytes, evdev: bytes) -> None:
    entries = [
        ("bin", 0o040755, b"", (0, 0)),
        ("dev", 0o040755, b"", (0, 0)),
        ("dev/console", 0o020600, b"", (5, 1)),
        ("proc", 0o040755, b"", (0, 0)),
        ("sys", 0o040755, b"", (0, 0)),
        ("etc", 0o040755, b"", (0, 0)),
        ("init", 0o100755, INIT.encode(), (0, 0)),
        ("bin/busybox", 0o100755, busybox, (0, 0)),
        ("button.ko", 0o100644, button, (0, 0)),
        ("evdev.ko", 0o100644, evdev, (0, 0)),
    ]
    blob = b"".join(_cpio_entry(n, m, d, r, ino=i + 1) for i, (n, m, d, r) in enumerate(entries))
    blob += _cpio_entry("TRAILER!!!", 0, ino=0)
    path.write_bytes(blob)


def build_guest() -> tuple[str, str]:
    """(kernel, initrd) paths, downloading and building them on first use."""
    cache = cache_dir()
    kernel, initrd = cache / "vmlinuz", cache / "initrd.cpio"
    if kernel.exists() and initrd.exists():
        return str(kernel), str(initrd)
    cache.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    debs.mkdir(exist_ok=True)
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is needed to fetch linux-image-amd64 and busybox-static")
    deps = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=True)
    image_pkg = next(
        line.split(":", 1)[1].strip() for line in deps.stdout.splitlines() if "Depends: linux-image-" in line
    )
    if not glob.glob(str(debs / "linux-image-*.deb")) or not glob.glob(str(debs / "busybox-static*.deb")):
        subprocess.run(["apt-get", "download", image_pkg, "busybox-static"], cwd=debs, check=True, capture_output=True)
    tree = cache / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for deb in glob.glob(str(debs / "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, str(tree)], check=True)
    vmlinuz = sorted(glob.glob(str(tree / "boot" / "vmlinuz-*")))[-1]
    button = sorted(glob.glob(str(tree / "lib" / "modules" / "*" / "kernel" / "drivers" / "acpi" / "button.ko")))[-1]
    evdev = sorted(glob.glob(str(tree / "lib" / "modules" / "*" / "kernel" / "drivers" / "input" / "evdev.ko")))[-1]
    busybox = tree / "bin" / "busybox"
    tmp = initrd.with_suffix(".tmp")
    _write_cpio(tmp, busybox.read_bytes(), Path(button).read_bytes(), Path(evdev).read_bytes())
    shutil.copyfile(vmlinuz, kernel.with_suffix(".tmp"))
    os.replace(kernel.with_suffix(".tmp"), kernel)
    os.replace(tmp, initrd)
    shutil.rmtree(tree, ignore_errors=True)
    return str(kernel), str(initrd)


def guest_extra() -> dict[str, object]:
    kernel, initrd = build_guest()
    return {"qemu": {"kernel": kernel, "initrd": initrd, "append": CMDLINE}}


def wait_console(console: Path, text: str, timeout: float = 60.0, count: int = 1) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if console.read_text(errors="replace").count(text) >= count:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    content = console.read_text(errors="replace")[-2000:] if console.exists() else "<no console log>"
    raise AssertionError(f"guest console never showed {text!r} x{count}: {content}")

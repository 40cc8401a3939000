"""The published contract target of the QEMU driver, and the tiny bootable guest it boots.

``pytest --pyargs virtabs.testing --virtabs-uri='qemu:///embed?root=DIR&accel=tcg'`` finds
:class:`QemuTarget` through the entry point ``virtabs.testing.targets: qemu`` and builds it with
:meth:`QemuTarget.from_uri`. Domains get a small real qcow2 disk in the connection's ``default`` pool
and boot a guest made of the host's Debian kernel (``linux-image-amd64``) and a busybox initramfs
(``busybox-static``), so graceful shutdown and virtio-blk hot-unplug are exercised for real. Effects
are checked through another door than the driver: ``qemu-img convert`` for image content, the serial
console for boots.

The guest: the init script loads the evdev and ACPI button drivers, prints ``virtabs-guest: up`` and
``ready`` on the serial console, then ``tick N`` once a second (its run clock), and powers off
(``poweroff -f``) as soon as the ACPI power button is pressed. It is built from the host's installed kernel, its modules and ``/bin/busybox`` (static), else
from packages fetched once with ``apt-get download`` into ``$VIRTABS_GUEST_CACHE`` (default
``~/.cache/virtabs-qemu-guest``); the initramfs is written with a small newc cpio writer. When neither
works, the tests that need a domain fail with :class:`~virtabs.testing.TargetUnavailable` naming the
packages to install.

This module is test infrastructure; the driver never imports it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from virtabs import Connection, Domain, DomainState
from virtabs.spi import DiskSpec, DomainSpec
from virtabs.testing import DefaultTarget, TargetUnavailable

from ._qmp import QMPClient
from ._state import DomainLock, StateDirs

__all__ = [
    "ACKED",
    "SWITCHOVER_CLIENT",
    "CMDLINE",
    "COUNTING_GUEST_INIT",
    "INSTALL_HINT",
    "QemuTarget",
    "acked_ticks",
    "build_guest",
    "check_destination_clean",
    "check_switchover_kill_rolls_back",
    "check_guest_moved",
    "guest_extra",
    "guest_extra_with_init",
    "process_ids",
    "qemu_pids",
    "read_sectors",
    "start_counting_guest",
    "wait_console",
]

MiB = 1 << 20
SIZE = 64 * MiB
# test-targets.md §8 scaled to 64 MiB: base 0xaa [0, 32M), snap1 0xbb [32M, 48M), snap2 0xcc [48M, 63M).
# The last MiB is left unwritten so that the flattened chain as qcow2 (data plus about 320 KiB of metadata)
# fits a block device of the disk's size: COPY_DEV copies onto one (:meth:`QemuTarget.create_block_device`).
LAYERS = (("base", 0xAA, 0, 32 * MiB), ("snap1", 0xBB, 32 * MiB, 16 * MiB), ("snap2", 0xCC, 48 * MiB, 15 * MiB))
INSTALL_HINT = "apt-get install linux-image-amd64 busybox-static cpio"

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
# The guest's run clock, for the contract kit's managed save check (resumed, not rebooted).
( t=0; while true; do sleep 1; t=$((t + 1)); echo "virtabs-guest: tick $t" > /dev/ttyS0; done ) &
echo "virtabs-guest: ready ($found )" > /dev/ttyS0
while true; do sleep 3600; done
"""

CMDLINE = "console=ttyS0 panic=-1 quiet"
TICK = re.compile(r"virtabs-guest: tick (\d+)")
"""A line of the guest's run clock on the serial console."""


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


def cache_dir() -> Path:
    """Where the built guest (and any downloaded packages) are kept."""
    return Path(os.environ.get("VIRTABS_GUEST_CACHE") or Path.home() / ".cache" / "virtabs-qemu-guest")


def _is_static(binary: Path) -> bool:
    """True when the ELF file has no program interpreter (a static busybox)."""
    with open(binary, "rb") as fh:
        return b"/ld-linux" not in fh.read(8192)


def _host_parts() -> tuple[str, Path, Path, Path, Path] | None:
    """``(version, vmlinuz, button.ko, evdev.ko, busybox)`` from the host's installed packages, if complete."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file() or not _is_static(busybox):
        return None
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        version = vmlinuz.split("vmlinuz-", 1)[1]
        mods = Path("/lib/modules") / version / "kernel" / "drivers"
        button, evdev = mods / "acpi" / "button.ko", mods / "input" / "evdev.ko"
        if os.access(vmlinuz, os.R_OK) and button.is_file() and evdev.is_file():
            return version, Path(vmlinuz), button, evdev, busybox
    return None


def _downloaded_parts(cache: Path) -> tuple[str, Path, Path, Path, Path]:
    """The same parts from ``apt-get download``ed packages, unpacked under ``cache``."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError("apt-get and dpkg-deb are needed to fetch linux-image-amd64 and busybox-static")
    if not glob.glob(str(debs / "linux-image-*.deb")) or not glob.glob(str(debs / "busybox-static*.deb")):
        deps = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True, check=True)
        image_pkg = next(
            line.split(":", 1)[1].strip() for line in deps.stdout.splitlines() if "Depends: linux-image-" in line
        )
        subprocess.run(["apt-get", "download", image_pkg, "busybox-static"], cwd=debs, check=True, capture_output=True)
    tree = cache / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for deb in glob.glob(str(debs / "*.deb")):
        subprocess.run(["dpkg-deb", "-x", deb, str(tree)], check=True)
    vmlinuz = sorted(glob.glob(str(tree / "boot" / "vmlinuz-*")))[-1]
    version = vmlinuz.split("vmlinuz-", 1)[1]
    drivers = tree / "lib" / "modules" / version / "kernel" / "drivers"
    return (
        version,
        Path(vmlinuz),
        drivers / "acpi" / "button.ko",
        drivers / "input" / "evdev.ko",
        tree / "bin" / "busybox",
    )


def build_guest() -> tuple[str, str]:
    """``(kernel, initrd)`` paths, built on first use; TargetUnavailable naming the packages when impossible."""
    cache = cache_dir()
    try:
        parts = _host_parts()
        # The init script's digest in the name: a changed script never reuses an initramfs built from another.
        init = hashlib.sha256(INIT.encode()).hexdigest()[:12]
        where = cache / (f"host-{parts[0]}-{init}" if parts is not None else f"downloaded-{init}")
        kernel, initrd = where / "vmlinuz", where / "initrd.cpio"
        if kernel.exists() and initrd.exists():
            return str(kernel), str(initrd)
        if parts is None:
            parts = _downloaded_parts(cache)
        _version, vmlinuz, button, evdev, busybox = parts
        where.mkdir(parents=True, exist_ok=True)
        tmp = initrd.with_suffix(".tmp")
        _write_cpio(tmp, busybox.read_bytes(), button.read_bytes(), evdev.read_bytes())
        shutil.copyfile(vmlinuz, kernel.with_suffix(".tmp"))
        os.replace(kernel.with_suffix(".tmp"), kernel)
        os.replace(tmp, initrd)
    except (OSError, RuntimeError, StopIteration, IndexError, subprocess.CalledProcessError) as exc:
        raise TargetUnavailable(
            f"cannot build the QEMU test guest (a Debian kernel with its button/evdev modules and a static "
            f"busybox): {type(exc).__name__}: {exc}; install them: {INSTALL_HINT}"
        ) from exc
    finally:
        shutil.rmtree(cache / "tree", ignore_errors=True)
    return str(kernel), str(initrd)


def guest_extra() -> dict[str, object]:
    """The ``DomainSpec.extra`` that boots the test guest (direct kernel boot)."""
    kernel, initrd = build_guest()
    return {"qemu": {"kernel": kernel, "initrd": initrd, "append": CMDLINE}}


VIRTIO_BLK_MODULES = (
    "virtio/virtio_ring",
    "virtio/virtio",
    "virtio/virtio_pci_legacy_dev",
    "virtio/virtio_pci_modern_dev",
    "virtio/virtio_pci",
    "block/virtio_blk",
)
"""The modules (under ``kernel/drivers``, in load order) that give the guest ``/dev/vda``."""


def guest_extra_with_init(init: str, directory: Path) -> dict[str, object]:
    """The test guest with another ``/init`` and the virtio-blk modules in ``/m`` (so it sees its disk).

    The kernel unpacks concatenated cpio archives in order, later entries replacing earlier ones: the
    initramfs written to ``directory`` is the test guest's, followed by one holding ``init`` and the
    modules of the host's kernel (TargetUnavailable when the guest was not built from the host's kernel).
    """
    kernel, initrd = build_guest()
    parts = _host_parts()
    if parts is None:
        raise TargetUnavailable("the guest with its own disk needs the host's kernel modules (virtio_blk)")
    drivers = Path("/lib/modules") / parts[0] / "kernel" / "drivers"
    entries = [_cpio_entry("m", 0o040755, ino=1), _cpio_entry("init", 0o100755, init.encode(), ino=2)]
    for i, module in enumerate(VIRTIO_BLK_MODULES):
        data = (drivers / f"{module}.ko").read_bytes()
        entries.append(_cpio_entry(f"m/{module.rsplit('/', 1)[-1]}.ko", 0o100644, data, ino=3 + i))
    entries.append(_cpio_entry("TRAILER!!!", 0, ino=0))
    out = directory / "initrd-with-init.cpio"
    out.write_bytes(Path(initrd).read_bytes() + b"".join(entries))
    return {"qemu": {"kernel": kernel, "initrd": str(out), "append": CMDLINE}}


COUNTING_GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
  insmod /m/$m.ko
done
boot=$(cat /proc/sys/kernel/random/boot_id)
echo "virtabs-guest: up $boot" > /dev/ttyS0
w=0
while [ ! -b /dev/vda ] && [ $w -lt 300 ]; do sleep 0.1; w=$((w + 1)); done
n=0
while true; do
  n=$((n + 1))
  printf 'tick %08d\\n' $n | dd of=/dev/vda bs=512 seek=$n count=1 conv=sync,fsync 2>/dev/null && \\
    echo "virtabs-guest: acked $n $boot" > /dev/ttyS0
  sleep 0.2
done
"""
"""The ``/init`` of the migration tests' counting guest (for :func:`guest_extra_with_init`): every ~0.2 s it
writes ``tick N`` to sector N of ``/dev/vda`` (``dd conv=fsync``: acknowledged once the flush returned),
then prints ``virtabs-guest: acked N BOOT_ID`` on its serial console; ``n`` lives in the shell's memory,
so a guest that keeps counting after a migration kept its memory, and the same boot id says it never
rebooted."""

ACKED = re.compile(r"virtabs-guest: acked (\d+) ([0-9a-f-]+)")
"""The counting guest's acknowledgement line: (N, boot id)."""


def process_ids(program: bytes, needle: str) -> set[int]:
    """Live (not zombie) processes whose argv[0] contains ``program`` and whose command line names ``needle``
    (a scan of ``/proc``; the tests' way to see QEMUs and ssh forwards without asking the driver)."""
    found = set()
    key = os.fsencode(needle)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and program in argv[0] and any(key in a for a in argv):
            found.add(int(entry))
    return found


def qemu_pids(root: Path) -> set[int]:
    """Live QEMU processes whose command line names something under ``root``."""
    return process_ids(b"qemu-system", str(root))


def start_counting_guest(
    conn: Connection, root: Path, extra: dict[str, object], name: str = "counter"
) -> tuple[Domain, Path]:
    """Define and start the counting guest (:data:`COUNTING_GUEST_INIT`, ``extra`` from
    :func:`guest_extra_with_init`) on a 64 MiB qcow2 disk in ``conn``'s ``default`` pool, whose state
    root on this machine is ``root``; wait for its third acknowledged tick. The domain and its console log."""
    pool = conn.lookup_storage_pool("default")
    pool.create_volume(f"{name}.qcow2", 64 * MiB, format="qcow2")
    path = os.path.join(str(pool.info().path), f"{name}.qcow2")
    spec = DomainSpec(
        name=name, memory_bytes=128 * MiB, vcpus=1, disks=(DiskSpec("vda", path, format="qcow2"),), extra=extra
    )
    dom = conn.define_domain(spec)
    dom.start()
    console = root / "run" / name / "console.log"
    wait_console(console, "virtabs-guest: acked 3 ", timeout=120)
    return dom, console


def acked_ticks(console: Path) -> list[tuple[int, str]]:
    """The counting guest's acknowledged ticks on ``console``, in order: (N, boot id)."""
    return [(int(n), boot) for n, boot in ACKED.findall(console.read_text(errors="replace"))]


def read_sectors(image: str, count: int) -> bytes:
    """Sectors 0..``count`` of the qcow2 ``image``, read without taking its lock (a running QEMU holds it)."""
    out = Path(tempfile.mkdtemp(prefix="vtm-read-")) / "disk.raw"
    try:
        subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", image, str(out)], check=True)
        with open(out, "rb") as fh:
            return fh.read((count + 1) * 512)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def check_guest_moved(moved: Domain, src_console: Path, dst_root: Path, boot_id: str, name: str = "counter") -> None:
    """The running-guest proof after a migration of the counting guest to the root ``dst_root`` (its path on
    this machine): the guest runs there and goes on counting from where it was (the same boot id, no boot
    line on the destination's console), and the destination's disk holds every tick the source
    acknowledged. AssertionError naming what is missing otherwise."""
    before = acked_ticks(src_console)
    if not before:
        raise AssertionError(f"the source's console {src_console} shows no acknowledged tick")
    last_on_source = before[-1][0]
    state = moved.state()
    if state != DomainState.RUNNING:
        raise AssertionError(f"the migrated domain is {state.name}, not RUNNING")
    dst_console = dst_root / "run" / name / "console.log"
    wait_console(dst_console, f"virtabs-guest: acked {last_on_source + 3} ", timeout=120)
    after = acked_ticks(dst_console)
    boots = {boot for _n, boot in after}
    if boots != {boot_id}:
        raise AssertionError(f"boot ids on the destination {boots}, the source's {boot_id}: the guest rebooted")
    if "virtabs-guest: up" in dst_console.read_text(errors="replace"):
        raise AssertionError("the guest booted on the destination")
    if after[0][0] > last_on_source + 2:
        raise AssertionError(
            f"the destination's first tick {after[0][0]} is not where the source was ({last_on_source})"
        )
    disk = moved.disks()[0].path
    if not disk.startswith(str(dst_root)):
        raise AssertionError(f"the migrated disk {disk} is not under the destination's root {dst_root}")
    data = read_sectors(disk, last_on_source)
    for n, _boot in before:
        if data[n * 512 : n * 512 + 14] != f"tick {n:08d}\n".encode():
            raise AssertionError(f"tick {n}, acknowledged on the source, is missing on the destination's disk")


def check_destination_clean(dst: Connection, dst_root: Path) -> None:
    """After a migration that failed or was discarded: the destination (state root ``dst_root`` on this
    machine) keeps no domain, no QEMU and no image. AssertionError naming what is left otherwise."""
    domains = [d.name for d in dst.list_domains()]
    if domains:
        raise AssertionError(f"the destination keeps domains {domains}")
    left = qemu_pids(dst_root)
    if left:
        raise AssertionError(f"QEMU processes {sorted(left)} of the destination are still running")
    images = dst_root / "images"
    kept = sorted(p.name for p in images.glob("*")) if images.exists() else []
    if kept:
        raise AssertionError(f"the destination keeps images {kept}")


SWITCHOVER_CLIENT = """
import sys, virtabs
from virtabs import MigrateFlags as M
from virtabs_qemu import _migration

point = sys.argv[3]


def hold():
    print(point, flush=True)
    sys.stdin.read()  # the test kills this process here


if point == "pre-switchover":  # vCPUs stopped, QEMU waits for migrate-continue; the mirrors about to end
    end_mirror = _migration.Migrations._end_mirror

    def _end_mirror(self, q, name, target, force):
        if not force:
            hold()
        return end_mirror(self, q, name, target, force)

    _migration.Migrations._end_mirror = _end_mirror
else:  # "completed": QEMU sent everything, perform has not returned (no finish, no confirm)
    record_memory = _migration.Migrations._record_memory

    def _record_memory(self, progress, mig, phase):
        record_memory(self, progress, mig, phase)
        if phase == "completed":
            hold()

    _migration.Migrations._record_memory = _record_memory
src = virtabs.open(sys.argv[1], timeout=60)
dst = virtabs.open(sys.argv[2], timeout=60)
src.lookup_domain("counter").migrate(dst, flags=M.LIVE | M.NON_SHARED_DISK | M.PERSIST_DEST).wait(timeout=600)
"""
"""A client process for the tests that kill one during a migration's switchover: ``python -c
SWITCHOVER_CLIENT SRC_URI DEST_URI POINT`` migrates domain ``counter`` with storage and, inside perform,
holds at ``POINT`` (``pre-switchover`` or ``completed``: it wraps the driver's own step there), prints
``POINT`` and waits for the test to kill it."""


def check_switchover_kill_rolls_back(
    src: Connection, dst: Connection, src_root: Path, dst_root: Path, point: str
) -> None:
    """Migrate the running counting guest ``counter`` (started by :func:`start_counting_guest` on ``src``,
    state root ``src_root``) to ``dst`` (state root ``dst_root``) in a :data:`SWITCHOVER_CLIENT` process, kill
    that client at ``point`` and check the rollback its guards owe: while held, the guest is paused and the
    destination QEMU exists; within 60 s of the kill the destination keeps no QEMU and no domain and the guest
    runs on the source again, counts on there, has no mirror left and exactly one QEMU under ``src_root``;
    :func:`check_destination_clean` holds. AssertionError naming what is wrong otherwise."""
    dom = src.lookup_domain("counter")
    console = src_root / "run" / "counter" / "console.log"
    client = subprocess.Popen(
        [sys.executable, "-c", SWITCHOVER_CLIENT, str(src.uri), str(dst.uri), point],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        reached = client.stdout.readline().strip() if client.stdout is not None else ""
        if reached != point:
            raise AssertionError(f"the client did not reach {point!r} (it printed {reached!r})")
        if dom.state() != DomainState.PAUSED:  # the switchover: the guest runs nowhere
            raise AssertionError(f"held at {point}, the source domain is {dom.state().name}, not PAUSED")
        if not qemu_pids(dst_root):
            raise AssertionError("the destination QEMU is not there")
        ticks = len(acked_ticks(console))
    finally:
        client.kill()
        client.wait()
    deadline = time.monotonic() + 60
    while qemu_pids(dst_root) or dst.list_domains() or dom.state() != DomainState.RUNNING:
        if time.monotonic() >= deadline:
            raise AssertionError(f"after the kill: source {dom.state().name}, destination {dst.list_domains()}")
        time.sleep(0.1)
    wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)  # counting on the source
    check_destination_clean(dst, dst_root)
    if dom.block_job_info("vda"):
        raise AssertionError("the mirror is still on the source")
    left = qemu_pids(src_root)
    if len(left) != 1:
        raise AssertionError(f"QEMU processes under the source's root: {sorted(left)}, not one")


OWNERS_DIR = ".virtabs-contract-runs"
"""Directory (under the runtime directory) where each kit run records the pid that owns its prefix."""


def _owner_alive(claim: Path) -> bool:
    """Whether the process recorded in ``claim`` still runs (a missing or unreadable claim: no)."""
    try:
        pid = int(claim.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _is_qemu(pid: int) -> bool:
    """Whether ``pid`` is a QEMU (a reused pid of something else is never killed)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return b"qemu" in os.path.basename(argv0)


def wait_console(console: Path, text: str, timeout: float = 60.0, count: int = 1) -> None:
    """Wait until the serial console log shows ``text`` ``count`` times; AssertionError with its tail if not."""
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


def _tool(*args: str) -> str:
    try:
        return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout
    except FileNotFoundError as exc:
        raise TargetUnavailable(f"{args[0]} is missing: apt-get install qemu-utils") from exc


def _image_format(path: str) -> str:
    with open(path, "rb") as fh:  # test images: trusted
        return "qcow2" if fh.read(4) == b"QFI\xfb" else "raw"


def _protocol(path: str) -> str:
    """QEMU's protocol driver for ``path``: ``host_device`` for a block device, else ``file``."""
    return "host_device" if stat.S_ISBLK(os.stat(path).st_mode) else "file"


class QemuTarget(DefaultTarget):
    """Real qcow2 disks in the connection's ``default`` pool and a guest that answers the power button."""

    job_timeout = 120.0

    def __init__(self, dirs: StateDirs) -> None:
        """A target for the connection whose state directories are ``dirs``; kills the QEMUs that runs
        killed before their cleanup left behind (:meth:`sweep_stale_processes`)."""
        super().__init__(memory_bytes=128 * MiB)
        self.dirs = dirs
        self._extra: dict[str, object] | None = None
        self._peer_roots: list[str] = []
        self._loops: list[tuple[str, str, str]] = []
        self._swept_definitions = False
        self.sweep_stale_processes()
        self._claim()

    @classmethod
    def from_uri(cls, uri: str) -> QemuTarget:
        """The target of a ``qemu://`` URI (``/embed?root=DIR``, ``/session`` or ``/system``)."""
        parts = urlsplit(uri)
        return cls(StateDirs.for_uri(parts.path, dict(parse_qsl(parts.query))))

    @property
    def extra(self) -> dict[str, object]:
        """The guest's boot parameters, built on first use (TargetUnavailable when it cannot be)."""
        if self._extra is None:
            self._extra = guest_extra()
        return self._extra

    def close(self) -> None:
        """Kill any QEMU this run's domains left behind (their names carry the prefix), also in peer roots;
        give up the claim."""
        self._kill_prefixed(self.prefix)
        with contextlib.suppress(OSError):
            (self._owners() / self.prefix).unlink()

    def migration_peer(self, conn: Connection) -> Connection:
        """Another embed root on this machine (same emulator and accelerator) to migrate to."""
        import virtabs

        root = tempfile.mkdtemp(prefix="vtqp-")  # short: the QMP socket path must stay under 108 bytes
        self._peer_roots.append(root)
        params = dict(conn.parsed_uri.params)
        params["root"] = root
        query = "&".join(f"{k}={v}" for k, v in params.items())
        peer = virtabs.open(f"qemu:///embed?{query}", timeout=conn.timeout)
        self._peers.append(peer)
        return peer

    def cleanup(self, conn: Connection) -> None:
        """The default cleanup (this connection and the peers), then the peer roots removed."""
        super().cleanup(conn)
        self.close()
        while self._peer_roots:
            shutil.rmtree(self._peer_roots.pop(), ignore_errors=True)
        while self._loops:
            device, directory, losetup = self._loops.pop()
            subprocess.run([losetup, "-d", device], check=False, capture_output=True)
            shutil.rmtree(directory, ignore_errors=True)

    def create_block_device(self, conn: Connection, name: str) -> str:
        """A loop device over a fresh raw file of the chain disk's size (64 MiB), detached in cleanup.

        Needs root (``losetup``); TargetUnavailable otherwise. The backing file is in a directory of its own,
        not in a pool (where it would be listed as a volume)."""
        # sbin too: a far side started over ssh gets sshd's PATH, which has no sbin directory on Debian
        losetup = shutil.which("losetup", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
        if losetup is None:
            raise TargetUnavailable("a COPY_DEV destination needs losetup: apt-get install mount")
        directory = tempfile.mkdtemp(prefix="vtqdev-")
        backing = os.path.join(directory, self.new_name(name) + ".raw")
        with open(backing, "wb") as fh:
            fh.truncate(SIZE)
        proc = subprocess.run([losetup, "-f", "--show", backing], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(directory, ignore_errors=True)
            raise TargetUnavailable(f"losetup cannot attach a loop device (it needs root): {proc.stderr.strip()}")
        device = proc.stdout.strip()
        self._loops.append((device, directory, losetup))
        return device

    # --- runs that were killed: their domains are recognisable by name, their owner is gone ---------

    def _owners(self) -> Path:
        return Path(self.dirs.run) / OWNERS_DIR

    def _claim(self) -> None:
        """Record that this process owns the domains named with this run's prefix."""
        with contextlib.suppress(OSError):
            self._owners().mkdir(parents=True, exist_ok=True)
            (self._owners() / self.prefix).write_text(f"{os.getpid()}\n")

    def _stale_prefixes(self) -> set[str]:
        """Run prefixes of this target's kind whose claim names a process that is gone.

        A prefix nobody claimed is left alone: it is another run's that claims elsewhere (the kit over
        ``qemu+ssh://`` makes its domains through a door process on the remote host, one short process
        per call, under the client's prefix), and sweeping it would kill that live run's guests.
        """
        base = self.prefix.rsplit("-", 1)[0]
        pattern = re.compile(rf"^({re.escape(base)}-[0-9a-f]{{6}})-\d+-")
        seen: set[str] = set()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.dirs.run):
                if (m := pattern.match(entry.name)) is not None:
                    seen.add(m.group(1))
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.dirs.config):
                if (m := pattern.match(entry.name)) is not None:
                    seen.add(m.group(1))
        owners = self._owners()
        return {p for p in seen - {self.prefix} if (owners / p).is_file() and not _owner_alive(owners / p)}

    def _kill_prefixed(self, prefix: str) -> None:
        runs = (self.dirs.run, *(os.path.join(r, "run") for r in self._peer_roots))
        for pidfile in (p for run in runs for p in glob.glob(os.path.join(run, f"{prefix}-*", "qemu.pid"))):
            with contextlib.suppress(OSError, ValueError):
                pid = int(Path(pidfile).read_text().strip())
                if _is_qemu(pid):
                    os.kill(pid, signal.SIGKILL)

    def sweep_stale_processes(self) -> list[str]:
        """Kill the QEMUs of contract domains whose run was killed (Ctrl-C twice, SIGKILL, a CI timeout):
        their names carry a run prefix no live process owns. Returns the prefixes swept."""
        stale = sorted(self._stale_prefixes())
        for prefix in stale:
            self._kill_prefixed(prefix)
        return stale

    def sweep_stale_definitions(self, conn: Connection) -> None:
        """Destroy and undefine, through ``conn``, the contract domains (and volumes) of killed runs."""
        stale = self._stale_prefixes()
        if not stale:
            return
        for dom in conn.list_domains():
            if any(dom.name.startswith(f"{p}-") for p in stale):
                self._remove_domain(dom)
        with contextlib.suppress(Exception):
            pool = conn.lookup_storage_pool("default")
            for vol in pool.list_volumes():
                if any(vol.name.startswith(f"{p}-") for p in stale):
                    with contextlib.suppress(Exception):
                        vol.delete()
        for prefix in stale:
            with contextlib.suppress(OSError):
                (self._owners() / prefix).unlink()

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """A 64 MiB qcow2 volume of the ``default`` pool as ``vda``, booting the test guest."""
        extra = self.extra
        pool = conn.lookup_storage_pool("default")
        path = os.path.join(str(pool.info().path), f"{name}.qcow2")
        if not os.path.exists(path):
            pool.create_volume(os.path.basename(path), SIZE, format="qcow2")
        return DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            disks=(DiskSpec("vda", path, format="qcow2"),),
            extra=extra,
        )

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """A REUSE_EXT destination the size of the chain's disks (64 MiB); backing formats explicit."""
        args = ["create", "-q", "-f", format]
        if backing:
            args += ["-b", backing, "-F", _image_format(backing)]
        _tool("qemu-img", *args, path, str(SIZE))

    def _sweep_once(self, conn: Connection) -> None:
        if not self._swept_definitions:
            self._swept_definitions = True
            self.sweep_stale_definitions(conn)

    def make_chain_domain(self, conn: Connection) -> Domain:
        """base <- snap1 <- snap2 (64 MiB qcow2, a data pattern per layer) so throttled jobs stay busy."""
        self._sweep_once(conn)
        extra = self.extra
        pool_path = str(conn.lookup_storage_pool("default").info().path)
        below: str | None = None
        for layer, pattern, offset, length in LAYERS:
            path = os.path.join(pool_path, self.new_name(f"{layer}.qcow2"))
            args = ["create", "-q", "-f", "qcow2"] + (["-b", below, "-F", "qcow2"] if below else [])
            _tool("qemu-img", *args, path, str(SIZE))
            _tool("qemu-io", "-f", "qcow2", "-c", f"write -P 0x{pattern:02x} {offset} {length}", path)
            below = path
        assert below is not None
        name = self.new_name("chain")
        spec = DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            disks=(DiskSpec("vda", below, format="qcow2"),),
            extra=extra,
        )
        dom = conn.define_domain(spec)
        dom.start()
        return dom

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """A disposable domain; when running, returned once the guest's init said it is ready."""
        self._sweep_once(conn)
        dom = super().make_domain(conn, running=running)
        if running:
            wait_console(Path(self.dirs.run_dir(dom.name)) / "console.log", "virtabs-guest: ready", timeout=90)
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
        run = Path(self.dirs.run_dir(dom.name))
        try:
            pid = (run / "qemu.pid").read_text().strip()
        except FileNotFoundError:
            return None
        try:
            boots = (run / "console.log").read_text(errors="replace").count("virtabs-guest: up")
        except FileNotFoundError:
            boots = 0
        return (pid, boots)

    def run_clock(self, conn: Connection, dom: Domain) -> float | None:
        """The last ``tick N`` the guest printed on the serial console (QEMU truncates the log at each start);
        None before the first."""
        try:
            text = (Path(self.dirs.run_dir(dom.name)) / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return None
        ticks = TICK.findall(text)
        return float(ticks[-1]) if ticks else None

    def _digest(self, path: str, *, with_backing: bool) -> str | None:
        if not os.path.exists(path):
            return None
        self._flush_running_domains()
        fmt = _image_format(path)
        # A running QEMU holds the image (a mirror target even against consistent reads): no locks.
        spec: dict[str, object] = {
            "driver": fmt,
            "read-only": True,
            "file": {"driver": _protocol(path), "filename": path, "read-only": True, "locking": "off"},
        }
        if fmt == "qcow2" and not with_backing:
            spec["backing"] = None
        tmp = tempfile.mkdtemp(prefix="vtqd-")
        out = os.path.join(tmp, "digest.raw")
        try:
            _tool("qemu-img", "convert", "-O", "raw", f"json:{json.dumps(spec)}", out)
            digest = hashlib.sha256()
            with open(out, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _flush_running_domains(self) -> None:
        """``stop`` + ``cont`` this run's running domains over their own QMP socket (under the driver's
        domain lock): only a stop writes QEMU's cached qcow2 metadata out, so images read consistently."""
        for run in Path(self.dirs.run).glob(f"{self.prefix}*"):
            if not run.is_dir() or not os.path.exists(sock := self.dirs.qmp_socket(run.name)):
                continue
            lock = DomainLock(self.dirs.lockfile(run.name))
            with lock.hold(), contextlib.suppress(Exception), QMPClient(sock, timeout=30) as q:
                if q.execute("query-status").get("running"):
                    q.execute("stop")
                    q.execute("cont")

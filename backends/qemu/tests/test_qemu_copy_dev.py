"""COPY_DEV (issue 27): a block copy onto a block device, against real QEMU and real loop devices.

The copy's target is opened by QEMU's ``host_device`` driver (seen in QEMU's own block graph), the device
is formatted by QEMU unless REUSE_EXT, and what a caller may name is checked before QEMU is touched
(``virtabs_qemu._copydest``). Loop devices need root: without it these tests skip, and fail under CI.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import virtabs
from qemu_helpers import SIZE, chain_spec, check_all_layers, image_info
from virtabs import BlockRebaseFlags, InvalidArgumentError, OperationFailedError, OperationInvalidError
from virtabs.testing.plugin import in_ci

from virtabs_qemu._qmp import QMPClient

R = BlockRebaseFlags
MiB = 1 << 20
MARK = b"virtabs: this device was not written\n"


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Attach loop devices over sparse files of the given sizes, each starting with :data:`MARK`."""
    losetup = shutil.which("losetup")
    if losetup is None or os.geteuid() != 0:
        reason = "loop devices need root and losetup (util-linux)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    attached: list[str] = []

    def attach(size: int) -> str:
        backing = tmp_path / f"dev{len(attached)}.raw"
        with open(backing, "wb") as fh:
            fh.write(MARK)
            fh.truncate(size)
        proc = subprocess.run([losetup, "-f", "--show", str(backing)], capture_output=True, text=True, check=True)
        attached.append(proc.stdout.strip())
        return attached[-1]

    yield attach
    for device in attached:
        subprocess.run([losetup, "-d", device], capture_output=True, check=False)


@pytest.fixture
def running(root: Path, chain: dict[str, Path]) -> Iterator[tuple[virtabs.Connection, virtabs.Domain, Path]]:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    yield conn, dom, root
    if dom.state().is_active:
        dom.destroy()
    conn.close()


def _nodes(root: Path) -> list[dict[str, Any]]:
    """QEMU's block graph (query-named-block-nodes), asked over the domain's own QMP socket."""
    with QMPClient(str(root / "run" / "vm" / "qmp.sock"), timeout=30) as q:
        return list(q.execute("query-named-block-nodes", {"flat": True}))


def _untouched(device: str) -> bool:
    with open(device, "rb") as fh:
        return fh.read(len(MARK)) == MARK


@pytest.mark.parametrize(
    ("flags", "size", "fmt"),
    [(R.COPY_DEV, SIZE + MiB, "qcow2"), (R.COPY_DEV | R.COPY_RAW, SIZE, "raw")],
    ids=["source-format", "raw"],
)
def test_copy_onto_a_block_device_through_host_device(
    running: tuple[virtabs.Connection, virtabs.Domain, Path],
    loop_device: Callable[[int], str],
    flags: R,
    size: int,
    fmt: str,
) -> None:
    """Flatten onto the device in the source's format (a qcow2 on the device, as libvirt formats it) or
    raw; pivot; the definition names the device, and the domain starts again from it."""
    _conn, dom, root = running
    device = loop_device(size)
    job = dom.block_rebase("vda", device, flags=R.COPY | flags)
    job.wait_ready(timeout=60)
    drivers = {str(n.get("drv")) for n in _nodes(root) if n.get("file") == device}
    assert drivers == {fmt, "host_device"}, f"the mirror target is not {fmt} over host_device: {drivers}"
    job.pivot()
    assert dom.block_job_info("vda") is None
    disk = dom.spec().disks[0]
    assert (disk.path, disk.format) == (device, fmt)
    after = dom.disks()[0]
    assert (after.path, after.format, after.backing_chain) == (device, fmt, ())
    dom.destroy()
    with open(device, "rb") as fh:
        assert (fh.read(4) == b"QFI\xfb") == (fmt == "qcow2"), f"the device does not hold a {fmt} image"
    if fmt == "qcow2":
        assert "backing-filename" not in image_info(device)
    check_all_layers(device, fmt)
    dom.start(paused=True)  # the definition's /dev path opens as host_device at start
    drivers = {str(n.get("drv")) for n in _nodes(root) if n.get("file") == device}
    assert drivers == {fmt, "host_device"}, drivers


def _refused(dom: virtabs.Domain, root: Path, device: str, flags: R, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        dom.block_rebase("vda", device, flags=R.COPY | flags)
    assert dom.block_job_info("vda") is None
    assert not [n for n in _nodes(root) if n.get("file") == device], "QEMU opened a refused destination"


def test_what_a_copy_dev_destination_may_not_be(
    running: tuple[virtabs.Connection, virtabs.Domain, Path], loop_device: Callable[[int], str], tmp_path: Path
) -> None:
    _conn, dom, root = running
    regular = tmp_path / "file.img"
    regular.write_bytes(MARK)
    _refused(dom, root, str(regular), R.COPY_DEV, InvalidArgumentError, "must be a block device under /dev")
    assert regular.read_bytes() == MARK
    _refused(dom, root, "/dev/null", R.COPY_DEV, InvalidArgumentError, "is not a block device")
    _refused(dom, root, "/dev/virtabs-no-such-device", R.COPY_DEV, OperationFailedError, "does not exist")

    exact = loop_device(SIZE)
    link = tmp_path / "link-to-device"
    link.symlink_to(exact)  # a device, but named outside /dev: at the next start it would open as a file
    _refused(dom, root, str(link), R.COPY_DEV, InvalidArgumentError, "under /dev")
    _refused(dom, root, exact, R.COPY_DEV | R.REUSE_EXT, InvalidArgumentError, "format named")
    assert _untouched(exact)

    larger = loop_device(SIZE + MiB)
    _refused(dom, root, larger, R.COPY_DEV | R.COPY_RAW, InvalidArgumentError, "exactly the disk's size")
    smaller = loop_device(SIZE - MiB)
    _refused(dom, root, smaller, R.COPY_DEV, InvalidArgumentError, "smaller than the disk")
    assert _untouched(larger) and _untouched(smaller)


def test_a_device_in_use_is_refused(
    running: tuple[virtabs.Connection, virtabs.Domain, Path], loop_device: Callable[[int], str]
) -> None:
    """Held exclusively (as a mount or device-mapper holds it): refused, and left as it was."""
    _conn, dom, root = running
    device = loop_device(SIZE)
    holder = os.open(device, os.O_RDONLY | os.O_EXCL)
    try:
        _refused(dom, root, device, R.COPY_DEV | R.COPY_RAW, OperationInvalidError, "in use")
    finally:
        os.close(holder)
    assert _untouched(device)


def test_a_block_device_without_copy_dev_is_never_replaced(
    running: tuple[virtabs.Connection, virtabs.Domain, Path], loop_device: Callable[[int], str], tmp_path: Path
) -> None:
    """A plain copy onto a device node (it reads as empty: size 0) is refused; the node is not unlinked.

    The node is a second one of a loop device, made in a temporary directory, so that a regression
    unlinks nothing in /dev."""
    _conn, dom, root = running
    device = loop_device(SIZE)
    node = tmp_path / "node"
    os.mknod(node, stat.S_IFBLK | 0o600, os.stat(device).st_rdev)
    for flags in (R(0), R.REUSE_EXT | R.COPY_RAW):
        _refused(dom, root, str(node), flags, InvalidArgumentError, "needs COPY_DEV")
        assert stat.S_ISBLK(os.lstat(node).st_mode), "the device node was replaced"
    assert _untouched(device)
    with contextlib.suppress(OSError):
        node.unlink()

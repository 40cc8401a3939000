"""Issue 14, item 2: a format is never guessed from an image's bytes.

The attack: a guest writes a qcow2 header into its raw disk, naming a host file (or an NBD server) as the
backing file. Listing, looking up, resizing, using it as a backing volume and booting it must never make
anything open what the header names. Watched for real: inotify on the host file (any process opening it
is seen) and a listening TCP socket standing in for the NBD server (any connection is seen).
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs.spi import DiskSpec, DomainSpec

from virtabs_qemu import _img

MiB = 1 << 20
_IN_ACCESS = 0x001
_IN_OPEN = 0x020


class OpenWatch:
    """inotify on one file: :meth:`events` is the number of opens and reads seen since the watch began."""

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(str(path)), _IN_OPEN | _IN_ACCESS)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.seen = 0

    def events(self) -> int:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.seen
            self.seen += len(data) // 16 or 1  # struct inotify_event: 16 bytes + name (none for a file watch)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def nbd_listener() -> Iterator[socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


def _connections(srv: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = srv.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def _qcow2_header_naming(tmp: Path, backing: str) -> bytes:
    """The first cluster of a real qcow2 image whose header names ``backing`` (format raw) as its backing file."""
    img = tmp / "header-source.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", str(img), str(MiB)], check=True
    )
    data = img.read_bytes()[:65536]
    img.unlink()
    return data


def _guest_writes(path: Path, header: bytes) -> None:
    """What a guest can do to its raw disk: write any bytes at offset 0."""
    with open(path, "r+b") as fh:
        fh.write(header)


def test_qcow2_header_in_a_raw_volume_is_never_followed(root: Path, nbd_listener: socket.socket) -> None:
    secret = root / "host-secret.txt"
    secret.write_text("host secret\n")
    nbd = f"nbd://127.0.0.1:{nbd_listener.getsockname()[1]}/x"
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=60)
    pool = conn.lookup_storage_pool("default")
    pool_dir = Path(str(pool.info().path))

    # A raw volume created through virtabs, then overwritten by its guest; and a file another tool dropped in
    # the pool (no recorded format: unknown, so raw).
    evil = pool.create_volume("evil.img", 4 * MiB, format="raw")
    _guest_writes(Path(evil.path), _qcow2_header_naming(root, str(secret)))
    dropped = pool_dir / "dropped.img"
    dropped.write_bytes(_qcow2_header_naming(root, nbd) + b"\0" * (2 * MiB - 65536))

    watch = OpenWatch(secret)
    try:
        listed = {v.name: v.info() for v in pool.list_volumes()}
        assert set(listed) == {"evil.img", "dropped.img"}
        for name, size in (("evil.img", 4 * MiB), ("dropped.img", 2 * MiB)):
            info = pool.lookup_volume(name).info()
            assert listed[name].format == info.format == "raw"
            assert listed[name].backing_chain == info.backing_chain == ()
            assert info.capacity_bytes == size  # the file's size, not the header's 1 MiB

        # Used as a backing volume: its format is the recorded one (raw), given to qemu-img as -F.
        child = pool.create_volume("child.qcow2", 4 * MiB, format="qcow2", backing=evil.path)
        assert child.info().backing_chain == (evil.path,)
        top = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "-f", "qcow2", "-U", child.path],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert top["backing-filename"] == evil.path and top["backing-filename-format"] == "raw"
        child2 = pool.create_volume("child2.qcow2", 2 * MiB, format="qcow2", backing=str(dropped))
        assert child2.info().backing_chain == (str(dropped),)

        pool.lookup_volume("dropped.img").resize(3 * MiB)
        assert pool.lookup_volume("dropped.img").info().capacity_bytes == 3 * MiB

        # Booted: QEMU opens the raw disk as raw and the qcow2 child with its raw backing; nothing else.
        dom = conn.define_domain(
            DomainSpec(
                name="fmt",
                memory_bytes=64 * MiB,
                vcpus=1,
                disks=[
                    DiskSpec(target="vda", path=evil.path, format="raw"),
                    DiskSpec(target="vdb", path=child2.path, format="qcow2"),
                ],
            )
        )
        dom.start(paused=True)
        try:
            disks = {d.target: d for d in dom.disks()}
            assert disks["vda"].backing_chain == ()
            assert disks["vdb"].backing_chain == (str(dropped),)
        finally:
            dom.destroy()
        assert _listing_again(pool) == {"evil.img", "dropped.img", "child.qcow2", "child2.qcow2"}
    finally:
        opened = watch.events()
        watch.close()
    assert opened == 0, f"{secret} was opened or read {opened} time(s) through a guessed format"
    assert _connections(nbd_listener) == 0, "something connected to the NBD server named in a raw disk's header"
    conn.close()


def _listing_again(pool: virtabs.StoragePool) -> set[str]:
    vols = pool.list_volumes()
    for v in vols:
        if v.name in ("evil.img", "dropped.img"):
            assert v.info().format == "raw" and v.info().backing_chain == ()
    return {v.name for v in vols}


def test_backing_outside_pools_is_raw_whatever_a_record_there_says(root: Path) -> None:
    """A backing image outside every pool has no known format: raw, even with a qcow2 header and a
    ``.virtabs-volumes.json`` next to it claiming qcow2 (only a pool's own record counts)."""
    secret = root / "host-secret2.txt"
    secret.write_text("another secret\n")
    outside = root / "outside"
    outside.mkdir()
    img = outside / "base.img"
    img.write_bytes(_qcow2_header_naming(root, str(secret)) + b"\0" * MiB)
    (outside / ".virtabs-volumes.json").write_text(json.dumps({"base.img": "qcow2"}))
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=60)
    pool = conn.lookup_storage_pool("default")
    watch = OpenWatch(secret)
    try:
        vol = pool.create_volume("top.qcow2", 2 * MiB, format="qcow2", backing=str(img))
        assert vol.info().backing_chain == (str(img),)
        top = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "-f", "qcow2", "-U", vol.path],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert top["backing-filename-format"] == "raw"
    finally:
        opened = watch.events()
        watch.close()
    assert opened == 0, f"{secret} was opened or read {opened} time(s)"
    conn.close()


def test_the_watch_sees_an_open(root: Path) -> None:
    """The inotify watch the tests above rely on does see a process opening the file (it is not blind)."""
    secret = root / "watched.txt"
    secret.write_text("x")
    watch = OpenWatch(secret)
    try:
        subprocess.run(["cat", str(secret)], check=True, capture_output=True)
        assert watch.events() > 0
    finally:
        watch.close()


_KEYS = ("filename", "format", "virtual-size", "actual-size", "backing-filename", "backing-filename-format")


def test_layer_by_layer_walk_agrees_with_qemu_img_backing_chain(tmp_path: Path) -> None:
    """The qemu-img fallback walks ``info -f FORMAT`` layer by layer; on honest chains it gives what
    ``--backing-chain`` gives (which it no longer uses: that probes and opens protocols)."""

    def img(*args: str) -> None:
        subprocess.run(["qemu-img", "create", "-q", *args], check=True)

    img("-f", "qcow2", str(tmp_path / "base.qcow2"), str(4 * MiB))
    img("-f", "raw", str(tmp_path / "r.raw"), str(2 * MiB))
    img("-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(tmp_path / "rel.qcow2"))
    img("-f", "qcow2", "-b", str(tmp_path / "rel.qcow2"), "-F", "qcow2", str(tmp_path / "top.qcow2"))
    img("-f", "qcow2", "-b", str(tmp_path / "r.raw"), "-F", "raw", str(tmp_path / "overraw.qcow2"))
    for name, fmt in (("top.qcow2", "qcow2"), ("overraw.qcow2", "qcow2"), ("r.raw", "raw")):
        path = str(tmp_path / name)
        out = subprocess.run(
            ["qemu-img", "info", "--output=json", "--backing-chain", "-U", "-f", fmt, path],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        data = json.loads(out)
        reference = [{k: v for k, v in layer.items() if k in _KEYS} for layer in data]
        mine = [{k: v for k, v in layer.items() if k in _KEYS} for layer in _img._walk(path, fmt, True)]
        assert mine == reference, name


def test_a_declared_qcow2_naming_an_nbd_backing_is_read_without_connecting(
    root: Path, nbd_listener: socket.socket
) -> None:
    """A qcow2 disk (the definition says qcow2) whose header names an NBD export as backing: reading the
    domain's disks lists the backing by name and connects to nothing (a read must not reach, or hang on, a
    network peer an image header names)."""
    nbd = f"nbd://127.0.0.1:{nbd_listener.getsockname()[1]}/x"
    disk = root / "over-nbd.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", nbd, "-F", "raw", str(disk), str(MiB)], check=True
    )
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=60)
    dom = conn.define_domain(
        DomainSpec(
            name="nbd", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec(target="vda", path=str(disk), format="qcow2")]
        )
    )
    (info,) = dom.disks()
    assert info.backing_chain == (nbd,)
    assert info.capacity_bytes == MiB
    assert _connections(nbd_listener) == 0, "reading the disks connected to the NBD server named in the header"
    conn.close()

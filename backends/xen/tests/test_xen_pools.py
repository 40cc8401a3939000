"""Directory storage pools of the Xen driver, with the real ``qemu-img`` and real files (no Xen needed).

The pools' scripts run on the Xen host; here that host is this machine, through the fast suite's
seam (:class:`test_xen_fast_driver.StandinTransport`: a local command transport, ``xl`` the recorded
stand-in, which these tests never reach). ``qemu-img`` and the file system are real; the lab suite
(``test_xen_contract.py``) runs the kit's storage tests on the dom0 itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from test_xen_fast_driver import Standin

MiB = 1 << 20

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (qemu-utils)"),
]


@pytest.fixture
def conn(standin: Standin) -> Iterator[virtabs.Connection]:
    """A ``xen:///`` connection whose definitions (and default pool) are under the test's directory."""
    with virtabs.open(standin.uri) as c:
        yield c


def image_info(path: Path, fmt: str) -> dict[str, object]:
    """What qemu-img itself says of a file (the test's own door)."""
    out = subprocess.run(["qemu-img", "info", "--output=json", "-f", fmt, str(path)], capture_output=True, check=True)
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_default_pool_is_the_images_directory(conn: virtabs.Connection, standin: Standin) -> None:
    """``default`` is ``<dir>/images``, listed before it exists (a listing creates nothing)."""
    caps = conn.capabilities
    assert "storage.pool" in caps and "storage.volume.resize" in caps
    [pool] = conn.list_storage_pools()
    info = pool.info()
    assert (info.name, info.type, info.path) == ("default", "dir", str(standin.definitions / "images"))
    assert info.capacity_bytes > 0 and info.available_bytes is not None
    assert not (standin.definitions / "images").exists()
    assert pool.list_volumes() == []


def test_volume_create_resize_delete_with_qemu_img(conn: virtabs.Connection, standin: Standin) -> None:
    """Each format is made by qemu-img with the size asked, grown and shrunk by it, and removed."""
    pool = conn.lookup_storage_pool("default")
    images = standin.definitions / "images"
    for fmt in ("raw", "qcow2"):
        vol = pool.create_volume(f"disk.{fmt}", 16 * MiB, format=fmt)
        path = images / f"disk.{fmt}"
        assert (vol.path, vol.info().format, vol.info().capacity_bytes) == (str(path), fmt, 16 * MiB)
        assert image_info(path, fmt)["format"] == fmt
        assert image_info(path, fmt)["virtual-size"] == 16 * MiB
        assert vol.resize(32 * MiB).capacity_bytes == 32 * MiB
        assert image_info(path, fmt)["virtual-size"] == 32 * MiB
        assert vol.resize(8 * MiB).capacity_bytes == 8 * MiB  # --shrink
        assert image_info(path, fmt)["virtual-size"] == 8 * MiB
    assert sorted(v.name for v in pool.list_volumes()) == ["disk.qcow2", "disk.raw"]
    with pytest.raises(virtabs.OperationInvalidError, match="already exists"):
        pool.create_volume("disk.raw", MiB, format="raw")
    pool.lookup_volume("disk.raw").delete()
    assert not (images / "disk.raw").exists() and not (images / ".virtabs-formats" / "disk.raw").exists()
    with pytest.raises(virtabs.NoStorageVolumeError) as exc:
        pool.lookup_volume("disk.raw")
    assert int(exc.value.code) == 50


def test_a_format_is_never_guessed_from_the_bytes(conn: virtabs.Connection, standin: Standin) -> None:
    """A file put in the pool by hand is raw, even when it holds a qcow2 header (its bytes say nothing)."""
    pool = conn.lookup_storage_pool("default")
    pool.create_volume("seed.raw", MiB, format="raw")
    images = standin.definitions / "images"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(images / "byhand"), "1G"], check=True)
    vol = pool.lookup_volume("byhand")
    assert vol.info().format == "raw"
    size = (images / "byhand").stat().st_size  # qemu-img reads a raw file's size in whole 512-byte sectors
    assert vol.info().capacity_bytes == -(-size // 512) * 512 < MiB  # the file's bytes, not the header's 1 GiB


def test_names_and_symlinks_stay_in_the_pool(conn: virtabs.Connection, standin: Standin, tmp_path: Path) -> None:
    """Names are one component; a symlink (leaving the pool or not) is never a volume, nor created through."""
    pool = conn.lookup_storage_pool("default")
    pool.create_volume("inside.raw", MiB, format="raw")
    images = standin.definitions / "images"
    outside = tmp_path / "outside.img"
    outside.write_bytes(b"\0" * 4096)
    os.symlink(outside, images / "escape")
    os.symlink(tmp_path / "not-there.img", images / "dangling")
    for bad in ("../x.raw", "a/b", ".hidden", "", "x\ny"):
        with pytest.raises(virtabs.InvalidArgumentError):
            pool.create_volume(bad, MiB, format="raw")
    assert [v.name for v in pool.list_volumes()] == ["inside.raw"]
    for name in ("escape", "dangling"):
        with pytest.raises(virtabs.NoStorageVolumeError):
            pool.lookup_volume(name)
    with pytest.raises(virtabs.OperationInvalidError, match="already exists"):
        pool.create_volume("dangling", MiB, format="raw")
    assert not (tmp_path / "not-there.img").exists()
    with pytest.raises(virtabs.NoStorageVolumeError):
        conn._driver.resize_volume("default", "escape", 8 * MiB)
    with pytest.raises(virtabs.NoStorageVolumeError):
        conn._driver.delete_volume("default", "escape")
    assert outside.stat().st_size == 4096 and (images / "escape").is_symlink()


def test_other_pools_are_files_naming_a_directory(conn: virtabs.Connection, standin: Standin, tmp_path: Path) -> None:
    """``<dir>/pools/NAME.dir`` names a pool's directory; a missing pool is error 49."""
    (standin.definitions / "pools").mkdir(parents=True)
    (standin.definitions / "pools" / "fast.dir").write_text(f"{tmp_path / 'fast'}\n")
    assert [p.name for p in conn.list_storage_pools()] == ["default", "fast"]
    vol = conn.lookup_storage_pool("fast").create_volume("one.qcow2", 4 * MiB, format="qcow2")
    assert vol.path == str(tmp_path / "fast" / "one.qcow2")
    assert image_info(tmp_path / "fast" / "one.qcow2", "qcow2")["virtual-size"] == 4 * MiB
    with pytest.raises(virtabs.NoStoragePoolError) as exc:
        conn.lookup_storage_pool("nosuch")
    assert int(exc.value.code) == 49
    with pytest.raises(virtabs.InvalidArgumentError):  # the core's rule for every lookup name
        conn.lookup_storage_pool("../etc")
    with pytest.raises(virtabs.NoStoragePoolError):  # not a pool file name: no such pool, nothing run
        conn.lookup_storage_pool("fast pool")

"""Issue 14, item 1: every volume name is resolved under its pool's directory and refused if it would leave it.

Attacked through the public API (``virtabs.open``) with symlinks planted in the pool, as a co-tenant able to
write there (or a guest-visible export of it) would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import virtabs
from virtabs import InvalidArgumentError, NoStorageVolumeError

MiB = 1 << 20


@pytest.fixture
def setup(root: Path) -> tuple[virtabs.Connection, Path, Path]:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    pool_dir = Path(str(conn.lookup_storage_pool("default").info().path))
    outside = root / "outside"
    outside.mkdir()
    victim = outside / "secret.img"
    victim.write_bytes(b"host secret" + b"\0" * (MiB - 11))
    return conn, pool_dir, victim


def test_symlink_leaving_the_pool_is_refused_at_every_door(setup: tuple[virtabs.Connection, Path, Path]) -> None:
    conn, pool_dir, victim = setup
    pool = conn.lookup_storage_pool("default")
    vol = pool.create_volume("v.raw", MiB, format="raw")
    os.unlink(vol.path)
    os.symlink(victim, vol.path)  # the volume now points outside its pool
    (pool_dir / "link.img").symlink_to(victim)

    with pytest.raises(InvalidArgumentError, match="outside the pool"):
        pool.lookup_volume("link.img")
    with pytest.raises(InvalidArgumentError, match="'v.raw'.*outside the pool"):
        vol.info()
    with pytest.raises(InvalidArgumentError, match="outside the pool"):
        vol.resize(4 * MiB)
    with pytest.raises(InvalidArgumentError, match="outside the pool"):
        vol.delete()
    assert victim.exists() and victim.stat().st_size == MiB
    assert victim.read_bytes().startswith(b"host secret")
    names = {v.name for v in pool.list_volumes()}
    assert "link.img" not in names and "v.raw" not in names


def test_create_through_a_dangling_symlink_writes_nothing_outside(
    setup: tuple[virtabs.Connection, Path, Path],
) -> None:
    conn, pool_dir, victim = setup
    target = victim.parent / "planted.qcow2"
    (pool_dir / "new.qcow2").symlink_to(target)  # dangling: qemu-img would create the target
    (pool_dir / "inside.qcow2").symlink_to(pool_dir / "missing.qcow2")  # dangling, but inside
    pool = conn.lookup_storage_pool("default")
    with pytest.raises(InvalidArgumentError, match="outside the pool"):
        pool.create_volume("new.qcow2", MiB, format="qcow2")
    assert not target.exists()
    with pytest.raises(virtabs.OperationInvalidError, match="already exists"):
        pool.create_volume("inside.qcow2", MiB, format="qcow2")
    assert not (pool_dir / "missing.qcow2").exists()


def test_names_the_core_lets_through_still_resolve_inside(setup: tuple[virtabs.Connection, Path, Path]) -> None:
    """Multi-component names pass the core (datastores have folders); a flat directory pool refuses them,
    and the reserved '.'-names (the format records) are never volumes."""
    conn, pool_dir, _victim = setup
    pool = conn.lookup_storage_pool("default")
    pool.create_volume("ok.qcow2", MiB, format="qcow2")
    assert (pool_dir / ".virtabs-volumes.json").exists()
    with pytest.raises(InvalidArgumentError, match="flat"):
        pool.lookup_volume(".virtabs-volumes.json")
    (pool_dir / "sub").mkdir()
    with pytest.raises(InvalidArgumentError, match="flat"):
        pool.create_volume("sub/x.qcow2", MiB, format="qcow2")
    with pytest.raises(InvalidArgumentError, match="flat"):
        pool.lookup_volume("sub/x.qcow2")
    assert not (pool_dir / "sub" / "x.qcow2").exists()
    with pytest.raises(NoStorageVolumeError):
        pool.lookup_volume("absent.qcow2")
    # a symlink that stays inside the pool is an ordinary volume (raw: formats are never guessed)
    (pool_dir / "alias.qcow2").symlink_to(pool_dir / "ok.qcow2")
    alias = pool.lookup_volume("alias.qcow2").info()
    assert (alias.path, alias.format) == (str(pool_dir / "alias.qcow2"), "raw")


def test_a_pool_reached_through_a_symlinked_directory_still_works(root: Path) -> None:
    real = root / "real-pool"
    real.mkdir()
    (root / "pools").mkdir()
    (root / "link-pool").symlink_to(real)
    (root / "pools" / "p.json").write_text(json.dumps({"type": "dir", "path": str(root / "link-pool")}))
    conn = virtabs.open(f"qemu:///embed?root={root}")
    pool = conn.lookup_storage_pool("p")
    vol = pool.create_volume("a.qcow2", MiB, format="qcow2")
    assert (real / "a.qcow2").exists()
    assert pool.lookup_volume("a.qcow2").info().capacity_bytes == MiB
    vol.delete()
    assert not (real / "a.qcow2").exists()


def test_a_pool_directory_swapped_for_a_symlink_after_the_check_is_never_followed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A co-tenant swaps the pool's directory for a symlink to another directory between the path check and the
    open (played at the worst instant: right after the driver's check returns). The driver refuses, or works on
    the real file; it never reads, resizes, deletes or creates in the other directory."""
    from virtabs_qemu._storage import Storage

    conn = virtabs.open(f"qemu:///embed?root={root}")
    pool = conn.lookup_storage_pool("default")
    vol = pool.create_volume("v.raw", MiB, format="raw")
    pool_dir = Path(str(pool.info().path))
    real_dir = pool_dir.with_name(pool_dir.name + ".real")
    outside = root / "outside"
    outside.mkdir()
    decoy = outside / "v.raw"
    decoy.write_bytes(b"host secret" + b"\0" * (4 * MiB - 11))  # another size: shows which file was read

    armed: list[bool] = []
    check = Storage.resolve

    def check_then_swap(pool_name: str, pool_path: str, name: str) -> str:
        path = check(pool_name, pool_path, name)
        if armed and not pool_dir.is_symlink():
            os.rename(pool_dir, real_dir)
            pool_dir.symlink_to(outside)
        return path

    monkeypatch.setattr(Storage, "resolve", staticmethod(check_then_swap))

    def racing(call: object) -> object:
        assert callable(call)
        armed.append(True)
        try:
            return call()
        except virtabs.OperationFailedError as exc:
            assert "replaced by a symlink" in str(exc), exc
            return exc
        finally:
            armed.clear()
            if pool_dir.is_symlink():
                pool_dir.unlink()
                os.rename(real_dir, pool_dir)

    def capacity() -> object:
        return pool.lookup_volume("v.raw").info().capacity_bytes

    for result in (racing(capacity), racing(lambda: vol.resize(8 * MiB)), racing(vol.delete)):
        assert result is None or result == MiB or isinstance(result, virtabs.OperationFailedError), result
    racing(lambda: pool.create_volume("new.qcow2", MiB, format="qcow2"))
    assert decoy.stat().st_size == 4 * MiB and decoy.read_bytes().startswith(b"host secret")
    assert sorted(p.name for p in outside.iterdir()) == ["v.raw"]
    assert (pool_dir / "v.raw").stat().st_size in (MiB, 8 * MiB)  # refused, or resized the real file
    assert not pool_dir.is_symlink()
    conn.close()

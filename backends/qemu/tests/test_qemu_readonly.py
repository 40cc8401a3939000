"""Issue 14, item 9: read-only means nothing is written; a missing embed root is not a healthy empty host."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import virtabs
from virtabs import ConnectError, NoDomainError
from virtabs.spi import DomainSpec

MiB = 1 << 20


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("readonly", [False, True])
def test_missing_embed_root_is_a_connect_error(root: Path, readonly: bool) -> None:
    missing = root / "not-there"
    with pytest.raises(ConnectError, match=r"not-there.*does not exist"):
        virtabs.open(f"qemu:///embed?root={missing}", readonly=readonly)
    assert not missing.exists()
    (root / "a-file").write_text("")
    with pytest.raises(ConnectError, match="not a directory"):
        virtabs.open(f"qemu:///embed?root={root / 'a-file'}", readonly=readonly)


def test_read_only_connection_and_its_listings_create_nothing(root: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", readonly=True)
    assert conn.list_domains() == []
    pools = conn.list_storage_pools()
    assert [p.name for p in pools] == ["default"]
    default = conn.lookup_storage_pool("default")
    assert default.info().capacity_bytes > 0
    assert default.list_volumes() == []
    with pytest.raises(NoDomainError):
        conn.lookup_domain("ghost")
    conn.close()
    assert _tree(root) == [], "a read-only connection wrote into its root"


def test_read_only_views_of_a_used_root_write_nothing(root: Path) -> None:
    rw = virtabs.open(f"qemu:///embed?root={root}")
    rw.define_domain(DomainSpec(name="d1", memory_bytes=64 * MiB, vcpus=1))
    extra = root / "elsewhere" / "p"
    (root / "pools").mkdir(exist_ok=True)
    (root / "pools" / "p.json").write_text(json.dumps({"type": "dir", "path": str(extra)}))
    rw.close()
    shutil.rmtree(root / "run")  # as after a reboot: nothing running
    before = _tree(root)

    ro = virtabs.open(f"qemu:///embed?root={root}", readonly=True)
    dom = ro.lookup_domain("d1")
    assert [d.name for d in ro.list_domains()] == ["d1"]
    assert dom.info().state == virtabs.DomainState.SHUTOFF
    assert ro.lookup_storage_pool("p").list_volumes() == []
    assert {p.name for p in ro.list_storage_pools()} == {"default", "p"}
    ro.close()
    assert _tree(root) == before
    assert not extra.exists()

    # a read-write connection's listings do not create a pool's directory either; its first volume does
    rw = virtabs.open(f"qemu:///embed?root={root}")
    assert rw.lookup_storage_pool("p").list_volumes() == []
    assert not extra.exists()
    rw.lookup_storage_pool("p").create_volume("v.qcow2", MiB, format="qcow2")
    assert (extra / "v.qcow2").is_file()
    assert os.stat(extra).st_mode & 0o777 == 0o700
    rw.close()

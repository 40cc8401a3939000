"""File-system snapshots (rsync copy clones) on real LXC: what a revert keeps, drops and restarts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from lxc_helpers import ready_file, wait_for
from virtabs import DomainSpec, DomainState

from virtabs_lxc.testing import LxcTarget

MiB = 1 << 20


@pytest.fixture
def running(lxc_uri: str, rootfs_template: Path, tmp_path: Path) -> Iterator[tuple[virtabs.Domain, Path]]:
    rootfs = tmp_path / "snap-rootfs"
    shutil.copytree(rootfs_template, rootfs, symlinks=True)
    with virtabs.open(lxc_uri) as conn:
        spec = DomainSpec(
            name="snap1", memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=LxcTarget.extra(str(rootfs))
        )
        dom = conn.define_domain(spec)
        dom.start()
        wait_for(lambda: ready_file(rootfs).exists(), 20, "busybox init")
        yield dom, rootfs
        for left in conn.list_domains():
            if left.name == "snap1":
                if left.state().is_active:
                    left.destroy()
                left.undefine()


def test_revert_puts_the_file_system_back_and_restarts(running: tuple[virtabs.Domain, Path], lxcpath: str) -> None:
    dom, rootfs = running
    (rootfs / "root" / "kept.txt").write_text("before\n")
    pid_before = dom.connection._driver._lxc.Container("snap1", lxcpath).init_pid
    snap = dom.create_snapshot("s1")
    assert (snap.name, snap.state, snap.parent, snap.kind) == ("s1", DomainState.RUNNING, None, "copy")
    assert dom.state() == DomainState.RUNNING  # thawed again after the copy
    assert (Path(lxcpath) / "snap1" / "virtabs-snapshots" / "s1" / "rootfs" / "root" / "kept.txt").exists()
    (rootfs / "root" / "kept.txt").write_text("after\n")
    (rootfs / "root" / "new.txt").write_text("made after the snapshot\n")
    dom.revert_to_snapshot("s1")
    assert dom.state() == DomainState.RUNNING
    assert (rootfs / "root" / "kept.txt").read_text() == "before\n"
    assert not (rootfs / "root" / "new.txt").exists()
    # no memory: the container was started afresh
    assert dom.connection._driver._lxc.Container("snap1", lxcpath).init_pid != pid_before
    wait_for(lambda: ready_file(rootfs).exists(), 20, "busybox init after the revert")


def test_snapshot_of_a_stopped_container_reverts_to_stopped_and_parents_chain(
    running: tuple[virtabs.Domain, Path],
) -> None:
    dom, _rootfs = running
    dom.destroy()
    first = dom.create_snapshot("off1")
    second = dom.create_snapshot("off2")
    assert first.state == DomainState.SHUTOFF and second.parent == "off1"
    with pytest.raises(virtabs.OperationInvalidError):
        dom.create_snapshot("off1")
    dom.start()
    dom.revert_to_snapshot("off1")
    assert dom.state() == DomainState.SHUTOFF
    third = dom.create_snapshot("off3")
    assert third.parent == "off1"
    dom.delete_snapshot("off1")
    by_name = {s.name: s for s in dom.list_snapshots()}
    record = next(r for r in dom.connection.domain_records() if r.name == dom.name)
    assert record.snapshot_count == 2
    assert set(by_name) == {"off2", "off3"}
    assert by_name["off2"].parent is None and by_name["off3"].parent is None
    with pytest.raises(virtabs.NoSnapshotError):
        dom.revert_to_snapshot("off1")


def test_undefine_with_snapshots_keeps_the_user_rootfs(running: tuple[virtabs.Domain, Path], lxcpath: str) -> None:
    dom, rootfs = running
    dom.create_snapshot("s1")
    dom.destroy()
    dom.undefine()
    assert not (Path(lxcpath) / "snap1").exists()
    assert (rootfs / "bin" / "busybox").exists()

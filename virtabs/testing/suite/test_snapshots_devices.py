"""Contract tests of snapshots and disk hot-plug."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ..._errors import InvalidArgumentError, NoSnapshotError
from ..._flags import DomainState
from ..._models import DiskSpec, Snapshot
from ..contract import Contract
from ..markers import requires
from .test_core import assert_records_agree

__all__ = ["TestDiskHotplug", "TestSnapshots"]


class TestSnapshots:
    """domain.snapshot: create, list, revert and delete."""

    @requires("domain.snapshot")
    def test_snapshot_cycle(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        snap = dom.create_snapshot("s1")
        assert isinstance(snap, Snapshot)
        assert snap.name == "s1" and snap.domain == dom.name
        assert "s1" in [s.name for s in dom.list_snapshots()]
        assert_records_agree(virtabs_contract, dom)  # the bulk record counts the snapshot
        dom.revert_to_snapshot("s1")
        assert dom.state() == DomainState.RUNNING
        dom.delete_snapshot("s1")
        assert "s1" not in [s.name for s in dom.list_snapshots()]
        other = virtabs_contract.other_door().lookup_domain(dom.uuid)
        assert "s1" not in [s.name for s in other.list_snapshots()]

    @requires("domain.snapshot", "domain.destroy")
    def test_revert_restores_what_the_snapshot_held(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        dom.create_snapshot("running")
        names = [s.name for s in virtabs_contract.other_door().lookup_domain(dom.uuid).list_snapshots()]
        assert names.count("running") == 1, f"another connection lists the snapshots {names}"
        dom.destroy()
        assert dom.state() == DomainState.SHUTOFF
        dom.revert_to_snapshot("running")
        other = virtabs_contract.other_door().lookup_domain(dom.uuid)
        assert other.state() == DomainState.RUNNING, (
            f"the snapshot was taken running; after the revert another connection sees {other.state().name}"
        )

    @requires("domain.snapshot")
    def test_missing_snapshot_is_no_snapshot_error_72(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        calls: list[Callable[[], object]] = [
            lambda: dom.revert_to_snapshot("nope"),
            lambda: dom.delete_snapshot("nope"),
        ]
        for call in calls:
            with pytest.raises(NoSnapshotError) as exc:
                call()
            assert int(exc.value.code) == 72
            assert "nope" in exc.value.message


class TestDiskHotplug:
    """domain.disk_hotplug: attach and detach a disk on a running domain."""

    @requires("domain.disk_hotplug")
    def test_attach_and_detach(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        path = virtabs_contract.scratch("hotplug.img")
        virtabs_contract.create_image(path, format="raw")
        dom.attach_disk(DiskSpec("vdb", path, format="raw"))
        other = virtabs_contract.other_door().lookup_domain(dom.uuid)
        disks = {d.target: d for d in other.disks()}
        assert "vdb" in disks and disks["vdb"].path == path, f"another connection sees the disks {sorted(disks)}"
        assert_records_agree(virtabs_contract, dom)  # the bulk record lists the hot-plugged disk
        with pytest.raises(InvalidArgumentError):
            dom.attach_disk(DiskSpec("vdb", path, format="raw"))
        dom.detach_disk("vdb")
        assert "vdb" not in {d.target for d in dom.disks()}
        assert "vdb" not in {d.target for d in other.disks()}
        with pytest.raises(InvalidArgumentError):
            dom.detach_disk("vdb")

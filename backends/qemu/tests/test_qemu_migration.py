"""Live migration with storage between two embed roots (issue 23), with a guest that really runs (TCG).

The guest counts: every ~0.2 s it writes ``tick N`` to sector N of its disk (``dd conv=fsync``: the
write is acknowledged once the flush returned) and then prints ``acked N <boot id>`` on its serial
console; ``n`` lives in the shell's memory. After the migration the same guest must go on counting on
the destination (larger N, the same boot id, no new boot line), and the destination's disk must hold
every tick the source's console acknowledged. The rollback tests kill or abort at each point and check
that the source keeps running and the destination keeps no domain, no image and no QEMU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from qemu_helpers import MiB, make_driver, qemu_pids
from virtabs import DomainState, MigrateFlags, OperationFailedError
from virtabs.spi import DiskInfo, DiskSpec, DomainSpec, MigrationRequest
from virtabs.testing.plugin import in_ci

from virtabs_qemu.testing import (
    COUNTING_GUEST_INIT,
    acked_ticks,
    check_destination_clean,
    check_guest_moved,
    check_switchover_kill_rolls_back,
    guest_extra_with_init,
    read_sectors,
    start_counting_guest,
    wait_console,
)

M = MigrateFlags
COPY = M.LIVE | M.NON_SHARED_DISK | M.PERSIST_DEST
ACCEL = os.environ.get("VIRTABS_GUEST_ACCEL", "tcg")


@pytest.fixture(scope="module")
def extra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    try:
        return guest_extra_with_init(COUNTING_GUEST_INIT, tmp_path_factory.mktemp("guest"))
    except Exception as exc:  # no kernel, no busybox
        if in_ci():
            pytest.fail(f"cannot build the counting guest: {exc}")
        pytest.skip(f"cannot build the counting guest: {exc}")


@pytest.fixture
def roots() -> Iterator[tuple[Path, Path]]:
    """Two short embed roots (a source and a destination host), every QEMU under them killed after."""
    made = [Path(tempfile.mkdtemp(prefix="vtm-")) for _ in range(2)]
    yield made[0], made[1]
    for root in made:
        for pid in qemu_pids(root):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _open(root: Path) -> virtabs.Connection:
    return virtabs.open(f"qemu:///embed?root={root}&accel={ACCEL}", timeout=60)


def test_the_running_guest_keeps_counting_on_the_destination(
    roots: tuple[Path, Path], extra: dict[str, object]
) -> None:
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, src_console = start_counting_guest(src, src_root, extra)
        boot_id = acked_ticks(src_console)[0][1]
        seen: list[virtabs.MigrationInfo] = []
        job = dom.migrate(dst, flags=COPY, max_downtime=300)
        moved = job.wait(timeout=300, progress=seen.append)
        final = job.info()
        assert final.phase == "completed", final
        assert final.disk_total >= 64 * MiB and final.disk_processed == final.disk_total
        assert final.memory_total >= 128 * MiB and final.memory_processed > 0
        assert final.downtime_ms is not None
        order = ["setup", "storage", "memory", "switchover", "completed"]
        observed = [order.index(i.phase) for i in seen]  # sampled every 0.2 s: a short phase may be missed
        assert observed == sorted(observed) and observed[-1] == order.index("completed"), [i.phase for i in seen]

        # the source: stopped (no QEMU left), still defined (no UNDEFINE_SOURCE)
        assert dom.state() == DomainState.SHUTOFF
        assert qemu_pids(src_root) == set()
        # the destination: the same guest, counting on from where it was, every acknowledged write on its disk
        check_guest_moved(moved, src_console, dst_root, boot_id)
        moved.destroy()


def test_abort_during_the_mirror_rolls_back(roots: tuple[Path, Path], extra: dict[str, object]) -> None:
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, console = start_counting_guest(src, src_root, extra)
        job = dom.migrate(dst, flags=COPY, bandwidth=1)  # 1 MiB/s: the mirror takes a minute
        deadline = time.monotonic() + 60
        while job.info().phase != "storage" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.info().phase == "storage"
        job.abort()
        with pytest.raises(OperationFailedError, match="aborted"):
            job.wait(timeout=120)
        assert job.info().phase == "cancelled"
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)  # still counting
        check_destination_clean(dst, dst_root)
        assert not dom.block_job_info("vda")
        # nothing of the first attempt is in the way of the next one (node names, exports, sockets)
        moved = dom.migrate(dst, flags=COPY).wait(timeout=300)
        assert moved.state() == DomainState.RUNNING
        moved.destroy()


def test_abort_during_the_memory_copy_rolls_back(roots: tuple[Path, Path], extra: dict[str, object]) -> None:
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, console = start_counting_guest(src, src_root, extra)
        job = dom.migrate(dst, flags=COPY, bandwidth=2)  # memory at 2 MiB/s: a minute of copying
        deadline = time.monotonic() + 120
        while job.info().phase != "memory" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.info().phase == "memory"
        job.abort()
        with pytest.raises(OperationFailedError, match="aborted"):
            job.wait(timeout=120)
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)
        check_destination_clean(dst, dst_root)
        dom.destroy()


def test_destination_qemu_killed_during_the_mirror(roots: tuple[Path, Path], extra: dict[str, object]) -> None:
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, console = start_counting_guest(src, src_root, extra)
        job = dom.migrate(dst, flags=COPY, bandwidth=1)
        deadline = time.monotonic() + 60
        while not qemu_pids(dst_root) or job.info().phase != "storage":
            assert time.monotonic() < deadline, "the destination never started"
            time.sleep(0.05)
        for pid in qemu_pids(dst_root):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(OperationFailedError):
            job.wait(timeout=120)
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)
        check_destination_clean(dst, dst_root)
        dom.destroy()


def test_source_killed_during_the_mirror(roots: tuple[Path, Path], extra: dict[str, object]) -> None:
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, _console = start_counting_guest(src, src_root, extra)
        job = dom.migrate(dst, flags=COPY, bandwidth=1)
        deadline = time.monotonic() + 60
        while job.info().phase != "storage":
            assert time.monotonic() < deadline, "the mirror never began"
            time.sleep(0.05)
        for pid in qemu_pids(src_root):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(virtabs.VirtabsError):
            job.wait(timeout=120)
        assert dom.state() == DomainState.CRASHED  # reported as it really is
        check_destination_clean(dst, dst_root)


def test_copy_storage_inc_copies_the_top_layer_onto_the_shared_base(
    roots: tuple[Path, Path], extra: dict[str, object]
) -> None:
    """NON_SHARED_INC: the destination already has the base (here: the same file, read-only to both QEMUs);
    only the overlay moves, and UNDEFINE_SOURCE removes the source."""
    src_root, dst_root = roots
    base = src_root / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), str(64 * MiB)], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0xab {32 * MiB} {16 * MiB}", str(base)], check=True)
    overlay = src_root / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)], check=True
    )
    with _open(src_root) as src, _open(dst_root) as dst:
        spec = DomainSpec(
            name="inc",
            memory_bytes=128 * MiB,
            vcpus=1,
            disks=(DiskSpec("vda", str(overlay), format="qcow2"),),
            extra=extra,
        )
        dom = src.define_domain(spec)
        dom.start()
        wait_console(src_root / "run" / "inc" / "console.log", "virtabs-guest: acked 3 ", timeout=120)
        job = dom.migrate(dst, flags=M.LIVE | M.NON_SHARED_INC | M.PERSIST_DEST | M.UNDEFINE_SOURCE)
        moved = job.wait(timeout=300)
        final = job.info()
        assert final.disk_total < 16 * MiB  # the overlay's data, not the base's 16 MiB
        disk = moved.disks()[0]
        assert disk.path.startswith(str(dst_root)) and disk.backing_chain == (str(base),)
        wait_console(dst_root / "run" / "inc" / "console.log", "virtabs-guest: acked", timeout=120)
        assert src.list_domains() == []  # UNDEFINE_SOURCE
        assert qemu_pids(src_root) == set()
        data = read_sectors(disk.path, 8)
        assert data[512:526] == b"tick 00000001\n"
        moved.destroy()


def test_destination_qemu_killed_during_the_memory_copy(roots: tuple[Path, Path], extra: dict[str, object]) -> None:
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, console = start_counting_guest(src, src_root, extra)
        job = dom.migrate(dst, flags=COPY, bandwidth=2)
        deadline = time.monotonic() + 120
        while job.info().phase != "memory":
            assert time.monotonic() < deadline, "the memory copy never began"
            time.sleep(0.05)
        for pid in qemu_pids(dst_root):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(OperationFailedError):
            job.wait(timeout=120)
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)
        check_destination_clean(dst, dst_root)
        dom.destroy()


def test_a_late_discard_leaves_a_newer_prepare_of_the_same_name_alone(roots: tuple[Path, Path]) -> None:
    """A discard arriving late (the helper of a client that died mid-migration discards on EOF, after the
    next migration of the same name to the same root was prepared) removes nothing of the newer one: its
    definition, its QEMU and its image stay; the newer one's own discard still removes them."""
    src_root, dst_root = roots
    source_image = src_root / "late.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source_image), str(64 * MiB)], check=True)
    spec = DomainSpec(
        name="late", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", str(source_image), format="qcow2"),)
    )
    disk = DiskInfo("vda", str(source_image), "qcow2", capacity_bytes=64 * MiB)
    request = MigrationRequest(flags=COPY, disks=("vda",))
    dst = make_driver(dst_root)
    try:
        first = dst.migrate_prepare(spec, request, [disk])
        dst.migrate_finish(first, request, False)  # the first migration's discard...
        assert dst.list_domains() == [] and qemu_pids(dst_root) == set()
        second = dst.migrate_prepare(spec, request, [disk])
        image = Path(second.disks[0].path)
        running = qemu_pids(dst_root)
        assert len(running) == 1 and image.exists()

        dst.migrate_finish(first, request, False)  # ...comes again, late: the newer prepare is not its
        assert [d.name for d in dst.list_domains()] == ["late"]
        assert qemu_pids(dst_root) == running
        assert image.exists()
        info = dst.domain_info(second.domain)  # its QEMU answers: still waiting for the incoming stream
        assert info.state == DomainState.PAUSED and info.native_state == "inmigrate", info

        dst.migrate_finish(second, request, False)  # its own discard removes it all
        assert dst.list_domains() == [] and qemu_pids(dst_root) == set() and not image.exists()
    finally:
        dst.close()


@pytest.mark.parametrize("point", ["pre-switchover", "completed"])
def test_the_client_dying_during_the_switchover(roots: tuple[Path, Path], extra: dict[str, object], point: str) -> None:
    """Between two embed roots of this machine there is no helper: the killed client was both the source's
    perform and the destination's preparer. Its guards do what it cannot: the destination (no finish ran)
    is discarded, the source's migration is cancelled and the guest resumes there. Killed with the
    guest's vCPUs stopped, at ``pre-switchover`` and once the memory copy completed."""
    src_root, dst_root = roots
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, _console = start_counting_guest(src, src_root, extra)
        check_switchover_kill_rolls_back(src, dst, src_root, dst_root, point)
        dom.destroy()


def test_the_destination_dying_before_finish_leaves_no_definition(
    roots: tuple[Path, Path], extra: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memory copy completed, then the destination QEMU dies before finish resumes it: finish fails,
    the source (paused at the end of its copy) resumes, and the destination keeps no definition, image
    or QEMU (its finish discards what its prepare made)."""
    from virtabs_qemu import _migration

    src_root, dst_root = roots
    finish = _migration.Migrations.finish

    def killing_finish(self: _migration.Migrations, ticket: object, request: object, success: bool) -> object:
        if success:
            for pid in qemu_pids(dst_root):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while qemu_pids(dst_root):
                assert time.monotonic() < deadline, "the destination QEMU did not die"
                time.sleep(0.05)
        return finish(self, ticket, request, success)  # type: ignore[arg-type]

    monkeypatch.setattr(_migration.Migrations, "finish", killing_finish)
    with _open(src_root) as src, _open(dst_root) as dst:
        dom, console = start_counting_guest(src, src_root, extra)
        with pytest.raises(virtabs.VirtabsError):
            dom.migrate(dst, flags=COPY).wait(timeout=300)
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)  # counting on the source
        check_destination_clean(dst, dst_root)
        dom.destroy()

"""Live migration with storage from a local embed root to one reached over ``qemu+ssh://`` (issue 23).

The destination is a separate embed root served by the helper behind the real loopback sshd; its
memory and NBD sockets are forwarded to this host by one ssh process (``LocalForward``, see
``virtabs/remote/_tunnel.py``). The guest is the QEMU tests' counting guest (TCG): after the
migration it must go on counting on the destination (same boot id, no new boot), and the
destination's disk must hold every tick the source acknowledged. Killing the forward mid-migration
must leave the source running and the destination with no domain, no image and no QEMU: that the
migration fails when the forward dies also shows the streams went through it (on 127.0.0.1 the
destination's sockets are reachable directly too). Between two remote hosts, a second sshd on 127.0.0.3
(its own host key and port) is the destination's host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from virtabs_qemu.testing import (
    COUNTING_GUEST_INIT,
    acked_ticks,
    check_destination_clean,
    check_guest_moved,
    check_switchover_kill_rolls_back,
    guest_extra_with_init,
    process_ids,
    qemu_pids,
    start_counting_guest,
    wait_console,
)

import virtabs
from virtabs import DomainState, MigrateFlags, OperationFailedError
from virtabs.testing.plugin import in_ci

M = MigrateFlags
COPY = M.LIVE | M.NON_SHARED_DISK | M.PERSIST_DEST
MiB = 1 << 20


def _forward_pids(dst_root: Path, address: str | None = None) -> set[int]:
    """The ssh processes forwarding sockets of ``dst_root`` (their LocalForward options name them), or
    TCP ports on ``address``."""
    return process_ids(b"ssh", f" {address}:" if address else f" {dst_root}/run/")


@pytest.fixture(scope="module")
def extra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if shutil.which(tool) is None:
            if in_ci():
                pytest.fail(f"{tool} missing: apt-get install qemu-system-x86 qemu-utils")
            pytest.skip(f"{tool} missing")
    try:
        return guest_extra_with_init(COUNTING_GUEST_INIT, tmp_path_factory.mktemp("guest"))
    except Exception as exc:  # no kernel, no busybox
        if in_ci():
            pytest.fail(f"cannot build the counting guest: {exc}")
        pytest.skip(f"cannot build the counting guest: {exc}")


@pytest.fixture
def roots() -> Iterator[tuple[Path, Path]]:
    """Two short embed roots (this host's and the "remote" one), every QEMU under them killed after."""
    made = [Path(tempfile.mkdtemp(prefix="vtrm-", dir="/tmp")) for _ in range(2)]
    yield made[0], made[1]
    for root in made:
        for pid in qemu_pids(root):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def _remote_uri(sshd: object, root: Path, address: str | None = None) -> str:
    """The ``qemu+ssh://`` URI of the embed root ``root`` behind ``sshd`` (TCG; ``migrate_address`` if given)."""
    params = {"root": str(root), "accel": "tcg"} | ({"migrate_address": address} if address else {})
    return sshd.uri("qemu", "/embed", **params)  # type: ignore[attr-defined,no-any-return]


def _local_uri(root: Path) -> str:
    """The ``qemu:///embed`` URI of the local root ``root`` (TCG)."""
    return f"qemu:///embed?root={root}&accel=tcg"


@contextlib.contextmanager
def _counting_guest_between(
    src_uri: str, dst_uri: str, src_root: Path, extra: dict[str, object]
) -> Iterator[tuple[virtabs.Connection, virtabs.Connection, virtabs.Domain, Path]]:
    """Open the source and the destination and start the counting guest on the source (state root
    ``src_root`` on this machine): the two connections, the domain and its console log; both closed after."""
    with virtabs.open(src_uri, timeout=60) as src, virtabs.open(dst_uri, timeout=60) as dst:
        dom, console = start_counting_guest(src, src_root, extra)
        yield src, dst, dom, console


def _wait_phase(job: virtabs.MigrationJob, phase: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while job.info().phase != phase:
        assert not job.done, f"the migration ended before its {phase} phase: {job.info()}"
        assert time.monotonic() < deadline, f"the {phase} phase never began"
        time.sleep(0.05)


def _listening_on(address: str) -> bool:
    """Whether some process listens on TCP ``address`` (IPv4), from /proc/net/tcp."""
    want = "".join(f"{int(part):02X}" for part in reversed(address.split(".")))
    with open("/proc/net/tcp") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return any(row[1].split(":")[0] == want and row[3] == "0A" for row in rows)


DIRECT = "127.0.0.2"
"""The destination's own address for ``migrate_address`` (another loopback address than the sshd's)."""


@pytest.mark.parametrize(
    ("flags", "address", "forwarded"),
    [(COPY, None, True), (COPY | M.TUNNELLED, None, True), (COPY, DIRECT, False), (COPY | M.TUNNELLED, DIRECT, True)],
    ids=["remote-sockets", "tunnelled", "direct-address", "direct-address-tunnelled"],
)
def test_the_running_guest_keeps_counting_on_the_remote_host(
    sshd: object,
    roots: tuple[Path, Path],
    extra: dict[str, object],
    flags: MigrateFlags,
    address: str | None,
    forwarded: bool,
) -> None:
    src_root, dst_root = roots
    dst_uri = _remote_uri(sshd, dst_root, address)
    with _counting_guest_between(_local_uri(src_root), dst_uri, src_root, extra) as (src, dst, dom, src_console):
        assert dst.supports("domain.migrate.tunnelled") and not src.supports("domain.migrate.tunnelled")
        boot_id = acked_ticks(src_console)[0][1]
        listening_before = address is not None and _listening_on(address)
        # 16 MiB/s: seconds of copying, so the test sees the streams while they flow
        job = dom.migrate(dst, flags=flags, max_downtime=300, bandwidth=16)
        _wait_phase(job, "storage", 60)
        if forwarded:
            assert _forward_pids(dst_root, address), "no ssh forward carries the streams"
        else:
            assert _forward_pids(dst_root, address) == set()
        if address is not None:  # the destination QEMU listens there (NBD, and the memory stream)
            assert not listening_before and _listening_on(address)
        moved = job.wait(timeout=300)
        final = job.info()
        assert final.phase == "completed", final
        assert final.disk_total >= 64 * MiB and final.disk_processed == final.disk_total
        assert final.memory_processed > 0 and final.downtime_ms is not None
        assert _forward_pids(dst_root, address) == set()  # the forward ends with the streams

        assert dom.state() == DomainState.SHUTOFF and qemu_pids(src_root) == set()
        check_guest_moved(moved, src_console, dst_root, boot_id)
        moved.destroy()


@pytest.mark.parametrize("phase", ["storage", "memory"])
def test_the_forward_dying_mid_migration_rolls_back(
    sshd: object, roots: tuple[Path, Path], extra: dict[str, object], phase: str
) -> None:
    src_root, dst_root = roots
    dst_uri = _remote_uri(sshd, dst_root)
    with _counting_guest_between(_local_uri(src_root), dst_uri, src_root, extra) as (src, dst, dom, console):
        job = dom.migrate(dst, flags=COPY, bandwidth=1 if phase == "storage" else 2)  # MiB/s: a minute of copying
        _wait_phase(job, phase, 120)
        forwards = _forward_pids(dst_root)
        assert len(forwards) == 1, forwards
        os.kill(forwards.pop(), signal.SIGKILL)
        with pytest.raises(OperationFailedError):
            job.wait(timeout=120)
        assert job.info().phase == "failed"
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)  # still counting
        check_destination_clean(dst, dst_root)
        assert not dom.block_job_info("vda")
        dom.destroy()


CLIENT = """
import sys, time, virtabs
from virtabs import MigrateFlags as M
src = virtabs.open(sys.argv[1], timeout=60)
dst = virtabs.open(sys.argv[2], timeout=60)
job = src.lookup_domain("counter").migrate(dst, flags=M.LIVE | M.NON_SHARED_DISK | M.PERSIST_DEST, bandwidth=1)
while job.info().phase != "storage":
    time.sleep(0.05)
print("storage", flush=True)
sys.stdin.read()
"""


def test_the_client_dying_mid_migration_leaves_no_stray_qemu(
    sshd: object, roots: tuple[Path, Path], extra: dict[str, object]
) -> None:
    """The client (which runs the core's steps) is killed during the mirror: the helper sees its channel
    end and discards the prepared destination; the source keeps running."""
    src_root, dst_root = roots
    dst_uri = _remote_uri(sshd, dst_root)
    with _counting_guest_between(_local_uri(src_root), dst_uri, src_root, extra) as (src, dst, dom, console):
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(src.uri), str(dst.uri)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None and client.stdout.readline().strip() == "storage"
            assert qemu_pids(dst_root), "the destination QEMU was not started"
        finally:
            client.kill()
            client.wait()
        deadline = time.monotonic() + 60
        # the killed client's helper discards: the definition goes last, and a discard removes only what its
        # own prepare made (its token), so the next migration need not wait for that helper to exit
        while qemu_pids(dst_root) or _forward_pids(dst_root) or dst.list_domains():
            assert time.monotonic() < deadline, "the destination was not discarded after its client died"
            time.sleep(0.1)
        check_destination_clean(dst, dst_root)
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)  # still counting
        moved = dom.migrate(dst, flags=COPY).wait(timeout=300)
        assert moved.state() == DomainState.RUNNING
        moved.destroy()


def test_a_guest_on_the_remote_host_comes_here(
    sshd: object, roots: tuple[Path, Path], extra: dict[str, object]
) -> None:
    """The other way: the source is the qemu+ssh:// root, the destination local; the sockets here are
    brought to the source's host (RemoteForward). Same proof."""
    remote_root, local_root = roots
    src_uri = _remote_uri(sshd, remote_root)
    with _counting_guest_between(src_uri, _local_uri(local_root), remote_root, extra) as (_src, dst, dom, src_console):
        boot_id = acked_ticks(src_console)[0][1]
        left_before = set(Path("/tmp").glob("vtt-*-r*.sock"))
        job = dom.migrate(dst, flags=COPY, max_downtime=300, bandwidth=16)  # seconds: the forward is seen
        _wait_phase(job, "storage", 60)
        assert process_ids(b"ssh", f" {local_root}/run/"), "no ssh forward carries the streams"
        assert set(Path("/tmp").glob("vtt-*-r*.sock")) - left_before, "no socket on the source's host"
        moved = job.wait(timeout=300)
        assert job.info().phase == "completed"
        assert process_ids(b"ssh", f" {local_root}/run/") == set()
        assert dom.state() == DomainState.SHUTOFF and qemu_pids(remote_root) == set()
        check_guest_moved(moved, src_console, local_root, boot_id)
        assert set(Path("/tmp").glob("vtt-*-r*.sock")) <= left_before  # the remote ends were removed
        moved.destroy()


def _argv(pid: int) -> list[str]:
    """The command line of process ``pid`` (empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [os.fsdecode(a) for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def test_between_two_remote_hosts(
    sshd: object, second_sshd: object, roots: tuple[Path, Path], extra: dict[str, object]
) -> None:
    """Source and destination both over ``qemu+ssh://``, on two sshd servers (two "hosts": their own
    addresses, ports and host keys, so two channels, never one shared): the destination's sockets are
    brought to this machine from the second host (``LocalForward``) and from here to the first host
    (``RemoteForward``); the streams pass through this machine, the hosts need no ssh to each other.
    The same running-guest proof."""
    src_root, dst_root = roots
    src_uri, dst_uri = _remote_uri(sshd, src_root), _remote_uri(second_sshd, dst_root)
    second_host = f"{second_sshd.address}"  # type: ignore[attr-defined]
    assert second_host != sshd.address  # type: ignore[attr-defined]
    with _counting_guest_between(src_uri, dst_uri, src_root, extra) as (src, dst, dom, src_console):
        assert src.supports("domain.migrate.tunnelled") and dst.supports("domain.migrate.tunnelled")
        boot_id = acked_ticks(src_console)[0][1]
        job = dom.migrate(dst, flags=COPY, max_downtime=300, bandwidth=16)  # seconds: the forwards are seen
        _wait_phase(job, "storage", 60)
        from_dest = process_ids(b"ssh", f" {dst_root}/run/")  # LocalForward=HERE THERE: the destination's sockets
        assert len(from_dest) == 1, from_dest
        argv = _argv(from_dest.pop())
        assert second_host in argv and str(second_sshd.port) in argv, argv  # type: ignore[attr-defined]
        to_source = process_ids(b"ssh", "RemoteForward=/tmp/vtt-")  # those sockets, on the source's host
        to_source = {pid for pid in to_source if str(sshd.port) in _argv(pid)}  # type: ignore[attr-defined]
        assert len(to_source) == 1, "no ssh forward brings the streams to the source's host"
        argv = _argv(to_source.pop())
        assert sshd.address in argv and second_host not in argv, argv  # type: ignore[attr-defined]
        moved = job.wait(timeout=300)
        final = job.info()
        assert final.phase == "completed", final
        assert final.disk_total >= 64 * MiB and final.disk_processed == final.disk_total
        assert process_ids(b"ssh", f" {dst_root}/run/") == set()  # the forwards end with the streams
        assert dom.state() == DomainState.SHUTOFF and qemu_pids(src_root) == set()
        check_guest_moved(moved, src_console, dst_root, boot_id)
        moved.destroy()


@pytest.mark.parametrize("point", ["pre-switchover", "completed"])
def test_the_client_dying_during_the_switchover(
    sshd: object, roots: tuple[Path, Path], extra: dict[str, object], point: str
) -> None:
    """The client (which runs the source's perform here) is killed during the switchover itself, with the
    guest's vCPUs stopped: at ``pre-switchover`` (QEMU waits for a migrate-continue that never comes) and
    once QEMU reports the memory copy completed (the destination holds the whole guest, paused). No
    finish ran, so the destination must never run: its helper discards it, and the perform's guard
    cancels what is left on the source and resumes the guest. The guest runs on the source only."""
    src_root, dst_root = roots
    dst_uri = _remote_uri(sshd, dst_root)
    with _counting_guest_between(_local_uri(src_root), dst_uri, src_root, extra) as (src, dst, dom, _console):
        check_switchover_kill_rolls_back(src, dst, src_root, dst_root, point)
        moved = dom.migrate(dst, flags=COPY).wait(timeout=300)  # nothing of it is in the way of the next one
        assert moved.state() == DomainState.RUNNING
        moved.destroy()


def test_the_client_dying_while_a_remote_source_migrates(
    sshd: object, second_sshd: object, roots: tuple[Path, Path], extra: dict[str, object]
) -> None:
    """Both sides remote (two sshd servers): the source's perform runs in its helper, which outlives the
    killed client. The perform is stopped (by that helper's abort, or by its streams failing as the
    client's ssh forwards end, whichever comes first: this test does not tell them apart), it rolls back
    and the guest keeps running; the destination's helper discards what it prepared."""
    src_root, dst_root = roots
    src_uri, dst_uri = _remote_uri(sshd, src_root), _remote_uri(second_sshd, dst_root)
    with _counting_guest_between(src_uri, dst_uri, src_root, extra) as (_src, dst, dom, console):
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, src_uri, dst_uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert client.stdout is not None and client.stdout.readline().strip() == "storage"
            assert qemu_pids(dst_root), "the destination QEMU was not started"
        finally:
            client.kill()
            client.wait()
        deadline = time.monotonic() + 60
        while qemu_pids(dst_root) or dst.list_domains() or dom.block_job_info("vda"):
            assert time.monotonic() < deadline, "the migration was not rolled back after its client died"
            time.sleep(0.1)
        assert dom.state() == DomainState.RUNNING
        ticks = len(acked_ticks(console))
        wait_console(console, "virtabs-guest: acked", count=ticks + 2, timeout=60)  # still counting
        check_destination_clean(dst, dst_root)
        assert len(qemu_pids(src_root)) == 1
        dom.destroy()

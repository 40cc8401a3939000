"""Live state from leased QMP monitors, against real QEMU: no read is ever stale.

Each test takes a first connection that holds a lease and has answered at least once, changes the
domain behind its back (another process with its own virtabs connection, raw QMP on the main
socket, ``kill -9``) and reads it back at once through the first connection.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import virtabs
from qemu_helpers import MiB, chain_spec, held_leases, make_driver, run_other, stop_is_reported_while
from virtabs.spi import BlockJobType, DomainRef, DomainSpec, DomainState, NoDomainError, poll_until

from virtabs_qemu._cmdline import LEASE_SOCKETS
from virtabs_qemu._process import alive
from virtabs_qemu._qmp import QMPClient


def _uri(root: Path) -> str:
    return f"qemu:///embed?root={root}"


def _lease_pid(drv: Any, name: str) -> int | None:
    lease = drv.live._leases.get(name)
    return None if lease is None else int(lease.pid)


@pytest.fixture
def bare(root: Path) -> Any:
    """A running diskless domain ``vm`` and a first driver that holds a lease on it and has read it once."""
    drv = make_driver(root)
    ref = drv.define_domain(DomainSpec(name="vm", memory_bytes=64 * MiB, vcpus=1))
    drv.start(ref, paused=False)
    assert drv.domain_status(ref).state == DomainState.RUNNING
    assert _lease_pid(drv, "vm") == drv.processes.pid("vm")  # the fast path is what is tested below
    assert held_leases(root, "vm") == 1
    yield drv, ref
    if drv.processes.pid("vm") is not None:
        drv.destroy(ref)
    drv.close()


def _main_qmp(root: Path, name: str, command: str) -> None:
    """``command`` on the domain's main QMP socket, from this process but outside any driver."""
    with QMPClient(str(root / "run" / name / "qmp.sock"), timeout=30) as q:
        q.execute(command)


def test_pause_and_resume_by_another_process_read_at_once(root: Path, bare: Any) -> None:
    drv, ref = bare
    run_other(root, "vm", "dom.suspend()")
    assert drv.domain_status(ref).state == DomainState.PAUSED
    info = drv.domain_info(ref)
    assert (info.state, info.native_state) == (DomainState.PAUSED, "paused")
    run_other(root, "vm", "dom.resume()")
    assert drv.domain_status(ref).state == DomainState.RUNNING
    # raw QMP on the main socket, no virtabs involved
    _main_qmp(root, "vm", "stop")
    assert drv.domain_status(ref).state == DomainState.PAUSED
    _main_qmp(root, "vm", "cont")
    assert drv.domain_info(ref).state == DomainState.RUNNING
    assert _lease_pid(drv, "vm") == drv.processes.pid("vm")  # all of it answered from the lease


def test_public_api_reads_what_another_process_did(root: Path, bare: Any) -> None:
    conn = virtabs.open(_uri(root))
    try:
        dom = conn.lookup_domain("vm")
        assert dom.state() == DomainState.RUNNING
        assert held_leases(root, "vm") == 2  # the fixture's driver and this connection
        for _ in range(3):
            run_other(root, "vm", "dom.suspend()")
            assert dom.state() == DomainState.PAUSED
            assert dom.info().state == DomainState.PAUSED
            run_other(root, "vm", "dom.resume()")
            assert dom.state() == DomainState.RUNNING
    finally:
        conn.close()
    assert held_leases(root, "vm") == 1  # closing the connection released its lease


def test_kill_9_reads_not_running_at_once(root: Path, bare: Any) -> None:
    drv, ref = bare
    pid = drv.processes.pid("vm")
    assert pid is not None
    pidfd = os.pidfd_open(pid)
    os.kill(pid, signal.SIGKILL)
    # The kill is asynchronous: wait until the kernel reports the process exited (the pidfd turns readable
    # once its last thread is gone, what waitpid reports). Nothing of the driver is waited for.
    try:
        assert select.select([pidfd], [], [], 30)[0] == [pidfd], f"QEMU {pid} did not exit"
    finally:
        os.close(pidfd)
    assert not alive(pid)
    status = drv.domain_status(ref)
    assert status.state == DomainState.CRASHED  # what the slow path says: a pidfile without its QEMU
    assert drv.domain_info(ref).state == DomainState.CRASHED
    assert drv.block_job_info(ref, "vda") is None
    assert "vm" not in drv.live._leases  # the lease was dropped at end of file


def test_destroy_and_start_by_another_process_reads_the_new_qemu(root: Path, bare: Any) -> None:
    drv, ref = bare
    old = drv.processes.pid("vm")
    run_other(root, "vm", "dom.destroy()\ndom.start(paused=True)")
    new = drv.processes.pid("vm")
    assert new is not None and new != old
    assert drv.domain_status(ref).state == DomainState.PAUSED
    info = drv.domain_info(ref)
    assert (info.state, info.native_state) == drv.sessions.state("vm") == (DomainState.PAUSED, "prelaunch")
    assert _lease_pid(drv, "vm") == new  # a lease on the new QEMU, not the old
    run_other(root, "vm", "dom.resume()")
    assert drv.domain_status(ref).state == DomainState.RUNNING
    run_other(root, "vm", "dom.destroy()")
    assert drv.domain_status(ref).state == DomainState.SHUTOFF
    assert "vm" not in drv.live._leases


def test_more_processes_than_leases_all_read_correctly(root: Path, bare: Any) -> None:
    workers = LEASE_SOCKETS + 1  # with the fixture's driver: two more readers than lease monitors
    body = (
        "print(dom.state().name, flush=True)\n"
        "for line in sys.stdin:\n"
        "    print(dom.state().name, dom.info().state.name, flush=True)\n"
    )
    code = (
        "import sys, virtabs\nconn = virtabs.open(sys.argv[1])\ndom = conn.lookup_domain('vm')\n"
        + body
        + "conn.close()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, _uri(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(workers)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "RUNNING"
        assert held_leases(root, "vm") == LEASE_SOCKETS  # every lease is taken; two readers have none
        drv, ref = bare
        for command, want in (("stop", "PAUSED"), ("cont", "RUNNING"), ("stop", "PAUSED")):
            _main_qmp(root, "vm", command)
            for p in procs:
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write("read\n")
                p.stdin.flush()
                assert p.stdout.readline().split() == [want, want]
            assert drv.domain_status(ref).state.name == want
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
        for p in procs:
            p.wait(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    assert held_leases(root, "vm") == 1  # the workers' leases went with them


def test_domain_without_lease_sockets_falls_back(root: Path, bare: Any) -> None:
    """A domain started before leases existed has no lease sockets: the slow path answers."""
    drv, ref = bare
    drv.close()
    for sock in (root / "run" / "vm").glob("lease-*.sock"):
        sock.unlink()
    fresh = make_driver(root)
    try:
        assert fresh.domain_status(ref).state == DomainState.RUNNING
        assert "vm" not in fresh.live._leases
        _main_qmp(root, "vm", "stop")
        assert fresh.domain_status(ref).state == DomainState.PAUSED
        assert fresh.domain_info(ref).native_state == "paused"
    finally:
        fresh.close()


def test_definition_cache_sees_undefine_and_redefine_by_another_process(root: Path) -> None:
    drv = make_driver(root)
    try:
        ref = drv.define_domain(DomainSpec(name="idle", memory_bytes=64 * MiB, vcpus=2))
        path = drv.store.dirs.domain_file("idle")
        from virtabs_qemu._store import stat_key

        # wait until the file is old enough to be kept by its stat (the cached path is what is tested)
        poll_until(lambda: stat_key(path) is not None, timeout=30, what="definition to settle", interval=0.02)
        assert drv.domain_status(ref).state == DomainState.SHUTOFF
        assert drv.domain_info(ref).vcpus == 2
        assert "idle" in drv.store._views
        run_other(root, "idle", "dom.undefine()")
        with pytest.raises(NoDomainError):
            drv.domain_status(ref)
        with pytest.raises(NoDomainError):
            drv.domain_info(ref)
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, virtabs\nfrom virtabs.spi import DomainSpec\nconn = virtabs.open(sys.argv[1])\n"
                "conn.define_domain(DomainSpec(name='idle', memory_bytes=64 << 20, vcpus=3))\nconn.close()\n",
                _uri(root),
            ],
            check=True,
            timeout=120,
        )
        new_ref = drv.lookup_domain("idle")
        assert new_ref.uuid != ref.uuid
        with pytest.raises(NoDomainError):  # the old reference names a domain that no longer exists
            drv.domain_info(ref)
        assert drv.domain_info(new_ref).vcpus == 3
    finally:
        drv.close()


@pytest.fixture
def copying(root: Path, chain: dict[str, Path]) -> Any:
    """A running domain with a disk, read once by a first driver holding a lease."""
    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    assert drv.domain_status(ref).state == DomainState.RUNNING
    assert drv.block_job_info(ref, "vda") is None
    assert _lease_pid(drv, "vm") == drv.processes.pid("vm")
    yield drv, ref, chain
    if drv.processes.pid("vm") is not None:
        drv.destroy(ref)
    drv.close()


def test_block_copy_by_another_process_ready_and_cancel_read_at_once(root: Path, copying: Any) -> None:
    drv, ref, chain = copying
    dest = chain["base"].parent / "copy.qcow2"
    # 1 MiB/s: 48 MiB of data take far longer than the reads below
    run_other(root, "vm", f"dom.block_rebase('vda', {str(dest)!r}, bandwidth=1, flags=R.COPY)")
    info = drv.block_job_info(ref, "vda")
    assert info is not None and info.type == BlockJobType.COPY and not info.ready and info.cur < info.end
    jobs = drv.block_jobs(ref)
    assert [(j.disk, j.ready) for j in jobs] == [("vda", False)]
    status = drv.domain_status(ref)
    assert status.state == DomainState.RUNNING and [j.disk for j in status.jobs] == ["vda"]
    assert _lease_pid(drv, "vm") is not None

    run_other(
        root,
        "vm",
        "from virtabs.spi import poll_until\ndom.block_job_set_speed('vda', 0)\n"
        "poll_until(lambda: dom.block_job_info('vda').ready, timeout=120, what='ready', interval=0.05)",
    )
    info = drv.block_job_info(ref, "vda")
    assert info is not None and info.ready and info.cur == info.end > 0
    assert [(j.disk, j.ready) for j in drv.block_jobs(ref)] == [("vda", True)]

    run_other(root, "vm", "dom.block_job_abort('vda')")  # cancel, waits until the job is gone
    assert drv.block_job_info(ref, "vda") is None
    assert drv.block_jobs(ref) == []
    assert drv.domain_status(ref).jobs == ()
    assert drv.domain_spec(ref).disks[0].path == str(chain["snap2"])  # cancelled: still on the source
    assert _lease_pid(drv, "vm") == drv.processes.pid("vm")


def test_block_copy_pivot_by_another_process_read_at_once(root: Path, copying: Any) -> None:
    drv, ref, chain = copying
    dest = chain["base"].parent / "pivot.qcow2"
    run_other(
        root,
        "vm",
        f"job = dom.block_rebase('vda', {str(dest)!r}, flags=R.COPY)\njob.wait_ready(timeout=120)\njob.pivot()",
    )
    assert drv.block_job_info(ref, "vda") is None
    assert drv.domain_status(ref).jobs == ()
    assert drv.domain_spec(ref).disks[0].path == str(dest)
    assert drv.disks(ref)[0].path == str(dest)


def test_fast_reads_match_a_fresh_session(root: Path, bare: Any) -> None:
    """The leased view and a fresh QMP session agree, state by state (prelaunch, paused, running)."""
    drv, ref = bare
    fresh = make_driver(root)
    try:
        for command in ("stop", "cont", "stop", "system_reset", "cont"):
            _main_qmp(root, "vm", command)
            fast = drv.domain_info(ref)
            slow = fresh.sessions.state("vm")
            assert (fast.state, fast.native_state) == slow
    finally:
        fresh.close()


def test_lease_released_on_close_and_taken_again(root: Path, bare: Any) -> None:
    drv, ref = bare
    drv.close()
    assert held_leases(root, "vm") == 0
    again = make_driver(root)
    try:
        assert again.domain_status(DomainRef(name="vm", uuid=ref.uuid)).state == DomainState.RUNNING
        assert held_leases(root, "vm") == 1
    finally:
        again.close()


def test_job_concluded_behind_virtabs_is_settled_on_the_lease(
    root: Path, copying: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job QEMU concluded without any virtabs process (raw QMP cancel) is settled on the leased connection:
    the read reports it gone at once and opens no QMP connection."""
    drv, ref, chain = copying
    run_other(
        root, "vm", f"dom.block_rebase('vda', {str(chain['base'].parent / 'raw.qcow2')!r}, bandwidth=1, flags=R.COPY)"
    )
    info = drv.block_job_info(ref, "vda")
    assert info is not None and not info.ready
    _main_qmp_args(root, "vm", "block-job-cancel", {"device": "vtb-vda", "force": True})
    with QMPClient(str(root / "run" / "vm" / "qmp.sock"), timeout=30) as q:  # until QEMU has concluded it
        poll_until(
            lambda: all(j["status"] == "concluded" for j in q.execute("query-jobs")),
            timeout=60,
            what="the cancelled job to conclude",
            interval=0.02,
        )
    assert drv.store.run("vm").jobs  # nobody has settled it yet
    opened: list[str] = []
    real = QMPClient.connect

    def counting(self: QMPClient) -> QMPClient:
        opened.append(self.path)
        return real(self)

    monkeypatch.setattr(QMPClient, "connect", counting)
    assert drv.block_job_info(ref, "vda") is None
    assert opened == []  # settled on the lease, no session
    assert drv.store.run("vm").jobs == {}
    assert drv.domain_status(ref).jobs == ()
    assert drv.domain_spec(ref).disks[0].path == str(chain["snap2"])
    assert opened == []


def _main_qmp_args(root: Path, name: str, command: str, arguments: dict[str, Any]) -> None:
    with QMPClient(str(root / "run" / name / "qmp.sock"), timeout=30) as q:
        q.execute(command, arguments)


def test_own_destroy_and_start_read_at_once(root: Path, bare: Any) -> None:
    """The connection's own destroy returns once QEMU has exited completely: its lease reads it gone."""
    drv, ref = bare
    for _ in range(3):
        drv.destroy(ref)
        assert drv.domain_status(ref).state == DomainState.SHUTOFF
        drv.start(ref, paused=True)
        assert drv.domain_status(ref).state == DomainState.PAUSED
        assert _lease_pid(drv, "vm") == drv.processes.pid("vm")
        drv.resume(ref)
        assert drv.domain_info(ref).state == DomainState.RUNNING


def test_save_and_restore_by_another_process(root: Path, bare: Any) -> None:
    """Saved (QEMU migrates to a file and quits) and restored (a new QEMU with -incoming) behind the lease."""
    drv, ref = bare
    saved = root / "vm.save"
    run_other(root, "vm", f"dom.suspend()\ndom.save({str(saved)!r})")
    assert drv.domain_status(ref).state == DomainState.SHUTOFF
    assert drv.domain_info(ref).state == DomainState.SHUTOFF
    run_other(root, "vm", f"conn.restore({str(saved)!r})")
    info = drv.domain_info(ref)
    assert (info.state, info.native_state) == drv.sessions.state("vm")
    assert info.state == DomainState.PAUSED  # it was saved paused
    assert _lease_pid(drv, "vm") == drv.processes.pid("vm")
    run_other(root, "vm", "dom.resume()")
    assert drv.domain_status(ref).state == DomainState.RUNNING


def test_events_of_one_domain_wait_for_no_other_domains_monitor(root: Path) -> None:
    """A client holding domain ``a``'s main QMP monitor (a long save in another process, a user's own QMP
    tool) must hold up neither a subscription nor the event poller of another connection: they read
    through the leased monitors. Before, subscribe() and every poller round waited for ``a``'s monitor
    until the connection's timeout (120 s; the helper's waits give up after 60 s, with ``a`` still held)."""
    with virtabs.open(_uri(root)) as setup:
        for name in ("a", "b"):
            setup.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1)).start(paused=True)
    with QMPClient(str(root / "run" / "a" / "qmp.sock"), timeout=30) as held:
        held.execute("query-status")  # negotiated: QEMU serves no other client on this socket now
        # b is stopped by another process: a change the subscribed connection's driver did not make itself
        events = stop_is_reported_while(root, "main QMP monitor", lambda: run_other(root, "b", "dom.destroy()"))
        assert held.execute("query-status")["running"] is False  # a's monitor was held throughout
    assert {e.domain for e in events if isinstance(e, virtabs.LifecycleEvent)} == {"b"}

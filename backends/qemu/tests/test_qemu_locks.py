"""Issue 14, item 5: every lock of a root is waited for at most the connection's timeout, then
OperationTimeoutError names what is locked and the pid holding it; SIGINT interrupts the wait.

The holder is a real separate process taking the real flock (as a hung or slow virtabs process would).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from qemu_helpers import has_open, stop_is_reported_while
from virtabs import OperationTimeoutError, parse_uri
from virtabs.spi import ConnectOptions, Deadline, DomainSpec

from virtabs_qemu.driver import QemuDriver

MiB = 1 << 20


class Holder:
    """A separate process holding an exclusive flock on ``path`` until killed."""

    def __init__(self, path: Path) -> None:
        code = textwrap.dedent(
            f"""
            import fcntl, os, time
            fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(600)
            """
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "held"
        self.pid = self.proc.pid

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for h in made:
        h.stop()


def _timeout_error(call: object) -> OperationTimeoutError:
    assert callable(call)
    with pytest.raises(OperationTimeoutError) as info:
        call()
    return info.value


def test_held_domain_lock_times_out_naming_domain_and_holder(root: Path, holders: list[Holder]) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=2)
    dom = conn.define_domain(DomainSpec(name="held", memory_bytes=64 * MiB, vcpus=1))
    holder = Holder(root / "run" / "held.lock")
    holders.append(holder)
    for call in (lambda: dom.start(paused=True), dom.undefine):
        err = _timeout_error(call)
        assert "'held'" in str(err) and f"process {holder.pid}" in str(err), err
    # Nothing was done while the lock was held: the domain is still defined and shut off.
    holder.stop()
    holders.remove(holder)
    assert dom.state() == virtabs.DomainState.SHUTOFF
    dom.undefine()
    assert [d.name for d in conn.list_domains()] == []
    conn.close()


def test_held_definitions_lock_times_out_naming_holder(root: Path, holders: list[Holder]) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=2)
    holder = Holder(root / "domains" / ".lock")
    holders.append(holder)
    err = _timeout_error(lambda: conn.define_domain(DomainSpec(name="d", memory_bytes=64 * MiB, vcpus=1)))
    assert "domain definitions" in str(err) and f"process {holder.pid}" in str(err), err
    assert not (root / "domains" / "d.json").exists()
    conn.close()


def test_held_pool_lock_times_out_naming_pool_and_holder(root: Path, holders: list[Holder]) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=2)
    pool = conn.lookup_storage_pool("default")
    pool_dir = Path(str(pool.info().path))
    pool_dir.mkdir(parents=True, exist_ok=True)
    holder = Holder(pool_dir / ".virtabs-volumes.lock")
    holders.append(holder)
    err = _timeout_error(lambda: pool.create_volume("v.qcow2", MiB, format="qcow2"))
    assert "'default'" in str(err) and f"process {holder.pid}" in str(err), err
    conn.close()


def test_sigint_interrupts_a_lock_wait(root: Path, holders: list[Holder]) -> None:
    """A caller waiting (timeout 600 s) for a held lock is interrupted by SIGINT: KeyboardInterrupt, not a timeout."""
    conn = virtabs.open(f"qemu:///embed?root={root}")
    conn.define_domain(DomainSpec(name="w", memory_bytes=64 * MiB, vcpus=1))
    conn.close()
    lock = root / "run" / "w.lock"
    holders.append(Holder(lock))
    code = textwrap.dedent(
        f"""
        import virtabs
        conn = virtabs.open("qemu:///embed?root={root}", timeout=600)
        conn.lookup_domain("w").start(paused=True)
        """
    )
    waiter = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        # The waiter is in the wait once it has the lock file open (it opens it, then retries the flock).
        deadline = Deadline(120)
        while not has_open(waiter.pid, lock):
            assert waiter.poll() is None, waiter.communicate()[1]
            assert not deadline.expired, "the waiter never opened the lock file"
            deadline.sleep(0.05)
        os.kill(waiter.pid, signal.SIGINT)
        _, stderr = waiter.communicate(timeout=120)  # far below the 600 s the lock would be waited for
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode != 0
    assert "KeyboardInterrupt" in stderr and "OperationTimeoutError" not in stderr, stderr
    assert not (root / "run" / "w" / "qemu.pid").exists()


def test_lock_held_by_another_thread_times_out_naming_this_process(root: Path) -> None:
    """Within one process the domain lock is also a thread lock: a second thread waits at most the timeout."""
    drv = QemuDriver(parse_uri(f"qemu:///embed?root={root}"), ConnectOptions(timeout=1))
    ref = drv.define_domain(DomainSpec(name="t", memory_bytes=64 * MiB, vcpus=1))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with drv.store.lock("t").hold():
            held.set()
            release.wait(120)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(120)
        with pytest.raises(OperationTimeoutError) as info:
            drv.start(ref, True)
        assert "'t'" in str(info.value) and f"pid {os.getpid()}" in str(info.value), info.value
    finally:
        release.set()
        t.join(120)
    assert drv.domain_status(ref).state == virtabs.DomainState.SHUTOFF
    drv.close()


def test_cli_start_of_a_locked_domain_ends_with_the_timeout_naming_the_holder(
    root: Path, holders: list[Holder]
) -> None:
    """The probe's reproduction, typed at the CLI: ``--timeout 2 start`` of a domain whose lock another process
    holds ends with one error line (OperationTimeoutError's code) naming the domain and the holder's pid."""
    conn = virtabs.open(f"qemu:///embed?root={root}")
    conn.define_domain(DomainSpec(name="cli", memory_bytes=64 * MiB, vcpus=1))
    conn.close()
    holder = Holder(root / "run" / "cli.lock")
    holders.append(holder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "virtabs.cli", "-c", f"qemu:///embed?root={root}", "--timeout", "2", "start", "cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"code {int(virtabs.ErrorCode.OPERATION_TIMEOUT)}" in line, line
    assert "'cli'" in line and f"process {holder.pid}" in line, line


def test_event_poller_skips_a_locked_domain_instead_of_waiting(root: Path, holders: list[Holder]) -> None:
    """Another process holding domain ``a``'s lock (a long save or snapshot there) must hold up neither a
    subscription nor the events of domain ``b`` on a connection that has not read ``a`` yet: the poller
    tries ``a`` again at its next round. Before, subscribe() and each poller round waited for ``a``'s
    lock until the connection's timeout (120 s; the helper's waits give up after 60 s, ``a`` still held)."""
    with virtabs.open(f"qemu:///embed?root={root}") as setup:
        for name in ("a", "b"):
            setup.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1)).start(paused=True)
    holder = Holder(root / "run" / "a.lock")
    holders.append(holder)

    def destroy_b_elsewhere() -> None:
        with virtabs.open(f"qemu:///embed?root={root}") as other:
            other.lookup_domain("b").destroy()

    stop_is_reported_while(root, "lock", destroy_b_elsewhere)
    assert holder.proc.poll() is None  # a's lock was held throughout
    holder.stop()
    holders.remove(holder)

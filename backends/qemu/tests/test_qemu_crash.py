"""Crash safety: the process that started a copy dies; QEMU dies; a new process takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import virtabs
from qemu_helpers import chain_spec, check_all_layers, image_info, make_driver, qemu_pids
from virtabs import DomainState

ROOT_DIR = Path(__file__).resolve().parents[1]


def test_kill_starter_then_new_process_pivots(root: Path, chain: dict[str, Path]) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    conn.close()
    dest = chain["base"].parent / "copy.qcow2"
    script = textwrap.dedent(
        f"""
        import time, virtabs
        conn = virtabs.open("qemu:///embed?root={root}")
        dom = conn.lookup_domain("vm")
        dom.block_rebase("vda", {str(dest)!r}, bandwidth=4, flags=virtabs.BlockRebaseFlags.COPY)
        print("started", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # A brand-new connection (as a new process would) finds the domain and its job.
    conn2 = virtabs.open(f"qemu:///embed?root={root}")
    dom2 = conn2.lookup_domain("vm")
    assert dom2.state() == DomainState.RUNNING
    info = dom2.block_job_info("vda")
    assert info is not None and not info.ready
    dom2.block_job_set_speed("vda", 0)
    job = dom2.block_job("vda") if hasattr(dom2, "block_job") else None
    deadline = time.monotonic() + 60
    while True:
        info = dom2.block_job_info("vda")
        assert info is not None
        if info.ready:
            break
        assert time.monotonic() < deadline, "copy never became ready"
        time.sleep(0.1)
    del job
    dom2.block_job_abort("vda", virtabs.BlockJobAbortFlags.PIVOT)
    assert dom2.spec().disks[0].path == str(dest)
    dom2.destroy()
    assert image_info(dest)["format"] == "qcow2"
    check_all_layers(dest, "qcow2")


def test_concluded_job_finished_by_a_later_process(root: Path, chain: dict[str, Path]) -> None:
    """Pivot asynchronously and vanish: the concluded job waits (auto-dismiss off) for the next process."""
    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    from virtabs.spi import BlockCopyRequest

    dest = chain["base"].parent / "o.raw"
    drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(dest), format="raw"))
    for _ in range(600):
        info = drv.block_job_info(ref, "vda")
        if info is not None and info.ready:
            break
        time.sleep(0.05)
    drv.block_job_abort(ref, "vda", pivot=True)  # returns once QEMU has job-complete
    del drv  # no one listens while QEMU concludes the job
    time.sleep(0.5)
    drv2 = make_driver(root)
    assert drv2.block_job_info(ref, "vda") is None
    assert drv2.domain_spec(ref).disks[0].path == str(dest)
    assert drv2.domain_spec(ref).disks[0].format == "raw"
    drv2.destroy(ref)
    check_all_layers(dest, "raw")


def test_killed_qemu_shows_crashed_and_can_restart(root: Path, chain: dict[str, Path]) -> None:
    events: list[object] = []
    drv = make_driver(root, events)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    drv.start_events()
    try:
        pid = int((root / "run" / "vm" / "qemu.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        info = make_driver(root).domain_info(ref)
        assert info.state == DomainState.CRASHED
        assert not info.state.is_active
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            getattr(e, "type", None) == virtabs.LifecycleEventType.CRASHED for e in events
        ):
            time.sleep(0.05)
        assert any(getattr(e, "type", None) == virtabs.LifecycleEventType.CRASHED for e in events)
    finally:
        drv.stop_events()
    drv.start(ref, paused=True)
    assert drv.domain_info(ref).state == DomainState.PAUSED
    drv.destroy(ref)
    assert drv.domain_info(ref).state == DomainState.SHUTOFF


def test_second_process_sees_running_domain(root: Path, chain: dict[str, Path]) -> None:
    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import virtabs; d = virtabs.open('qemu:///embed?root={root}').lookup_domain('vm'); print(d.state().name)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "RUNNING", out.stderr
    drv.destroy(ref)


def test_no_orphan_after_failed_start(root: Path, chain: dict[str, Path]) -> None:
    drv = make_driver(root)
    before = qemu_pids(root)
    spec = chain_spec("bad", chain["snap2"], extra={"qemu": {"args": ["-device", "no-such-device"]}})
    ref = drv.define_domain(spec)
    try:
        drv.start(ref, paused=False)
        raise AssertionError("start should fail")
    except virtabs.OperationFailedError as exc:
        assert "bad" in str(exc)
    assert qemu_pids(root) - before == set()
    assert drv.domain_info(ref).state == DomainState.SHUTOFF
    assert not (root / "run" / "bad" / "qemu.pid").exists()


def test_concurrent_threads_and_processes_are_serialized(root: Path, chain: dict[str, Path]) -> None:
    import threading

    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        d = drv if i % 2 else make_driver(root)  # shared connection and separate ones
        try:
            for _ in range(15):
                assert d.domain_info(ref).state.is_active
                assert d.block_job_info(ref, "vda") is None
                assert d.disks(ref)[0].backing_chain
        except BaseException as exc:
            errors.append(exc)

    script = (
        f"import virtabs\nd = virtabs.open('qemu:///embed?root={root}').lookup_domain('vm')\n"
        "for _ in range(15):\n    assert d.state().is_active\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert errors == []
    drv.destroy(ref)


def test_intent_recorded_but_never_sent_can_be_retried(root: Path, chain: dict[str, Path]) -> None:
    """A process that recorded 'pivot' and died before job-complete must not wedge the job."""
    import json

    from virtabs.spi import BlockCopyRequest

    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    dest = chain["base"].parent / "o.qcow2"
    drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(dest)))
    deadline = time.monotonic() + 60
    while not (info := drv.block_job_info(ref, "vda")) or not info.ready:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runfile = root / "run" / "vm" / "run.json"
    run = json.loads(runfile.read_text())
    run["jobs"]["vda"]["intent"] = "pivot"  # as if the asking process died right after recording it
    runfile.write_text(json.dumps(run))
    dom = virtabs.open(f"qemu:///embed?root={root}").lookup_domain("vm")
    dom.block_job_abort("vda", virtabs.BlockJobAbortFlags.PIVOT)  # the core waits until the job is gone
    assert drv.domain_spec(ref).disks[0].path == str(dest)
    drv.destroy(ref)
    check_all_layers(dest, "qcow2")

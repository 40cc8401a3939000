"""Issue 14, item 5: every host command of the QEMU driver honours the connection's timeout and SIGINT.

A hung ``qemu-img`` or a QEMU that never finishes daemonizing is played by a real process that never
answers: a shell script first on ``PATH`` (found by ``shutil.which`` as the driver does) or given as the
``emulator=``, which records its own pid and the pid of a ``sleep`` it forks. A connection opened with
``timeout=2`` must give OperationTimeoutError naming the image or domain and the limit, and must leave
neither process behind (the whole process group is killed, not only the direct child). Before this was
fixed, ``qemu-img`` was waited for 120 s and QEMU's start 60 s whatever the timeout: the ``timeout`` marks
below turn that into a failure, not a hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import virtabs
from virtabs import DomainSpec, OperationTimeoutError
from virtabs.spi import Deadline, DiskSpec

MiB = 1 << 20

_HANG = """#!/bin/sh
echo $$ >> "{pids}"
sleep 600 &
echo $! >> "{pids}"
wait
"""

_FAKE_EMULATOR = """#!/bin/sh
case "$*" in
  *-version*) echo "QEMU emulator version 7.2.0"; exit 0 ;;
  *"-machine none"*) exit 0 ;;
esac
echo $$ >> "{pids}"
sleep 600 &
echo $! >> "{pids}"
wait
"""


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie not yet reaped by init counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _recorded(pids_file: Path) -> list[int]:
    return [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []


def _assert_all_gone(pids_file: Path) -> None:
    """The fake's shell and its ``sleep`` were both started, and are both gone (waited for up to 20 s)."""
    pids = _recorded(pids_file)
    assert len(pids) == 2, f"the fake did not run as expected: {pids}"
    deadline = Deadline(20.0)
    while not all(_gone(p) for p in pids) and not deadline.expired:
        deadline.sleep(0.05)
    left = [p for p in pids if not _gone(p)]
    for p in left:  # do not leave them running whatever the outcome
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes of the hung command left behind: {left}"


@pytest.fixture
def hung_qemu_img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a ``qemu-img`` that never finishes first on PATH; the file its pids are recorded in."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pids = tmp_path / "qemu-img.pids"
    fake = bindir / "qemu-img"
    fake.write_text(_HANG.format(pids=pids))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return pids


@pytest.mark.timeout(60)
def test_create_volume_gives_up_at_the_connection_timeout(root: Path, hung_qemu_img: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=2)
    pool = conn.lookup_storage_pool("default")
    with pytest.raises(OperationTimeoutError) as info:
        pool.create_volume("v.qcow2", MiB, format="qcow2")
    msg = str(info.value)
    assert "v.qcow2" in msg and "within 2s" in msg, msg
    _assert_all_gone(hung_qemu_img)
    # the half-made volume is not left in the pool
    assert not (Path(str(pool.info().path)) / "v.qcow2").exists()
    assert [v.name for v in pool.list_volumes()] == []
    conn.close()


@pytest.mark.timeout(60)
def test_resize_gives_up_at_the_connection_timeout(root: Path, hung_qemu_img: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=2)
    pool = conn.lookup_storage_pool("default")
    pool_dir = Path(str(pool.info().path))
    pool_dir.mkdir(parents=True, exist_ok=True)
    (pool_dir / "r.img").write_bytes(b"\0" * MiB)  # a file made elsewhere: raw, its size read without qemu-img
    vol = pool.lookup_volume("r.img")
    with pytest.raises(OperationTimeoutError) as info:
        vol.resize(2 * MiB)
    msg = str(info.value)
    assert "r.img" in msg and "within 2s" in msg, msg
    _assert_all_gone(hung_qemu_img)
    assert (pool_dir / "r.img").stat().st_size == MiB
    conn.close()


@pytest.mark.timeout(60)
def test_disk_only_snapshot_gives_up_at_the_connection_timeout(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=2)
    disk = conn.lookup_storage_pool("default").create_volume("d.qcow2", MiB, format="qcow2")  # the real qemu-img
    dom = conn.define_domain(
        DomainSpec(name="snap", memory_bytes=64 * MiB, vcpus=1, disks=[DiskSpec("vda", str(disk.path), "qcow2")])
    )
    pids = tmp_path / "qemu-img.pids"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "qemu-img").write_text(_HANG.format(pids=pids))
    (bindir / "qemu-img").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    with pytest.raises(OperationTimeoutError) as info:
        dom.create_snapshot("s1")
    msg = str(info.value)
    assert str(disk.path) in msg and "within 2s" in msg, msg
    _assert_all_gone(pids)
    assert dom.list_snapshots() == []
    conn.close()


@pytest.mark.timeout(60)
def test_start_gives_up_at_the_connection_timeout(root: Path, tmp_path: Path) -> None:
    """A QEMU whose daemonizing start never returns: OperationTimeoutError naming the domain and the limit."""
    pids = tmp_path / "qemu.pids"
    emulator = tmp_path / "qemu-system-x86_64"
    emulator.write_text(_FAKE_EMULATOR.format(pids=pids))
    emulator.chmod(0o755)
    conn = virtabs.open(f"qemu:///embed?root={root}&emulator={emulator}&accel=tcg", timeout=2)
    dom = conn.define_domain(DomainSpec(name="hang", memory_bytes=64 * MiB, vcpus=1))
    with pytest.raises(OperationTimeoutError) as info:
        dom.start(paused=True)
    msg = str(info.value)
    assert "'hang'" in msg and "within 2s" in msg, msg
    _assert_all_gone(pids)
    assert dom.state() == virtabs.DomainState.SHUTOFF
    conn.close()


@pytest.mark.timeout(60)
def test_sigint_stops_a_qemu_img_wait_and_its_processes(root: Path, hung_qemu_img: Path) -> None:
    """No connection timeout (the 120 s default): SIGINT interrupts the wait and kills the command's group."""
    code = (
        "import virtabs\n"
        f"virtabs.open('qemu:///embed?root={root}').lookup_storage_pool('default').create_volume("
        "'i.qcow2', 1 << 20, format='qcow2')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = Deadline(30.0)
        while len(_recorded(hung_qemu_img)) < 2 and not deadline.expired and proc.poll() is None:
            deadline.sleep(0.05)
        assert len(_recorded(hung_qemu_img)) == 2, "the fake qemu-img was not started"
        proc.send_signal(signal.SIGINT)  # to the caller only, as a terminal's Ctrl-C reaches the foreground job
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
    _assert_all_gone(hung_qemu_img)

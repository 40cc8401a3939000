"""Issue 14, item 6 and the concurrency test: one operation sees one consistent state, a start that cannot
record its state leaves no QEMU behind, and several processes working on one root at the same time leave
valid definitions and no QEMU that no definition accounts for.

Everything is real: QEMU processes, flocks, a full file system (a tiny tmpfs mounted over a domain's runtime
directory: needs root; outside CI the test skips without it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from qemu_helpers import has_open, make_driver, qemu_pids
from virtabs import NoDomainError, OperationFailedError
from virtabs.spi import Deadline, DomainSpec
from virtabs.testing.plugin import in_ci

from virtabs_qemu._state import write_json_atomic

MiB = 1 << 20


# --- item 6: the definition is read under the domain lock ------------------------------------------------


def test_start_reads_the_definition_under_the_domain_lock(root: Path) -> None:
    """Another process holding the domain lock undefines the domain and defines another of the same name
    (a new UUID); the start that waited for the lock must not boot either definition under that name.

    Driven through the driver: the core's gate reads the domain's state (under the same lock) just before
    calling ``start``, which narrows the window to a few instructions; calling the driver opens it for sure."""
    drv = make_driver(root)
    ref = drv.define_domain(DomainSpec(name="swap", memory_bytes=64 * MiB, vcpus=1))
    old_uuid = ref.uuid
    lock = root / "run" / "swap.lock"
    dfile = root / "domains" / "swap.json"
    code = textwrap.dedent(
        f"""
        import fcntl, json, os, sys, uuid
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.readline()
        data = json.load(open({str(dfile)!r}))
        new = str(uuid.uuid4())
        data["uuid"] = new
        if isinstance(data.get("spec"), dict) and "uuid" in data["spec"]:
            data["spec"]["uuid"] = new
        os.unlink({str(dfile)!r})  # undefine ...
        with open({str(dfile)!r} + ".tmp", "w") as fh:
            json.dump(data, fh)
        os.replace({str(dfile)!r} + ".tmp", {str(dfile)!r})  # ... and define another domain of that name
        print(new, flush=True)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        outcome: list[BaseException | None] = []

        def start() -> None:
            try:
                drv.start(ref, True)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=start)
        t.start()
        deadline = Deadline(120)
        while not has_open(os.getpid(), lock):  # the start is waiting for the lock
            assert t.is_alive() and not deadline.expired, outcome
            deadline.sleep(0.02)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        new_uuid = holder.stdout.readline().strip()
        assert new_uuid and new_uuid != old_uuid
        holder.wait(timeout=60)
        t.join(timeout=120)
        assert not t.is_alive()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert len(outcome) == 1 and isinstance(outcome[0], NoDomainError), outcome
    assert qemu_pids(root) == set()
    now = drv.lookup_domain("swap")
    assert now.uuid == new_uuid
    assert drv.domain_status(now).state == virtabs.DomainState.SHUTOFF
    drv.close()


# --- item 6: a start that cannot write its state leaves no QEMU ---------------------------------------------


def _mount_tiny_tmpfs(path: Path) -> None:
    """A one-page tmpfs at ``path`` (needs root; outside CI the test skips without it)."""
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs", str(path)], capture_output=True, text=True
    )
    if res.returncode != 0:
        msg = f"cannot mount a tmpfs (needs root): {res.stderr.strip()}"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture
def full_run_dir(root: Path) -> Iterator[Path]:
    """A one-page tmpfs over the runtime directory of domain ``full``: QEMU's pidfile fills it."""
    run_dir = root / "run" / "full"
    run_dir.mkdir(parents=True, mode=0o700)
    _mount_tiny_tmpfs(run_dir)
    try:
        yield run_dir
    finally:
        for pid in qemu_pids(root):
            os.kill(pid, 9)
        subprocess.run(["umount", "-l", str(run_dir)], check=False)


@pytest.mark.no_qemu
def test_atomic_write_on_a_full_file_system_keeps_the_old_file(tmp_path: Path) -> None:
    """ENOSPC mid-write: OperationFailedError naming the file, the old content intact, no temporary file left."""
    fs = tmp_path / "fs"
    fs.mkdir()
    _mount_tiny_tmpfs(fs)
    try:
        target = fs / "run.json"
        write_json_atomic(str(target), {"v": 1})  # one page: the file system is now full
        with pytest.raises(OperationFailedError) as info:
            write_json_atomic(str(target), {"v": 2, "pad": "x" * 8192})
        assert str(target) in str(info.value) and "No space left on device" in str(info.value)
        assert json.loads(target.read_text()) == {"v": 1}
        assert sorted(p.name for p in fs.iterdir()) == ["run.json"]
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=False)


def test_start_that_cannot_write_its_state_leaves_no_qemu(root: Path, full_run_dir: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=60)
    dom = conn.define_domain(DomainSpec(name="full", memory_bytes=64 * MiB, vcpus=1))
    with pytest.raises(OperationFailedError) as info:
        dom.start(paused=True)
    msg = str(info.value)
    assert "'full'" in msg and "No space left on device" in msg, msg
    assert qemu_pids(root) == set()
    assert dom.state() == virtabs.DomainState.SHUTOFF
    assert not (full_run_dir / "qemu.pid").exists()
    conn.close()


# --- several processes on one root ----------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import json, os, sys, traceback
    import virtabs
    from virtabs.spi import DiskSpec, DomainSpec

    root, me, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    MiB = 1 << 20
    results = []
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=60)
    pool = conn.lookup_storage_pool("default")
    names = [f"own{me}", "shared0", "shared1"]

    def attempt(op, fn):
        try:
            fn()
            results.append([op, "ok"])
        except virtabs.VirtabsError as exc:
            results.append([op, type(exc).__name__])
        except BaseException:
            results.append([op, "RAW " + traceback.format_exc()])

    def spec(name, disk=None):
        disks = [DiskSpec(path=disk, format="qcow2", target="vda")] if disk else []
        return DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=disks)

    def copy(name):
        dom = conn.lookup_domain(name)
        dest = os.path.join(root, f"copy-{me}-{len(results)}.qcow2")
        job = dom.block_copy("vda", dest, format="qcow2")
        job.wait_ready(timeout=60)
        if len(results) % 2:
            job.pivot()  # the definition now names the copy
        else:
            job.abort()

    for i in range(rounds):
        for name in names[: 1 + (i % 3)]:
            vol = f"d{me}-{i}-{name}.qcow2"
            def define(name=name, vol=vol):
                v = pool.create_volume(vol, 4 * MiB, format="qcow2")
                conn.define_domain(spec(name, v.path))
            attempt("define", define)
            attempt("start", lambda name=name: conn.lookup_domain(name).start(paused=True))
            attempt("copy", lambda name=name: copy(name))
            attempt("destroy", lambda name=name: conn.lookup_domain(name).destroy())
            attempt("undefine", lambda name=name: conn.lookup_domain(name).undefine())
    conn.close()
    print(json.dumps(results))
    """
)


def test_processes_defining_starting_copying_undefining_on_one_root(root: Path) -> None:
    """Four processes, each on its own domain and on two shared names: 3 rounds x up to 3 names x 5 operations.

    Each operation succeeds or fails with a virtabs error (never a raw exception); afterwards every definition
    is valid JSON and every QEMU still running belongs to a defined domain (its pidfile in that domain's
    runtime directory)."""
    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=60)
    conn.close()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(root), str(i), "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = []
    try:
        for w in workers:
            out, err = w.communicate(timeout=900)
            assert w.returncode == 0, err[-3000:]
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    results = [r for out in outputs for r in out]
    raw = [r for r in results if r[1].startswith("RAW")]
    assert not raw, raw[0][1]
    assert len(results) >= 4 * 6 * 5
    ok = {op for op, outcome in results if outcome == "ok"}
    assert {"define", "start", "copy", "destroy", "undefine"} <= ok, results  # the workers did real work, not only fail
    # Every definition file is valid JSON and readable as a domain.
    defined = set()
    for f in (root / "domains").glob("*.json"):
        data = json.loads(f.read_text())
        assert isinstance(data, dict) and data.get("uuid"), f
        defined.add(f.stem)
    conn = virtabs.open(f"qemu:///embed?root={root}")
    assert {d.name for d in conn.list_domains()} == defined
    # Every QEMU left is the QEMU of a defined domain (its pidfile is in that domain's runtime directory).
    for pid in qemu_pids(root):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode() for a in fh.read().split(b"\0")]
        pidfile = argv[argv.index("-pidfile") + 1]
        owner = Path(pidfile).parent.name
        assert owner in defined, f"QEMU {pid} runs for {owner!r}, which is not defined"
        assert conn.lookup_domain(owner).state() != virtabs.DomainState.SHUTOFF
    for dom in conn.list_domains():
        if dom.state() != virtabs.DomainState.SHUTOFF:
            dom.destroy()
    assert qemu_pids(root) == set()
    conn.close()


def test_start_interrupted_while_qemu_daemonizes_leaves_no_qemu(root: Path, tmp_path: Path) -> None:
    """SIGINT while the daemonizing QEMU has not returned yet: the daemon already runs and must be stopped.

    The emulator is a wrapper (test infrastructure) that runs the real QEMU, whose daemon then runs, and
    then, instead of returning, sleeps: the start is stuck in the spawn when the SIGINT comes."""
    real = shutil.which("qemu-system-x86_64")
    assert real is not None
    wrapper = tmp_path / "slow-qemu"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        f'  if [ "$a" = "-daemonize" ]; then "{real}" "$@" || exit $?; exec sleep 600; fi\n'
        "done\n"
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    uri = f"qemu:///embed?root={root}&emulator={wrapper}"
    conn = virtabs.open(uri)
    conn.define_domain(DomainSpec(name="int", memory_bytes=64 * MiB, vcpus=1))
    conn.close()
    code = f"import virtabs\nvirtabs.open({uri!r}, timeout=120).lookup_domain('int').start(paused=True)\n"
    child = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        deadline = Deadline(120)
        while not (root / "run" / "int" / "qemu.pid").exists():  # the daemon runs; the spawn has not returned
            assert child.poll() is None, child.communicate()[1]
            assert not deadline.expired, "QEMU never wrote its pidfile"
            deadline.sleep(0.05)
        assert qemu_pids(root)
        os.kill(child.pid, signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in stderr, stderr
    assert qemu_pids(root) == set()
    conn = virtabs.open(uri)
    assert conn.lookup_domain("int").state() == virtabs.DomainState.SHUTOFF
    conn.close()

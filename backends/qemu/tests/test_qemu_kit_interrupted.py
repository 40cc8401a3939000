"""A contract-kit run that is killed leaves no QEMU guest running.

Daemonless QEMU outlives its client on purpose, but the kit's own test domains must not: Ctrl-C and
SIGTERM (a CI timeout) end the run through its teardown, which kills them; a run killed outright
(SIGKILL) is swept by the next run on the same root, which recognises the domains by their run prefix
and finds their owner gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import virtabs
from qemu_helpers import qemu_pids

HOLDER = """
import threading


def test_hold(virtabs_contract):
    dom = virtabs_contract.domain(running=True)
    print("HOLDING", dom.name, flush=True)
    threading.Event().wait()  # until the run is killed


def test_define_one(virtabs_contract):
    virtabs_contract.domain(running=False)
"""


def _kit(root: Path, tests: Path, selection: str) -> subprocess.Popen[str]:
    uri = f"qemu:///embed?root={root}&accel=tcg"
    options = ["-s", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-k", selection]
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", str(tests), f"--virtabs-uri={uri}", *options],
        cwd=tests.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CI": "true"},
    )


def _holding(proc: subprocess.Popen[str]) -> str:
    """Read the run's output until it says which domain it holds running (the event, not a delay)."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("HOLDING "):
            return line.split()[1]
    raise AssertionError("the kit run ended before its domain was running:\n" + "".join(seen))


def _gone(root: Path, what: str) -> None:
    deadline = time.monotonic() + 60  # a hang guard: SIGKILLed processes are reaped by init
    while qemu_pids(root):
        assert time.monotonic() < deadline, f"{what}: QEMU still running: {qemu_pids(root)}"
        time.sleep(0.05)


@pytest.fixture
def holder(tmp_path: Path) -> Path:
    tests = tmp_path / "kit" / "test_holder.py"
    tests.parent.mkdir()
    tests.write_text(HOLDER)
    return tests


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_run_and_its_guests(root: Path, holder: Path, signum: int) -> None:
    proc = _kit(root, holder, "test_hold")
    try:
        name = _holding(proc)
        assert qemu_pids(root), f"domain {name} is said to run, but no QEMU runs under {root}"
        proc.send_signal(signum)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _gone(root, f"after {signal.Signals(signum).name} to the kit run")


def test_a_run_killed_outright_is_swept_by_the_next(root: Path, holder: Path) -> None:
    proc = _kit(root, holder, "test_hold")
    try:
        name = _holding(proc)
        proc.kill()  # no handler runs: the guest outlives the run
        proc.wait(timeout=60)
        assert qemu_pids(root), "the test needs the guest of a SIGKILLed run still running"
        with virtabs.open(f"qemu:///embed?root={root}&accel=tcg") as conn:
            assert conn.lookup_domain(name).state() == virtabs.DomainState.RUNNING
        nxt = _kit(root, holder, "test_define_one")
        out, _ = nxt.communicate(timeout=300)
        assert nxt.returncode == 0, out
    finally:
        for p in (proc, locals().get("nxt")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    _gone(root, "after the next run started")
    with virtabs.open(f"qemu:///embed?root={root}&accel=tcg") as conn:
        left = [d.name for d in conn.list_domains()]
    assert name not in left, f"the killed run's domain {name} is still defined: {left}"

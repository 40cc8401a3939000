"""Fixtures and helpers of the qemu driver tests: real QEMU, small images, everything under a temp root.

Without qemu-system-x86_64/qemu-img/qemu-io the tests skip, except when CI=true: then they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from virtabs import parse_uri
from virtabs.spi import ConnectOptions, DiskSpec, DomainSpec
from virtabs.testing.plugin import in_ci

from virtabs_qemu.testing import qemu_pids

__all__ = ["qemu_pids"]  # re-exported: the suites import it from here

MiB = 1024 * 1024
SIZE = 64 * MiB
# The layout of test-targets.md §8, scaled to 64 MiB: base 0xaa [0, 32M), snap1 0xbb [32M, 48M), snap2 0xcc [48M, 64M)
LAYERS = (("base", 0xAA, 0, 32 * MiB), ("snap1", 0xBB, 32 * MiB, 16 * MiB), ("snap2", 0xCC, 48 * MiB, 16 * MiB))

TOOLS = ("qemu-system-x86_64", "qemu-img", "qemu-io")


def _require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        msg = f"QEMU tools missing: {', '.join(missing)} (apt install qemu-system-x86 qemu-utils)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(autouse=True)
def _qemu_required(request: pytest.FixtureRequest) -> None:
    if "no_qemu" not in request.keywords:
        _require_tools()


@pytest.fixture
def root() -> Iterator[Path]:
    """A short state root (the QMP socket path must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="vtq-"))
    yield d
    _kill_leftovers(d)
    shutil.rmtree(d, ignore_errors=True)


def _kill_leftovers(root: Path) -> None:
    for pidfile in root.glob("run/*/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


def make_driver(root: Path, events: list[object] | None = None, **params: str):  # type: ignore[no-untyped-def]
    from virtabs_qemu.driver import QemuDriver

    query = "&".join(f"{k}={v}" for k, v in {"root": str(root), **params}.items())
    sink = events.append if events is not None else (lambda _e: None)
    return QemuDriver(parse_uri(f"qemu:///embed?{query}"), ConnectOptions(event_sink=sink, timeout=30))


@pytest.fixture
def driver(root: Path):  # type: ignore[no-untyped-def]
    return make_driver(root)


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True, text=True).stdout


def write_pattern(path: Path, fmt: str, pattern: int, offset: int, length: int) -> None:
    subprocess.run(
        ["qemu-io", "-f", fmt, "-c", f"write -P 0x{pattern:02x} {offset} {length}", str(path)],
        check=True,
        capture_output=True,
    )


def has_pattern(path: Path | str, fmt: str, pattern: int, offset: int, length: int) -> bool:
    """Read through ``path`` (and its chain) with an explicit format; True when every byte matches."""
    res = subprocess.run(
        ["qemu-io", "-r", "-U", "-f", fmt, "-c", f"read -P 0x{pattern:02x} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
    )
    return res.returncode == 0 and "Pattern verification failed" not in res.stdout + res.stderr


def check_all_layers(path: Path | str, fmt: str) -> None:
    for name, pattern, offset, length in LAYERS:
        assert has_pattern(path, fmt, pattern, offset, length), f"{path}: {name}'s 0x{pattern:02x} data missing"


def make_chain(directory: Path) -> dict[str, Path]:
    """base <- snap1 <- snap2 (qcow2, explicit backing formats), a distinct pattern per layer."""
    paths: dict[str, Path] = {}
    below: Path | None = None
    for name, pattern, offset, length in LAYERS:
        p = directory / f"{name}.qcow2"
        args = ["create", "-q", "-f", "qcow2"]
        if below is not None:
            args += ["-b", str(below), "-F", "qcow2"]
        qemu_img(*args, str(p), str(SIZE))
        write_pattern(p, "qcow2", pattern, offset, length)
        paths[name] = p
        below = p
    return paths


@pytest.fixture
def chain(root: Path) -> dict[str, Path]:
    d = root / "img"
    d.mkdir()
    return make_chain(d)


def chain_spec(name: str, top: Path, **extra: object) -> DomainSpec:
    return DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=[DiskSpec(target="vda", path=str(top), format="qcow2")],
        **extra,  # type: ignore[arg-type]
    )


def image_info(path: Path | str) -> dict[str, object]:
    import json

    fmt = "raw"
    with open(path, "rb") as fh:
        if fh.read(4) == b"QFI\xfb":
            fmt = "qcow2"
    return dict(json.loads(qemu_img("info", "--output=json", "-U", "-f", fmt, str(path))))


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (one of its file descriptors points at it)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def held_leases(root: Path, name: str) -> int:
    """How many lease monitors of domain ``name`` some process holds (their lock files are flocked)."""
    import fcntl

    held = 0
    for lock in sorted((root / "run" / name).glob("lease-*.lock")):
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held += 1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return held


OTHER_PRELUDE = """
import sys, virtabs
from virtabs import BlockRebaseFlags as R, BlockJobAbortFlags as A
conn = virtabs.open(sys.argv[1])
dom = conn.lookup_domain(sys.argv[2])
"""


def run_other(root: Path, name: str, body: str, timeout: float = 120) -> str:
    """Run ``body`` in ANOTHER python process with its own virtabs connection to ``root`` (``conn``, ``dom``
    for domain ``name``); its stdout. A failure there fails the caller with its stderr."""
    import sys

    res = subprocess.run(
        [sys.executable, "-c", OTHER_PRELUDE + body + "\nconn.close()\n", f"qemu:///embed?root={root}", name],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert res.returncode == 0, f"the other process failed: {res.stderr[-3000:]}"
    return res.stdout


def stop_is_reported_while(root: Path, held: str, stop_elsewhere: Callable[[], object]) -> list[object]:
    """On a fresh connection to ``root`` (timeout 120 s): subscribe to domain ``b``'s events, run
    ``stop_elsewhere`` (which stops ``b`` outside this connection), and wait for the poller's STOPPED.

    The caller keeps ``held`` (what it holds of domain ``a``) busy throughout. Each wait gives up after 60 s,
    well before the connection's timeout, so a subscription or a poller round that waits for ``a`` fails
    here instead of passing late. Returns the events received. The caller's ``root`` fixture stops the
    QEMUs left running (``a`` cannot be destroyed while the caller holds it)."""
    import threading

    import virtabs
    from virtabs.spi import poll_until

    conn = virtabs.open(f"qemu:///embed?root={root}", timeout=120)
    subs: list[virtabs.Subscription] = []
    events: list[object] = []
    try:
        subscribed = threading.Event()

        def subscribe() -> None:
            subs.append(conn.subscribe(events.append, domain="b"))
            subscribed.set()

        threading.Thread(target=subscribe, daemon=True).start()
        assert subscribed.wait(60), f"subscribe() waited for domain a's {held}, held by another client"
        stop_elsewhere()

        def stopped() -> bool:
            return any(
                isinstance(e, virtabs.LifecycleEvent) and e.type == virtabs.LifecycleEventType.STOPPED
                for e in list(events)
            )

        poll_until(stopped, timeout=60, what=f"the poller's STOPPED event of domain b while a's {held} is held")
        return events
    finally:
        for sub in subs:
            sub.close()
        conn.close()

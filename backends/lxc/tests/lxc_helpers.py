"""Test infrastructure for the LXC backend: a private lxcpath and busybox-static root file systems.

Nothing here is used by the driver. Real LXC needs root, liblxc's Python binding (PyPI ``lxc``,
built against Debian's ``lxc-dev``) and ``busybox-static``; under ``CI`` a missing piece is a
failure, elsewhere the engine tests skip with a hint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from virtabs.testing.plugin import in_ci

from virtabs_lxc.testing import build_busybox_rootfs, busybox_binary

__all__ = ["build_busybox_rootfs", "busybox_binary"]

INSTALL_HINT = "apt-get install lxc lxc-dev pkg-config busybox-static rsync && pip install lxc (as root)"


def missing_engine() -> str | None:
    """Why real LXC cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "real LXC tests need root"
    for tool in ("lxc-start", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if busybox_binary() is None:
        return "busybox-static is not installed"
    try:
        import lxc  # noqa: F401
    except ImportError:
        return "the lxc Python binding is not installed"
    return None


def require_engine() -> None:
    """Skip (or fail under CI) when real LXC is not usable."""
    reason = missing_engine()
    if reason is None:
        return
    message = f"{reason}: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def ready_file(rootfs: Path) -> Path:
    """The file busybox init creates in ``/run`` once the container is up (seen from the host)."""
    return rootfs / "run" / "virtabs-ready"


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true; fail the test naming ``what`` when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def stop_all(lxcpath: str) -> None:
    """Kill every running container of ``lxcpath`` (teardown; never destroys anything)."""
    import lxc

    for name in lxc.list_containers(config_path=lxcpath):
        container = lxc.Container(name, lxcpath)
        if container.running:
            container.stop()
            container.wait("STOPPED", 10)


@contextlib.contextmanager
def private_lxcpath(prefix: str = "vtlxc-") -> Iterator[str]:
    """A temporary lxcpath; every container in it is stopped and the directory removed afterwards."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        with contextlib.suppress(Exception):
            stop_all(path)
        shutil.rmtree(path, ignore_errors=True)

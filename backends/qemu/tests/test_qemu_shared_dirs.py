"""Issue 14, item 3: fallback directories under the temporary directory are refused when another user could
control them (not owned by the caller, or writable by group/others) and are created 0700.

The two fallbacks: the QMP socket's directory when the run directory's path is too long for a socket, and
the session's runtime base when ``XDG_RUNTIME_DIR`` is unset. Attacked through the public API.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import ConnectError, OperationFailedError
from virtabs.spi import DomainSpec

MiB = 1 << 20
NOBODY = 65534


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short stand-in for /tmp (what ``tempfile.gettempdir()`` returns in this process)."""
    d = Path(tempfile.mkdtemp(prefix="vts-"))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _plant(path: Path, *, mode: int, uid: int | None = None) -> None:
    path.mkdir()
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, -1)


def test_socket_fallback_directory_is_refused_unless_private(root: Path, shared_tmp: Path) -> None:
    long_root = root / ("r" * 90)  # run/<name>/qmp.sock would pass the socket path limit
    long_root.mkdir()
    conn = virtabs.open(f"qemu:///embed?root={long_root}&accel=tcg")
    dom = conn.define_domain(DomainSpec(name="s", memory_bytes=64 * MiB, vcpus=1))
    digest = hashlib.sha256(os.fsencode(str(long_root / "run"))).hexdigest()[:16]
    fallback = shared_tmp / f"vtq-{digest}"

    for mode, uid in ((0o777, None), (0o1777, None), (0o700, NOBODY)):
        _plant(fallback, mode=mode, uid=uid)
        with pytest.raises(OperationFailedError, match=f"refusing the shared directory {fallback}"):
            dom.start(paused=True)
        assert dom.state() == virtabs.DomainState.SHUTOFF
        assert not (long_root / "run" / "s" / "qemu.pid").exists()
        shutil.rmtree(fallback)

    dom.start(paused=True)
    try:
        st = os.lstat(fallback)
        assert (st.st_uid, st.st_mode & 0o777) == (os.getuid(), 0o700)
        assert (fallback / "s.sock").is_socket()
        assert dom.state() == virtabs.DomainState.PAUSED
    finally:
        dom.destroy()
    conn.close()


@pytest.mark.no_qemu
@pytest.mark.parametrize("readonly", [False, True])
def test_session_runtime_base_under_tmp_is_refused_unless_private(
    root: Path, shared_tmp: Path, monkeypatch: pytest.MonkeyPatch, readonly: bool
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    base = shared_tmp / f"virtabs-{os.getuid()}"
    for mode, uid in ((0o777, None), (0o770, None), (0o700, NOBODY)):
        _plant(base, mode=mode, uid=uid)
        with pytest.raises(ConnectError, match=f"refusing the shared directory {base}"):
            virtabs.open("qemu:///session", readonly=readonly)
        shutil.rmtree(base)
    base.symlink_to(root)  # a symlink planted in its place is not our directory either
    with pytest.raises(ConnectError, match="refusing the shared directory"):
        virtabs.open("qemu:///session", readonly=readonly)
    base.unlink()

    virtabs.open("qemu:///session", readonly=readonly).close()
    if readonly:
        assert not base.exists()  # read-only: nothing created
    else:
        st = os.lstat(base)
        assert (st.st_uid, st.st_mode & 0o777) == (os.getuid(), 0o700)

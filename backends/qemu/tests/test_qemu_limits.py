"""Issue 14, item 10: saved memory files are 0600; a QMP line over the size limit is refused without reading
the rest; a malformed QMP reply is a clean OperationFailedError (through the public API, with a fake monitor
planted in place of a real QEMU's socket: a stand-in for a broken or impostor peer)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import OperationFailedError
from virtabs.spi import DomainSpec

from virtabs_qemu._qmp import MAX_LINE, QMPClient

MiB = 1 << 20
GREETING = b'{"QMP": {"version": {}, "capabilities": []}}\n'


def _serve(path: str, reply: bytes, sent: list[int]) -> socket.socket:
    """A monitor at ``path`` that greets, acknowledges qmp_capabilities and answers everything with ``reply``
    (``b"FLOOD"``: an endless line without a newline; ``sent`` counts the bytes it got out)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def one(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as rf:
            try:
                conn.sendall(GREETING)
                rf.readline()
                conn.sendall(b'{"return": {}, "id": "v1"}\n')
                rf.readline()
                if reply == b"FLOOD":
                    block = b"x" * 65536
                    conn.sendall(b'{"return": "')
                    while True:
                        conn.sendall(block)
                        sent[0] += len(block)
                else:
                    conn.sendall(reply)
                    rf.readline()
            except OSError:
                pass

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


@pytest.mark.no_qemu
def test_an_oversized_qmp_line_is_refused_without_reading_it_all() -> None:
    d = tempfile.mkdtemp(prefix="vtql-")
    path = os.path.join(d, "m.sock")
    sent = [0]
    srv = _serve(path, b"FLOOD", sent)
    try:
        match = f"domain 'big': QMP message over {MAX_LINE} bytes"
        with QMPClient(path, timeout=60, what="domain 'big'") as q, pytest.raises(OperationFailedError, match=match):
            q.execute("query-status")
        # the peer kept sending; the client stopped at the limit (plus what socket buffers hold)
        assert MAX_LINE <= sent[0] < MAX_LINE + 16 * MiB
    finally:
        srv.close()


@pytest.fixture
def running(root: Path) -> Iterator[tuple[virtabs.Domain, Path]]:
    conn = virtabs.open(f"qemu:///embed?root={root}&accel=tcg")
    dom = conn.define_domain(DomainSpec(name="m", memory_bytes=64 * MiB, vcpus=1))
    dom.start(paused=True)
    yield dom, root / "run" / "m" / "qmp.sock"
    conn.close()  # QEMU (now unreachable over QMP) is killed by its pidfile by the root fixture


@pytest.mark.parametrize(
    "reply",
    [
        b"this is not json\n",
        b"\xff\xfe\n",
        b"[" * 100_000 + b"\n",
        b'["a list, not an object"]\n',
        b'{"return": 42, "id": "v2"}\n',  # query-status answered with a number
        b'{"return": {"status": []}, "id": "v2"}\n',
        b'{"error": "a string, not an object", "id": "v2"}\n',
    ],
    ids=["garbage", "bad-utf8", "deep-nesting", "non-object", "wrong-type", "wrong-field-type", "error-string"],
)
def test_a_malformed_qmp_reply_is_a_clean_failure(running: tuple[virtabs.Domain, Path], reply: bytes) -> None:
    dom, sock = running
    sock.unlink()
    for lease in sock.parent.glob("lease-*.sock"):  # no lease monitor: the read opens a session on qmp.sock
        lease.unlink()
    srv = _serve(str(sock), reply, [0])
    try:
        with pytest.raises(virtabs.VirtabsError) as info:
            dom.state()
        assert isinstance(info.value, (OperationFailedError, virtabs.OperationInvalidError)), info.value
        assert "'m'" in str(info.value)
        assert type(info.value).__module__.startswith("virtabs")
    finally:
        srv.close()


def test_saved_memory_is_0600_even_over_an_existing_file(root: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}&accel=tcg")
    old_umask = os.umask(0)
    try:
        for name, existing in (("fresh", False), ("over", True)):
            dom = conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1))
            dom.start(paused=True)
            path = root / f"{name}.save"
            if existing:
                path.write_bytes(b"old")
                path.chmod(0o644)
            dom.save(str(path))
            assert path.stat().st_mode & 0o777 == 0o600
            assert path.stat().st_size > 4096
    finally:
        os.umask(old_umask)
        conn.close()


def test_save_does_not_follow_a_planted_symlink(root: Path) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}&accel=tcg")
    dom = conn.define_domain(DomainSpec(name="l", memory_bytes=64 * MiB, vcpus=1))
    dom.start(paused=True)
    victim = root / "victim"
    victim.write_bytes(b"keep")
    (root / "l.save").symlink_to(victim)
    with pytest.raises(OperationFailedError, match="cannot write"):
        dom.save(str(root / "l.save"))
    assert victim.read_bytes() == b"keep"
    assert dom.state() == virtabs.DomainState.PAUSED
    dom.destroy()
    conn.close()

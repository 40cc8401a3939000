"""The QMP client against a scripted fake monitor: negotiation, events, errors, timeouts."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest
from virtabs.spi import ConnectError, OperationTimeoutError

from virtabs_qemu._qmp import QMPClient, QMPError


@pytest.fixture
def fake() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A unix-socket monitor: greets, then answers by command name; 'hang' never answers."""
    d = tempfile.mkdtemp(prefix="vtqmp-")
    path = os.path.join(d, "m.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    seen: list[dict[str, object]] = []

    def serve() -> None:
        conn, _ = srv.accept()
        f = conn.makefile("rwb")
        f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        f.flush()
        for line in f:
            msg = json.loads(line)
            seen.append(msg)
            cmd, mid = msg["execute"], msg.get("id")
            if cmd == "hang":
                continue
            if cmd == "bad":
                f.write(json.dumps({"error": {"class": "DeviceNotActive", "desc": "no job"}, "id": mid}).encode())
            else:
                f.write(b'{"event": "STOP", "data": {}}\n')
                f.write(json.dumps({"return": {"cmd": cmd}, "id": mid}).encode())
            f.write(b"\n")
            f.flush()
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path, seen
    srv.close()


@pytest.mark.no_qemu
def test_negotiates_runs_collects_events_and_maps_errors(fake: tuple[str, list[dict[str, object]]]) -> None:
    path, seen = fake
    with QMPClient(path, timeout=5, what="domain 'x'") as q:
        assert q.execute("query-status") == {"cmd": "query-status"}
        assert seen[0]["execute"] == "qmp_capabilities"
        assert [e["event"] for e in q.take_events()] == ["STOP", "STOP"]
        with pytest.raises(QMPError, match="domain 'x': bad: no job") as exc:
            q.execute("bad")
        assert exc.value.qmp_class == "DeviceNotActive"


@pytest.mark.no_qemu
def test_every_call_has_a_timeout(fake: tuple[str, list[dict[str, object]]]) -> None:
    path, _ = fake
    q = QMPClient(path, timeout=5, what="domain 'x'").connect()
    with pytest.raises(OperationTimeoutError, match=r"domain 'x'.*'hang'"):
        q.execute("hang", timeout=0.3)


@pytest.mark.no_qemu
def test_missing_socket_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match="does not exist"):
        QMPClient("/nonexistent/q.sock", timeout=1).connect()


@pytest.mark.no_qemu
def test_silent_monitor_times_out_on_connect() -> None:
    d = tempfile.mkdtemp(prefix="vtqmp-")
    path = os.path.join(d, "m.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)  # accepts (backlog) but never greets, like a monitor busy with another client
    try:
        with pytest.raises(OperationTimeoutError):
            QMPClient(path, timeout=0.3).connect()
    finally:
        srv.close()

"""How long a remote connection's set-up may take: ssh, the helper's start, the handshake, the remote open.

One deadline for them all: ``?start_timeout=SECONDS``, else the connection's timeout, else the 300 s any
call waits without one. It was the connection's timeout (or 30 s) plus 10 s for the handshake alone, which
a far side with no compiled files missed on its first start (the Xen lab's dom0: 40 s without a timeout).
The helper stand-ins here run through the real sshd, named by ``helper=``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import virtabs
from virtabs import ConnectError, InvalidArgumentError
from virtabs._uri import parse_uri
from virtabs.drivers._test_json import DEFAULT_NODE
from virtabs.remote._client import DEFAULT_CALL_TIMEOUT, remote_uri, start_limit

HELPER = str(Path(sys.executable).parent / "virtabs-remote")


@pytest.mark.parametrize(
    ("uri", "timeout", "limit"),
    [
        ("test+ssh://h/n.json", None, DEFAULT_CALL_TIMEOUT),
        ("test+ssh://h/n.json", 7.0, 7.0),
        ("test+ssh://h/n.json?start_timeout=90", 7.0, 90.0),
        ("test+ssh://h/n.json?start_timeout=0.5", None, 0.5),
    ],
)
def test_the_set_up_follows_the_connection_s_deadline(uri: str, timeout: float | None, limit: float) -> None:
    assert start_limit(parse_uri(uri), timeout) == limit


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_start_timeout_is_refused_before_ssh(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="start_timeout"):
        virtabs.open(f"test+ssh://nowhere.invalid/n.json?start_timeout={bad}")


def test_start_timeout_stays_with_the_client() -> None:
    assert remote_uri(parse_uri("test+ssh://h/srv/n.json?start_timeout=90&without=network")) == (
        "test:///srv/n.json?without=network"
    )


def _stand_in(tmp_path: Path, body: str) -> str:
    script = tmp_path / "helper-stand-in"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_a_silent_helper_fails_at_the_connection_s_timeout(sshd: object, tmp_path: Path) -> None:
    """A helper that reads and never answers: the open fails naming the connection's timeout, not it + 10 s."""
    silent = _stand_in(tmp_path, "exec cat >/dev/null")
    uri = sshd.uri("test", str(tmp_path / "n.json"), helper=silent)  # type: ignore[attr-defined]
    with pytest.raises(ConnectError, match=r"did not answer within 2 s \(the connection's timeout"):
        virtabs.open(uri, timeout=2)
    with pytest.raises(ConnectError, match="did not answer within 1 s"):
        virtabs.open(uri + "&start_timeout=1", timeout=60)


def test_a_slow_helper_start_is_waited_for_past_the_call_timeout(sshd: object, tmp_path: Path) -> None:
    """A far side that takes longer to start than a call may take: ``start_timeout`` lets it, calls keep theirs."""
    node = tmp_path / "node.json"
    node.write_text(json.dumps(DEFAULT_NODE))
    slow = _stand_in(tmp_path, f"sleep 4\nexec {HELPER}")  # like a first start compiling every module
    uri = sshd.uri("test", str(node), helper=slow)  # type: ignore[attr-defined]
    with pytest.raises(ConnectError, match="did not answer within 2 s"):
        virtabs.open(uri, timeout=2)
    with virtabs.open(uri + "&start_timeout=60", timeout=2) as conn:
        assert conn.timeout == 2
        assert [d.name for d in conn.list_domains()] == ["test"]


_OPEN_BEFORE_WELCOME = '''
import io, os, sys
from virtabs.remote._helper import Helper
from virtabs.remote._protocol import encode_frame, read_frame

stdin = os.fdopen(os.dup(0), "rb")
hello = read_frame(stdin)
first = read_frame(stdin)  # blocks: no welcome is sent before the client's first call has come
sys.stderr.write(f"stand-in: {hello['type']} then {first['type']} {first.get('method')}\\n")


class Replay(io.RawIOBase):
    """The two frames read above, then the rest of stdin: the real helper serves the whole stream."""

    def __init__(self) -> None:
        self.head = encode_frame(hello) + encode_frame(first)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = stdin.read1(len(buffer))
        buffer[: len(data)] = data
        return len(data)


stdout = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
os._exit(Helper(io.BufferedReader(Replay()), stdout).serve())
'''


def test_the_open_goes_with_the_hello_without_waiting_for_the_welcome(sshd: object, tmp_path: Path) -> None:
    """A new channel's first open is sent right behind the hello: one round trip fewer per host (libvirt's
    remote driver makes five before its first call). The stand-in sends no welcome until the open has come,
    so a client that waits for the welcome first never gets one (its set-up fails at ``start_timeout``)."""
    node = tmp_path / "node.json"
    node.write_text(json.dumps(DEFAULT_NODE))
    script = tmp_path / "open-before-welcome"
    script.write_text(f"#!{sys.executable}\n{_OPEN_BEFORE_WELCOME}")
    script.chmod(0o755)
    uri = sshd.uri("test", str(node), helper=str(script), start_timeout="20")  # type: ignore[attr-defined]
    with virtabs.open(uri, timeout=60) as conn:
        assert [d.name for d in conn.list_domains()] == ["test"]
        with virtabs.open(uri, timeout=60) as second:  # the channel is up: a plain open call on it
            assert second.lookup_domain("test").uuid == conn.lookup_domain("test").uuid

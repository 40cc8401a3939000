"""``DRIVER+ssh://`` over a real sshd: set-up, faults (ssh, helper and client killed), events, CLI, aio.

Processes are found through /proc by this venv's helper path, so other helpers on the machine (other
checkouts) are never counted or touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import virtabs
from virtabs import ConnectError, DomainState, DriverUnavailableError, LifecycleEvent
from virtabs.drivers._test_json import DEFAULT_NODE
from virtabs.remote._client import RemoteDriver

VENV_BIN = str(Path(sys.executable).parent)
HELPER = os.path.join(VENV_BIN, "virtabs-remote")


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def helper_pids(server: object) -> set[int]:
    """Pids of running helpers of this venv (``python .../virtabs-remote``) started by ``server``'s sshd."""
    root = server.proc.pid  # type: ignore[attr-defined]
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if HELPER.encode() not in cmdline:
            continue
        pid = int(entry)
        while pid > 1 and pid != root:
            pid = _parent(pid)
        if pid == root:
            found.add(int(entry))
    return found


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def node_uri(sshd: object, tmp_path: Path) -> str:
    node = tmp_path / "node.json"
    node.write_text(json.dumps(DEFAULT_NODE))
    return sshd.uri("test", str(node))  # type: ignore[attr-defined]


def test_a_remote_connection_serves_the_remote_node_and_its_capabilities(
    sshd: object, node_uri: str, tmp_path: Path
) -> None:
    with virtabs.open(node_uri) as conn:
        assert isinstance(conn._driver, RemoteDriver) and conn.driver_name == "test"
        assert conn.capabilities.supported == virtabs.open("test:///default").capabilities.supported
        dom = conn.define_domain({"name": "remote-vm", "memory_bytes": 64 << 20, "vcpus": 1})
        dom.start()
    # the change is in the node file on the "remote" host
    described = json.loads((tmp_path / "node.json").read_text())
    assert {d["name"]: d["state"] for d in described["domains"]}["remote-vm"] == "running"


def test_capabilities_dropped_on_the_remote_host_are_the_connections(sshd: object, node_uri: str) -> None:
    with virtabs.open(node_uri + "&without=block.copy.pivot") as conn:
        assert not conn.supports("block.copy.pivot") and conn.supports("block.copy")
        assert "block.copy.pivot" in {c.value for c in conn.capabilities.dropped}


def test_the_helper_missing_is_driver_unavailable_naming_the_host(sshd_without_helper: object, tmp_path: Path) -> None:
    node = tmp_path / "n.json"
    node.write_text("{}")
    uri = sshd_without_helper.uri("test", str(node))  # type: ignore[attr-defined]
    with pytest.raises(DriverUnavailableError) as info:
        virtabs.open(uri)
    message = str(info.value)
    assert "127.0.0.1" in message and "virtabs-remote" in message and "helper=" in message
    # the helper= parameter names a helper outside PATH
    with virtabs.open(uri + "&helper=" + HELPER) as conn:
        assert conn.list_domains() == []


def test_an_unknown_host_key_is_refused(sshd: object, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4tGx6ro0EnmOm2HtFk8yHSKn0RRGn4b3mwL5zsMvBf\n")
    uri = sshd.uri("test", "/x.json", known_hosts=str(other))  # type: ignore[attr-defined]
    with pytest.raises(ConnectError) as info:
        virtabs.open(uri)
    assert "Host key verification failed" in str(info.value) or "host key" in str(info.value).lower()


def _channel_ssh_pid(conn: virtabs.Connection) -> int:
    driver = conn._driver
    assert isinstance(driver, RemoteDriver)
    proc = driver._channel._proc
    assert proc is not None
    return proc.pid


def test_ssh_killed_mid_session_fails_calls_fast_and_leaves_no_helper(sshd: object, node_uri: str) -> None:
    before = helper_pids(sshd)
    conn = virtabs.open(node_uri, timeout=30)
    ours = helper_pids(sshd) - before
    assert len(ours) == 1, "one helper per channel"
    dom = conn.lookup_domain("test")
    os.kill(_channel_ssh_pid(conn), signal.SIGKILL)
    with pytest.raises(ConnectError):
        wait_until(lambda: dom.state() is None, "a call to fail")  # state() never returns None: it raises
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(ConnectError, match="lost"):
            dom.info()
    assert time.monotonic() - started < 5, "later calls must fail fast, not wait for a timeout"
    wait_until(lambda: not (helper_pids(sshd) & ours), "the helper to exit after ssh died")
    conn.close()


def test_the_helper_killed_mid_call_is_a_connect_error(sshd: object, node_uri: str) -> None:
    before = helper_pids(sshd)
    conn = virtabs.open(node_uri, timeout=30)
    (pid,) = helper_pids(sshd) - before
    dom = conn.lookup_domain("test")
    assert dom.state() == DomainState.RUNNING
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ConnectError):
        wait_until(lambda: dom.state() is None, "a call to fail")
    with pytest.raises(ConnectError):
        conn.list_domains()
    conn.close()
    with virtabs.open(node_uri) as again:  # a new connection starts a new channel
        assert again.lookup_domain("test").state() == DomainState.RUNNING


def test_the_client_killed_leaves_no_helper_behind(sshd: object, node_uri: str) -> None:
    before = helper_pids(sshd)
    script = (
        "import sys, virtabs\n"
        "conn = virtabs.open(sys.argv[1])\n"
        "conn.lookup_domain('test').state()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    client = subprocess.Popen(
        [sys.executable, "-c", script, node_uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        ours = helper_pids(sshd) - before
        assert len(ours) == 1
        client.kill()
        client.wait()
        wait_until(lambda: not (helper_pids(sshd) & ours), "the helper to exit on EOF after the client was killed")
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_two_connections_share_one_channel_and_the_last_close_ends_the_helper(sshd: object, node_uri: str) -> None:
    before = helper_pids(sshd)
    first = virtabs.open(node_uri)
    second = virtabs.open(node_uri)
    ours = helper_pids(sshd) - before
    assert len(ours) == 1
    first.close()
    assert second.lookup_domain("test").state() == DomainState.RUNNING
    second.close()
    wait_until(lambda: not (helper_pids(sshd) & ours), "the helper to exit after the last close")


def test_calls_from_many_threads_on_one_channel_each_get_their_reply(
    sshd: object, node_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A waiting caller looks at the stream again only every _CALLER_READS seconds; made longer than the
    # connection's timeout here, so a reply is read in time only because a leaving reader hands
    # reading over to a caller still waiting (else that caller times out).
    import virtabs.remote._client as client

    monkeypatch.setattr(client, "_CALLER_READS", 600.0)
    errors: list[BaseException] = []
    states: list[DomainState] = []
    with virtabs.open(node_uri, timeout=20) as conn:
        dom = conn.lookup_domain("test")

        def caller() -> None:
            try:
                for _ in range(25):
                    states.append(dom.info().state)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]
    assert states == [DomainState.RUNNING] * 200


def test_events_are_pushed_by_the_helper(sshd: object, node_uri: str) -> None:
    seen: list[LifecycleEvent] = []
    with virtabs.open(node_uri) as conn:
        dom = conn.lookup_domain("test")
        with conn.subscribe(lambda e: seen.append(e) if isinstance(e, LifecycleEvent) else None, domain=dom):
            dom.suspend()
            dom.resume()
            wait_until(lambda: len(seen) >= 2, "two lifecycle events")
    assert [e.type.name for e in seen[:2]] == ["SUSPENDED", "RESUMED"]
    assert all(e.domain == "test" for e in seen)


def test_block_copy_with_pivot_over_the_cli(sshd: object, node_uri: str, tmp_path: Path) -> None:
    virtabs_cli = os.path.join(VENV_BIN, "virtabs")
    dest = "/default-pool/copied.qcow2"
    run = subprocess.run(
        [virtabs_cli, "-c", node_uri, "blockcopy", "test", "vda", dest, "--wait", "--pivot", "--verbose"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    listed = subprocess.run(
        [virtabs_cli, "-c", node_uri, "domblklist", "test"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert dest in listed.stdout


def test_aio_over_ssh(sshd: object, node_uri: str) -> None:
    from virtabs import aio

    async def main() -> tuple[DomainState, int]:
        async with await aio.open(node_uri) as conn:
            dom = await conn.lookup_domain("test")
            states = await asyncio.gather(*(dom.state() for _ in range(8)))
            assert len(set(states)) == 1
            records = await conn.domain_records()
            return states[0], len(records)

    state, count = asyncio.run(main())
    assert state == DomainState.RUNNING and count == 1


def test_the_inventory_reads_a_remote_host_in_one_round_trip(sshd: object, node_uri: str) -> None:
    with virtabs.open(node_uri) as conn:
        driver = conn._driver
        assert isinstance(driver, RemoteDriver)
        calls: list[str] = []
        original = driver._channel.call

        def counting(session: int | None, method: str, args: dict, timeout: float | None) -> object:
            calls.append(method)
            return original(session, method, args, timeout)

        driver._channel.call = counting  # type: ignore[method-assign]
        records = conn.domain_records()
        assert [r.name for r in records] == ["test"] and calls == ["inventory"]


def test_a_silent_helper_is_declared_dead_by_the_keepalive(
    sshd: object, node_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import virtabs.remote._client as client

    monkeypatch.setattr(client, "KEEPALIVE_INTERVAL", 0.5)  # dead after 1.5 s of silence instead of 15 s
    before = helper_pids(sshd)
    conn = virtabs.open(node_uri, timeout=120)
    (pid,) = helper_pids(sshd) - before
    dom = conn.lookup_domain("test")
    os.kill(pid, signal.SIGSTOP)  # the network goes silent: nothing answers, nothing is closed
    wait_until(lambda: _state(pid) == "T", "the helper to be stopped")
    try:
        with pytest.raises(ConnectError, match="keepalive"):
            dom.info()  # would wait for its 120 s timeout without the keepalive
        with pytest.raises(ConnectError):
            dom.info()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        conn.close()
    wait_until(lambda: pid not in helper_pids(sshd), "the stopped helper to exit once its channel was cut")

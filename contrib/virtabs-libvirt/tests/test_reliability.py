"""Issue 14 for the libvirt driver: no secret anywhere (items 4), no hang (item 5).

Against real peers: a unix socket that accepts and never answers (:class:`peers.SilentPeer`), and a
libvirtd of our own (:class:`peers.SessionLibvirtd`), paused with SIGSTOP after the connect, or
demanding SASL (SCRAM-SHA-256) authentication. No duration is asserted: a wait that must end is
bounded by a generous hang guard (a thread joined with a limit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import virtabs
from virtabs import DomainSpec
from virtabs.spi import ConnectOptions, poll_until
from virtabs.testing.listeners import SilentListener

from virtabs_libvirt._auth import CredentialCallback, CredType, redact_text
from virtabs_libvirt.driver import LibvirtDriver, error_map

from .peers import SessionLibvirtd, SilentPeer

HANG_GUARD = 60.0
"""Seconds after which a call that should have ended is declared hung (never a timing assertion)."""
PASSWORD = "pw-Zq8#not-in-any-message"
MiB = 1 << 20


def outcome(fn: Callable[[], Any]) -> BaseException | Any:
    """Run ``fn`` on a thread; its exception (or result). Fails the test if it has not returned by the guard."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # the outcome under test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), f"the call did not return within the {HANG_GUARD}s hang guard"
    return box[0]


@pytest.fixture
def silent_peer() -> Iterator[SilentPeer]:
    with tempfile.TemporaryDirectory(prefix="vt-silent-") as directory:
        peer = SilentPeer(directory)
        yield peer
        peer.close()


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[SessionLibvirtd]:
    with SessionLibvirtd() as daemon:
        yield daemon


@pytest.fixture(scope="module")
def sasl_libvirtd() -> Iterator[SessionLibvirtd]:
    with SessionLibvirtd(sasl_user="alice", sasl_password=PASSWORD) as daemon:
        yield daemon


# --- item 5: timeouts and Ctrl-C ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "ssh"])
def test_a_remote_uri_to_a_host_that_never_answers_times_out_naming_it(transport: str, tmp_path: Any) -> None:
    """qemu+tcp:// and qemu+ssh:// to a TCP listener that accepts and never sends a byte (issue 21.2)."""
    with SilentListener() as silent:
        remote = f"qemu+{transport}://{silent.address}/system"
        if transport == "ssh":  # libvirt runs ssh: no prompt, no host key learnt from this peer
            remote += f"?no_tty=1&known_hosts={tmp_path / 'known_hosts'}"
        error = outcome(lambda: virtabs.open(f"libvirt:///?uri={quote(remote, safe='')}", timeout=2))
        assert isinstance(error, (virtabs.OperationTimeoutError, virtabs.ConnectError)), error
        assert silent.accepted
    assert silent.address in str(error)


def test_a_connect_to_a_peer_that_never_answers_times_out(silent_peer: SilentPeer) -> None:
    uri = f"libvirt+qemu:///system?socket={silent_peer.path}"
    error = outcome(lambda: virtabs.open(uri, timeout=2))
    assert isinstance(error, virtabs.OperationTimeoutError), error
    assert silent_peer.accepted.is_set()  # libvirt did reach the peer: it is the peer that never answered
    assert silent_peer.path in error.message and "did not answer the connect within 2s" in error.message


def test_ctrl_c_ends_a_connect_to_a_peer_that_never_answers(silent_peer: SilentPeer) -> None:
    """No timeout at all: SIGINT in the main thread still ends the wait (libvirt's C call would not)."""
    code = (
        "import signal, virtabs\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if inherited ignored\n"
        f"virtabs.open('libvirt+qemu:///system?socket={silent_peer.path}')\n"
        "print('connected', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert silent_peer.accepted.wait(HANG_GUARD), "the driver never reached the peer"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "connected" not in out
    assert "KeyboardInterrupt" in err
    assert "the connect was interrupted while libvirt at" in err and "the connection is closed" in err


def test_a_call_to_a_daemon_that_stops_answering_times_out_and_closes_the_connection(
    libvirtd: SessionLibvirtd,
) -> None:
    conn = virtabs.open(libvirtd.uri, timeout=2)
    try:
        assert [d.name for d in conn.list_domains()] == ["test"]  # through the daemon, on a worker
        libvirtd.pause()
        try:
            error = outcome(conn.list_domains)
            assert isinstance(error, virtabs.OperationTimeoutError), error
            assert "did not answer listAllDomains() on the connection within 2s" in error.message
            assert "the connection is closed" in error.message
            after = outcome(conn.host_info)
            assert isinstance(after, virtabs.ConnectError), after
            assert "is closed" in after.message and "open a new connection" in after.message
        finally:
            libvirtd.resume()
    finally:
        assert outcome(conn.close) is None
    with virtabs.open(libvirtd.uri, timeout=10) as fresh:  # the daemon itself is fine again
        assert [d.name for d in fresh.list_domains()] == ["test"]


def test_ctrl_c_ends_a_call_to_a_daemon_that_stopped_answering(libvirtd: SessionLibvirtd) -> None:
    """No timeout: SIGINT ends the wait, the interrupt says the connection is closed, and it is."""
    code = (
        "import signal, virtabs\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if inherited ignored\n"
        f"conn = virtabs.open({libvirtd.uri!r})\n"
        "print('opened', flush=True)\n"
        "try:\n"
        "    while True:\n"
        "        conn.list_domains()\n"
        "except KeyboardInterrupt as exc:\n"
        "    print('interrupted:', *getattr(exc, '__notes__', []), flush=True)\n"
        "try:\n"
        "    conn.host_info()\n"
        "except virtabs.ConnectError as exc:\n"
        "    print('then:', exc.message, flush=True)\n"
        "conn.close()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "opened"
        libvirtd.pause()  # the loop's next call blocks in libvirt's C code
        threading.Event().wait(1.0)  # settle: let the child enter that call (not a timing assertion)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        libvirtd.resume()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "interrupted: virtabs-libvirt: listAllDomains() on the connection was interrupted" in out
    assert "then: host info: the libvirt connection to test+unix:///default" in out
    assert "is closed" in out and "open a new connection" in out


def test_a_timed_out_call_names_its_object(libvirtd: SessionLibvirtd) -> None:
    conn = virtabs.open(libvirtd.uri, timeout=2)
    try:
        dom = conn.lookup_domain("test")
        libvirtd.pause()
        try:
            error = outcome(dom.info)
        finally:
            libvirtd.resume()
        assert isinstance(error, virtabs.OperationTimeoutError), error
        assert error.message.startswith("lookup of domain 'test': libvirt at ")
    finally:
        conn.close()


def test_every_operation_goes_through_the_bounded_calls(libvirtd: SessionLibvirtd) -> None:
    """The guarded path does real work: domains, snapshots and storage through libvirtd's RPC."""
    with virtabs.open(libvirtd.uri, timeout=30) as conn:
        assert conn.host_info().hypervisor == "libvirt-test"
        dom = conn.define_domain(DomainSpec(name="vt-guarded", memory_bytes=64 * MiB, vcpus=1))
        try:
            dom.start()
            assert dom.info().state == virtabs.DomainState.RUNNING
            dom.create_snapshot("s1")
            assert [s.name for s in dom.list_snapshots()] == ["s1"]
            dom.revert_to_snapshot("s1")  # a guarded snapshot object handed back to libvirt
            dom.destroy()
        finally:
            dom.undefine()
        assert "default-pool" in [p.name for p in conn.list_storage_pools()]
        with pytest.raises(virtabs.NoDomainError):
            conn.lookup_domain("vt-guarded")


def _call_workers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "virtabs-libvirt-call")


def test_closing_a_connection_ends_its_workers(libvirtd: SessionLibvirtd, sasl_libvirtd: SessionLibvirtd) -> None:
    """No thread is left behind by a closed connection, nor by a connect that failed."""
    before = _call_workers()
    with virtabs.open(libvirtd.uri, timeout=30) as conn:
        conn.list_domains()
        assert _call_workers() > before
    poll_until(lambda: _call_workers() == before, timeout=HANG_GUARD, what="workers of a closed connection alive")
    with pytest.raises(virtabs.AuthError):
        virtabs.open(sasl_libvirtd.uri, credentials=("alice", "wrong"), timeout=30)
    poll_until(lambda: _call_workers() == before, timeout=HANG_GUARD, what="workers of a failed connect alive")


# --- item 4: credentials through libvirt's auth callback, never shown -----------------------------


def test_sasl_credentials_reach_libvirt_through_the_auth_callback(sasl_libvirtd: SessionLibvirtd) -> None:
    with virtabs.open(sasl_libvirtd.uri, credentials=("alice", PASSWORD), timeout=30) as conn:
        assert [d.name for d in conn.list_domains()] == ["test"]
        assert PASSWORD not in repr(conn) and PASSWORD not in conn.uri
    options = ConnectOptions(credentials=virtabs.Credentials("alice", PASSWORD), timeout=30)
    driver = LibvirtDriver(virtabs.parse_uri(sasl_libvirtd.uri), options)
    try:
        assert [d.name for d in driver.list_domains()] == ["test"]
        assert PASSWORD not in repr(driver) and PASSWORD not in repr(options)
    finally:
        driver.close()


def test_a_wrong_password_is_an_auth_error_without_the_password(sasl_libvirtd: SessionLibvirtd) -> None:
    with pytest.raises(virtabs.AuthError) as exc:
        virtabs.open(sasl_libvirtd.uri, credentials=("alice", PASSWORD + "-wrong"), timeout=30)
    assert "authentication failed" in exc.value.message
    assert PASSWORD not in str(exc.value) and PASSWORD not in repr(exc.value)


def test_missing_credentials_say_what_libvirt_asked_for(sasl_libvirtd: SessionLibvirtd) -> None:
    with pytest.raises(virtabs.AuthError) as exc:
        virtabs.open(sasl_libvirtd.uri, credentials=("alice", ""), timeout=30)
    assert "libvirt asked for a password (VIR_CRED_PASSPHRASE" in exc.value.message
    assert "credentials=" in exc.value.message


def test_the_callback_answers_as_libvirt_asks() -> None:
    """Called exactly as libvirt-python calls it: a list of [type, prompt, challenge, default, result]."""
    callback = CredentialCallback(virtabs.Credentials("alice", PASSWORD))
    creds = [
        [CredType.USERNAME, "authorization name", "Authorization Name", None, None],
        [CredType.AUTHNAME, "authentication name", "Authentication Name", "root", None],
        [CredType.PASSPHRASE, "password", "Password", None, None],
        [CredType.NOECHOPROMPT, "Enter passphrase for key", "", None, None],
        [CredType.REALM, "realm", "", "EXAMPLE", None],
    ]
    assert callback(creds, None) == 0
    assert [c[4] for c in creds] == ["alice", "alice", PASSWORD, PASSWORD, "EXAMPLE"]
    assert callback.missing == []
    assert PASSWORD not in repr(callback) and "alice" in repr(callback)


def test_the_callback_refuses_what_it_cannot_answer_honestly() -> None:
    host_key = [[CredType.ECHOPROMPT, "Accept SSH host key with hash 'ab:cd' for host 'h:22' (y/n)?", "", "n", None]]
    callback = CredentialCallback(virtabs.Credentials("alice", PASSWORD))
    assert callback(host_key, None) == -1 and host_key[0][4] is None
    assert callback.missing == ["an answer to a question (VIR_CRED_ECHOPROMPT: " + repr(host_key[0][1]) + ")"]
    no_password = CredentialCallback(virtabs.Credentials("alice", None))
    assert no_password([[CredType.PASSPHRASE, "Password", "", None, None]], None) == -1
    assert no_password.missing == ["a password (VIR_CRED_PASSPHRASE: 'Password')"]
    nothing = CredentialCallback(None)
    assert nothing([[CredType.AUTHNAME, "name", "", "localuser", None]], None) == 0  # libvirt's default
    assert nothing([[CredType.AUTHNAME, "name", "", None, None]], None) == -1


def test_credential_types_are_libvirts() -> None:
    import libvirt

    for kind in CredType:
        assert getattr(libvirt, f"VIR_CRED_{kind.name}") == kind


@pytest.mark.parametrize(
    "uri",
    [
        f"libvirt:///?uri=qemu%2Bssh%3A%2F%2Froot%3A{PASSWORD.replace('#', '%23')}%40host%2Fsystem",
        f"libvirt:///?uri=qemu%2Btcp%3A%2F%2Fhost%2Fsystem%3Fpassword%3D{PASSWORD.replace('#', '%23')}",
    ],
)
def test_a_password_inside_the_libvirt_uri_is_refused_without_echo(uri: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError) as exc:
        virtabs.open(uri)
    # The core refuses it at parse time (a password inside an encoded parameter); the driver's own
    # refusal of ?uri= stays as a second line of defence for URIs built without parse_uri.
    assert "password inside" in exc.value.message and "refused" in exc.value.message
    assert PASSWORD not in str(exc.value)


def test_libvirt_messages_are_redacted() -> None:
    class FakeLibvirtError(Exception):
        def get_error_code(self) -> int:
            return 38

        def get_error_message(self) -> str:
            return f"unable to connect to 'qemu+tcp://root:{PASSWORD}@h/system': {PASSWORD} rejected"

    error = error_map((PASSWORD,)).translate(FakeLibvirtError(), "connecting")
    assert isinstance(error, virtabs.VirtabsError)
    assert PASSWORD not in error.message and "root:***@h" in error.message
    assert redact_text("qemu+ssh://u:p4ss@h/x?password=zz&a=1") == "qemu+ssh://u:***@h/x?password=***&a=1"


def test_interpreter_exit_is_not_held_by_a_stuck_worker(silent_peer: SilentPeer) -> None:
    """After a timeout the worker stays blocked in C; the process still exits (daemon workers)."""
    code = (
        "import virtabs\n"
        "try:\n"
        f"    virtabs.open('libvirt+qemu:///system?socket={silent_peer.path}', timeout=1)\n"
        "except virtabs.OperationTimeoutError:\n"
        "    print('timed out', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD, env={**os.environ}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "timed out"


# --- the same through the CLI -------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "virtabs.cli", *args]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=HANG_GUARD, env={**environment, **(env or {})}
    )


def test_cli_timeout_against_a_peer_that_never_answers(silent_peer: SilentPeer) -> None:
    result = _cli("--timeout", "2", "-c", f"libvirt+qemu:///system?socket={silent_peer.path}", "list")
    assert result.returncode != 0
    assert "did not answer the connect within 2s" in result.stderr and "OPERATION_TIMEOUT" in result.stderr


def test_cli_credentials_from_the_environment_reach_sasl(sasl_libvirtd: SessionLibvirtd) -> None:
    good = _cli(
        "--debug", "-c", sasl_libvirtd.uri, "list", env={"VIRTABS_USERNAME": "alice", "VIRTABS_PASSWORD": PASSWORD}
    )
    assert good.returncode == 0, good.stderr
    assert "test" in good.stdout
    assert PASSWORD not in good.stdout + good.stderr
    bad = _cli(
        "--debug",
        "-c",
        sasl_libvirtd.uri,
        "list",
        env={"VIRTABS_USERNAME": "alice", "VIRTABS_PASSWORD": PASSWORD + "x"},
    )
    assert bad.returncode != 0 and "authentication failed" in bad.stderr
    assert PASSWORD not in bad.stdout + bad.stderr

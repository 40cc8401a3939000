"""The command transport against this machine and against a real OpenSSH server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from virtabs import (
    URI,
    AuthError,
    ConnectError,
    InvalidArgumentError,
    OperationFailedError,
    OperationTimeoutError,
    parse_uri,
)
from virtabs.spi import CommandFailedError, CommandTransport
from virtabs.testing.listeners import SilentListener

NASTY = [
    "a b; rm -rf /",
    "$(touch pwned)",
    "`touch pwned`",
    "it's",
    'say "hi"',
    "back\\slash",
    "*",
    "~",
    "",
    "line\nbreak",
    "tab\there",
    "-n",
    "--",
    "ünïcødé",
    "semi;colon&amp|pipe>redir<in",
]
ECHO_ARGS = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest) -> Iterator[CommandTransport]:
    """The same tests on both transports."""
    if request.param == "local":
        t = CommandTransport(parse_uri("xen:///"))
    else:
        server = request.getfixturevalue("sshd")
        t = CommandTransport(parse_uri(server.uri("xen")))
    yield t
    t.close()


@pytest.fixture
def ssh_transport(sshd: Any) -> Iterator[CommandTransport]:
    t = CommandTransport(parse_uri(sshd.uri("vbox", "/session")))
    yield t
    t.close()


# --- quoting --------------------------------------------------------------------------------------


def test_arguments_arrive_unchanged(transport: CommandTransport) -> None:
    result = transport.run([sys.executable, "-c", ECHO_ARGS, *NASTY])
    assert json.loads(result.stdout) == NASTY


def test_domain_name_with_shell_syntax_stays_one_argument(transport: CommandTransport, tmp_path: Path) -> None:
    """A real command (touch) with a hostile name creates exactly one file with exactly that name."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "canary").write_text("still here")
    name = "a b; rm -rf canary; touch pwned"
    transport.run(["touch", str(work / name)])
    assert sorted(p.name for p in work.iterdir()) == sorted(["canary", name])
    assert (work / "canary").read_text() == "still here"
    transport.run(["rm", "--", str(work / name)])
    assert sorted(p.name for p in work.iterdir()) == ["canary"]


def test_stdin_bytes_and_binary_output(transport: CommandTransport) -> None:
    data = bytes(range(256)) * 1000
    result = transport.run(["cat"], input=data)
    assert result.stdout == data
    assert result.returncode == 0 and result.ok


def test_empty_stdin_without_input(transport: CommandTransport) -> None:
    assert transport.run(["cat"], timeout=10).stdout == b""


def test_exit_status_and_stderr(transport: CommandTransport) -> None:
    argv = ["sh", "-c", "echo out; echo 'VBoxManage: error: nope' >&2; exit 3"]
    result = transport.run(argv, check=False)
    assert (result.returncode, result.out, result.err) == (3, "out\n", "VBoxManage: error: nope\n")
    with pytest.raises(CommandFailedError) as info:
        transport.run(argv)
    assert info.value.result.returncode == 3
    assert "exit status 3" in str(info.value) and "VBoxManage: error: nope" in str(info.value)
    assert isinstance(info.value, OperationFailedError)


def test_remote_exit_255_is_the_commands_own(transport: CommandTransport) -> None:
    result = transport.run(["sh", "-c", "exit 255"], check=False)
    assert result.returncode == 255


def test_timeout_raises(transport: CommandTransport) -> None:
    with pytest.raises(OperationTimeoutError, match="did not finish within 0.5 s"):
        transport.run(["sleep", "3"], timeout=0.5)


def test_timeout_kills_the_whole_local_process_group(tmp_path: Path) -> None:
    t = CommandTransport(parse_uri("vbox:///session"))
    pidfile = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(OperationTimeoutError):
        t.run(["sh", "-c", script], timeout=1.0)
    child = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # a zombie not yet reaped by init counts as gone
        return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"

    wait_for(gone, what=f"background child {child} to be killed")


def test_default_timeout_applies(transport: CommandTransport) -> None:
    transport.default_timeout = 0.5
    with pytest.raises(OperationTimeoutError):
        transport.run(["sleep", "3"])


def test_bad_argv_refused() -> None:
    t = CommandTransport(parse_uri("vbox:///session"))
    for bad in ("ls -l", [], ["ls", 3], ["a\0b"]):
        with pytest.raises(InvalidArgumentError):
            t.run(bad)  # type: ignore[arg-type]


def test_local_missing_program_is_a_connect_error() -> None:
    t = CommandTransport(parse_uri("vbox:///session"))
    with pytest.raises(ConnectError, match="'no-such-tool-xyz' not found"):
        t.run(["no-such-tool-xyz", "list", "vms"])


def test_remote_missing_program_is_exit_127(ssh_transport: CommandTransport) -> None:
    result = ssh_transport.run(["no-such-tool-xyz", "list"], check=False)
    assert result.returncode == 127
    assert "no-such-tool-xyz" in result.err


def test_local_env(tmp_path: Path) -> None:
    t = CommandTransport(parse_uri("vbox:///session"))
    assert t.run(["sh", "-c", 'printf %s "$VT_X"'], env={"VT_X": "a b"}).out == "a b"


# --- write_file -----------------------------------------------------------------------------------


def test_write_file_atomic(transport: CommandTransport, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "dom a'b.cfg"
    transport.write_file(str(path), b"name = 'x'\n", mode=0o600)
    assert path.read_bytes() == b"name = 'x'\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    transport.write_file(str(path), b"second\x00\xff")
    assert path.read_bytes() == b"second\x00\xff"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_write_file_keeps_old_content_on_failure(transport: CommandTransport, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OperationFailedError, match="cannot write"):
        transport.write_file(str(blocker / "sub" / "f"), b"data")
    with pytest.raises(OperationFailedError, match="cannot write"):
        transport.write_file(str(tmp_path / "missing" / "f"), b"data", make_parents=False)
    assert blocker.read_text() == "x"
    with pytest.raises(InvalidArgumentError):
        transport.write_file("relative/path", b"")


def test_write_file_concurrent_readers_never_see_a_mix(transport: CommandTransport, tmp_path: Path) -> None:
    path = tmp_path / "cfg"
    a, b = b"A" * 300_000, b"B" * 300_000
    transport.write_file(str(path), a)
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            content = path.read_bytes()
            seen.add(content[:1] + content[-1:])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for data in (b, a, b, a):
            transport.write_file(str(path), data)
    finally:
        stop.set()
        thread.join()
    assert seen <= {b"AA", b"BB"}
    assert path.read_bytes() == a


# --- URIs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["xen+tls://h/", "vbox+libssh2://h/session", "xen+ssh:///", "vbox://host/session"])
def test_unsupported_uris(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        CommandTransport(parse_uri(text))


def test_describes_where_without_secrets() -> None:
    t = CommandTransport(parse_uri("xen+ssh://root@h.example:2222/?keyfile=/k&known_hosts=/kh"))
    assert t.is_remote and t.where == "root@h.example:2222"
    assert repr(t) == "<CommandTransport ssh root@h.example:2222>"
    assert t.host_key_checking == "yes"
    local = CommandTransport(URI(driver="vbox", path="/session"))
    assert not local.is_remote and local.where == "this host"
    assert local.command_line(["VBoxManage", "list", "vms"]) == ["VBoxManage", "list", "vms"]


def test_ssh_command_line_options() -> None:
    t = CommandTransport(parse_uri("vbox+ssh://u@h:2200/session?keyfile=/k&known_hosts=/kh"))
    t._dir = "/tmp/virtabs-ssh-x"  # command_line needs the private directory's name only
    argv = t.command_line(["VBoxManage", "showvminfo", "a b; rm -rf /"])
    assert argv[-1] == "VBoxManage showvminfo 'a b; rm -rf /'"
    assert argv[-3:-1] == ["--", "h"]  # "--": a host named like an option stays the host
    joined = " ".join(argv)
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/kh",
        "ControlPath=/tmp/virtabs-ssh-x/cm",
        "ControlMaster=no",
        "-i /k",
        "-p 2200",
        "-l u",
    ):
        assert option in joined
    assert "StrictHostKeyChecking=no" not in joined
    nv = CommandTransport(parse_uri("vbox+ssh://h/session?no_verify=1"))
    assert nv.host_key_checking == "accept-new"


# --- ssh specifics --------------------------------------------------------------------------------


def test_one_connection_for_many_calls(ssh_transport: CommandTransport, sshd: Any) -> None:
    before = sshd.logins()
    ssh_transport.connect()
    for i in range(10):
        assert ssh_transport.run(["echo", str(i)]).out == f"{i}\n"
    wait_for(lambda: sshd.logins() >= before + 1, what="the master's login in sshd's log")
    assert sshd.logins() == before + 1
    control_dir = Path(ssh_transport._dir or "")
    assert stat.S_IMODE(control_dir.stat().st_mode) == 0o700
    assert stat.S_ISSOCK((control_dir / "cm").stat().st_mode)


def test_concurrent_calls_share_the_master(ssh_transport: CommandTransport, sshd: Any) -> None:
    ssh_transport.connect()
    before = sshd.logins()
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = ssh_transport.run(["sh", "-c", f"sleep 0.2; echo {i}"]).out

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: f"{i}\n" for i in range(8)}
    assert sshd.logins() == before


def test_close_stops_the_master(sshd: Any) -> None:
    t = CommandTransport(parse_uri(sshd.uri("xen")))
    t.run(["true"])
    control_dir = Path(t._dir or "")
    socket_path = str(control_dir / "cm")
    check = ["ssh", "-o", f"ControlPath={socket_path}", "-O", "check", "127.0.0.1"]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0
    t.close()
    assert not control_dir.exists()
    assert subprocess.run(check, capture_output=True, check=False).returncode != 0
    with pytest.raises(ConnectError, match="closed"):
        t.run(["true"])
    t.close()  # idempotent


def test_master_killed_is_restarted(ssh_transport: CommandTransport, sshd: Any) -> None:
    ssh_transport.run(["true"])
    before = sshd.logins()
    socket_path = str(Path(ssh_transport._dir or "") / "cm")
    subprocess.run(
        ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "127.0.0.1"], capture_output=True, check=True
    )
    wait_for(lambda: not os.path.exists(socket_path), what="the master to exit")
    assert ssh_transport.run(["echo", "again"]).out == "again\n"
    assert sshd.logins() == before + 1


def test_unknown_host_key_refused(sshd: Any, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = CommandTransport(parse_uri(sshd.uri("xen", known_hosts=str(empty))))
    with pytest.raises(ConnectError, match="Host key verification failed") as info:
        t.connect()
    assert not isinstance(info.value, AuthError)
    assert "127.0.0.1" in str(info.value)
    t.close()


def test_no_verify_accepts_a_new_key_but_not_a_changed_one(sshd: Any, tmp_path: Path) -> None:
    learnt = tmp_path / "learnt"
    learnt.write_text("")
    t = CommandTransport(parse_uri(sshd.uri("xen", known_hosts=str(learnt), no_verify="1")))
    assert t.run(["echo", "ok"]).out == "ok\n"
    t.close()
    assert sshd.host_pub.split()[1] in learnt.read_text()  # accept-new recorded it
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    changed = tmp_path / "changed"
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    changed.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    t2 = CommandTransport(parse_uri(sshd.uri("xen", known_hosts=str(changed), no_verify="1")))
    with pytest.raises(ConnectError, match="HOST IDENTIFICATION HAS CHANGED|Host key verification failed"):
        t2.run(["true"])
    t2.close()


def test_wrong_key_is_an_auth_error(sshd: Any, tmp_path: Path) -> None:
    other = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    t = CommandTransport(
        parse_uri(sshd.uri("xen", keyfile=str(other))),
        ssh_options=["IdentitiesOnly=yes", "IdentityAgent=none"],
    )
    with pytest.raises(AuthError, match="Permission denied"):
        t.connect()
    t.close()


def test_nothing_listening_is_a_connect_error(sshd: Any, tmp_path: Path) -> None:
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    t = CommandTransport(parse_uri(f"xen+ssh://root@127.0.0.1:{port}/?known_hosts={sshd.known_hosts}"))
    with pytest.raises(ConnectError, match="Connection refused"):
        t.run(["true"])
    t.close()


def test_the_uris_user_wins_over_the_credentials_user(sshd: Any) -> None:
    # libvirt's precedence: the URI's user, else the credentials' (VIRTABS_USERNAME), else ssh's own default.
    t = CommandTransport(parse_uri(sshd.uri("xen")), user="virtabs-nobody")
    try:
        assert t.run(["id", "-un"]).out.strip() == sshd.user  # logged in as the URI's user
        argv = t.command_line(["true"])
        assert t.user == sshd.user and argv[argv.index("-l") + 1] == sshd.user
    finally:
        t.close()


def test_the_credentials_user_is_used_when_the_uri_names_none(sshd: Any) -> None:
    uri = sshd.uri("xen").replace(f"//{sshd.user}@", "//")
    t = CommandTransport(parse_uri(uri), user="virtabs-nobody")
    assert t.user == "virtabs-nobody" and t.where.startswith("virtabs-nobody@127.0.0.1:")
    with pytest.raises(AuthError, match="virtabs-nobody@127.0.0.1"):
        t.connect()  # sshd has no such user: refused, which shows that user was the one sent
    t.close()
    bare = CommandTransport(parse_uri(uri))
    bare._dir = "/tmp/virtabs-ssh-x"  # command_line needs the private directory's name only
    assert bare.user is None and "-l" not in bare.command_line(["true"])  # ssh's own default user


@pytest.mark.timeout(20)  # the bound: well under the 30 s default an unbounded open would wait
def test_a_silent_host_ends_the_connect_within_its_timeout(sshd: Any) -> None:
    # The listener accepts TCP and sends nothing: ssh waits in the banner exchange until ConnectTimeout.
    with SilentListener() as silent:
        t = CommandTransport(
            parse_uri(f"xen+ssh://root@{silent.address}/?known_hosts={sshd.known_hosts}"), connect_timeout=1
        )
        with pytest.raises(ConnectError) as exc:
            t.connect()
        t.close()
        assert silent.accepted  # the TCP connection was made: the wait was in the ssh handshake
    assert f"root@{silent.address}" in str(exc.value)


def test_missing_ssh_client_is_a_connect_error(sshd: Any) -> None:
    t = CommandTransport(parse_uri(sshd.uri("xen")), ssh_command="/nonexistent/ssh")
    with pytest.raises(ConnectError, match="not installed"):
        t.connect()
    t.close()


def test_remote_timeout_kills_local_client(ssh_transport: CommandTransport) -> None:
    with pytest.raises(OperationTimeoutError):
        ssh_transport.run(["sleep", "2"], timeout=0.5)
    assert ssh_transport.run(["echo", "still usable"]).out == "still usable\n"


def test_env_refused_over_ssh(ssh_transport: CommandTransport) -> None:
    with pytest.raises(InvalidArgumentError):
        ssh_transport.run(["true"], env={"A": "b"})

"""Run a host's command-line tool, locally or over OpenSSH: the command transport of the driver toolkit.

Drivers of toolstacks that are driven through a CLI (``xl`` for Xen, ``VBoxManage`` for VirtualBox)
build one :class:`CommandTransport` per connection from the connection URI::

    xen:///                      ->  runs ``xl ...`` on this machine (argv list, no shell)
    xen+ssh://root@host:2222/    ->  runs it on ``host`` over one multiplexed OpenSSH connection
    vbox+ssh://u@h/session?keyfile=/k&known_hosts=/kh

and call :meth:`CommandTransport.run` with an argv list. The rules it keeps:

* Locally the argv list goes to :func:`subprocess.Popen` as is: no shell ever sees it.
* Over ssh the remote side always runs a shell, so every argument is quoted for it with
  :func:`shlex.quote`; a domain named ``a b; rm -rf /`` stays one argument.
* One OpenSSH master connection per transport (``ControlMaster``/``ControlPersist`` with a control socket
  in a private 0700 directory), started by :meth:`CommandTransport.connect`; each :meth:`run` opens a
  session on it: one round trip, no handshake. The user's ``~/.ssh/config``, agent and ``ProxyJump``
  keep working because the real ``ssh`` client is used.
* Host keys are checked: ``StrictHostKeyChecking=yes`` against ``known_hosts=`` (or the user's files).
  ``no_verify=1`` switches to ``accept-new`` (unknown hosts are learnt, a *changed* key still fails);
  ``StrictHostKeyChecking=no`` is never used. ``BatchMode=yes``: ssh never prompts.
* Every call has a deadline: on expiry the whole process group is killed and
  :class:`OperationTimeoutError` is raised.
* stderr is kept: :class:`CommandFailedError` (an ``OperationFailedError``) quotes it; an ssh failure
  (exit 255 with the master gone) is a :class:`ConnectError`, refused authentication an
  :class:`AuthError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType

import attrs

from .._errors import (
    AuthError,
    ConnectError,
    InvalidArgumentError,
    OperationFailedError,
    OperationTimeoutError,
    quote,
)
from .._uri import URI

__all__ = ["CommandFailedError", "CommandResult", "CommandTransport", "run_in_process_group"]

_SSH_FAILED = 255
CONNECT_GRACE = 3.0
"""Seconds past ``connect_timeout`` after which a master connection still being set up is killed."""
_STDERR_TAIL = 2000
_WRITE_SCRIPT = (
    'umask 077; d=$(dirname -- "$1") || exit 1; '
    '[ "$3" = 1 ] && { mkdir -p -- "$d" || exit 1; }; '
    't=$(mktemp "$d/.virtabs-tmp.XXXXXXXX") || exit 1; '
    'if cat > "$t" && chmod "$2" "$t" && mv -f -- "$t" "$1"; then exit 0; fi; '
    'rm -f -- "$t"; exit 1'
)


@attrs.frozen
class CommandResult:
    """What one command printed and returned. ``stdout``/``stderr`` are raw bytes."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.returncode == 0

    @property
    def out(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        """stderr decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stderr.decode("utf-8", "replace")


class CommandFailedError(OperationFailedError):
    """A command exited non-zero and the caller asked for ``check=True``. ``result`` has everything it printed."""

    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


def _short_argv(argv: Sequence[str]) -> str:
    text = shlex.join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def run_in_process_group(
    argv: Sequence[str],
    timeout: float | None,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    pass_fds: Sequence[int] = (),
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (no shell) in a process group of its own; its exit status, stdout and stderr.

    Past ``timeout`` seconds (None: no limit), or when the wait is interrupted (Ctrl-C's
    KeyboardInterrupt), the whole group is killed, so a helper the command forked dies with it, and
    reaped; then :class:`subprocess.TimeoutExpired` (or the interruption) propagates. A process that
    left the group (a daemon's ``setsid``) is the caller's to find. ``pass_fds`` are descriptors the
    command may open as ``/dev/fd/N``. This is how :class:`CommandTransport` runs every command.
    """
    with subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
        start_new_session=True,  # its own process group: a deadline kills all of it
    ) as proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()  # not communicate(): a daemon that left the group may hold the pipes open
            raise
    return proc.returncode, stdout, stderr


def _stop_master(ssh_base: list[str], host: str, directory: str) -> None:
    """Ask the ssh master on the control socket in ``directory`` to exit, then remove the directory."""
    if os.path.exists(os.path.join(directory, "cm")):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            run_in_process_group([*ssh_base, "-O", "exit", "--", host], 10)
    shutil.rmtree(directory, ignore_errors=True)


class CommandTransport:
    """Runs commands on the host a connection URI names: locally, or over one multiplexed ssh connection.

    ``uri`` is the connection URI (``driver:///...`` for local, ``driver+ssh://[user@]host[:port]/...``
    for ssh, with libvirt's parameters ``keyfile=``, ``known_hosts=`` and ``no_verify=1``). The ssh user
    is the URI's user when it names one, else ``user`` (a username given as a credential or by
    ``VIRTABS_USERNAME``), else whatever ``~/.ssh/config`` or the local login name gives ssh: libvirt's
    precedence, the same for every backend that uses this transport. ``default_timeout`` is the deadline
    of a :meth:`run` called with ``timeout=None`` (``None``: no deadline); ``connect_timeout`` bounds
    opening the connection (TCP, ssh banner, key exchange, authentication): ssh's ``ConnectTimeout``,
    and the whole master start is killed :data:`CONNECT_GRACE` seconds after it. ``ssh_options`` are extra ``-o`` options (``"Key=value"``), e.g. for tests. The master connection
    ends by itself after ``control_persist`` idle seconds (and is started again by the next call), so
    a process that dies without :meth:`close` leaves no ssh process behind for long.

    Thread-safe: calls from several threads run concurrently over the same master connection.
    """

    def __init__(
        self,
        uri: URI,
        *,
        user: str | None = None,
        default_timeout: float | None = 60.0,
        connect_timeout: float = 30.0,
        ssh_options: Sequence[str] = (),
        ssh_command: str = "ssh",
        control_persist: int = 600,
    ) -> None:
        if uri.transport not in (None, "ssh"):
            raise InvalidArgumentError(
                f"transport {quote(uri.transport)} in {uri.scheme}:// is not supported: "
                f"use {uri.driver}:/// (this host) or {uri.driver}+ssh://[user@]host[:port]/"
            )
        if uri.transport == "ssh" and not uri.host:
            raise InvalidArgumentError(f"{uri.scheme}:// needs a host: {uri.scheme}://[user@]host[:port]/")
        if uri.transport is None and uri.host:
            raise InvalidArgumentError(
                f"{uri.driver}://{uri.host}/ names a remote host without a transport: "
                f"use {uri.driver}+ssh://{uri.host}/ (or {uri.driver}:/// for this host)"
            )
        self._remote = uri.transport == "ssh"
        self._host = uri.host or ""
        self._port = uri.port
        self._user = uri.user or user or None
        self._keyfile = uri.param("keyfile")
        self._known_hosts = uri.param("known_hosts")
        self._no_verify = uri.flag("no_verify")
        self.default_timeout = default_timeout
        self.connect_timeout = connect_timeout
        self._extra = tuple(ssh_options)
        self._ssh = ssh_command
        self._lock = threading.Lock()
        self.control_persist = control_persist
        self._dir: str | None = None
        self._finalizer: weakref.finalize[..., CommandTransport] | None = None
        self._closed = False

    # --- description -------------------------------------------------------------------------------

    @property
    def is_remote(self) -> bool:
        """True when commands run over ssh."""
        return self._remote

    @property
    def where(self) -> str:
        """Where commands run, for messages: ``this host`` or ``[user@]host[:port]`` (never a secret)."""
        if not self._remote:
            return "this host"
        text = f"{self._user}@{self._host}" if self._user else self._host
        return f"{text}:{self._port}" if self._port is not None else text

    def __repr__(self) -> str:
        return f"<CommandTransport {'ssh ' if self._remote else ''}{self.where}>"

    @property
    def user(self) -> str | None:
        """The ssh login name given to ``ssh -l`` (the URI's, else ``user=``); None: ssh's own default."""
        return self._user if self._remote else None

    @property
    def host_key_checking(self) -> str:
        """The ``StrictHostKeyChecking`` value used: ``yes``, or ``accept-new`` with ``no_verify=1``."""
        return "accept-new" if self._no_verify else "yes"

    # --- ssh plumbing ------------------------------------------------------------------------------

    def _control_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "cm")

    def _ssh_base(self, *, multiplexed: bool = True) -> list[str]:
        argv = [self._ssh, "-T", "-x", "-a"]
        options = [
            "BatchMode=yes",
            f"StrictHostKeyChecking={self.host_key_checking}",
            f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=3",
            f"ControlPath={self._control_path()}" if multiplexed else "ControlPath=none",
        ]
        if self._known_hosts:
            options += [f"UserKnownHostsFile={self._known_hosts}", "GlobalKnownHostsFile=/dev/null"]
        for option in [*options, *self._extra]:
            argv += ["-o", option]
        if self._keyfile:
            argv += ["-i", self._keyfile]
        if self._port is not None:
            argv += ["-p", str(self._port)]
        if self._user:
            argv += ["-l", self._user]
        return argv

    def _ssh_error(self, stderr: str, action: str) -> ConnectError | AuthError:
        detail = _tail(stderr) or "ssh exited with status 255 and no message"
        if "Permission denied" in stderr or "Too many authentication failures" in stderr:
            return AuthError(f"ssh authentication to {self.where} failed while {action}: {detail}")
        return ConnectError(f"ssh connection to {self.where} failed while {action}: {detail}")

    def _master_alive(self) -> bool:
        if self._dir is None or not os.path.exists(self._control_path()):
            return False
        try:
            rc, _out, _err = run_in_process_group([*self._ssh_base(), "-O", "check", "--", self._host], 10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return rc == 0

    def connect(self) -> None:
        """Open the connection: start the ssh master unless it runs (a no-op locally).

        Raises :class:`ConnectError` (host unreachable, host key unknown or changed, no ssh
        client) or :class:`AuthError` (authentication refused), with ssh's own message. Cheap
        when the master runs (one ``stat`` of its socket), so :meth:`run` calls it every time: a master
        that ended (idle longer than ``control_persist``, or killed) is started again.
        """
        if not self._remote:
            return
        with self._lock:
            if self._closed:
                raise ConnectError(f"the command transport to {self.where} is closed")
            if self._dir is not None and os.path.exists(self._control_path()):
                return
            self._start_master()

    def _start_master(self) -> None:
        if self._dir is None:
            base = tempfile.gettempdir()
            if len(base) > 40:  # a unix socket path has ~100 characters at most
                base = "/tmp"
            self._dir = tempfile.mkdtemp(prefix="virtabs-ssh-", dir=base)  # mode 0700
            self._finalizer = weakref.finalize(self, _stop_master, self._ssh_base(), self._host, self._dir)
        log = os.path.join(self._dir, "master.log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)
        argv = [
            *self._ssh_base(),
            "-o",
            "ControlMaster=yes",
            "-o",
            f"ControlPersist={self.control_persist}",
            "-N",
            "-f",
            "-E",
            log,
            "--",  # the host is a value even when it starts with "-"
            self._host,
        ]
        # -f: ssh forks into the background once authenticated and the parent exits; its messages go to
        # the log file (a pipe would be held open by the background master for its whole life).
        limit = self.connect_timeout + CONNECT_GRACE
        try:
            rc, _out, err = run_in_process_group(argv, limit)
        except FileNotFoundError:
            raise ConnectError(
                f"cannot connect to {self.where}: the ssh client {quote(self._ssh)} is not installed"
            ) from None
        except subprocess.TimeoutExpired:
            raise ConnectError(
                f"ssh connection to {self.where} not established within {self.connect_timeout:g} s "
                "(the host accepted no ssh session in time: silent, overloaded or not an ssh server)"
            ) from None
        if rc != 0:
            stderr = err.decode("utf-8", "replace")
            with contextlib.suppress(OSError), open(log, encoding="utf-8", errors="replace") as fh:
                stderr = fh.read() + stderr
            raise self._ssh_error(stderr, "connecting")

    def close(self) -> None:
        """Stop the ssh master and remove its private directory (idempotent; a no-op locally)."""
        with self._lock:
            self._closed = True
            if self._finalizer is not None:
                self._finalizer()  # runs _stop_master once
                self._finalizer = None
            self._dir = None

    def __enter__(self) -> CommandTransport:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- running -----------------------------------------------------------------------------------

    def command_line(self, argv: Sequence[str]) -> list[str]:
        """The argv that :meth:`run` executes locally for ``argv`` (the ssh command line when remote)."""
        if not self._remote:
            return list(argv)
        return [*self._ssh_base(), "-o", "ControlMaster=no", "--", self._host, shlex.join(argv)]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the host and return its exit status and output.

        ``input`` is fed to its stdin (otherwise stdin is empty). ``timeout`` (seconds, default
        :attr:`default_timeout`) is a deadline for the whole call: when it passes, the process group is
        killed and :class:`OperationTimeoutError` raised (over ssh the local client is killed;
        the remote command gets no signal and may finish on its own). ``check=True`` turns a non-zero
        exit into :class:`CommandFailedError` quoting stderr. ``env`` adds environment variables for a
        local command (refused over ssh, where sshd decides the environment).
        """
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidArgumentError(f"a command is a non-empty list of strings, not {quote(argv)}")
        if any("\0" in a for a in argv):
            raise InvalidArgumentError(f"a command argument contains a NUL byte: {_short_argv(argv)}")
        if env is not None and self._remote:
            raise InvalidArgumentError("env= is not supported over ssh")
        if self._remote:
            self.connect()
        deadline = self.default_timeout if timeout is None else timeout
        full = self.command_line(argv)
        popen_env = None if env is None else {**os.environ, **env}
        try:
            rc, stdout, stderr = run_in_process_group(full, deadline, input=input, env=popen_env)
        except FileNotFoundError:
            what = self._ssh if self._remote else argv[0]
            raise ConnectError(f"cannot run {_short_argv(argv)} on {self.where}: {quote(what)} not found") from None
        except PermissionError:
            what = self._ssh if self._remote else argv[0]
            raise ConnectError(
                f"cannot run {_short_argv(argv)} on {self.where}: {quote(what)} is not executable"
            ) from None
        except subprocess.TimeoutExpired:
            raise OperationTimeoutError(
                f"{_short_argv(argv)} on {self.where} did not finish within {deadline:g} s (killed)"
            ) from None
        result = CommandResult(tuple(argv), rc, stdout, stderr)
        if self._remote and rc == _SSH_FAILED and not self._master_alive():
            # 255 is ssh's own failure status; with the master alive the remote command itself returned it.
            raise self._ssh_error(result.err, f"running {_short_argv(argv)}")
        if check and rc != 0:
            raise CommandFailedError(
                f"{_short_argv(argv)} on {self.where} failed with exit status {rc}: "
                f"{_tail(result.err) or '(no message on stderr)'}",
                result,
            )
        return result

    def open_channel(self, argv: Sequence[str], *, multiplexed: bool = True) -> subprocess.Popen[bytes]:
        """Start ``argv`` on the host and return the running process, its stdin, stdout and stderr piped.

        For a long-lived conversation with a program on the host (the virtabs remote helper): over ssh it
        is a session on the master connection (:meth:`connect` first, so host keys and authentication
        fail here as :class:`ConnectError` / :class:`AuthError`), quoted like :meth:`run`. The process
        runs in a process group of its own; the caller ends it (closing its stdin, then
        :func:`os.killpg` if it lingers) and owns the pipes. ``multiplexed=False`` gives the conversation
        an ssh connection of its own instead of a session on the master (one process and one round trip
        fewer to set up, and nothing to stop afterwards, for a channel that lives as long as its process);
        ssh's failures then show in the process's exit status 255 and stderr (:meth:`ssh_failure`).
        """
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise InvalidArgumentError(f"a command is a non-empty list of strings, not {argv!r}")
        if self._remote and multiplexed:
            self.connect()
        if self._remote and not multiplexed:
            with self._lock:
                if self._closed:
                    raise ConnectError(f"the command transport to {self.where} is closed")
            full = [*self._ssh_base(multiplexed=False), self._host, "--", shlex.join(argv)]
        else:
            full = self.command_line(argv)
        try:
            return subprocess.Popen(
                full,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            what = self._ssh if self._remote else argv[0]
            raise ConnectError(f"cannot run {_short_argv(argv)} on {self.where}: {what!r} not found") from None

    def ssh_failure(self, stderr: str, action: str) -> ConnectError | AuthError:
        """The error for ssh's own failure (exit status 255) with ``stderr``: AuthError or ConnectError."""
        return self._ssh_error(stderr, action)

    def write_file(
        self, path: str, data: bytes, *, mode: int = 0o644, make_parents: bool = True, timeout: float | None = None
    ) -> None:
        """Replace the file ``path`` on the host with ``data`` atomically (temporary file, then rename).

        Readers see the old content or the new one, never a mix. ``path`` must be absolute. With
        ``make_parents`` missing directories are created. Locally this is done in Python; over ssh by
        ``sh -c`` with ``mktemp``/``cat``/``mv`` on the host, ``data`` travelling on stdin.
        """
        if not path.startswith("/"):
            raise InvalidArgumentError(f"write_file needs an absolute path, not {quote(path)}")
        if not self._remote:
            self._write_local(path, data, mode, make_parents)
            return
        argv = ["sh", "-c", _WRITE_SCRIPT, "sh", path, format(mode, "o"), "1" if make_parents else "0"]
        result = self.run(argv, input=data, timeout=timeout, check=False)
        if not result.ok:
            raise OperationFailedError(f"cannot write {quote(path)} on {self.where}: {_tail(result.err) or 'failed'}")

    @staticmethod
    def _write_local(path: str, data: bytes, mode: int, make_parents: bool) -> None:
        directory = os.path.dirname(path)
        try:
            if make_parents:
                os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".virtabs-tmp.", dir=directory)
        except OSError as exc:
            raise OperationFailedError(f"cannot write {quote(path)} on this host: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise OperationFailedError(f"cannot write {quote(path)} on this host: {exc.strerror}") from None

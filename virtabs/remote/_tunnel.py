"""The streams of a migration between hosts: ssh forwards of the destination's unix sockets (issue 23).

A destination reached over ``DRIVER+ssh://`` hands back a ticket whose channels are unix sockets on
*its* host (``unix:PATH`` for the memory, ``nbd+unix:///vda?socket=PATH`` per disk); the source QEMU
on this host cannot reach them. :func:`route_ticket` opens one ``ssh -N``-like forward to that host
(OpenSSH's ``LocalForward LOCAL_PATH REMOTE_PATH``: streamlocal forwarding, ssh 6.7 and later) with
the same ssh options as the connection's channel, and gives the source a ticket naming the local
ends. Why ssh's own forwarding rather than frames on the helper's channel: OpenSSH relays the bytes
in C with its own flow control (a 256 MiB memory stream as JSON frames would cost base64 and a
Python copy on both sides, and would hold up every other call of the channel); the forward is a
connection of its own, so the control calls (finish, abort) still get through when the streams are
busy, and when the forward dies the source QEMU sees its sockets close: the mirror or the migration
fails and the core's rollback runs (the helper's channel is still there to discard the destination).

A source reached over ``DRIVER+ssh://`` gets the channels it must write into brought to its host the
other way (``RemoteForward REMOTE_PATH LOCAL_PATH``); between two remote hosts both are made and the
streams pass through this machine (the two hosts need no ssh access to each other, as with libvirt's
tunnelled migration through a client).

A destination URI that names a direct address (``?migrate_address=HOST``) hands back TCP channels:
they are used as they are, unless TUNNELLED asks for the forward (``LocalForward PATH HOST:PORT``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from urllib.parse import parse_qs, urlsplit

import attrs

from .._errors import ConnectError
from .._flags import MigrateFlags
from .._models import MigrationRequest, MigrationTicket
from ..spi import CommandTransport, Driver

__all__ = ["StreamForward", "route_ticket"]

CLOSE_GRACE = 2.0
"""Seconds ssh gets to end by itself once its stdin is closed."""

READY = "virtabs-forward-ready"
"""What the forward's remote command prints once ssh has bound every local end."""


def _remote_driver(driver: Driver) -> object | None:
    from ._client import RemoteDriver

    return driver if isinstance(driver, RemoteDriver) else None


def _same_host(src: Driver, dest: Driver) -> bool:
    """Whether both are remote connections over one channel (the same ssh endpoint)."""
    from ._client import RemoteDriver

    return isinstance(src, RemoteDriver) and isinstance(dest, RemoteDriver) and src.channel is dest.channel


class StreamForward:
    """One ssh process forwarding unix sockets between this host and a remote one.

    ``local`` maps each target on the remote host (a socket path or ``HOST:PORT``) to a local socket
    (``LocalForward``: the source here, the destination there); ``remote`` maps each target here to a
    socket path on the remote host (``RemoteForward``: the source there, the destination here).
    """

    def __init__(self, transport_uri: object, connect_timeout: float, local: list[str], remote: list[str]) -> None:
        self.directory = tempfile.mkdtemp(prefix="vtt-", dir="/tmp")  # short: sun_path is 108 bytes
        token = os.path.basename(self.directory)
        self.local = {target: os.path.join(self.directory, f"s{i}.sock") for i, target in enumerate(local)}
        self.remote = {target: f"/tmp/{token}-r{i}.sock" for i, target in enumerate(remote)}
        options = ["ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes", "StreamLocalBindMask=0177"]
        options += [f"LocalForward={path} {target}" for target, path in self.local.items()]
        options += [f"RemoteForward={path} {target}" for target, path in self.remote.items()]
        self.transport = CommandTransport(
            transport_uri,  # type: ignore[arg-type]
            connect_timeout=connect_timeout,
            ssh_options=options,
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self.where = self.transport.where

    @property
    def pid(self) -> int | None:
        """The ssh process's id (None before :meth:`start` and after :meth:`close`)."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start ssh; return once it bound every end (its remote command printed :data:`READY`).

        sshd serves a connection's messages in order: the ``RemoteForward`` requests (which ssh sends
        first) are bound before the session's command runs; ssh binds the local ends before it opens
        the session. The command holds the connection until its stdin closes (our :meth:`close`), then
        removes the remote ends (sshd leaves streamlocal sockets behind).
        """
        cleanup = " ".join(shlex.quote(path) for path in self.remote.values())
        script = f"echo {READY}; cat >/dev/null" + (f"; rm -f {cleanup}" if cleanup else "")
        self._proc = self.transport.open_channel(["sh", "-c", script], multiplexed=False)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        line = self._proc.stdout.readline().decode("utf-8", "replace").strip()
        if line != READY:
            self._proc.wait()
            stderr = self._proc.stderr.read().decode("utf-8", "replace").strip()
            status = self._proc.returncode
            self.close()
            raise ConnectError(
                f"the ssh forward of the migration streams to {self.where} did not start: "
                + (stderr[-500:] or f"exit status {status}")
            )
        # Drain stderr so a chatty ssh never blocks on a full pipe.
        stream = self._proc.stderr
        threading.Thread(target=lambda: stream.read(), name="virtabs-forward-stderr", daemon=True).start()

    def close(self) -> None:
        """End ssh (its stdin closed: the remote command cleans up and exits; killed if it lingers, e.g.
        while a forwarded connection stays open) and remove the local ends."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(CLOSE_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.transport.close()


def _endpoint(uri: str) -> tuple[str, str] | None:
    """The remote end of a channel URI as ssh's forward names it, and its kind; None: nothing to forward."""
    if uri.startswith("unix:"):
        return uri[len("unix:") :], "unix"
    if uri.startswith("tcp:"):
        return uri[len("tcp:") :], "tcp"
    parts = urlsplit(uri)
    if parts.scheme == "nbd+unix":
        sockets = parse_qs(parts.query).get("socket")
        return (sockets[0], "nbd+unix") if sockets else None
    if parts.scheme == "nbd" and parts.hostname:
        return f"{parts.hostname}:{parts.port or 10809}", "nbd"
    return None


def _local_uri(uri: str, kind: str, path: str) -> str:
    """``uri`` with its remote end replaced by the local socket ``path``."""
    if kind in ("unix", "tcp"):
        return f"unix:{path}"
    export = urlsplit(uri).path.lstrip("/")
    return f"nbd+unix:///{export}?socket={path}"


def _uris(ticket: MigrationTicket) -> list[str]:
    return ([ticket.memory_uri] if ticket.memory_uri else []) + [d.uri for d in ticket.disks]


def _rewrite(ticket: MigrationTicket, new: dict[str, str]) -> MigrationTicket:
    """``ticket`` with each channel URI replaced by ``new``'s (those it names)."""
    return attrs.evolve(
        ticket,
        memory_uri=new.get(ticket.memory_uri, ticket.memory_uri) if ticket.memory_uri else ticket.memory_uri,
        disks=tuple(attrs.evolve(d, uri=new.get(d.uri, d.uri)) for d in ticket.disks),
    )


def _ends(ticket: MigrationTicket, request: MigrationRequest) -> dict[str, tuple[str, str]]:
    """The channels to forward, by URI: unix sockets always, TCP addresses with TUNNELLED only."""
    ends: dict[str, tuple[str, str]] = {}
    for uri in _uris(ticket):
        end = _endpoint(uri)
        if end is None:
            continue
        if end[1] in ("tcp", "nbd") and not request.flags & MigrateFlags.TUNNELLED:
            continue
        ends[uri] = end
    return ends


def route_ticket(
    src: Driver, dest: Driver, ticket: MigrationTicket, request: MigrationRequest, connect_timeout: float
) -> tuple[MigrationTicket, list[StreamForward]]:
    """The ticket the source uses, and the forwards that carry it (none: the source reaches it directly).

    A remote destination's channels are brought here (``LocalForward``); then, for a remote source,
    the channels here are brought to its host (``RemoteForward``): between two remote hosts the
    streams pass through this machine. Unix sockets are always forwarded (nothing else reaches them),
    TCP addresses only with TUNNELLED.
    """
    if _same_host(src, dest):
        return ticket, []
    forwards: list[StreamForward] = []
    try:
        for driver, direction in ((dest, "local"), (src, "remote")):
            if _remote_driver(driver) is None:
                continue
            ends = _ends(ticket, request)
            if not ends:
                continue
            targets = sorted({target for target, _kind in ends.values()})
            local, remote = (targets, []) if direction == "local" else ([], targets)
            forward = StreamForward(driver.channel.ssh_uri, connect_timeout, local, remote)  # type: ignore[attr-defined]
            forwards.append(forward)
            forward.start()
            where = forward.local if direction == "local" else forward.remote
            ticket = _rewrite(
                ticket, {uri: _local_uri(uri, kind, where[target]) for uri, (target, kind) in ends.items()}
            )
    except BaseException:
        for forward in forwards:
            forward.close()
        raise
    return ticket, forwards

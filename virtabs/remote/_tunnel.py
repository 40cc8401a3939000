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

A destination URI that names a direct address (``?migrate_address=HOST``) hands back TCP channels:
they are used as they are, unless TUNNELLED asks for the forward (``LocalForward PATH HOST:PORT``).
A source on another host (a ``DRIVER+ssh://`` source with a destination elsewhere) would need the
reverse forward on that host; it is refused before either host is touched (see
:func:`check_route`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from urllib.parse import parse_qs, urlsplit

import attrs

from .._errors import ConnectError, NotSupportedError
from .._flags import MigrateFlags
from .._models import MigrationRequest, MigrationTicket
from ..spi import CommandTransport, Driver

__all__ = ["StreamForward", "check_route", "route_ticket"]

READY = "virtabs-forward-ready"
"""What the forward's remote command prints once ssh has bound every local end."""


def _remote_driver(driver: Driver) -> object | None:
    from ._client import RemoteDriver

    return driver if isinstance(driver, RemoteDriver) else None


def _same_host(src: Driver, dest: Driver) -> bool:
    """Whether both are remote connections over one channel (the same ssh endpoint)."""
    from ._client import RemoteDriver

    return isinstance(src, RemoteDriver) and isinstance(dest, RemoteDriver) and src.channel is dest.channel


def check_route(src: Driver, dest: Driver, what: str) -> None:
    """Refuse, before either host is touched, the pairs whose streams this release cannot carry."""
    if _remote_driver(src) is not None and not _same_host(src, dest):
        raise NotSupportedError(
            f"{what}: the source is on another host ({src.uri}) and the destination is not on that host: "
            "the streams would need a reverse ssh forward on the source host, which is not implemented; "
            "migrate from a connection local to the source host"
        )


class StreamForward:
    """One ssh process forwarding local unix sockets to sockets (or TCP addresses) on a remote host."""

    def __init__(self, transport_uri: object, connect_timeout: float, targets: list[str]) -> None:
        self.directory = tempfile.mkdtemp(prefix="vtt-", dir="/tmp")  # short: sun_path is 108 bytes
        self.local = {target: os.path.join(self.directory, f"s{i}.sock") for i, target in enumerate(targets)}
        options = ["ExitOnForwardFailure=yes", "StreamLocalBindUnlink=yes", "StreamLocalBindMask=0177"]
        options += [f"LocalForward={path} {target}" for target, path in self.local.items()]
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
        """Start ssh; return once it bound every local end (its remote command printed :data:`READY`)."""
        # The remote command holds the connection open until its stdin closes (our close()).
        self._proc = self.transport.open_channel(["sh", "-c", f"echo {READY}; exec cat >/dev/null"], multiplexed=False)
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
        """End ssh (its stdin closed, then its process group killed) and remove the local ends."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.close()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
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


def route_ticket(
    src: Driver, dest: Driver, ticket: MigrationTicket, request: MigrationRequest, connect_timeout: float
) -> tuple[MigrationTicket, StreamForward | None]:
    """The ticket the source uses, and the forward that carries it (None: the source reaches it directly).

    Unix sockets of a remote destination are always forwarded (nothing else reaches them); TCP
    addresses only with TUNNELLED.
    """
    remote = _remote_driver(dest)
    if remote is None or _same_host(src, dest):
        return ticket, None
    uris = ([ticket.memory_uri] if ticket.memory_uri else []) + [d.uri for d in ticket.disks]
    ends: dict[str, tuple[str, str]] = {}
    for uri in uris:
        end = _endpoint(uri)
        if end is None:
            continue
        target, kind = end
        if kind in ("tcp", "nbd") and not request.flags & MigrateFlags.TUNNELLED:
            continue
        ends[uri] = (target, kind)
    if not ends:
        return ticket, None
    targets = sorted({target for target, _kind in ends.values()})
    forward = StreamForward(dest.channel.ssh_uri, connect_timeout, targets)  # type: ignore[attr-defined]
    try:
        forward.start()
    except BaseException:
        forward.close()
        raise

    def local(uri: str) -> str:
        if uri not in ends:
            return uri
        target, kind = ends[uri]
        return _local_uri(uri, kind, forward.local[target])

    routed = attrs.evolve(
        ticket,
        memory_uri=local(ticket.memory_uri) if ticket.memory_uri else ticket.memory_uri,
        disks=tuple(attrs.evolve(d, uri=local(d.uri)) for d in ticket.disks),
    )
    return routed, forward

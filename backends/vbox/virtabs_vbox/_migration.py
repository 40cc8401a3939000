"""Teleporting for the ``vbox`` driver (issue 23): VirtualBox's live migration mapped onto the four steps.

``dest`` is a ``vbox://`` or ``vbox+ssh://`` connection to the destination host. VirtualBox teleports a
running (or paused) machine to a machine of the same configuration on another host that was started as a
teleporter target; the disks are not copied (teleporting needs shared storage: the same image paths on
both hosts), so only LIVE migration with shared storage is mapped:

1. destination ``migrate_prepare``: defines the machine from the source's spec (same UUID, same disk
   paths), ``modifyvm --teleporter on --teleporterport 0 --teleporterpasswordfile stdin`` (a random
   one-off password on standard input, never on a command line; port 0: VirtualBox picks a free port and
   writes it back to ``TeleporterPort``, ConsoleImplTeleporter.cpp ``i_teleporterTrg``), then
   ``startvm --type headless`` left running: the target waits in state ``teleportingin`` (VirtualBox gives
   up after 5 minutes) and ``startvm`` returns only once the machine has arrived. The ticket names the
   host (the URI's ``migrate_address``, else its host, else this machine's name) and the port read back;
2. source ``migrate_perform``: ``controlvm UUID teleport --host H --port P --passwordfile stdin
   [--maxdowntime MS]``, waited for;
3. destination ``migrate_finish``: the waiting ``startvm`` has returned and the machine runs (``controlvm
   pause`` for PAUSED); after a failure: ``controlvm poweroff`` of the waiting target, which is then
   undefined (its disks, the source's, are detached first, never deleted);
4. source ``migrate_confirm``: a teleported source is left in state ``teleported`` and stays registered
   (VirtualBox keeps it); UNDEFINE_SOURCE unregisters it (disks detached first, never deleted).

OFFLINE (a shut-off machine) only defines the machine on the destination from the spec (the disks are
shared) and, with UNDEFINE_SOURCE, unregisters the source. Refused with NotSupportedError before anything is
created: NON_SHARED_* (no storage copy), a ``bandwidth`` (teleport has no such knob), and a migration that
is neither LIVE nor OFFLINE. ``migrate_abort`` is
left to the base class (``domain.migrate.abort`` is not declared): VBoxManage cancels a teleport only when
its own process gets SIGINT/SIGTERM (``showProgress``), which is not mapped.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
from typing import Any

from virtabs.spi import (
    URI,
    DiskInfo,
    DomainRef,
    DomainSpec,
    InvalidArgumentError,
    MigrateFlags,
    MigrationInfo,
    MigrationRequest,
    MigrationTicket,
    NotSupportedError,
    OneCommandMigrations,
    OperationFailedError,
    VirtabsError,
    poll_until,
    quote,
)

from ._parse import MIB, VmInfo
from ._transport import CommandTransport
from ._vboxmanage import VBoxManage, has_error_line, vbox_error

__all__ = ["VboxMigration"]

ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
"""A ``migrate_address``: a host name or an IP address (``controlvm teleport --host`` takes it as is)."""
LISTEN_TIMEOUT = 60.0
"""Seconds the destination's target may take to start listening."""


class VboxMigration:
    """The migration methods of :class:`~virtabs_vbox.driver.VboxDriver`."""

    _vbm: VBoxManage
    _transport: CommandTransport
    uri: URI
    define_domain: Any
    _remove: Any

    def _migrations(self) -> OneCommandMigrations:
        """The last teleport this connection ran of each domain."""
        log: OneCommandMigrations | None = self.__dict__.get("_migration_log")
        if log is None:
            log = self.__dict__["_migration_log"] = OneCommandMigrations()
        return log

    def _waiting_targets(self) -> dict[str, subprocess.Popen[bytes]]:
        """UUID -> the ``startvm`` of a teleporter target this connection prepared and has not finished."""
        table = self.__dict__.get("_teleport_targets")
        if table is None:
            table = self.__dict__["_teleport_targets"] = {}
        return table

    def _teleport_address(self) -> str:
        """Where the source reaches this host: the URI's ``migrate_address``, else its host, else this
        machine's name."""
        explicit = self.uri.param("migrate_address")
        if explicit is not None:
            if not ADDRESS.fullmatch(explicit):
                raise InvalidArgumentError(
                    f"migrate_address must be a host name or an IP address the source can reach, got {explicit!r}"
                )
            return str(explicit)
        return str(self.uri.host) if self.uri.host else socket.gethostname()

    def _vbm_stdin(self, args: list[str], secret: str, what: str) -> None:
        """``VBoxManage args`` with ``secret`` on standard input (``--...passwordfile stdin``)."""
        result = self._vbm.raw(args, input=secret.encode())
        if result.returncode != 0 or has_error_line(result.err):
            raise vbox_error(result, what)

    # --- destination ------------------------------------------------------------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Define the machine here, make it a teleporter target and start it waiting; the ticket names
        this host and the port VirtualBox chose."""
        what = f"teleport of domain {quote(spec.name)} to {self._transport.where}"
        if spec.uuid is None:
            raise InvalidArgumentError(f"{what}: the spec carries no UUID")
        if request.copy_storage:
            raise NotSupportedError(f"{what}: teleporting copies no disk (it needs shared storage)")
        if request.offline:
            return MigrationTicket(domain=self.define_domain(spec))  # the definition only: the disks are shared
        if not request.live:
            raise NotSupportedError(f"{what}: VirtualBox teleports a running or paused machine live (pass LIVE)")
        if request.bandwidth_bytes:
            raise NotSupportedError(f"{what}: controlvm teleport has no bandwidth limit")
        address = self._teleport_address()
        ref = self.define_domain(spec)
        secret = secrets.token_urlsafe(24)
        try:
            modify = ["modifyvm", ref.uuid, "--teleporter", "on", "--teleporterport", "0"]
            if self.uri.param("migrate_address") is not None:
                modify += ["--teleporteraddress", address]
            self._vbm_stdin([*modify, "--teleporterpasswordfile", "stdin"], secret, what)
            process = self._transport.open_channel([self._vbm.program, "startvm", ref.uuid, "--type", "headless"])
            self._waiting_targets()[ref.uuid] = process
            info: VmInfo = poll_until(
                lambda: self._listening(ref, process, what),
                timeout=LISTEN_TIMEOUT,
                what=f"{what}: the target listening",
            )
        except BaseException:
            with contextlib.suppress(VirtabsError):
                self._discard(ref)
            raise
        return MigrationTicket(
            domain=ref,
            memory_uri=f"tcp:{address}:{info.teleporter_port}",
            cookie={"host": address, "port": str(info.teleporter_port), "password": secret},
        )

    def _listening(self, ref: DomainRef, process: subprocess.Popen[bytes], what: str) -> VmInfo | None:
        """The target's info once it waits for the source (``teleportingin`` with its port), None before."""
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise OperationFailedError(f"{what}: startvm of the target ended: {stderr.strip() or process.returncode}")
        info: VmInfo = self._vbm.machine(ref.uuid)
        if info.native_state == "teleportingin" and info.teleporter_port:
            return info
        return None

    def _discard(self, ref: DomainRef) -> None:
        """Power the waiting target off, let its ``startvm`` end, and undefine it (disks detached, kept)."""
        process = self._waiting_targets().pop(ref.uuid, None)
        what = f"discard of the teleport target {quote(ref.name)}"
        try:
            if self._vbm.machine(ref.uuid).state.is_active:
                self._vbm("controlvm", ref.uuid, "poweroff", what=what)
        finally:
            if process is not None:
                try:
                    process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
        poll_until(
            lambda: not self._vbm.machine(ref.uuid).state.is_active,
            timeout=LISTEN_TIMEOUT,
            what=f"{what}: powered off",
        )
        self._remove(ref)

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Success: the target's ``startvm`` has returned and the machine runs here (paused for PAUSED).
        Failure: the waiting target is powered off and undefined."""
        ref = ticket.domain
        if not success:
            self._discard(ref)
            return None
        if request.offline:
            return ref
        what = f"teleport of domain {quote(ref.name)} to {self._transport.where}"
        process = self._waiting_targets().pop(ref.uuid, None)
        if process is not None:
            try:
                _, stderr = process.communicate(timeout=LISTEN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                stderr = b""
            text = stderr.decode(errors="replace")
            if process.returncode != 0 or has_error_line(text):
                raise OperationFailedError(f"{what}: startvm of the target failed: {text.strip()}")
        info = self._vbm.machine(ref.uuid)
        if info.native_state not in ("running", "paused"):
            raise OperationFailedError(f"{what}: the machine is {info.native_state!r} here after the teleport")
        if request.flags & MigrateFlags.PAUSED and info.native_state == "running":
            self._vbm("controlvm", ref.uuid, "pause", what=what)
        return DomainRef(info.name, ref.uuid)

    # --- source -----------------------------------------------------------------------------------

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """``controlvm UUID teleport --host --port --passwordfile stdin [--maxdowntime]``; blocks until it ends."""
        host, port = ticket.cookie["host"], ticket.cookie["port"]
        what = f"teleport of domain {quote(dom.name)} to {host}:{port}"
        info = self._vbm.machine(dom.uuid)
        args = ["controlvm", dom.uuid, "teleport", "--host", host, "--port", port, "--passwordfile", "stdin"]
        if request.max_downtime_ms is not None:
            args += ["--maxdowntime", str(request.max_downtime_ms)]
        with self._migrations().running(dom.uuid, "memory", info.memory_mib * MIB):
            self._vbm_stdin(args, ticket.cookie["password"], what)

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """The phase of this connection's last teleport of ``dom`` (VBoxManage prints percentages only)."""
        return self._migrations().info(dom.uuid)

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Success with UNDEFINE_SOURCE: unregister the ``teleported`` source (disks detached, kept); without
        it the source stays registered. After a failure VirtualBox has resumed the source itself."""
        if success and request.flags & MigrateFlags.UNDEFINE_SOURCE:
            self._remove(dom)

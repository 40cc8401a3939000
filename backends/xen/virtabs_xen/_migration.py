"""Live migration for the ``xen`` driver (issue 23): ``xl migrate`` mapped onto the core's four steps.

``xl migrate`` moves a running domain in one command: it starts ``xl migrate-receive`` on the destination
(by default ``ssh HOST xl migrate-receive``; with ``-s ""`` HOST itself is the command line run), streams
the domain's memory to it while the guest runs (log-dirty rounds), then suspends it, sends the rest, and
destroys the source domain once the destination has unpaused its copy. So:

1. destination ``migrate_prepare``: refuses a definition of this name or UUID in its ``dir``; names the dom0
   it runs on (its boot id) and, with PERSIST_DEST, writes the definition into its ``dir`` (all in one round
   trip); ``migrate_finish(False)`` removes that definition again;
2. source ``migrate_perform``: one read (the domain, its guest type, ``xl info``'s ``virt_caps``, the dom0's
   boot id), the refusals below, then ``xl migrate -s "" NAME "xl migrate-receive"``, waited for;
3. destination ``migrate_finish``: the domain must be running here with its UUID (``xl list -v``);
4. source ``migrate_confirm``: with UNDEFINE_SOURCE the source's definition is removed (xl already destroyed
   the running domain); after a failure nothing: xl resumes the source domain itself.

Where it can go: **the same dom0 only**, through a second connection with another ``dir=`` (the one case the
nested lab has: one dom0). Between two dom0s ``xl migrate`` needs ssh from the source dom0 to the destination
dom0, which this driver does not set up: refused (NotSupportedError) before either host is changed. On one
dom0 a running domain is seen by every connection (xl lists every domain), so "the source is gone" is true
of the domain's definition only, and its domid changes.

Refused with NotSupportedError before ``xl migrate`` runs (the source keeps running, the destination's
definition is removed by finish): a PV guest on a Xen without shadow paging (``xl info``'s ``virt_caps``
lacks ``shadow``: Debian's 4.17 build, where ``xl migrate`` of a PV guest fails with ``Failed to enable
logdirty: 95,22,0``; PVH and HVM guests use HAP's log-dirty), a migration without LIVE (``xl migrate`` always
migrates live), PAUSED (not mapped). Not declared, so the core refuses them before this module runs: storage
copy (``domain.migrate.copy_storage``: xl needs the disks on storage both dom0s see), offline migration,
cancelling (``domain.migrate.abort``: ``xl migrate`` has no cancel), a bandwidth or maximum downtime (xl has
neither knob) and keeping the source (``domain.migrate.keep_source``: xl always destroys the source domain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from virtabs.spi import (
    CommandResult,
    CommandTransport,
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
    OperationInvalidError,
    quote,
)

from . import _cfg, _xl

__all__ = ["XenMigration", "guest_type_of"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"
"""The dom0 kernel's boot id: two connections that read the same one reach the same dom0."""
# read with the shell builtin (a process costs about 0.35 s in the nested lab)
_READ_BOOT_ID = f"read b < {_BOOT_ID} && printf 'boot %s\\n' \"$b\"; "


def guest_type_of(config: Mapping[str, Any] | None, spec: DomainSpec | None) -> str:
    """``pv``, ``pvh`` or ``hvm``: a running domain's from ``xl list -l``, else its definition's."""
    if config is not None:
        return str(config.get("c_info", {}).get("type", "pv"))
    return _cfg.guest_type(spec) if spec is not None else "pv"


class XenMigration:
    """The migration methods of :class:`~virtabs_xen.driver.XenDriver` (module docstring)."""

    _t: CommandTransport
    _dir: str
    _slow: float
    _cfg_path: Callable[[str], str]
    _alias_path: Callable[[str], str]
    _probe: Callable[..., Any]
    _all: Callable[..., dict[str, Any]]
    _write_definition: Callable[[DomainSpec, str], None]

    def _migrations(self) -> OneCommandMigrations:
        """The last ``xl migrate`` this connection ran of each domain."""
        log: OneCommandMigrations | None = self.__dict__.get("_migration_log")
        if log is None:
            log = self.__dict__["_migration_log"] = OneCommandMigrations()
        return log

    def _run_sh(self, script: str, args: Sequence[str], what: str) -> CommandResult:
        result: CommandResult = self._t.run(["sh", "-c", script, "virtabs-xen", *args], check=False)
        if result.returncode != 0:
            raise OperationFailedError(f"{what} failed on {self._t.where}: {result.err.strip()[-500:]}")
        return result

    # --- destination ------------------------------------------------------------------------------

    def migrate_prepare(self, spec: DomainSpec, request: MigrationRequest, disks: list[DiskInfo]) -> MigrationTicket:
        """Refuse a definition of this name or UUID here; name this dom0; with PERSIST_DEST define the domain."""
        what = f"migration of domain {spec.name!r} to {self._t.where} (dir {self._dir})"
        if spec.uuid is None:
            raise InvalidArgumentError(f"{what}: the spec carries no UUID")
        if request.flags & MigrateFlags.PAUSED:
            raise NotSupportedError(f"{what}: PAUSED is not mapped onto xl migrate")
        for probe in self._all().values():
            if probe.spec is not None and (probe.name == spec.name or probe.uuid == spec.uuid):
                raise OperationInvalidError(
                    f"{what}: domain {quote(probe.name)} is already defined here "
                    "(on one dom0 the destination connection needs a dir= of its own)"
                )
        boot = self._run_sh(_READ_BOOT_ID, [], what).out.split()
        persist = bool(request.flags & MigrateFlags.PERSIST_DEST)
        if persist:
            self._write_definition(spec, spec.uuid)
        return MigrationTicket(
            domain=DomainRef(spec.name, spec.uuid),
            memory_uri=f"xl-migrate-receive:{self._t.where}",
            cookie={"boot_id": boot[-1] if boot else "", "defined": "1" if persist else "", "dir": self._dir},
        )

    def migrate_finish(self, ticket: MigrationTicket, request: MigrationRequest, success: bool) -> DomainRef | None:
        """Success: the domain must be running here with its UUID. Failure: the definition prepare wrote goes."""
        name = ticket.domain.name
        if not success:
            if ticket.cookie.get("defined"):
                script = 'rm -f -- "$1" "$2"'
                self._run_sh(script, [self._cfg_path(name), self._alias_path(name)], f"discarding {name!r}")
            return None
        probe = self._probe(name)
        if probe.running is None or probe.running.uuid != ticket.domain.uuid:
            raise OperationFailedError(
                f"migration of domain {name!r}: xl migrate ended but no domain {ticket.domain.uuid} runs on "
                f"{self._t.where}"
            )
        return DomainRef(name, ticket.domain.uuid)

    # --- source -----------------------------------------------------------------------------------

    def migrate_perform(self, dom: DomainRef, request: MigrationRequest, ticket: MigrationTicket) -> None:
        """One read and the refusals (module docstring), then ``xl migrate``, waited for."""
        what = f"migration of domain {dom.name!r} from {self._t.where}"
        if not request.live:
            raise NotSupportedError(f"{what}: xl migrate always migrates a running domain live (pass LIVE)")
        script = (
            _READ_BOOT_ID
            + 'xl info | sed -n "s/^virt_caps *: */caps /p"; '
            + 'printf "long\\n"; xl list -l -- "$1" 2>/dev/null; exit 0'
        )
        out = self._run_sh(script, [dom.name], what).out
        head, _, long_text = out.partition("long\n")
        facts = dict(line.split(" ", 1) for line in head.splitlines() if " " in line)
        if facts.get("boot") != ticket.cookie.get("boot_id"):
            raise NotSupportedError(
                f"{what}: the destination is another dom0; xl migrate needs ssh from this dom0 to that one, which "
                "this driver does not set up (it migrates between two connections of one dom0, dir= apart)"
            )
        entries = _xl.parse_list_long(long_text) if long_text.strip() else []
        config = _xl.domain_config(entries[0]) if entries else None
        if config is None:
            raise OperationInvalidError(f"{what}: the domain is not running")
        gtype = guest_type_of(config, None)
        caps = facts.get("caps", "").split()
        if gtype == "pv" and "shadow" not in caps:
            raise NotSupportedError(
                f"{what}: a PV guest needs shadow paging for xl migrate's log-dirty rounds, and this Xen has none "
                f"(xl info virt_caps: {' '.join(caps) or 'empty'}); PVH and HVM guests migrate"
            )
        memory = int(config.get("b_info", {}).get("target_memkb", 0)) * 1024
        with self._migrations().running(dom.uuid, "memory", memory):
            result = self._t.run(
                ["xl", "migrate", "-s", "", "--", dom.name, "xl migrate-receive"], check=False, timeout=self._slow
            )
            if result.returncode != 0:
                lines = [line for line in result.err.strip().splitlines() if line.strip()]
                raise OperationFailedError(f"{what}: xl migrate failed: {'; '.join(lines[-4:]) or '(no message)'}")

    def migrate_job_info(self, dom: DomainRef) -> MigrationInfo | None:
        """The phase of this connection's last ``xl migrate`` of ``dom`` (xl prints no byte counts we read)."""
        return self._migrations().info(dom.uuid)

    def migrate_confirm(self, dom: DomainRef, request: MigrationRequest, success: bool) -> None:
        """Success with UNDEFINE_SOURCE: remove the source's definition. Otherwise nothing (xl resumes the source
        domain after a failed migration, and destroys it after a successful one)."""
        if success and request.flags & MigrateFlags.UNDEFINE_SOURCE:
            script = 'rm -f -- "$1" "$2"'
            self._run_sh(script, [self._cfg_path(dom.name), self._alias_path(dom.name)], f"undefining {dom.name!r}")

"""The per-test helper (:class:`Contract`) and the refusal checks for undeclared capabilities."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._api import BlockJob, Connection, Domain, Network, StoragePool, Volume
from .._capabilities import Capability
from .._errors import NotSupportedError, VirtabsError
from .._flags import BlockCopyFlags, BlockJobAbortFlags, BlockRebaseFlags, DomainState, MigrateFlags
from .._migration import MigrationJob
from .._models import (
    BlockJobInfo,
    DiskSpec,
    DomainRef,
    DomainSpec,
    MigrationRequest,
    NetworkInfo,
    PoolInfo,
    VolumeInfo,
)
from ..spi import OPERATIONS, Driver, methods_for
from .recorder import READ_METHODS, CallRecorder
from .target import OBSERVABLE_EFFECTS, OPTIONAL_METHODS, ContractTarget, NotObservable, TargetUnavailable

__all__ = ["ABSENT_DOMAIN", "Contract", "RefusalProblem", "copy_kind_flags", "verify_refusals"]

MiB = 1 << 20
ABSENT_DOMAIN = DomainRef("virtabs-contract-absent", "00000000-0000-4000-8000-00000000c0de")
"""A domain that exists nowhere: refusal checks run against it, so no refusal can depend on a lookup."""
SLOW_BYTES_PER_S = 1024
"""A bandwidth (bytes/s) that keeps a block job of the chain disk far from ready for the whole test."""


def copy_kind_flags(conn: Connection) -> int:
    """Flags of a copy of a kind ``conn`` declares: 0 (flatten, libvirt's default) where it may, else
    MOVE_CHAIN, else SHALLOW (the same bits in BlockCopyFlags and BlockRebaseFlags)."""
    if conn.supports(Capability.BLOCK_COPY_FLATTEN):
        return 0
    if conn.supports(Capability.BLOCK_COPY_MOVE_CHAIN):
        return int(BlockCopyFlags.MOVE_CHAIN)
    return int(BlockCopyFlags.SHALLOW) if conn.supports(Capability.BLOCK_COPY_SHALLOW) else 0


class Contract:
    """What a contract test works with: the connection, the target, and helpers that clean up after it."""

    def __init__(
        self,
        conn: Connection,
        target: ContractTarget,
        uri: str,
        opener: Callable[..., Connection] | None = None,
    ) -> None:
        self.conn = conn
        self.target = target
        self.uri = uri
        self._opener = opener
        self._other: Connection | None = None

    # --- another door -------------------------------------------------------------

    def other_door(self) -> Connection:
        """A second connection to the same URI (opened once per test): effects are checked through it,
        not through the connection (or the object) that caused them."""
        if self._other is None or self._other.closed:
            if self._opener is None:
                from .._api import open as open_

                self._other = open_(self.uri)
            else:
                self._other = self._opener(self.uri)
        return self._other

    def open_door(self, uri: str) -> Connection:
        """A new connection to ``uri`` opened the way the run opens its own (its credentials): the
        caller closes it. For another host's own door (a migration's destination)."""
        if self._opener is None:
            from .._api import open as open_

            return open_(uri)
        return self._opener(uri)

    def target_method(self, name: str) -> Callable[..., Any]:
        """The target's optional method ``name``; TargetUnavailable saying what to provide when it has none."""
        method = getattr(self.target, name, None)
        if not callable(method):
            raise TargetUnavailable(
                f"the target must provide {OPTIONAL_METHODS.get(name, name)} "
                f"({type(self.target).__name__} has no {name}): a declared capability is checked through it"
            )
        return method  # type: ignore[no-any-return]

    def volume_format(self, pool: str) -> str:
        """A format ``pool`` creates volumes in: the target's ``volume_format``, qcow2 when it has none."""
        method = getattr(self.target, "volume_format", None)
        return str(method(self.conn, pool)) if callable(method) else "qcow2"

    def unobservable_reason(self, effect: str) -> str | None:
        """Why the target cannot observe ``effect`` (its ``unobservable`` mapping), or None when it can."""
        if effect not in OBSERVABLE_EFFECTS:
            raise ValueError(f"unknown effect {effect!r}; one of {sorted(OBSERVABLE_EFFECTS)}")
        declared: Any = getattr(self.target, "unobservable", None) or {}
        reason = declared.get(effect)
        return str(reason) if reason else None

    def effect_missing(self, effect: str, what: str) -> AssertionError:
        """The effect was not seen: raise NotObservable when the target declares it cannot observe
        ``effect``; else return the AssertionError (saying ``what``) for the caller to raise."""
        reason = self.unobservable_reason(effect)
        if reason is not None:
            raise NotObservable(f"{effect}: {reason} ({what})")
        return AssertionError(what)

    def image_digest(self, path: str) -> str | None:
        """The target's digest of the guest-visible content of ``path`` (see ``OPTIONAL_METHODS``)."""
        self._image_content_observable()
        return self.target_method("image_digest")(self.conn, path)  # type: ignore[no-any-return]

    def layer_digest(self, path: str) -> str | None:
        """The target's digest of the data stored in ``path`` alone."""
        self._image_content_observable()
        return self.target_method("layer_digest")(self.conn, path)  # type: ignore[no-any-return]

    def _image_content_observable(self) -> None:
        reason = self.unobservable_reason("image.content")
        if reason is not None:
            raise NotObservable(f"image.content: {reason}")

    def boot_id(self, dom: Domain) -> object:
        """The target's marker of the guest's current boot."""
        return self.target_method("boot_id")(self.conn, dom)

    def run_clock(self, dom: Domain) -> float | None:
        """The target's reading of the guest's own run clock (seconds it has run since it booted)."""
        return self.target_method("run_clock")(self.conn, dom)  # type: ignore[no-any-return]

    def assert_no_job_anywhere(self, dom: Domain, disk: str = "vda") -> None:
        """No listing reports a job on ``disk``: the job query, the domain's job list, the bulk records,
        and the same through :meth:`other_door`."""
        other = self.other_door().lookup_domain(dom.uuid)
        for where, conn, d in (("this connection", self.conn, dom), ("another connection", other.connection, other)):
            assert d.block_job_info(disk) is None, f"{where}: block_job_info({disk!r}) still reports a job"
            jobs = d.connection._driver.block_jobs(d._ref)
            assert not [j for j in jobs if j.disk == disk], f"{where}: block_jobs still lists {jobs}"
            for rec in conn.domain_records():
                if rec.uuid == dom.uuid:
                    assert not [j for j in rec.block_jobs if j.disk == disk], (
                        f"{where}: domain_records still lists {rec.block_jobs}"
                    )

    # --- disposable objects -----------------------------------------------------

    def domain(self, *, running: bool = False) -> Domain:
        """A disposable domain (disk ``vda``), RUNNING when ``running`` else SHUTOFF."""
        return self.target.make_domain(self.conn, running=running)

    def chain_domain(self) -> Domain:
        """A disposable running domain whose ``vda`` is base <- snap1 <- snap2."""
        return self.target.make_chain_domain(self.conn)

    def spec(self, kind: str = "def") -> DomainSpec:
        """A definition of a disposable domain that is not defined yet."""
        return self.target.domain_spec(self.conn, self.target.new_name(kind))

    def scratch(self, name: str) -> str:
        """A fresh path for a copy destination."""
        return self.target.scratch_path(self.conn, name)

    def save_path(self, name: str = "mem") -> str:
        """A fresh path for a saved-memory file."""
        return self.target.save_path(self.conn, name)

    def create_image(self, path: str, *, format: str, backing: str | None = None) -> None:
        """Pre-create ``path`` (a REUSE_EXT destination)."""
        self.target.create_image(self.conn, path, format=format, backing=backing)

    def block_device(self, name: str = "device") -> str:
        """A block device a COPY_DEV copy may overwrite (the target's ``create_block_device``)."""
        return self.target.create_block_device(self.conn, name)

    def cleanup(self) -> None:
        """Remove what the test created (called by the fixture)."""
        try:
            self.target.cleanup(self.conn)
        finally:
            if self._other is not None:
                self._other.close()
                self._other = None

    @property
    def shutdown_timeout(self) -> float:
        """How long a graceful shutdown may take: the target's ``shutdown_timeout``, else its ``job_timeout``."""
        return float(getattr(self.target, "shutdown_timeout", self.target.job_timeout))

    # --- observation ----------------------------------------------------------------

    @property
    def driver(self) -> Driver:
        """The driver instance behind the connection (white box: for call counting)."""
        return self.conn._driver

    def record(self) -> CallRecorder:
        """A :class:`CallRecorder` on this connection's driver (use as a context manager)."""
        return CallRecorder(self.conn._driver)

    def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + (self.target.job_timeout if timeout is None else timeout)
        delay = 0.01
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def wait_state(self, dom: Domain, state: DomainState, timeout: float | None = None) -> None:
        """Wait until ``dom`` is in ``state``."""
        self.wait_until(lambda: dom.state() == state, f"domain {dom.name!r} to be {state.name}", timeout)

    def wait_ready(self, job: BlockJob) -> BlockJobInfo:
        """Wait until a two-phase job is ready, within the target's job timeout."""
        return job.wait_ready(self.target.job_timeout)

    def end_job(self, dom: Domain, disk: str = "vda") -> None:
        """Abort whatever job runs on ``disk`` (cleanup inside a test); ignores 'no job'."""
        with contextlib.suppress(VirtabsError):
            if dom.block_job_info(disk) is not None:
                dom.block_job_abort(disk)


# --- refusal checks -------------------------------------------------------------------


class RefusalProblem(AssertionError):
    """An undeclared capability was not refused properly (the message lists every problem)."""


PublicCall = tuple[str, Callable[[], object], frozenset[str]]


def _absent(contract: Contract) -> Domain:
    return Domain(contract.conn, ABSENT_DOMAIN)


def _absent_pool(contract: Contract) -> StoragePool:
    return StoragePool(contract.conn, PoolInfo("virtabs-contract-absent", "dir", None, None, None))


def _absent_network(contract: Contract) -> Network:
    return Network(contract.conn, NetworkInfo("virtabs-contract-absent", None, "bridge", "bridge"))


def _absent_volume(contract: Contract) -> Volume:
    info = VolumeInfo("absent.qcow2", "virtabs-contract-absent", "/virtabs-contract-absent/absent.qcow2", "qcow2", 1)
    return Volume(contract.conn, info)


def _unstarted_migration(contract: Contract) -> MigrationJob:
    """A migration job of the absent domain whose steps never start: its abort is refused or does nothing."""
    return MigrationJob(_absent(contract), contract.conn, MigrationRequest(flags=MigrateFlags.LIVE), False)


_NONE: frozenset[str] = frozenset()
_MOVE = MigrateFlags.LIVE | MigrateFlags.PERSIST_DEST | MigrateFlags.UNDEFINE_SOURCE
_DEST = "/virtabs-contract-absent/copy.img"
_SAVE = "/virtabs-contract-absent/domain.save"


def _spec() -> DomainSpec:
    return DomainSpec(name="virtabs-contract-refused", memory_bytes=64 * MiB, vcpus=1)


def public_calls(contract: Contract, cap: Capability) -> list[PublicCall]:
    """The public calls that must raise NotSupportedError, without touching the host, when ``cap`` is missing.

    Each entry: (label, call, driver methods the call may still use). Every
    call acts on :data:`ABSENT_DOMAIN`, so a check passes only when the core
    refuses before any lookup.
    """
    conn = contract.conn
    dom = _absent(contract)
    c = Capability
    table: dict[Capability, list[PublicCall]] = {
        c.DOMAIN_DEFINE: [
            ("Connection.define_domain", lambda: conn.define_domain(_spec()), _NONE),
            ("Domain.undefine", dom.undefine, _NONE),
        ],
        c.DOMAIN_START: [("Domain.start", dom.start, _NONE)],
        c.DOMAIN_SHUTDOWN: [("Domain.shutdown", dom.shutdown, _NONE)],
        c.DOMAIN_DESTROY: [("Domain.destroy", dom.destroy, _NONE)],
        c.DOMAIN_REBOOT: [("Domain.reboot", dom.reboot, _NONE)],
        c.DOMAIN_SUSPEND: [("Domain.suspend", dom.suspend, _NONE), ("Domain.resume", dom.resume, _NONE)],
        c.DOMAIN_SAVE: [
            ("Domain.save", lambda: dom.save(_SAVE), _NONE),
            ("Connection.restore", lambda: conn.restore(_SAVE), _NONE),
        ],
        c.DOMAIN_MANAGED_SAVE: [
            ("Domain.managed_save", dom.managed_save, _NONE),
            ("Domain.has_managed_save", dom.has_managed_save, _NONE),
            ("Domain.managed_save_remove", dom.managed_save_remove, _NONE),
        ],
        c.DOMAIN_SNAPSHOT: [
            ("Domain.create_snapshot", lambda: dom.create_snapshot("s1"), _NONE),
            ("Domain.list_snapshots", dom.list_snapshots, _NONE),
            ("Domain.revert_to_snapshot", lambda: dom.revert_to_snapshot("s1"), _NONE),
            ("Domain.delete_snapshot", lambda: dom.delete_snapshot("s1"), _NONE),
        ],
        c.DOMAIN_DISK_HOTPLUG: [
            ("Domain.attach_disk", lambda: dom.attach_disk(DiskSpec("vdz", "/virtabs-contract-absent/z.img")), _NONE),
            ("Domain.detach_disk", lambda: dom.detach_disk("vdz"), _NONE),
        ],
        c.BLOCK_PULL: [
            ("Domain.block_pull", lambda: dom.block_pull("vda"), _NONE),
            ("Domain.block_rebase(flags=0)", lambda: dom.block_rebase("vda", None), _NONE),
        ],
        c.BLOCK_COPY: [
            ("Domain.block_copy", lambda: dom.block_copy("vda", _DEST), _NONE),
            ("Domain.block_rebase(COPY)", lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY), _NONE),
        ],
        c.BLOCK_COPY_FLATTEN: [
            ("Domain.block_copy(flags=0)", lambda: dom.block_copy("vda", _DEST), _NONE),
            ("Domain.block_rebase(COPY)", lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY), _NONE),
        ],
        c.BLOCK_COPY_MOVE_CHAIN: [
            (
                "Domain.block_copy(MOVE_CHAIN)",
                lambda: dom.block_copy("vda", _DEST, flags=BlockCopyFlags.MOVE_CHAIN),
                _NONE,
            ),
            (
                "Domain.block_rebase(COPY|MOVE_CHAIN)",
                lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY | BlockRebaseFlags.MOVE_CHAIN),
                _NONE,
            ),
        ],
        c.BLOCK_COPY_SHALLOW: [
            ("Domain.block_copy(SHALLOW)", lambda: dom.block_copy("vda", _DEST, flags=BlockCopyFlags.SHALLOW), _NONE),
            (
                "Domain.block_rebase(COPY|SHALLOW)",
                lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY | BlockRebaseFlags.SHALLOW),
                _NONE,
            ),
        ],
        c.BLOCK_COPY_REUSE_EXT: [
            (
                "Domain.block_copy(REUSE_EXT)",
                lambda: dom.block_copy("vda", _DEST, flags=BlockCopyFlags.REUSE_EXT),
                _NONE,
            ),
            (
                "Domain.block_rebase(COPY|REUSE_EXT)",
                lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY | BlockRebaseFlags.REUSE_EXT),
                _NONE,
            ),
        ],
        c.BLOCK_COPY_RAW: [
            ("Domain.block_copy(format='raw')", lambda: dom.block_copy("vda", _DEST, format="raw"), _NONE),
            (
                "Domain.block_rebase(COPY|COPY_RAW)",
                lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY | BlockRebaseFlags.COPY_RAW),
                _NONE,
            ),
        ],
        c.BLOCK_COPY_DEV: [
            (
                "Domain.block_rebase(COPY|COPY_DEV)",
                lambda: dom.block_rebase("vda", _DEST, flags=BlockRebaseFlags.COPY | BlockRebaseFlags.COPY_DEV),
                _NONE,
            ),
        ],
        c.BLOCK_COMMIT: [("Domain.block_commit", lambda: dom.block_commit("vda"), _NONE)],
        c.BLOCK_BANDWIDTH: [
            ("Domain.block_job_set_speed", lambda: dom.block_job_set_speed("vda", 1), _NONE),
            (
                "Domain.block_copy(bandwidth=1)",
                lambda: dom.block_copy("vda", _DEST, flags=copy_kind_flags(conn), bandwidth=1),
                _NONE,
            ),
            ("Domain.block_pull(bandwidth=1)", lambda: dom.block_pull("vda", bandwidth=1), _NONE),
            ("Domain.block_commit(bandwidth=1)", lambda: dom.block_commit("vda", bandwidth=1), _NONE),
        ],
        c.STORAGE_POOL: [
            ("Connection.list_storage_pools", conn.list_storage_pools, _NONE),
            ("Connection.lookup_storage_pool", lambda: conn.lookup_storage_pool("virtabs-contract-absent"), _NONE),
            ("StoragePool.info", lambda: _absent_pool(contract).info(), _NONE),
            ("StoragePool.list_volumes", lambda: _absent_pool(contract).list_volumes(), _NONE),
            ("StoragePool.lookup_volume", lambda: _absent_pool(contract).lookup_volume("absent.qcow2"), _NONE),
            ("Volume.info", lambda: _absent_volume(contract).info(), _NONE),
        ],
        c.STORAGE_VOLUME: [
            ("StoragePool.create_volume", lambda: _absent_pool(contract).create_volume("v.qcow2", MiB), _NONE),
            ("Volume.delete", lambda: _absent_volume(contract).delete(), _NONE),
        ],
        # migration (issue 23): the source's capabilities are checked before the destination is even looked at
        c.DOMAIN_MIGRATE: [("Domain.migrate", lambda: dom.migrate(conn, flags=0), _NONE)],
        c.DOMAIN_MIGRATE_LIVE: [("Domain.migrate(LIVE)", lambda: dom.migrate(conn, flags=MigrateFlags.LIVE), _NONE)],
        c.DOMAIN_MIGRATE_OFFLINE: [
            (
                "Domain.migrate(OFFLINE)",
                lambda: dom.migrate(conn, flags=MigrateFlags.OFFLINE | MigrateFlags.PERSIST_DEST),
                _NONE,
            )
        ],
        c.DOMAIN_MIGRATE_COPY_STORAGE: [
            ("Domain.migrate(NON_SHARED_DISK)", lambda: dom.migrate(conn, flags=MigrateFlags.NON_SHARED_DISK), _NONE)
        ],
        c.DOMAIN_MIGRATE_TUNNELLED: [
            ("Domain.migrate(TUNNELLED)", lambda: dom.migrate(conn, flags=MigrateFlags.TUNNELLED), _NONE)
        ],
        # issue 27: the source's declaration, checked before the destination is looked at. keep_source's refusal
        # needs a persistent domain (one state read): with domain.migrate declared, _check_keep_source.
        c.DOMAIN_MIGRATE_KEEP_SOURCE: [("Domain.migrate(no UNDEFINE_SOURCE)", lambda: dom.migrate(conn), _NONE)],
        c.DOMAIN_MIGRATE_ABORT: [("MigrationJob.abort", lambda: _unstarted_migration(contract).abort(), _NONE)],
        c.DOMAIN_MIGRATE_BANDWIDTH: [
            ("Domain.migrate(bandwidth=1)", lambda: dom.migrate(conn, flags=_MOVE, bandwidth=1), _NONE)
        ],
        c.DOMAIN_MIGRATE_MAX_DOWNTIME: [
            ("Domain.migrate(max_downtime=100)", lambda: dom.migrate(conn, flags=_MOVE, max_downtime=100), _NONE)
        ],
        c.STORAGE_VOLUME_RESIZE: [("Volume.resize", lambda: _absent_volume(contract).resize(2 * MiB), _NONE)],
        c.NETWORK: [
            ("Connection.list_networks", conn.list_networks, _NONE),
            ("Connection.lookup_network", lambda: conn.lookup_network("virtabs-contract-absent"), _NONE),
            ("Network.info", lambda: _absent_network(contract).info(), _NONE),
        ],
        c.EVENTS: [("Connection.subscribe", lambda: conn.subscribe(lambda _e: None), _NONE)],
    }
    return table.get(cap, [])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, VirtabsError):
        return f"{type(exc).__name__} (code {int(exc.code)}): {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _check_public(contract: Contract, cap: Capability, problems: list[str]) -> None:
    for label, call, allowed in public_calls(contract, cap):
        with contract.record() as rec:
            try:
                call()
            except NotSupportedError:
                pass
            except Exception as exc:
                problems.append(f"{cap.value}: {label} raised {_describe(exc)}; expected NotSupportedError")
            else:
                problems.append(f"{cap.value}: {label} returned normally; expected NotSupportedError")
        touched = rec.host_touching(allowed)
        if touched:
            problems.append(
                f"{cap.value}: {label} reached the driver ({', '.join(touched)}) although the connection does "
                "not declare it; the refusal must come before the host is touched"
            )


def _check_undeclared_methods(contract: Contract, cap: Capability, problems: list[str]) -> None:
    """The driver class implements ``cap``'s methods without declaring ``cap``: a dishonest declaration.

    The gate refuses the public call either way, so the work would never be
    reachable; the contract is that a class declares what it implements. A
    connection may still drop a declared capability (``connection_capabilities``).
    """
    cls = type(contract.driver)
    if cap in cls.capabilities.supported:
        return
    declared = cls.capabilities.supported
    for method in methods_for(cap):
        shared = {c for c in OPERATIONS[method].required_capabilities() if c in declared}
        if shared or getattr(cls, method, None) is getattr(Driver, method, None):
            continue
        problems.append(
            f"{cap.value}: {cls.__name__} implements {method} but does not declare {cap.value}; "
            "declare the capability (the declaration is dishonest) or leave the method to the base class"
        )


def _check_pivot(contract: Contract, problems: list[str]) -> None:
    """block.copy.pivot undeclared but block.copy declared: a running copy must refuse PIVOT without acting.

    The gate checks the pivot capability before readiness, so a throttled copy that is far from ready
    (or one that would switch over by itself) is enough.
    """
    if not contract.conn.supports(Capability.BLOCK_COPY):
        return  # covered by the block.copy refusals
    dom = contract.chain_domain()
    bandwidth = SLOW_BYTES_PER_S if contract.conn.supports(Capability.BLOCK_BANDWIDTH) else 0
    flags = BlockCopyFlags.TRANSIENT_JOB | copy_kind_flags(contract.conn)
    dom.block_copy("vda", contract.scratch("pivot.qcow2"), flags=flags, bandwidth=bandwidth)
    try:
        with contract.record() as rec:
            try:
                dom.block_job_abort("vda", BlockJobAbortFlags.PIVOT)
            except NotSupportedError:
                pass
            except Exception as exc:
                problems.append(f"block.copy.pivot: pivot raised {_describe(exc)}; expected NotSupportedError")
            else:
                problems.append("block.copy.pivot: pivot worked although block.copy.pivot is not declared")
        touched = rec.host_touching(READ_METHODS)
        if touched:
            problems.append(f"block.copy.pivot: pivot reached the driver ({', '.join(touched)}) before the refusal")
    finally:
        contract.end_job(dom)


def _check_keep_source(contract: Contract, problems: list[str]) -> None:
    """domain.migrate declared, keep_source not: a persistent domain migrated without UNDEFINE_SOURCE is
    refused after one state read of the source, and nothing arrives on the destination."""
    live = contract.conn.supports(Capability.DOMAIN_MIGRATE_LIVE)
    dom = contract.domain(running=live)
    peer = contract.target_method("migration_peer")(contract.conn)
    flags = MigrateFlags.PERSIST_DEST | (MigrateFlags.LIVE if live else MigrateFlags.OFFLINE)
    label = "domain.migrate.keep_source: Domain.migrate without UNDEFINE_SOURCE"
    with contract.record() as rec:
        try:
            dom.migrate(peer, flags=flags).wait(timeout=contract.target.job_timeout)
        except NotSupportedError:
            pass
        except Exception as exc:
            problems.append(f"{label} raised {_describe(exc)}; expected NotSupportedError")
        else:
            problems.append(f"{label} migrated; expected NotSupportedError")
    touched = rec.host_touching(READ_METHODS)
    if touched:
        problems.append(f"{label} reached the driver ({', '.join(touched)}) before the refusal")
    if dom.uuid in [d.uuid for d in peer.list_domains()]:
        problems.append(f"{label}: the domain arrived on the destination")


def verify_refusals(contract: Contract, missing: frozenset[Capability]) -> None:
    """Check every capability in ``missing`` is refused both ways; raise RefusalProblem listing all failures."""
    declared = contract.conn.capabilities.supported
    really_missing = sorted(missing - declared, key=lambda c: c.value)
    problems: list[str] = []
    for cap in really_missing:
        if cap is Capability.DOMAIN_MIGRATE_KEEP_SOURCE and Capability.DOMAIN_MIGRATE in declared:
            _check_keep_source(contract, problems)
        else:
            _check_public(contract, cap, problems)
        _check_undeclared_methods(contract, cap, problems)
        if cap == Capability.BLOCK_COPY_PIVOT:
            _check_pivot(contract, problems)
    if problems:
        raise RefusalProblem("undeclared capabilities not refused properly:\n  - " + "\n  - ".join(problems))


@contextlib.contextmanager
def no_driver_calls(contract: Contract, allowed: frozenset[str] = frozenset()) -> Iterator[CallRecorder]:
    """Assert the block reaches no host-touching driver method (except ``allowed``)."""
    with contract.record() as rec:
        yield rec
    touched = rec.host_touching(allowed)
    assert not touched, f"the driver was called: {touched}"

"""Contract tests of migration (issue 23): two connections of the same driver (the target's
``migration_peer``); effects seen on the destination through a connection of its own, the source gone."""

from __future__ import annotations

import pytest

from ..._capabilities import Capability
from ..._errors import InvalidArgumentError, NoDomainError, OperationFailedError
from ..._flags import DomainState, MigrateFlags
from ..contract import ABSENT_DOMAIN, Contract, no_driver_calls
from ..markers import requires

__all__ = ["TestMigration"]

M = MigrateFlags


def _undefine_unless(keep_source: bool) -> MigrateFlags:
    """UNDEFINE_SOURCE where the source cannot keep the definition (``domain.migrate.keep_source``)."""
    return M(0) if keep_source else M.UNDEFINE_SOURCE


class TestMigration:
    """domain.migrate and its sub-capabilities."""

    @requires("domain.migrate")
    def test_flag_rules_refuse_before_any_driver_call(self, virtabs_contract: Contract) -> None:
        from ..._domain import Domain

        dom = Domain(virtabs_contract.conn, ABSENT_DOMAIN)  # the rules come before any lookup
        for flags, rule in (
            (M.NON_SHARED_DISK | M.NON_SHARED_INC, "NON_SHARED_DISK and NON_SHARED_INC"),
            (M.OFFLINE | M.LIVE | M.PERSIST_DEST, "OFFLINE and LIVE"),
            (M.OFFLINE, "PERSIST_DEST"),
        ):
            with no_driver_calls(virtabs_contract), pytest.raises(InvalidArgumentError, match=rule):
                dom.migrate(virtabs_contract.conn, flags=flags)

    @requires("domain.migrate", "domain.migrate.live")
    def test_live_migration_moves_the_running_domain(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        job = dom.migrate(peer, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE)
        moved = job.wait(timeout=virtabs_contract.target.job_timeout)
        assert job.info().phase == "completed"
        with virtabs_contract.open_door(str(peer.uri)) as seen:  # the destination's own door
            there = seen.lookup_domain(dom.uuid)
            assert there.name == dom.name
            assert there.state() == DomainState.RUNNING
        assert moved.state() == DomainState.RUNNING
        with pytest.raises(NoDomainError):
            virtabs_contract.other_door().lookup_domain(dom.uuid)
        # and back: this connection is now the destination (prepare and finish run here)
        back = moved.migrate(virtabs_contract.conn, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait(
            timeout=virtabs_contract.target.job_timeout
        )
        assert back.state() == DomainState.RUNNING
        assert virtabs_contract.other_door().lookup_domain(dom.uuid).state() == DomainState.RUNNING
        assert dom.uuid not in [d.uuid for d in peer.list_domains()]

    @requires("domain.migrate", "domain.migrate.live", "domain.migrate.copy_storage")
    def test_storage_copy_brings_the_disk_content(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        before = virtabs_contract.image_digest(dom.disks()[0].path)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        keep = virtabs_contract.conn.supports(Capability.DOMAIN_MIGRATE_KEEP_SOURCE)
        moved = dom.migrate(peer, flags=M.LIVE | M.NON_SHARED_DISK | M.PERSIST_DEST | _undefine_unless(keep)).wait(
            timeout=virtabs_contract.target.job_timeout
        )
        path = moved.disks()[0].path
        assert virtabs_contract.target_method("image_digest")(peer, path) == before
        if keep:
            assert virtabs_contract.other_door().lookup_domain(dom.uuid).state() == DomainState.SHUTOFF
        else:
            with pytest.raises(NoDomainError):
                virtabs_contract.other_door().lookup_domain(dom.uuid)

    @requires("domain.migrate", "domain.migrate.live", "domain.migrate.keep_source")
    def test_without_undefine_source_the_source_keeps_its_definition(self, virtabs_contract: Contract) -> None:
        """libvirt's semantics: the source stays defined, shut off; where not declared, the kit checks the
        refusal of a persistent domain without UNDEFINE_SOURCE before either host is touched."""
        dom = virtabs_contract.domain(running=True)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        moved = dom.migrate(peer, flags=M.LIVE | M.PERSIST_DEST).wait(timeout=virtabs_contract.target.job_timeout)
        assert moved.state() == DomainState.RUNNING
        kept = virtabs_contract.other_door().lookup_domain(dom.uuid)
        assert kept.state() == DomainState.SHUTOFF
        assert kept.spec().name == dom.name

    @requires("domain.migrate", "domain.migrate.live", "domain.migrate.max_downtime")
    def test_max_downtime_bounds_the_reported_downtime(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        keep = virtabs_contract.conn.supports(Capability.DOMAIN_MIGRATE_KEEP_SOURCE)
        job = dom.migrate(peer, flags=M.LIVE | M.PERSIST_DEST | _undefine_unless(keep), max_downtime=1000)
        moved = job.wait(timeout=virtabs_contract.target.job_timeout)
        assert moved.state() == DomainState.RUNNING
        final = job.info()
        assert final.phase == "completed"
        assert final.downtime_ms is not None and final.downtime_ms <= 1000, final

    @requires("domain.migrate", "domain.migrate.live", "domain.migrate.abort", "domain.migrate.bandwidth")
    def test_abort_leaves_the_source_running_and_the_destination_empty(self, virtabs_contract: Contract) -> None:
        """The migration is held in flight by the slowest bandwidth (1 MiB/s), seen copying, then aborted.
        (Every target declaring abort declares bandwidth too; one without would need another way to hold it.)"""
        dom = virtabs_contract.domain(running=True)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        job = dom.migrate(peer, flags=M.LIVE | M.PERSIST_DEST | M.UNDEFINE_SOURCE, bandwidth=1)
        virtabs_contract.wait_until(lambda: job.info().phase != "setup", "the migration to begin copying")
        assert not job.done, "a migration at 1 MiB/s ended before it could be aborted"
        job.abort()
        with pytest.raises(OperationFailedError):
            job.wait(timeout=virtabs_contract.target.job_timeout)
        assert dom.state() == DomainState.RUNNING
        assert dom.uuid not in [d.uuid for d in peer.list_domains()]

    @requires("domain.migrate", "domain.migrate.offline")
    def test_offline_migration_moves_the_definition(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=False)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        with pytest.raises(InvalidArgumentError):
            dom.migrate(peer, flags=M.OFFLINE)  # without PERSIST_DEST
        moved = dom.migrate(peer, flags=M.OFFLINE | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait(
            timeout=virtabs_contract.target.job_timeout
        )
        assert moved.state() == DomainState.SHUTOFF
        with pytest.raises(NoDomainError):
            virtabs_contract.other_door().lookup_domain(dom.uuid)

    @requires("domain.migrate", "domain.migrate.live", "domain.migrate.tunnelled")
    def test_tunnelled_migration(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        peer = virtabs_contract.target_method("migration_peer")(virtabs_contract.conn)
        moved = dom.migrate(peer, flags=M.LIVE | M.TUNNELLED | M.PERSIST_DEST | M.UNDEFINE_SOURCE).wait(
            timeout=virtabs_contract.target.job_timeout
        )
        assert moved.state() == DomainState.RUNNING
        with pytest.raises(NoDomainError):
            virtabs_contract.other_door().lookup_domain(dom.uuid)

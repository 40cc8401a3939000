"""The kit checks itself: every public operation is covered, every capability is exercised.

:data:`COVERAGE` is the explicit table: each public method or property of the
API's classes names the kit tests that exercise it. ``test_every_public_name_is_covered``
fails when virtabs grows a public name the table does not list (so a new
operation cannot slip past the contract suite), or when the table names a
test that does not exist.

The driver side is generated, not kept: :func:`operation_tests` maps every row
of :data:`virtabs.spi.OPERATIONS` to the suite tests that require its
capability, and a row no test requires fails
``test_every_operation_has_a_test_requiring_its_capability``. The kit's own
self-tests (``tests/testing``) also run the suite with every SPI call recorded
and check that each row's method is really reached by such a test.
"""

from __future__ import annotations

import sys

from ... import _api
from ..._capabilities import Capability
from ...spi import OPERATIONS
from ..contract import Contract, public_calls
from ..markers import MARKER

__all__ = ["COVERAGE", "TestKitCoverage", "operation_tests", "public_names", "suite_tests"]

_CONN = "TestConnection"
_LOOK = "TestLookups"
_LIFE = "TestPowerState"
_COPY = "TestBlockCopyRules"
_FLAGS = "TestBlockCopyFlags"

COVERAGE: dict[str, tuple[str, ...]] = {
    # Connection
    "Connection.capabilities": (f"{_CONN}::test_capabilities_are_a_refinement_of_the_class_declaration",),
    "Connection.close": (f"{_CONN}::test_closed_connection_refuses_calls",),
    "Connection.closed": (f"{_CONN}::test_closed_connection_refuses_calls",),
    "Connection.timeout": (f"{_CONN}::test_closed_connection_refuses_calls",),
    "Connection.define_domain": (
        "TestDefine::test_define_lookup_undefine",
        "TestDefine::test_define_from_a_mapping_and_duplicate_name",
    ),
    "Connection.domain_records": (
        f"{_LOOK}::test_list_domains_and_records_agree",
        "TestListing::test_listing_100_domains_costs_a_constant_number_of_driver_calls",
    ),
    "Connection.driver_name": (f"{_CONN}::test_closed_connection_refuses_calls",),
    "Connection.host_info": (f"{_CONN}::test_host_info",),
    "Connection.list_domains": (
        f"{_LOOK}::test_list_domains_and_records_agree",
        "TestListing::test_listing_100_domains_costs_a_constant_number_of_driver_calls",
    ),
    "Connection.list_storage_pools": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "Connection.lookup_domain": (
        f"{_LOOK}::test_lookup_by_name_and_by_uuid",
        f"{_LOOK}::test_missing_domain_is_no_domain_error_42",
    ),
    "Connection.lookup_storage_pool": ("TestStoragePools::test_missing_pool_and_volume_errors",),
    "Connection.list_networks": ("TestNetworks::test_networks_can_be_listed_and_looked_up_by_name_and_id",),
    "Connection.lookup_network": (
        "TestNetworks::test_networks_can_be_listed_and_looked_up_by_name_and_id",
        "TestNetworks::test_missing_network_is_no_network_error_43",
    ),
    "Network.id": ("TestNetworks::test_networks_can_be_listed_and_looked_up_by_name_and_id",),
    "Network.info": ("TestNetworks::test_networks_can_be_listed_and_looked_up_by_name_and_id",),
    "Network.kind": ("TestNetworks::test_networks_can_be_listed_and_looked_up_by_name_and_id",),
    "Network.last_info": ("TestNetworks::test_attachments_agree_with_the_domains_nics",),
    "Network.name": ("TestNetworks::test_networks_can_be_listed_and_looked_up_by_name_and_id",),
    "Connection.parsed_uri": (f"{_CONN}::test_closed_connection_refuses_calls",),
    "Connection.readonly": (f"{_CONN}::test_readonly_connection_refuses_writes_before_the_host",),
    "Connection.restore": ("TestSaveRestore::test_save_and_restore",),
    "Connection.subscribe": ("TestEvents::test_start_event", "TestEvents::test_filter_and_unsubscribe"),
    "Connection.supports": (f"{_CONN}::test_capabilities_are_a_refinement_of_the_class_declaration",),
    "Connection.uri": (f"{_CONN}::test_closed_connection_refuses_calls",),
    # Domain
    "Domain.migrate": (
        "TestMigration::test_live_migration_moves_the_running_domain",
        "TestMigration::test_offline_migration_moves_the_definition",
    ),
    "Domain.attach_disk": ("TestDiskHotplug::test_attach_and_detach",),
    "Domain.block_commit": (
        "TestBlockCommit::test_active_commit_pivots_onto_the_base",
        "TestBlockCommit::test_commit_of_a_lower_layer",
    ),
    "Domain.block_copy": (
        f"{_FLAGS}::test_block_copy_api_with_format_raw",
        f"{_COPY}::test_second_job_on_the_disk_is_block_copy_active",
    ),
    "Domain.block_job_abort": (
        f"{_COPY}::test_pivot_before_ready_is_block_copy_active",
        "TestBlockPull::test_pivot_of_a_pull_job_is_operation_invalid",
    ),
    "Domain.block_job_info": (f"{_COPY}::test_progress_never_reports_done_before_ready",),
    "Domain.block_job_set_speed": (f"{_COPY}::test_bandwidth_shows_in_the_measured_progress_rate",),
    "Domain.block_pull": ("TestBlockPull::test_pull_flattens",),
    "Domain.block_rebase": (
        f"{_FLAGS}::test_copy_flattens_into_the_source_format",
        f"{_COPY}::test_copy_flags_without_copy_are_invalid",
    ),
    "Domain.connection": (f"{_LOOK}::test_lookup_by_name_and_by_uuid",),
    "Domain.create_snapshot": (
        "TestSnapshots::test_snapshot_cycle",
        f"{_COPY}::test_snapshot_during_a_copy_is_block_copy_active",
    ),
    "Domain.delete_snapshot": ("TestSnapshots::test_snapshot_cycle",),
    "Domain.destroy": (f"{_LIFE}::test_destroy_makes_it_shutoff",),
    "Domain.detach_disk": (
        "TestDiskHotplug::test_attach_and_detach",
        f"{_COPY}::test_detach_during_a_copy_is_block_copy_active",
    ),
    "Domain.disks": (f"{_LOOK}::test_domain_reads",),
    "Domain.has_managed_save": ("TestManagedSave::test_managed_save_then_start_resumes_the_guest",),
    "Domain.info": (f"{_LOOK}::test_domain_reads", "TestManagedSave::test_managed_save_then_start_resumes_the_guest"),
    "Domain.list_snapshots": ("TestSnapshots::test_snapshot_cycle",),
    "Domain.managed_save": (
        "TestManagedSave::test_managed_save_then_start_resumes_the_guest",
        f"{_COPY}::test_managed_save_during_a_copy_is_block_copy_active",
    ),
    "Domain.managed_save_remove": ("TestManagedSave::test_managed_save_remove_makes_start_boot",),
    "Domain.name": (f"{_LOOK}::test_lookup_by_name_and_by_uuid",),
    "Domain.nics": (f"{_LOOK}::test_domain_reads",),
    "Domain.reboot": (f"{_LIFE}::test_reboot_boots_the_guest_again",),
    "Domain.resume": (f"{_LIFE}::test_suspend_and_resume",),
    "Domain.revert_to_snapshot": (
        "TestSnapshots::test_snapshot_cycle",
        f"{_COPY}::test_revert_during_a_copy_is_block_copy_active",
    ),
    "Domain.save": ("TestSaveRestore::test_save_and_restore", f"{_COPY}::test_save_during_a_copy_is_block_copy_active"),
    "Domain.shutdown": (f"{_LIFE}::test_shutdown_ends_in_shutoff",),
    "Domain.spec": (f"{_LOOK}::test_domain_reads", "TestDefine::test_define_lookup_undefine"),
    "Domain.start": (f"{_LIFE}::test_start_makes_it_running", f"{_LIFE}::test_start_paused"),
    "Domain.state": (f"{_LOOK}::test_domain_reads",),
    "Domain.suspend": (f"{_LIFE}::test_suspend_and_resume",),
    "Domain.undefine": (
        "TestDefine::test_define_lookup_undefine",
        f"{_LIFE}::test_undefine_of_a_running_domain_is_refused",
        "TestManagedSave::test_undefine_is_refused_while_a_managed_save_image_exists",
    ),
    "Domain.uuid": (f"{_LOOK}::test_lookup_by_name_and_by_uuid",),
    # BlockJob
    "BlockJob.abort": (f"{_COPY}::test_abort_stays_on_the_source",),
    "BlockJob.info": (f"{_COPY}::test_pivot_before_ready_is_block_copy_active",),
    "BlockJob.pivot": (f"{_FLAGS}::test_copy_flattens_into_the_source_format",),
    "BlockJob.two_phase": (
        "TestBlockPull::test_pull_flattens",
        "TestBlockCommit::test_active_commit_pivots_onto_the_base",
    ),
    "BlockJob.wait": ("TestBlockPull::test_pull_flattens", "TestBlockCommit::test_commit_of_a_lower_layer"),
    "BlockJob.wait_ready": (
        f"{_FLAGS}::test_copy_flattens_into_the_source_format",
        "TestBlockPull::test_pull_flattens",
    ),
    # storage
    "StoragePool.create_volume": ("TestStorageVolumes::test_volume_cycle",),
    "StoragePool.info": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "StoragePool.last_info": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "Volume.last_info": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "StoragePool.list_volumes": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "StoragePool.lookup_volume": (
        "TestStoragePools::test_missing_pool_and_volume_errors",
        "TestStorageVolumes::test_volume_cycle",
    ),
    "StoragePool.name": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "Volume.delete": ("TestStorageVolumes::test_volume_cycle",),
    "Volume.info": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "Volume.name": ("TestStorageVolumes::test_volume_cycle",),
    "Volume.path": ("TestStoragePools::test_pools_and_volumes_can_be_listed_and_looked_up",),
    "Volume.pool": ("TestStorageVolumes::test_volume_cycle",),
    "Volume.resize": ("TestStorageVolumes::test_volume_resize",),
    # events
    "Subscription.close": ("TestEvents::test_filter_and_unsubscribe",),
    "Subscription.unsubscribe": ("TestEvents::test_filter_and_unsubscribe",),
}
"""Public name -> kit tests (``Class::test``) that exercise it."""

PUBLIC_CLASSES = (
    _api.Connection,
    _api.Domain,
    _api.BlockJob,
    _api.StoragePool,
    _api.Volume,
    _api.Network,
    _api.Subscription,
)


def public_names() -> set[str]:
    """Every public method and property of the API classes, as ``Class.name``."""
    return {
        f"{cls.__name__}.{name}"
        for cls in PUBLIC_CLASSES
        for klass in cls.__mro__
        if klass is not object
        for name in vars(klass)
        if not name.startswith("_")
    }


def suite_tests() -> dict[str, frozenset[str]]:
    """``Class::test`` -> the capabilities it requires, for every test of the suite."""
    from . import __all__ as class_names

    suite = sys.modules[__package__ or "virtabs.testing.suite"]
    out: dict[str, frozenset[str]] = {}
    for cls_name in class_names:
        cls = getattr(suite, cls_name)
        class_marks = [m for m in getattr(cls, "pytestmark", []) if m.name == MARKER]
        for name, fn in vars(cls).items():
            if not name.startswith("test_"):
                continue
            marks = class_marks + [m for m in getattr(fn, "pytestmark", []) if m.name == MARKER]
            out[f"{cls_name}::{name}"] = frozenset(str(a) for m in marks for a in m.args)
    return out


def operation_tests() -> dict[str, tuple[str, ...]]:
    """SPI method -> the suite tests requiring (one of) its capability, for every row of ``OPERATIONS``.

    A row without a capability (the reads every driver serves) maps to every test.
    """
    tests = suite_tests()
    out: dict[str, tuple[str, ...]] = {}
    for method, op in OPERATIONS.items():
        wanted = {c.value for c in op.required_capabilities()}
        out[method] = tuple(sorted(t for t, caps in tests.items() if not wanted or wanted & caps))
    return out


class TestKitCoverage:
    """The suite's own completeness checks (no driver needed beyond the connection)."""

    def test_every_public_name_is_covered(self, virtabs_contract: Contract) -> None:
        tests = suite_tests()
        missing = sorted(public_names() - set(COVERAGE))
        assert not missing, f"public names without a contract test in COVERAGE: {missing}"
        stale = sorted(set(COVERAGE) - public_names())
        assert not stale, f"COVERAGE lists names that are not public API: {stale}"
        unknown = sorted({t for ts in COVERAGE.values() for t in ts} - set(tests))
        assert not unknown, f"COVERAGE names tests that do not exist: {unknown}"

    def test_every_operation_has_a_test_requiring_its_capability(self, virtabs_contract: Contract) -> None:
        uncovered = sorted(method for method, tests in operation_tests().items() if not tests)
        assert not uncovered, f"OPERATIONS rows no contract test requires the capability of: {uncovered}"

    def test_every_capability_is_exercised_and_has_refusal_checks(self, virtabs_contract: Contract) -> None:
        used = {cap for caps in suite_tests().values() for cap in caps}
        missing = sorted(c.value for c in Capability if c.value not in used)
        assert not missing, f"capabilities no contract test requires: {missing}"
        no_refusal = [
            c.value
            for c in Capability
            if not public_calls(virtabs_contract, c) and c is not Capability.BLOCK_COPY_PIVOT
        ]
        assert not no_refusal, f"capabilities without public refusal checks: {no_refusal}"

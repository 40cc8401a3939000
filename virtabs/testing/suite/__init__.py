"""The contract suite: test classes a driver's own test module re-exports.

``from virtabs.testing.suite import *`` brings every test class into a
driver's test module, where pytest collects them against the driver's
``virtabs_uri`` / ``virtabs_target`` fixtures. Subclass one to add or adjust a
test (the SQLAlchemy third-party dialect pattern).
"""

from __future__ import annotations

from .test_blockjobs import (
    TestBlockCommit,
    TestBlockCopyFlags,
    TestBlockCopyRules,
    TestBlockJobEvents,
    TestBlockPull,
)
from .test_core import TestConnection, TestDriverShape, TestLookups
from .test_events_storage import TestEvents, TestStoragePools, TestStorageVolumes
from .test_lifecycle import TestDefine, TestListing, TestManagedSave, TestPowerState, TestSaveRestore
from .test_meta import TestKitCoverage
from .test_migration import TestMigration
from .test_networks import TestNetworks
from .test_snapshots_devices import TestDiskHotplug, TestSnapshots

__all__ = [
    "TestBlockCommit",
    "TestBlockCopyFlags",
    "TestBlockCopyRules",
    "TestBlockJobEvents",
    "TestBlockPull",
    "TestConnection",
    "TestDefine",
    "TestDiskHotplug",
    "TestDriverShape",
    "TestEvents",
    "TestKitCoverage",
    "TestListing",
    "TestLookups",
    "TestMigration",
    "TestNetworks",
    "TestManagedSave",
    "TestPowerState",
    "TestSaveRestore",
    "TestSnapshots",
    "TestStoragePools",
    "TestStorageVolumes",
]

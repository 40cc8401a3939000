"""Drivers that lie about their capabilities (or break the SPI), for the kit's self-tests.

They are never registered through entry points: the self-tests open them with
``Connection._open(driver_class, parse_uri(...), None, readonly, None)``
through an overridden ``virtabs_open`` fixture.
"""

from __future__ import annotations

from virtabs import Capabilities, OperationFailedError
from virtabs._models import BlockCopyRequest, DomainRecord, DomainRef
from virtabs.drivers.test import TestDriver
from virtabs.spi import Driver


class LyingCopyDriver(TestDriver):
    """Declares block.copy (everything, like the test driver) but every copy fails."""

    __test__ = False

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        """Always fails: the declaration is a lie."""
        raise OperationFailedError(f"block copy of disk '{disk}' is not really implemented")


class HiddenCopyDriver(TestDriver):
    """Does not declare block.copy (nor its sub-capabilities), yet its block_copy works."""

    __test__ = False
    capabilities = Capabilities.all().without("block.copy")
    # The dishonest part: it inherits the test driver's working block_copy without declaring it.


class HonestNoCopyDriver(TestDriver):
    """Does not declare block.copy and does not implement it: what an honest partial driver looks like."""

    __test__ = False
    capabilities = Capabilities.all().without("block.copy")
    block_copy = Driver.block_copy


class NoPivotDriver(TestDriver):
    """Copies, but the caller cannot decide when to pivot (like hypervisors whose migration switches by itself)."""

    __test__ = False
    capabilities = Capabilities.all().without("block.copy.pivot")


class MinimalDriver(TestDriver):
    """Declares only domain.define and storage.pool; refuses everything else itself (the base class's way)."""

    __test__ = False
    capabilities = Capabilities.of("domain.define", "storage.pool")


for _name in (
    "start", "shutdown", "destroy", "reboot", "suspend", "resume", "save", "restore",
    "create_snapshot", "list_snapshots", "revert_to_snapshot", "delete_snapshot", "attach_disk", "detach_disk",
    "block_pull", "block_copy", "block_commit", "create_volume", "delete_volume", "resize_volume",
    "block_job_info", "block_job_abort", "block_job_set_speed",
    "migrate_prepare", "migrate_perform", "migrate_job_info", "migrate_abort", "migrate_finish", "migrate_confirm",
    "managed_save", "has_managed_save", "managed_save_remove", "list_networks", "lookup_network",
):  # fmt: skip
    setattr(MinimalDriver, _name, getattr(Driver, _name))


class DriftingDriver(TestDriver):
    """Overrides an SPI method with different parameters."""

    __test__ = False

    def start(self, dom: DomainRef, paused: bool = False, force: bool = False) -> None:  # type: ignore[override]
        """Drifted signature."""
        super().start(dom, paused)


class NPlusOneDriver(TestDriver):
    """Uses the generic one-domain-at-a-time inventory (several driver calls per domain)."""

    __test__ = False

    def inventory(self) -> list[DomainRecord]:
        """The base class's fallback."""
        return Driver.inventory(self)


def conftest_source(driver: str, module: str = "dishonest_drivers", job_timeout: float | None = None) -> str:
    """A conftest.py that makes the kit open ``driver`` (a class name of ``module``) for test:///default,
    with the default target's waits bounded by ``job_timeout`` seconds when given."""
    target = ""
    if job_timeout is not None:
        target = f"""

@pytest.fixture(scope="session")
def virtabs_target():
    target = DefaultTarget()
    target.job_timeout = {job_timeout}
    return target
"""
    return f"""
import pytest
from virtabs._api import Connection
from virtabs._uri import parse_uri
from virtabs.testing import DefaultTarget
import {module}


@pytest.fixture(scope="session")
def virtabs_open():
    def open_(uri, *, readonly=False):
        return Connection._open({module}.{driver}, parse_uri(uri), None, readonly, None)
    return open_
{target}"""


SUITE = "from virtabs.testing.suite import *  # noqa: F403\n"

__all__ = [
    "SUITE",
    "DriftingDriver",
    "HiddenCopyDriver",
    "HonestNoCopyDriver",
    "LyingCopyDriver",
    "MinimalDriver",
    "NoPivotDriver",
    "NPlusOneDriver",
    "conftest_source",
]

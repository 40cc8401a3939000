"""The virtabs contract kit against the hyperv driver, talking WinRM to the WS-Man simulator.

The target (``virtabs_hyperv.testing.HypervTarget``, the one the driver publishes) starts the simulator
(``tests/wsman_sim``) because the URI points at a free local port; nothing here ran against a real
Hyper-V host. ``KNOWN_FAILURES`` lists the tests whose model Hyper-V does not have, with the reason;
they run as strict xfails, so one that starts passing fails the run and the list must shrink
(``known-failures.yaml``, plus the block-copy tests the core stops while it refuses ``C:\\`` paths).
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import virtabs
from virtabs.testing.plugin import load_known_failures
from virtabs.testing.suite import *  # noqa: F403

from virtabs_hyperv.testing import HypervTarget

# What Hyper-V does not have, whatever the core accepts (with the error each failure raises).
KNOWN_FAILURES = load_known_failures(Path(__file__).with_name("known-failures.yaml"))
# While the core refuses C:\... destinations as not absolute (os.path.isabs), every block copy stops there.
WINDOWS_PATHS = "InvalidArgumentError: the core refuses a Windows destination path (C:\\...) as not absolute"
BLOCKED_BY_PATHS = (
    "TestBlockCopyFlags::test_copy_flattens_into_the_source_format",
    "TestBlockCopyFlags::test_block_copy_api_with_format_raw",
    "TestBlockCopyFlags::test_block_copy_api_shallow",
    "TestBlockCopyRules::test_pivot_before_ready_is_block_copy_active",
    "TestBlockCopyRules::test_second_job_on_the_disk_is_block_copy_active",
    "TestBlockCopyRules::test_snapshot_during_a_copy_is_block_copy_active",
    "TestBlockCopyRules::test_revert_during_a_copy_is_block_copy_active",
    "TestBlockCopyRules::test_detach_during_a_copy_is_block_copy_active",
    "TestBlockCopyRules::test_abort_stays_on_the_source",
    "TestBlockCopyRules::test_progress_never_reports_done_before_ready",
    "TestBlockCopyRules::test_bandwidth_shows_in_the_measured_progress_rate",
    "TestBlockJobEvents::test_copy_events",
)


def core_accepts_windows_paths() -> bool:
    """Probe the public API (on test:///default): does a block copy to ``C:\\...`` pass the core's checks?"""
    with virtabs.open("test:///default") as conn:
        dom = conn.lookup_domain("test")
        try:
            job = dom.block_copy("vda", "C:\\virtabs-probe.img", flags=virtabs.BlockCopyFlags.TRANSIENT_JOB)
        except virtabs.InvalidArgumentError as exc:
            return "absolute path" not in exc.message
        job.abort()
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def _sim_uri() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vthv-") as d:
        yield f"hyperv://127.0.0.1:{_free_port()}/?auth=basic&cafile={Path(d) / 'ca.pem'}"


@pytest.fixture(scope="session")
def virtabs_uri(_sim_uri: str) -> str:
    return _sim_uri


@pytest.fixture(scope="session")
def virtabs_target(_sim_uri: str) -> Iterator[HypervTarget]:
    target = HypervTarget.from_uri(_sim_uri)
    assert target.sim is not None, "the target did not start the simulator"
    yield target
    target.close()


@pytest.fixture(scope="session")
def virtabs_known_failures() -> Mapping[str, str]:
    if core_accepts_windows_paths():
        return KNOWN_FAILURES
    blocked = {b.rsplit("::", 1)[-1] for b in BLOCKED_BY_PATHS}
    known = {k: v for k, v in KNOWN_FAILURES.items() if k.rsplit("::", 1)[-1] not in blocked}
    known.update(dict.fromkeys(BLOCKED_BY_PATHS, WINDOWS_PATHS))
    return known

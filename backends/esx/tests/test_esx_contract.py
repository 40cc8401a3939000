"""The virtabs contract kit against vcsim (vCenter model, TLS verified against the run's CA).

vcsim is test infrastructure (see ``vcsim_harness.py``): govmomi 0.24.2's simulator, whose known bugs
are the named known failures below. Reboot is tested in its ``?reboot=reset`` form because vcsim does not
implement RebootGuest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import virtabs
from vcsim_harness import Vcsim
from virtabs import Credentials
from virtabs.testing.suite import *  # noqa: F403

from virtabs_esx.testing import EsxTarget

#: Storage vMotion has no "ready" phase: it switches over by itself when its task ends. The core's BlockJob
#: and the kit treat every COPY job as two-phase and wait for a ready state that never comes.
NO_READY_PHASE = "Storage vMotion switches over by itself (no ready phase); the kit waits for one"
#: govmomi 0.24.2's simulator finishes RelocateVM_Task before the call returns: no copy is ever in flight.
SYNC_RELOCATE = "vcsim 0.24.2 runs RelocateVM_Task synchronously: no copy in flight to observe"

KNOWN_FAILURES: dict[str, str] = {
    # refusal checks of the undeclared block.copy.pivot start a copy and wait for it to be ready
    "test_copy_flattens_into_the_source_format": NO_READY_PHASE,
    "test_copy_raw_flattens_into_raw": NO_READY_PHASE,
    "test_shallow_copy_keeps_the_backing_chain": NO_READY_PHASE,
    "test_reuse_ext_copies_the_whole_chain_into_the_existing_file": NO_READY_PHASE,
    "test_reuse_ext_shallow_copies_the_top_onto_the_existing_file": NO_READY_PHASE,
    "test_copy_dev_onto_an_existing_device": NO_READY_PHASE,
    "test_block_copy_api_with_format_raw": NO_READY_PHASE,
    "test_block_copy_api_shallow": NO_READY_PHASE,
    "test_copy_events": NO_READY_PHASE,
    "test_abort_stays_on_the_source": NO_READY_PHASE,
    "test_pivot_before_ready_is_block_copy_active": SYNC_RELOCATE,
    "test_second_job_on_the_disk_is_block_copy_active": SYNC_RELOCATE,
    "test_snapshot_during_a_copy_is_block_copy_active": SYNC_RELOCATE,
    "test_revert_during_a_copy_is_block_copy_active": SYNC_RELOCATE,
    "test_detach_during_a_copy_is_block_copy_active": SYNC_RELOCATE,
    "test_progress_never_reports_done_before_ready": SYNC_RELOCATE,
    "test_set_speed_changes_the_bandwidth": "Storage vMotion cannot be throttled (and vcsim's ends at once)",
    "test_start_paused": "vSphere cannot power a VM on with paused vCPUs (there is no CPU pause)",
}


@pytest.fixture(scope="session")
def virtabs_uri(vcsim: Vcsim) -> str:
    assert vcsim.pki is not None
    return f"vpx://{vcsim.host}:{vcsim.port}/?cafile={vcsim.pki.ca}&reboot=reset"


@pytest.fixture(scope="session")
def virtabs_open(vcsim: Vcsim) -> Callable[[str], virtabs.Connection]:
    creds = Credentials(vcsim.username, vcsim.password)
    return lambda uri, **kwargs: virtabs.open(uri, credentials=creds, **kwargs)


@pytest.fixture(scope="session")
def virtabs_target() -> EsxTarget:
    return EsxTarget(datastore="LocalDS_0", scratch_datastore="LocalDS_1")


@pytest.fixture(scope="session")
def virtabs_known_failures() -> Mapping[str, str]:
    return KNOWN_FAILURES

"""The virtabs contract kit against vcsim (vCenter model, TLS verified against the run's CA).

vcsim is test infrastructure (see ``vcsim_harness.py``): govmomi 0.24.2's simulator, whose known bugs
are the named known failures of ``known-failures.yaml``. Reboot is tested in its ``?reboot=reset`` form because vcsim does not
implement RebootGuest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import virtabs
from vcsim_harness import Vcsim
from virtabs import Credentials
from virtabs.testing.plugin import load_known_failures
from virtabs.testing.suite import *  # noqa: F403

from virtabs_esx.testing import EsxTarget

#: What vcsim cannot show (real vSphere can): tests that find these effects missing are "not observable".
VCSIM_UNOBSERVABLE = {
    "copy.in_flight": "vcsim 0.24.2 runs RelocateVM_Task synchronously, no copy is ever in flight",
    "image.content": "vcsim 0.24.2's Storage vMotion moves no data, no image content to digest",
    "guest.resume": "vcsim 0.24.2's PowerOnVM_Task of a suspended VM is its power-on from off (new bootTime, no "
    "suspend file was written): a resume cannot be told from a boot",
}

#: test -> "ErrorClass: reason" (the class the failure must raise, and the message it is pinned to)
KNOWN_FAILURES = load_known_failures(Path(__file__).with_name("known-failures.yaml"))


@pytest.fixture(scope="session")
def virtabs_uri(vcsim: Vcsim) -> str:
    assert vcsim.pki is not None
    return f"vpx://{vcsim.host}:{vcsim.port}/?cafile={vcsim.pki.ca}&reboot=reset"


@pytest.fixture(scope="session")
def virtabs_open(vcsim: Vcsim) -> Callable[[str], virtabs.Connection]:
    creds = Credentials(vcsim.username, vcsim.password)
    return lambda uri, **kwargs: virtabs.open(uri, credentials=creds, **kwargs)


@pytest.fixture(scope="session")
def virtabs_target(vcsim: Vcsim) -> EsxTarget:
    # what the kit loads through virtabs.testing.targets (datastores LocalDS_0, scratch LocalDS_1)
    target = EsxTarget(credentials=(vcsim.username, vcsim.password))
    target.unobservable = VCSIM_UNOBSERVABLE
    return target


@pytest.fixture(scope="session")
def virtabs_known_failures() -> Mapping[str, str]:
    return KNOWN_FAILURES

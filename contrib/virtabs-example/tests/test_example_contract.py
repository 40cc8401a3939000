"""The whole virtabs contract kit against ``example:///contract`` (the SQLAlchemy dialect pattern).

Undeclared capabilities (save, hot-plug, block jobs) are not skipped: the kit checks that the core
refuses them with NotSupportedError before the driver runs, and that the driver class does not
implement them (``not-supported-verified`` in ``--virtabs-report``).
"""

from __future__ import annotations

import pytest
from virtabs.testing.suite import *  # noqa: F403

from virtabs_example.testing import ExampleTarget


@pytest.fixture(scope="session")
def virtabs_uri() -> str:
    return "example:///contract"


@pytest.fixture(scope="session")
def virtabs_target() -> ExampleTarget:
    return ExampleTarget()

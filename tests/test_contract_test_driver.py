"""The contract suite (virtabs.testing) against the reference driver, test:///default.

Equivalent to ``pytest --virtabs-uri=test:///default --pyargs virtabs.testing``; kept here so the
README's test command runs it. The reference driver declares every capability, so every test runs.
"""

from __future__ import annotations

import pytest

from virtabs.testing.suite import *  # noqa: F403


@pytest.fixture(scope="session")
def virtabs_uri() -> str:
    return "test:///default"

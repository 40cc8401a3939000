"""The kit's self-tests run the kit in sub-pytests (pytester) against dishonest drivers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from virtabs.drivers.test import reset_default_node

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _clean_default_node() -> Iterator[None]:
    reset_default_node()
    yield
    reset_default_node()

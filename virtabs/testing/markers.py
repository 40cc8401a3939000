"""``@requires``: how a contract test names the capabilities it exercises."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._capabilities import Capability
from .._errors import InvalidArgumentError

if TYPE_CHECKING:  # pytest is imported where a marker is made, so `virtabs-contract` can say it is missing
    import pytest

__all__ = ["MARKER", "parse_marker_names", "required_capabilities", "requires"]

MARKER = "virtabs_requires"
"""The pytest marker name; ``@requires(...)`` is ``@pytest.mark.virtabs_requires(...)`` with checked names."""


def parse_marker_names(names: Iterable[Any]) -> frozenset[Capability]:
    """Parse capability names; a misspelt one raises InvalidArgumentError (a collection error)."""
    return frozenset(Capability.parse(n) for n in names)


def requires(*names: Capability | str) -> pytest.MarkDecorator:
    """Mark a contract test as exercising ``names``.

    The names are parsed here, at import time, so a misspelt one makes the
    test module fail to collect (an ERROR, never a silent skip). When the
    connection declares every name the test runs and must pass; otherwise the
    kit checks that each undeclared capability is refused with
    ``NotSupportedError`` before the driver is reached::

        @requires("block.copy", "block.copy.shallow")
        def test_shallow_copy(self, virtabs_contract): ...
    """
    if not names:
        raise InvalidArgumentError("requires() needs at least one capability name")
    import pytest

    caps = sorted(parse_marker_names(names), key=lambda c: c.value)
    return pytest.mark.virtabs_requires(*[c.value for c in caps])


def required_capabilities(item: pytest.Item) -> frozenset[Capability]:
    """Every capability the item's ``virtabs_requires`` markers name (class and function markers merge)."""
    caps: set[Capability] = set()
    for mark in item.iter_markers(name=MARKER):
        caps |= parse_marker_names(mark.args)
    return frozenset(caps)

"""Helpers shared by the suite's modules."""

from __future__ import annotations

import pytest

from ..._api import Domain
from ..._capabilities import Capability
from ..._errors import VirtabsError
from ..contract import Contract

__all__ = ["any_domain", "expect_error"]


def any_domain(c: Contract) -> Domain:
    """A domain to read from: a fresh one where the driver can define, else the first existing one."""
    if c.conn.supports(Capability.DOMAIN_DEFINE):
        return c.domain(running=False)
    domains = c.conn.list_domains()
    if not domains:
        pytest.fail(
            f"the {c.conn.driver_name} driver lists no domain and cannot define one: "
            "supply a ContractTarget whose host has a domain",
            pytrace=False,
        )
    return domains[0]


def expect_error(exc: pytest.ExceptionInfo[VirtabsError], cls: type[VirtabsError], code: int) -> None:
    """The raised error is ``cls`` with ``code``, and has a message."""
    assert isinstance(exc.value, cls), f"expected {cls.__name__}, got {type(exc.value).__name__}: {exc.value}"
    assert int(exc.value.code) == code
    assert exc.value.message

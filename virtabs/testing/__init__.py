"""virtabs.testing: the contract-test kit every virtabs driver runs.

Run the suite against any installed driver::

    pytest --virtabs-uri=test:///default --pyargs virtabs.testing
    virtabs-contract --uri test:///default          # the capability x result table

or reuse it in a driver's own suite (the SQLAlchemy third-party dialect
pattern)::

    # tests/test_contract.py of a driver distribution
    from virtabs.testing.suite import *  # noqa: F403

    # tests/conftest.py
    import pytest
    from virtabs.testing import DefaultTarget

    @pytest.fixture(scope="session")
    def virtabs_uri():
        return "mydriver:///"

    @pytest.fixture(scope="session")
    def virtabs_target():
        return DefaultTarget()

Every test names the capabilities it exercises with :func:`requires`. Where
the connection declares them, the test runs and must pass; where it does not,
the kit checks that the public call raises ``NotSupportedError`` before any
driver method runs, *and* that the driver's own method refuses too, so a
declaration is honest in both directions. A misspelt capability name is a
collection error. Known failures (``--virtabs-known-failures`` or the
``virtabs_known_failures`` fixture) are ``xfail(strict=True)``.
"""

from __future__ import annotations

from .contract import ABSENT_DOMAIN, Contract, RefusalProblem, public_calls, verify_refusals
from .markers import MARKER, required_capabilities, requires
from .recorder import HOST_TOUCHING_METHODS, READ_METHODS, CallRecorder
from .target import ContractTarget, DefaultTarget, TargetUnavailable

__all__ = [
    "ABSENT_DOMAIN",
    "HOST_TOUCHING_METHODS",
    "MARKER",
    "READ_METHODS",
    "CallRecorder",
    "Contract",
    "ContractTarget",
    "DefaultTarget",
    "RefusalProblem",
    "TargetUnavailable",
    "public_calls",
    "required_capabilities",
    "requires",
    "verify_refusals",
]

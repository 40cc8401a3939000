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

The target (disposable domains and images) travels with the driver: the
plugin loads the class a distribution publishes under the entry-point group
``virtabs.testing.targets`` for the URI's scheme, else :class:`DefaultTarget`.

Every test names the capabilities it exercises with :func:`requires`. Where
the connection declares them, the test runs and must pass: a skip, an xfail,
``NotSupportedError`` or any other exception inside it is a failure of those
capabilities. Where it does not, the kit checks that the public call raises
``NotSupportedError`` before the host is touched, and that the driver class
does not implement the capability without declaring it; the report counts
that as "refusal verified", never as a pass. Effects are checked through
another door than the one that caused them (``docs/contract-kit.md`` lists
the properties per capability). A misspelt capability name is a collection
error. Known failures (``--virtabs-known-failures`` or the
``virtabs_known_failures`` fixture) are ``xfail(strict=True, raises=...)``.
"""

from __future__ import annotations

from .contract import ABSENT_DOMAIN, Contract, RefusalProblem, public_calls, verify_refusals
from .images import QemuImgContent
from .markers import MARKER, required_capabilities, requires
from .recorder import HOST_TOUCHING_METHODS, READ_METHODS, CallRecorder
from .target import (
    OBSERVABLE_EFFECTS,
    OPTIONAL_METHODS,
    ContractTarget,
    DefaultTarget,
    NotObservable,
    TargetUnavailable,
)

__all__ = [
    "ABSENT_DOMAIN",
    "HOST_TOUCHING_METHODS",
    "MARKER",
    "OBSERVABLE_EFFECTS",
    "OPTIONAL_METHODS",
    "QemuImgContent",
    "READ_METHODS",
    "CallRecorder",
    "Contract",
    "ContractTarget",
    "DefaultTarget",
    "NotObservable",
    "RefusalProblem",
    "TargetUnavailable",
    "public_calls",
    "required_capabilities",
    "requires",
    "verify_refusals",
]

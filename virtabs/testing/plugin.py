"""The pytest plugin of the contract kit (registered as ``pytest11`` entry point ``virtabs``).

Options:

``--virtabs-uri=URI``
    The connection(s) to test; repeat it to test several (each test runs once per URI).
    Without it: ``$VIRTABS_CONTRACT_URI``, then ``test:///default``.
``--virtabs-known-failures=FILE``
    A YAML/JSON mapping ``test id -> reason``; those tests are ``xfail(strict=True)``.
``--virtabs-report`` / ``--virtabs-report-file=FILE``
    Print the capability x result table at the end / write it as JSON.

Fixtures a driver's own suite may override: ``virtabs_uri``, ``virtabs_open``
(how a URI becomes a Connection), ``virtabs_target`` (a
:class:`~virtabs.testing.ContractTarget`), ``virtabs_known_failures``.
Tests use ``virtabs_contract`` (a :class:`~virtabs.testing.Contract`).

The plugin is loaded in every pytest run of an environment where virtabs is
installed; it adds options and fixtures only and collects nothing by itself.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import pytest

from .. import _api
from .._capabilities import Capability
from .._errors import InvalidArgumentError
from .contract import Contract, verify_refusals
from .markers import MARKER, parse_marker_names, required_capabilities
from .report import ReportCollector, render_text
from .target import ContractTarget, DefaultTarget

__all__ = [
    "known_failure_reason",
    "load_known_failures",
    "pytest_addoption",
    "pytest_configure",
    "virtabs_contract",
    "virtabs_known_failures",
    "virtabs_open",
    "virtabs_target",
    "virtabs_uri",
]

_missing_key = pytest.StashKey[frozenset[Capability]]()


# --- options and configuration -------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the kit's command-line options."""
    group = parser.getgroup("virtabs", "virtabs contract kit")
    group.addoption(
        "--virtabs-uri",
        action="append",
        default=[],
        metavar="URI",
        help="connection URI to run the contract suite against (repeatable)",
    )
    group.addoption(
        "--virtabs-known-failures",
        default=None,
        metavar="FILE",
        help="YAML/JSON mapping of contract test ids to reasons; they are xfail(strict=True)",
    )
    group.addoption("--virtabs-report", action="store_true", help="print the capability x result table")
    group.addoption("--virtabs-report-file", default=None, metavar="FILE", help="write the report as JSON")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and the report collector."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*capabilities): the virtabs capabilities a contract test exercises "
        "(undeclared ones are checked to be refused, never skipped)",
    )
    config.pluginmanager.register(_ReportPlugin(config), "virtabs-contract-report")


def _uris(config: pytest.Config) -> list[str]:
    uris: list[str] = [u for u in config.getoption("--virtabs-uri") or [] if u]
    return uris


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With several ``--virtabs-uri``, run every contract test once per URI."""
    uris = _uris(metafunc.config)
    if "virtabs_uri" in metafunc.fixturenames and len(uris) > 1:
        metafunc.parametrize("virtabs_uri", uris, ids=uris, scope="session")


# --- collection: misspelt capability names are collection errors ---------------------------


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Turn a misspelt capability in a raw ``virtabs_requires`` marker into a collection error."""
    report = yield
    if report.outcome != "passed":
        return report
    errors = []
    for node in report.result:
        if isinstance(node, pytest.Item):
            try:
                required_capabilities(node)
            except InvalidArgumentError as exc:
                errors.append(f"{node.nodeid}: {exc.message}")
    if errors:
        report.outcome = "failed"
        report.longrepr = "invalid virtabs capability names:\n" + "\n".join(errors)
        report.result = []
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tag contract items with the capabilities they need (read back by the report)."""
    for item in items:
        caps = required_capabilities(item)
        if caps or "virtabs_contract" in getattr(item, "fixturenames", ()):
            item.user_properties.append(("virtabs_required", sorted(c.value for c in caps)))
            item.user_properties.append(("virtabs_test", kit_test_id(item)))


def kit_test_id(item: pytest.Item) -> str:
    """The stable id known failures are matched against: ``Class::test_name`` (no parameters)."""
    name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
    cls = getattr(item, "cls", None)
    return f"{cls.__name__}::{name}" if cls is not None else name


# --- known failures -------------------------------------------------------------------


def load_known_failures(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a known-failures file: a YAML (or JSON) mapping ``test id -> reason``."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise pytest.UsageError(f"{path}: a known-failures file is a mapping of test id to reason")
    return {str(k): str(v or "known failure") for k, v in data.items()}


def known_failure_reason(item: pytest.Item, known: Mapping[str, str]) -> str | None:
    """The reason ``item`` is a known failure, if ``known`` lists it.

    A key matches the node id, ``Class::test_name``, ``test_name``, or is an
    fnmatch pattern over the node id (``*::TestBlockCopy::test_pivot_*``).
    """
    kit_id = kit_test_id(item)
    short = kit_id.rsplit("::", 1)[-1]
    for key, reason in known.items():
        if key in (item.nodeid, kit_id, short) or item.nodeid.endswith("::" + key):
            return reason
        if any(ch in key for ch in "*?[") and fnmatch.fnmatch(item.nodeid, key):
            return reason
    return None


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def virtabs_uri(pytestconfig: pytest.Config) -> str:
    """The URI under test: the only ``--virtabs-uri``, ``$VIRTABS_CONTRACT_URI``, or ``test:///default``."""
    uris = _uris(pytestconfig)
    if uris:
        return uris[0]
    return os.environ.get("VIRTABS_CONTRACT_URI") or "test:///default"


@pytest.fixture(scope="session")
def virtabs_open() -> Callable[[str], _api.Connection]:
    """How the suite opens a URI (override to open a driver class that has no entry point)."""
    return _api.open


@pytest.fixture(scope="session")
def virtabs_target() -> ContractTarget:
    """The provider of disposable domains and images; override for drivers that need real files."""
    return DefaultTarget()


@pytest.fixture(scope="session")
def virtabs_known_failures(pytestconfig: pytest.Config) -> Mapping[str, str]:
    """``test id -> reason`` of the known failures (``--virtabs-known-failures``); override to add more."""
    path = pytestconfig.getoption("--virtabs-known-failures")
    return load_known_failures(path) if path else {}


@pytest.fixture
def virtabs_contract(
    request: pytest.FixtureRequest,
    virtabs_uri: str,
    virtabs_open: Callable[[str], _api.Connection],
    virtabs_target: ContractTarget,
    virtabs_known_failures: Mapping[str, str],
) -> Iterator[Contract]:
    """A fresh connection to the URI under test, wrapped in a :class:`Contract`; cleans up after the test."""
    item = request.node
    reason = known_failure_reason(item, virtabs_known_failures)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=f"known failure: {reason}", strict=True))
    item.user_properties.append(("virtabs_uri", virtabs_uri))
    conn = virtabs_open(virtabs_uri)
    item.user_properties.append(("virtabs_driver", conn.driver_name))
    item.user_properties.append(("virtabs_declared", sorted(c.value for c in conn.capabilities.supported)))
    contract = Contract(conn, virtabs_target, virtabs_uri)
    try:
        yield contract
    finally:
        try:
            contract.cleanup()
        finally:
            conn.close()


# --- running: undeclared capabilities are verified refusals, never skips -----------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a ``@requires`` test, or, when its capabilities are not declared, the refusal checks instead."""
    caps = required_capabilities(pyfuncitem)
    if not caps:
        return None
    contract = pyfuncitem.funcargs.get("virtabs_contract")
    if not isinstance(contract, Contract):
        pytest.fail(
            f"{pyfuncitem.nodeid} is marked {MARKER} but does not use the virtabs_contract fixture", pytrace=False
        )
    missing = caps - contract.conn.capabilities.supported
    pyfuncitem.user_properties.append(("virtabs_missing", sorted(c.value for c in missing)))
    pyfuncitem.stash[_missing_key] = missing
    if not missing:
        return None
    verify_refusals(contract, missing)
    return True


class _ReportPlugin:
    """Feeds phase reports to the collector and prints/writes the table at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collector = ReportCollector()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Record one phase of a test."""
        self.collector.add(report)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print (``--virtabs-report``) and/or write (``--virtabs-report-file``) the capability table."""
        if not self.collector.has_data():
            return
        report = self.collector.build()
        path = self.config.getoption("--virtabs-report-file")
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(report, fh, indent=2, sort_keys=True)
                fh.write("\n")
        if self.config.getoption("--virtabs-report"):
            terminalreporter.section("virtabs contract report")
            terminalreporter.write(render_text(report))


# keep parse_marker_names importable from here for driver suites that build markers dynamically
__all__ += ["parse_marker_names"]

"""The pytest plugin of the contract kit (registered as ``pytest11`` entry point ``virtabs``).

Options:

``--virtabs-uri=URI``
    The connection(s) to test; repeat it to test several (each test runs once per URI).
    Without it: ``$VIRTABS_CONTRACT_URI``, then ``test:///default``.
``--virtabs-known-failures=FILE``
    A YAML/JSON mapping ``test id -> {raises: ErrorClass, match: regex, reason: text}``; those
    tests are ``xfail(strict=True, raises=ErrorClass)`` and the failure's message must match
    ``match`` (searched), so a different failure, even of the same class, is not absorbed. An entry
    without an error class or without ``match`` (the short ``"ErrorClass: reason"`` form) absorbs
    nothing: its test fails saying so.
``--virtabs-report`` / ``--virtabs-report-file=FILE``
    Print the capability x result table at the end / write it as JSON.

Fixtures a driver's own suite may override: ``virtabs_uri``, ``virtabs_open``
(how a URI becomes a Connection), ``virtabs_target`` (a
:class:`~virtabs.testing.ContractTarget`; by default the class the driver's
distribution publishes under the entry-point group ``virtabs.testing.targets``
for the URI's scheme, else :class:`~virtabs.testing.DefaultTarget`),
``virtabs_known_failures``. Tests use ``virtabs_contract`` (a
:class:`~virtabs.testing.Contract`).

No escape hatches: inside a contract test, a skip, an xfail or an exit raised
by the test or the driver is a failure of the capabilities the test requires;
a skip from a fixture (a target that cannot build something) is a failure
when ``CI`` is set to a true value (``true``, ``1``, ``yes``). A test whose
capabilities are not all declared runs the refusal checks instead of its body
and is reported as "refusal verified", never as passed.

The plugin is loaded in every pytest run of an environment where virtabs is
installed; it adds options and fixtures only and collects nothing by itself.
"""

from __future__ import annotations

import builtins
import contextlib
import fnmatch
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import pytest

from .. import _api, _errors
from .._capabilities import Capability
from .._errors import InvalidArgumentError, NotSupportedError
from .._uri import parse_uri
from .contract import Contract, RefusalProblem, verify_refusals
from .markers import MARKER, parse_marker_names, required_capabilities
from .recorder import CallRecorder
from .report import ReportCollector, render_text
from .target import ContractTarget, DefaultTarget, NotObservable, TargetUnavailable

TARGET_GROUP = "virtabs.testing.targets"
"""The entry-point group where a driver's distribution publishes its contract target (name = URI scheme)."""

__all__ = [
    "TARGET_GROUP",
    "ContractEscape",
    "KnownFailure",
    "KnownFailureMismatch",
    "in_ci",
    "known_failure_reason",
    "known_failure_error",
    "load_known_failures",
    "load_target",
    "pytest_addoption",
    "pytest_configure",
    "virtabs_contract",
    "virtabs_known_failures",
    "virtabs_open",
    "virtabs_target",
    "virtabs_uri",
]

_missing_key = pytest.StashKey[frozenset[Capability]]()
_known_key = pytest.StashKey["KnownFailure"]()


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


class KnownFailure(str):
    """A known-failure entry: the string ``"ErrorClass: reason"`` plus the pattern its failure must match.

    ``match`` is a regular expression searched in the failure's message (``str(exception)``); an entry
    without one (``match`` None) is unpinned and absorbs nothing.
    """

    match: str | None

    def __new__(cls, text: str, match: str | None = None) -> KnownFailure:
        """``KnownFailure("AssertionError: reason", match="regex")``."""
        self = super().__new__(cls, text)
        self.match = match
        return self


def load_known_failures(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a known-failures file: a YAML (or JSON) mapping ``test id -> entry``.

    An entry is ``{raises: ErrorClass, match: regex, reason: text}``; it comes back as a
    :class:`KnownFailure` (the string ``"ErrorClass: reason"`` with its ``match``). ``ErrorClass`` is
    a virtabs error class (``NotSupportedError``), a builtin exception (``AssertionError``,
    ``TimeoutError``) or a kit exception (``RefusalProblem``, ``TargetUnavailable``); ``match`` pins
    the failure (searched in its message), so another failure of the same class is not absorbed. The
    short form ``"ErrorClass: reason"`` pins nothing and absorbs nothing.
    """
    import yaml

    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise pytest.UsageError(f"{path}: a known-failures file is a mapping of test id to entry")
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            raises = str(value.get("raises") or "").strip()
            reason = str(value.get("reason") or "known failure")
            match = value.get("match")
            if not raises:
                raise pytest.UsageError(f"{path}: known failure {key!r} must name the error class it raises (raises:)")
            if raises in ("Exception", "BaseException"):
                raise pytest.UsageError(f"{path}: known failure {key!r}: raises: {raises} would absorb anything")
            if match is not None:
                try:
                    re.compile(str(match))
                except re.error as exc:
                    raise pytest.UsageError(f"{path}: known failure {key!r}: match: is not a regex ({exc})") from None
            out[str(key)] = KnownFailure(f"{raises}: {reason}", None if match is None else str(match))
        else:
            out[str(key)] = str(value or "known failure")
    return out


class KnownFailureMismatch(Exception):
    """A known-failure test failed with the named class but not the pinned message: a new failure."""


def _error_classes() -> dict[str, type[BaseException]]:
    classes: dict[str, type[BaseException]] = {
        name: obj for name, obj in vars(_errors).items() if isinstance(obj, type) and issubclass(obj, BaseException)
    }
    classes.update(
        {
            name: obj
            for name, obj in vars(builtins).items()
            if isinstance(obj, type) and issubclass(obj, Exception) and name[0].isupper()
        }
    )
    classes.update(
        {"RefusalProblem": RefusalProblem, "TargetUnavailable": TargetUnavailable, "ContractEscape": ContractEscape}
    )
    return classes


def known_failure_error(entry: str) -> tuple[type[BaseException] | None, str]:
    """``(error class, reason)`` of a known-failure entry ``"ErrorClass: reason"``; class None when unnamed."""
    head, sep, tail = entry.partition(":")
    cls = _error_classes().get(head.strip()) if sep else None
    return (cls, tail.strip() or entry) if cls is not None else (None, entry)


def known_failure_reason(item: pytest.Item, known: Mapping[str, str]) -> str | None:
    """The entry (``"ErrorClass: reason"``) listing ``item`` as a known failure, if ``known`` has one.

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


class _UnnamedKnownFailure(Exception):
    """Never raised: the ``raises=`` of a known failure that names no error class, so it absorbs nothing."""


def in_ci() -> bool:
    """True when ``$CI`` is set to a true value (``true``, ``1``, ``yes``; any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


# --- targets travel with drivers -------------------------------------------------------


def load_target(uri: str) -> ContractTarget:
    """The contract target for ``uri``: the class published under :data:`TARGET_GROUP` for its scheme
    (``from_uri(uri)`` when it has that classmethod, else no arguments), else :class:`DefaultTarget`."""
    from importlib.metadata import entry_points

    scheme = parse_uri(uri).driver
    found = {ep.value: ep for ep in entry_points(group=TARGET_GROUP, name=scheme)}
    if not found:
        return DefaultTarget()
    if len(found) > 1:
        raise TargetUnavailable(
            f"several distributions publish a contract target for {scheme!r} ({', '.join(sorted(found))}) "
            f"under {TARGET_GROUP}: uninstall one"
        )
    ep = next(iter(found.values()))
    dist = getattr(getattr(ep, "dist", None), "name", None) or f"virtabs-{scheme}"
    try:
        cls = ep.load()
    except Exception as exc:
        raise TargetUnavailable(
            f"the contract target of the {scheme} driver ({ep.value}) cannot be imported: "
            f"{type(exc).__name__}: {exc}; reinstall it (pip install {dist})"
        ) from exc
    factory = getattr(cls, "from_uri", None)
    target = factory(uri) if callable(factory) else cls()
    return target  # type: ignore[no-any-return]


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
def virtabs_target(virtabs_uri: str) -> Iterator[ContractTarget]:
    """The provider of disposable domains and images for the URI's driver (see :func:`load_target`)."""
    try:
        target = load_target(virtabs_uri)
    except TargetUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    with _sigterm_interrupts():
        yield target
    close = getattr(target, "close", None)
    if callable(close):
        close()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While the session runs, SIGTERM (a CI timeout) interrupts it as Ctrl-C does, so the session's
    teardown (the target's ``close``: its domains' processes) still runs. Only from the main thread and
    only over the default handler."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def virtabs_known_failures(pytestconfig: pytest.Config) -> Mapping[str, str]:
    """``test id -> "ErrorClass: reason"`` of the known failures (``--virtabs-known-failures``)."""
    path = pytestconfig.getoption("--virtabs-known-failures")
    return load_known_failures(path) if path else {}


def _dropped(conn: _api.Connection) -> dict[str, str]:
    """Capabilities the driver class declares but this connection does not, with the connection's reasons."""
    declared = type(conn._driver).capabilities.supported
    reasons: Mapping[Any, str] = getattr(conn.capabilities, "dropped", None) or {}
    return {
        c.value: str(reasons.get(c) or reasons.get(c.value) or "")
        for c in sorted(declared - conn.capabilities.supported, key=lambda c: c.value)
    }


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
    entry = known_failure_reason(item, virtabs_known_failures)
    if entry is not None:
        cls, reason = known_failure_error(entry)
        match = getattr(entry, "match", None)
        if cls is None or match is None:
            cls = None
            reason = (
                f"{entry} [this known-failure entry does not pin its failure (an error class and a match: "
                "pattern of its message), so it absorbs nothing: write it as "
                f"'{kit_test_id(item)}: {{raises: ErrorClass, match: regex, reason: ...}}']"
            )
        item.stash[_known_key] = KnownFailure(reason, match)
        request.applymarker(
            pytest.mark.xfail(reason=f"known failure: {reason}", strict=True, raises=cls or _UnnamedKnownFailure)
        )
    item.user_properties.append(("virtabs_uri", virtabs_uri))
    conn = virtabs_open(virtabs_uri)
    item.user_properties.append(("virtabs_driver", conn.driver_name))
    item.user_properties.append(("virtabs_declared", sorted(c.value for c in conn.capabilities.supported)))
    item.user_properties.append(("virtabs_dropped", _dropped(conn)))
    contract = Contract(conn, virtabs_target, virtabs_uri, opener=virtabs_open)
    recorder = CallRecorder(conn._driver)
    recorder.__enter__()
    try:
        yield contract
    finally:
        recorder.__exit__(None, None, None)
        item.user_properties.append(("virtabs_spi_calls", sorted(set(recorder.names()))))
        try:
            contract.cleanup()
        finally:
            conn.close()


# --- running: undeclared capabilities are verified refusals; no escape hatches -------------


class ContractEscape(AssertionError):
    """A contract test (or the driver under it) tried to leave by a skip, an xfail or an exit."""


_ESCAPES: tuple[type[BaseException], ...] = (pytest.skip.Exception, pytest.xfail.Exception, pytest.exit.Exception)


def _is_contract_item(item: pytest.Item) -> bool:
    return bool(required_capabilities(item)) or "virtabs_contract" in getattr(item, "fixturenames", ())


def _caps_text(item: pytest.Item) -> str:
    caps = sorted(c.value for c in required_capabilities(item))
    return ", ".join(caps) if caps else "(core)"


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A skip, xfail or exit raised inside a contract test is a failure of its capabilities;
    NotSupportedError from a declared capability is annotated as such; a known failure's error that
    does not match its pinned message becomes :class:`KnownFailureMismatch` (not absorbed)."""
    if not _is_contract_item(item):
        return (yield)
    try:
        return (yield from _contract_call(item))
    except NotObservable:
        raise
    except Exception as exc:
        known = item.stash.get(_known_key, None)
        if known is None:
            raise
        if known.match is None:
            exc.add_note(f"[known failure not applied] {known}")
            raise
        if re.search(known.match, str(exc)):
            raise
        raise KnownFailureMismatch(
            f"a known failure of {kit_test_id(item)} is pinned to /{known.match}/, but it failed otherwise: "
            f"{type(exc).__name__}: {str(exc)[:500]}"
        ) from exc


def _contract_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except _ESCAPES as exc:
        kind = type(exc).__name__
        msg = getattr(exc, "msg", "") or str(exc)
        raise ContractEscape(
            f"[{_caps_text(item)}] the test raised {kind} ({msg}): inside a contract test that is a failure of "
            "the capability, never a way out (a declared capability must work; an undeclared one is checked to "
            "be refused)"
        ) from None
    except NotSupportedError as exc:
        missing = item.stash.get(_missing_key, frozenset())
        if not missing:
            exc.add_note(
                f"[{_caps_text(item)}] the connection declares these capabilities, yet the operation raised "
                "NotSupportedError: implement it, or drop the capability from the declaration "
                "(connection_capabilities, with a reason)"
            )
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A contract test that is skipped in its call (whatever raised it), or in setup under CI, fails."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(NotObservable) and _is_contract_item(item):
        # its own outcome: not a pass, not a failure of the driver, not an xfail
        reason = str(call.excinfo.value)
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"not observable on this target: {reason}")
        if hasattr(report, "wasxfail"):
            del report.wasxfail
        report.user_properties.append(("virtabs_not_observable", reason))
        return report
    if not _is_contract_item(item) or not report.skipped or hasattr(report, "wasxfail"):
        return report
    if call.when == "call" or in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        where = "under CI (a true $CI)" if call.when != "call" else "inside the test"
        report.outcome = "failed"
        report.longrepr = (
            f"[{_caps_text(item)}] skipped {where}: {reason}\n"
            "a contract test never skips there: install what the message names, or publish a target "
            f"(entry-point group {TARGET_GROUP}) that provides it"
        )
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """Refusal checks are counted as "refusal verified", not as passes of the test's body; an effect the
    target cannot observe as "not observable"."""
    if report.when == "call" and report.passed and dict(report.user_properties).get("virtabs_missing"):
        return "refusal verified", "r", "REFUSAL VERIFIED"
    if report.skipped and "virtabs_not_observable" in dict(report.user_properties):
        return "not observable", "o", "NOT OBSERVABLE"
    return None


class _ReportPlugin:
    """Feeds phase reports to the collector and prints/writes the table at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collector = ReportCollector(rerun=self._rerun)

    def _rerun(self, nodeid: str, kit_id: str, uri: str) -> str:
        uri_arg = f" --virtabs-uri='{uri}'" if uri and uri != "?" else ""
        if self.config.getoption("pyargs", False):
            return f"pytest --pyargs virtabs.testing{uri_arg} -k '{_k_expr(kit_id)}'"
        return f"pytest '{nodeid}'{uri_arg}"

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


def _k_expr(kit_id: str) -> str:
    """A ``-k`` expression selecting exactly the kit test ``Class::test_name``."""
    return " and ".join(kit_id.split("::"))


# keep parse_marker_names importable from here for driver suites that build markers dynamically
__all__ += ["parse_marker_names"]

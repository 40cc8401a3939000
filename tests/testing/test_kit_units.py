"""Unit tests of the kit's parts: the call recorder, refusal checks, known-failure matching, the report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from virtabs import Capabilities, Capability
from virtabs._api import Connection
from virtabs._gate import Gate
from virtabs._uri import parse_uri
from virtabs.drivers.test import TestDriver
from virtabs.testing import CallRecorder, Contract, DefaultTarget, RefusalProblem, requires, verify_refusals
from virtabs.testing.report import ReportCollector, render_text

from .dishonest_drivers import MinimalDriver


@pytest.fixture
def minimal() -> Iterator[Contract]:
    conn = Connection._open(MinimalDriver, parse_uri("test:///default"), None, False, None)
    contract = Contract(conn, DefaultTarget(), "test:///default")
    yield contract
    contract.cleanup()
    conn.close()


def test_recorder_sees_the_drivers_calls_to_itself() -> None:
    conn = Connection._open(TestDriver, parse_uri("test:///default"), None, False, None)
    driver = conn._driver
    with CallRecorder(driver) as rec:
        driver.inventory()  # the test driver's bulk inventory: one call
        Connection.list_domains(conn)
    assert rec.names() == ["inventory", "list_domains"]
    assert "inventory" not in vars(driver), "the recorder must restore the driver"
    conn.close()


def test_honest_minimal_driver_passes_every_refusal(minimal: Contract) -> None:
    missing = frozenset(Capability) - minimal.conn.capabilities.supported
    verify_refusals(minimal, missing)


def test_a_core_that_forgets_to_refuse_is_caught(minimal: Contract, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the public layer dispatched an undeclared call, the kit reports that the driver was reached."""
    monkeypatch.setattr(Gate, "require", lambda self, caps, what: None)
    with pytest.raises(RefusalProblem) as exc:
        verify_refusals(minimal, frozenset({Capability.DOMAIN_START}))
    assert "Domain.start reached the driver (domain_status, domain_info)" in str(exc.value)


def test_declared_capabilities_are_not_refusal_checked(minimal: Contract) -> None:
    verify_refusals(minimal, frozenset({Capability.DOMAIN_DEFINE}))  # declared: nothing to verify


def test_requires_parses_names_at_decoration_time() -> None:
    mark = requires("block.copy.shallow", Capability.BLOCK_COPY)
    assert mark.args == ("block.copy", "block.copy.shallow")
    with pytest.raises(ValueError, match="unknown capability 'block.copyy'"):
        requires("block.copyy")
    with pytest.raises(ValueError):
        requires()


def test_report_summarises_outcomes() -> None:
    class Rep:
        def __init__(self, nodeid: str, when: str, outcome: str, props: list[tuple[str, object]]) -> None:
            self.nodeid, self.when, self.outcome, self.user_properties = nodeid, when, outcome, props
            self.passed, self.failed, self.skipped = outcome == "passed", outcome == "failed", outcome == "skipped"

    base = [("virtabs_uri", "x:///"), ("virtabs_driver", "x"), ("virtabs_declared", ["block.copy"])]
    collector = ReportCollector()
    collector.add(Rep("a", "call", "passed", [*base, ("virtabs_test", "a"), ("virtabs_required", ["block.copy"])]))
    collector.add(
        Rep(
            "b",
            "call",
            "passed",
            [*base, ("virtabs_test", "b"), ("virtabs_required", ["events"]), ("virtabs_missing", ["events"])],
        )
    )
    collector.add(Rep("c", "call", "failed", [*base, ("virtabs_test", "c"), ("virtabs_required", [])]))
    report = collector.build()
    rows = report["uris"]["x:///"]["rows"]
    assert rows["block.copy"]["result"] == "pass"
    assert rows["events"]["result"] == "refusal verified"
    assert rows["(core)"]["result"] == "fail"
    assert rows["block.pull"]["result"] == "untested"
    text = render_text(report)
    assert "| events | no | refusal verified | 1 refusal verified |" in text
    assert "- c" in text


def test_default_target_provisions_in_the_test_node_without_define() -> None:
    """On the test driver the default target builds domains and chains by its own door."""
    caps = Capabilities.of("storage.pool")
    cls = type("NoDefine", (MinimalDriver,), {"capabilities": caps, "__test__": False})
    conn = Connection._open(cls, parse_uri("test:///default"), None, False, None)
    target = DefaultTarget()
    try:
        dom = target.make_chain_domain(conn)
        assert dom.state().is_active
        disk = dom.disks()[0]
        assert len(disk.backing_chain) == 2
        assert target.image_digest(conn, disk.path) is not None
    finally:
        target.cleanup(conn)
        conn.close()


def test_default_target_needs_define_on_other_drivers() -> None:
    from virtabs.spi import Driver
    from virtabs.testing import TargetUnavailable

    class Bare(Driver):
        """A driver with reads only."""

        name = "test"
        capabilities = Capabilities.of()

        def host_info(self):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def list_domains(self):  # type: ignore[no-untyped-def]
            return []

        def domain_info(self, dom):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        domain_spec = disks = nics = domain_info

    conn = Connection._open(Bare, parse_uri("test:///default"), None, False, None)
    try:
        with pytest.raises(TargetUnavailable, match="domain.define"):
            DefaultTarget().make_domain(conn, running=False)
        with pytest.raises(TargetUnavailable, match="the target must provide image_digest"):
            DefaultTarget().image_digest(conn, "/x")
    finally:
        conn.close()

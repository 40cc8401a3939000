"""The contract kit catches dishonest drivers in both directions, and reports what it found."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import dishonest_drivers

HERE = Path(__file__).parent


@pytest.fixture
def kit(pytester: pytest.Pytester):
    """Set up a sub-pytest directory running the suite against a driver class of dishonest_drivers."""
    pytester.syspathinsert(HERE)

    def run(driver: str, *args: str) -> pytest.RunResult:
        pytester.makeconftest(dishonest_drivers.conftest_source(driver))
        pytester.makepyfile(test_contract=dishonest_drivers.SUITE)
        report = pytester.path / "report.json"
        result = pytester.runpytest_inprocess(
            "-p", "no:cacheprovider", "--virtabs-uri=test:///default", f"--virtabs-report-file={report}", *args
        )
        result.report = json.loads(report.read_text()) if report.exists() else None  # type: ignore[attr-defined]
        return result

    return run


def rows(result: pytest.RunResult) -> dict[str, dict[str, object]]:
    report = result.report  # type: ignore[attr-defined]
    assert report is not None, result.stdout.str()
    return report["uris"]["test:///default"]["rows"]


def test_honest_reference_driver_passes(kit) -> None:
    result = kit("TestDriver", "-k", "BlockCopy or Lookups")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] > 20, result.stdout.str()
    assert rows(result)["block.copy"]["result"] == "pass"


def test_declared_but_broken_block_copy_fails(kit) -> None:
    """Direction 1: declares block.copy, but the copy raises."""
    result = kit("LyingCopyDriver", "-k", "BlockCopy")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_pivot_before_ready_is_block_copy_active*", "*not really implemented*"])
    assert rows(result)["block.copy"]["result"] == "fail"


def test_undeclared_but_working_block_copy_fails(kit) -> None:
    """Direction 2: block.copy is not declared, yet the driver class implements it."""
    result = kit("HiddenCopyDriver", "-k", "BlockCopy")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        [
            "*RefusalProblem*",
            "*block.copy: HiddenCopyDriver implements block_copy but does not declare block.copy*",
        ]
    )
    # the public layer refuses correctly (the core's part of the contract holds) ...
    assert "reached the driver" not in result.stdout.str()
    # ... and the report blames the undeclared capability
    assert rows(result)["block.copy"]["result"] == "fail"
    assert rows(result)["block.copy"]["declared"] is False


def test_honest_partial_driver_gets_not_supported_verified(kit) -> None:
    result = kit("HonestNoCopyDriver", "-k", "BlockCopy", "--virtabs-report")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert "skipped" not in outcomes, "undeclared capabilities must be verified, never skipped"
    table = rows(result)
    for cap in ("block.copy", "block.copy.shallow", "block.copy.reuse_ext", "block.copy.raw", "block.copy.dev"):
        assert table[cap]["result"] == "refusal verified", (cap, table[cap])
    result.stdout.fnmatch_lines(["*| block.copy | no | refusal verified |*"])


def test_minimal_driver_runs_the_whole_suite_without_skips(kit) -> None:
    result = kit("MinimalDriver")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert "skipped" not in outcomes
    table = rows(result)
    assert table["domain.define"]["result"] == "pass"
    assert table["storage.pool"]["result"] == "pass"
    for cap in ("domain.start", "domain.snapshot", "block.pull", "block.commit", "events", "storage.volume"):
        assert table[cap]["result"] == "refusal verified", (cap, table[cap])


def test_undeclared_pivot_is_verified_on_a_ready_copy(kit) -> None:
    result = kit("NoPivotDriver", "-k", "TestBlockCopyFlags")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and "skipped" not in outcomes, result.stdout.str()
    assert rows(result)["block.copy.pivot"]["result"] == "refusal verified"


def test_signature_drift_is_caught(kit) -> None:
    result = kit("DriftingDriver", "-k", "TestDriverShape")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*DriftingDriver.start(self, dom*force*differs from Driver.start(self, dom*"])


def test_n_plus_one_listing_is_caught(kit) -> None:
    result = kit("NPlusOneDriver", "-k", "TestListing")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*domain_records made * driver calls*override Driver.inventory*"])


def test_known_failures_are_strict_xfails(kit, pytester: pytest.Pytester) -> None:
    known = pytester.path / "known.yaml"
    known.write_text(
        "TestBlockCopyRules::test_pivot_before_ready_is_block_copy_active:\n"
        "  raises: OperationFailedError\n"
        "  match: 'block copy of disk .vda. is not really implemented'\n"
        "  reason: copies are broken (#12)\n"
        "test_abort_stays_on_the_source: {raises: OperationFailedError, match: not really, reason: broken (#12)}\n"
        "TestLookups::test_domain_reads: {raises: AssertionError, match: x, reason: listed but passes}\n"
    )
    result = kit(
        "LyingCopyDriver",
        "-k",
        "pivot_before_ready or abort_stays or test_domain_reads",
        f"--virtabs-known-failures={known}",
    )
    result.assert_outcomes(xfailed=2, failed=1)
    result.stdout.fnmatch_lines(["*XPASS(strict)*listed but passes*"])
    assert rows(result)["block.copy"]["result"] == "known-failure"


def test_a_known_failure_absorbs_only_the_error_class_it_names(kit, pytester: pytest.Pytester) -> None:
    """An entry naming another class, or none, does not hide the real failure."""
    known = pytester.path / "known.yaml"
    known.write_text(
        "test_pivot_before_ready_is_block_copy_active: {raises: TimeoutError, reason: slow host}\n"
        "test_abort_stays_on_the_source: copies are broken, no class named\n"
    )
    result = kit("LyingCopyDriver", "-k", "pivot_before_ready or abort_stays", f"--virtabs-known-failures={known}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*not really implemented*"])
    assert rows(result)["block.copy"]["result"] == "fail"


def test_a_known_failure_absorbs_only_the_message_it_is_pinned_to(kit, pytester: pytest.Pytester) -> None:
    """An entry naming the right class but another message (a new failure of the same class) absorbs nothing;
    so does the short form, which pins no message."""
    known = pytester.path / "known.yaml"
    known.write_text(
        "test_pivot_before_ready_is_block_copy_active:\n"
        "  raises: OperationFailedError\n"
        "  match: the destination datastore is full\n"
        "  reason: an older failure, since fixed\n"
        "test_abort_stays_on_the_source: 'OperationFailedError: copies are broken, no message pinned'\n"
    )
    result = kit("LyingCopyDriver", "-k", "pivot_before_ready or abort_stays", f"--virtabs-known-failures={known}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*KnownFailureMismatch: a known failure of *test_pivot_before_ready_is_block_copy_active is pinned to"
            " /the destination datastore is full/, but it failed otherwise: OperationFailedError: *not really*",
        ]
    )
    result.stdout.fnmatch_lines(["*known failure not applied*does not pin its failure*"])
    assert rows(result)["block.copy"]["result"] == "fail"


NOT_OBSERVABLE_CONFTEST = """
import pytest
from virtabs._api import Connection
from virtabs._uri import parse_uri
from virtabs.testing import DefaultTarget
import broken_drivers


@pytest.fixture(scope="session")
def virtabs_open():
    def open_(uri, *, readonly=False):
        return Connection._open(broken_drivers.SynchronousCopyDriver, parse_uri(uri), None, readonly, None)
    return open_


@pytest.fixture(scope="session")
def virtabs_target():
    target = DefaultTarget()
    target.job_timeout = 4.0
    target.unobservable = UNOBSERVABLE
    return target
"""


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_an_effect_the_target_cannot_observe_is_its_own_outcome(pytester: pytest.Pytester, declared: bool) -> None:
    """A copy that is over before it can be seen (vcsim's synchronous Relocate): "not observable" when the
    target says so, counted apart and never as a pass; a failure when it does not."""
    pytester.syspathinsert(HERE)
    unobservable = {"copy.in_flight": "the simulator relocates synchronously"} if declared else {}
    pytester.makeconftest(NOT_OBSERVABLE_CONFTEST.replace("UNOBSERVABLE", repr(unobservable)))
    pytester.makepyfile(test_contract=dishonest_drivers.SUITE)
    report = pytester.path / "report.json"
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--virtabs-uri=test:///default", f"--virtabs-report-file={report}",
        "-k", "test_second_job_on_the_disk_is_block_copy_active or test_progress_never_reports_done_before_ready",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    outcomes.pop("deselected", None)
    data = json.loads(report.read_text())["uris"]["test:///default"]["rows"]["block.copy"]
    if declared:
        assert outcomes == {"not": 2}, result.stdout.str()  # "2 not observable" (parseoutcomes takes one word)
        result.stdout.fnmatch_lines(["*2 not observable*"])
        assert result.ret == 0
        assert data["result"] == "not observable" and data["not_observable"] == 2 and data["passed"] == 0
        assert all("relocates synchronously" in t["reason"] for t in data["tests"]), data["tests"]
    else:
        assert outcomes == {"failed": 2}, result.stdout.str()
        result.stdout.fnmatch_lines(["*has already ended when it is first read*"])
        assert data["result"] == "fail"


def test_a_known_failure_mapping_without_raises_is_a_usage_error(kit, pytester: pytest.Pytester) -> None:
    known = pytester.path / "known.yaml"
    known.write_text("test_abort_stays_on_the_source: {reason: copies are broken}\n")
    result = kit("LyingCopyDriver", "-k", "abort_stays", f"--virtabs-known-failures={known}")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*must name the error class it raises*"])


def test_known_failures_fixture_override(kit, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_more="""
import pytest

@pytest.fixture(scope="session")
def virtabs_known_failures():
    return {"*::TestBlockCopyRules::test_second_job_*": "OperationFailedError: copies are broken"}
"""
    )
    # a fixture in a test module only applies there: put it in the contract module instead
    pytester.makepyfile(
        test_contract=dishonest_drivers.SUITE + "\nimport pytest\nfrom virtabs.testing.plugin import KnownFailure\n\n"
        "@pytest.fixture(scope='session')\ndef virtabs_known_failures():\n"
        "    return {'*::TestBlockCopyRules::test_second_job_*':"
        " KnownFailure('OperationFailedError: copies are broken', match='not really implemented')}\n"
    )
    pytester.makeconftest(dishonest_drivers.conftest_source("LyingCopyDriver"))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "test_second_job", "test_contract.py")
    result.assert_outcomes(xfailed=1)


def test_misspelt_capability_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_typo="""
from virtabs.testing import requires

@requires("block.copyy")
def test_x(virtabs_contract):
    pass
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting*", "*unknown capability 'block.copyy'*"])


def test_misspelt_capability_in_a_raw_marker_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_typo="""
import pytest

class TestX:
    @pytest.mark.virtabs_requires("domain.strat")
    def test_x(self, virtabs_contract):
        pass

    def test_y(self):
        pass
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ERROR collecting*", "*unknown capability 'domain.strat'*"])


def test_requires_marker_without_the_contract_fixture_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_nofix="""
from virtabs.testing import requires

@requires("block.copy")
def test_x():
    pass
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*does not use the virtabs_contract fixture*"])


def test_pyargs_runs_the_suite_and_two_uris_parametrize(pytester: pytest.Pytester, tmp_path: Path) -> None:
    node = tmp_path / "node.json"
    node.write_text(json.dumps({"pools": [{"name": "p", "path": "/p"}]}))
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "virtabs.testing",
        "--virtabs-uri=test:///default",
        f"--virtabs-uri=test://{node}",
        "-k",
        "TestLookups",
        "-v",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes["passed"] == 10, result.stdout.str()
    result.stdout.fnmatch_lines([f"*test_lookup_by_name_and_by_uuid[[]test://{node}[]]*PASSED*"])


def test_virtabs_contract_command_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, "-m", "virtabs.testing.report", "--uri", "test:///default", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| capability | declared | result | tests |" in proc.stdout
    assert "| block.copy | yes | pass |" in proc.stdout
    assert "| block.copy | yes | pass |" in out.read_text()

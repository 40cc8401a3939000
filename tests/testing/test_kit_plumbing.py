"""The kit's plumbing: targets from entry points, CI detection, skips under CI, a missing pytest, reports that
teach, and the operation table really reached by the tests that require each row's capability."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from virtabs.spi import OPERATIONS
from virtabs.testing import DefaultTarget, TargetUnavailable
from virtabs.testing.plugin import in_ci, load_target
from virtabs.testing.report import ReportCollector, first_error_line, render_text


def publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, module: str = "") -> None:
    """Install a throw-away distribution publishing ``name = value`` under virtabs.testing.targets."""
    dist = tmp_path / "vtfake-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vtfake\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[virtabs.testing.targets]\n{name} = {value}\n")
    if module:
        (tmp_path / "vtfake_target.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_target_comes_from_the_entry_point_of_the_uri_scheme(tmp_path: Path, monkeypatch) -> None:
    publish(
        tmp_path,
        monkeypatch,
        "fake",
        "vtfake_target:FakeTarget",
        "from virtabs.testing import DefaultTarget\n"
        "class FakeTarget(DefaultTarget):\n"
        "    @classmethod\n"
        "    def from_uri(cls, uri):\n"
        "        target = cls()\n"
        "        target.uri = uri\n"
        "        return target\n",
    )
    target = load_target("fake+ssh://host/system?x=1")
    assert type(target).__name__ == "FakeTarget" and target.uri == "fake+ssh://host/system?x=1"  # type: ignore[attr-defined]
    assert type(load_target("nosuchscheme:///")) is DefaultTarget
    assert type(load_target("test:///default")) is DefaultTarget  # virtabs publishes the test driver's


def test_a_target_that_cannot_be_imported_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    publish(tmp_path, monkeypatch, "fake", "vtfake_missing_module:Target")
    with pytest.raises(TargetUnavailable, match=r"cannot be imported.*pip install vtfake"):
        load_target("fake:///")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True), ("", False), ("0", False)],
)
def test_ci_detection_accepts_true_1_yes(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


SKIPPING_TARGET = """
import pytest

@pytest.fixture(scope="session")
def virtabs_target():
    pytest.skip("no bootable guest image: apt-get install linux-image-amd64")
"""


@pytest.mark.parametrize(("ci", "outcome"), [("yes", "errors"), ("", "skipped")])
def test_a_target_skip_fails_under_ci(pytester: pytest.Pytester, monkeypatch, ci: str, outcome: str) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(SKIPPING_TARGET)
    pytester.makepyfile(test_contract="from virtabs.testing.suite import TestPowerState  # noqa: F401\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--virtabs-uri=test:///default", "-k", "destroy")
    assert result.parseoutcomes().get(outcome) == 1, result.stdout.str()
    if outcome == "errors":  # a failure in setup: pytest counts it as an error, exit code non-zero
        assert result.ret != 0
        result.stdout.fnmatch_lines(["*skipped under CI*apt-get install linux-image-amd64*"])


def test_a_missing_pytest_is_one_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "from virtabs.testing.report import main\n"
        "raise SystemExit(main(['--uri', 'test:///default']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "virtabs-contract: pytest is not installed; install it with: pip install 'virtabs[testing]'"
    ]


def test_a_failing_test_is_reported_with_capability_first_error_and_rerun() -> None:
    class Rep:
        def __init__(self, outcome: str, text: str) -> None:
            self.nodeid = "suite/test_lifecycle.py::TestPowerState::test_destroy_makes_it_shutoff"
            self.when, self.outcome, self.longreprtext = "call", outcome, text
            self.passed, self.failed, self.skipped = outcome == "passed", outcome == "failed", False
            self.user_properties = [
                ("virtabs_uri", "x:///"),
                ("virtabs_driver", "x"),
                ("virtabs_declared", ["domain.destroy"]),
                ("virtabs_test", "TestPowerState::test_destroy_makes_it_shutoff"),
                ("virtabs_required", ["domain.destroy"]),
            ]

    text = "    def test_x():\n>       assert a == b\nE       AssertionError: still RUNNING\nE       assert 1 == 5\n"
    assert first_error_line(text) == "AssertionError: still RUNNING"
    collector = ReportCollector()
    collector.add(Rep("failed", text))
    out = render_text(collector.build())
    assert "- TestPowerState::test_destroy_makes_it_shutoff [domain.destroy] (fail)" in out
    assert "    AssertionError: still RUNNING" in out
    assert "    rerun: pytest suite/test_lifecycle.py::TestPowerState::test_destroy_makes_it_shutoff" in out


def test_every_operation_is_reached_by_a_test_requiring_its_capability(tmp_path: Path) -> None:
    """Generated from OPERATIONS: each row's method is called by a passing test that requires its capability."""
    proc = subprocess.run(
        [sys.executable, "-m", "virtabs.testing.report", "--uri", "test:///default", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    report = json.loads(proc.stdout)
    tests = {
        t["id"]: t
        for data in report["uris"].values()
        for row in data["rows"].values()
        for t in row["tests"]
        if t["kind"] == "run" and t["status"] == "pass"
    }
    unreached = []
    for method, op in OPERATIONS.items():
        wanted = {c.value for c in op.required_capabilities()}
        if not any(method in t["spi_calls"] and (not wanted or wanted & set(t["requires"])) for t in tests.values()):
            unreached.append(f"{method} ({' or '.join(sorted(wanted)) or 'no capability'})")
    assert not unreached, f"OPERATIONS rows no contract test requiring their capability reaches: {unreached}"

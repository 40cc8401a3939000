"""scripts/gen-conformance: docs/conformance.md from real kit reports, and its CI rule for missing ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen-conformance"


def _env(ci: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return env


def test_the_table_says_what_each_kit_test_gave(tmp_path: Path) -> None:
    reports = tmp_path / "kit"
    reports.mkdir()
    # a real kit run on the test driver, one capability dropped by the URI (its tests verify refusals)
    options = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-k", "Lookups or SaveRestore"]
    kit_args = ["--virtabs-uri=test:///default?without=domain.save", f"--virtabs-report-file={reports / 'core.json'}"]
    kit = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "virtabs.testing", *options, *kit_args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert kit.returncode == 0, kit.stdout + kit.stderr
    out = tmp_path / "conformance.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(reports), "--output", str(out)],
        capture_output=True,
        text=True,
        env=_env(None),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    test_section = text.split("## `test`", 1)[1].split("\n## ", 1)[0]
    assert '<a id="test-domain-save"></a>' in test_section
    save = test_section.split('<a id="test-domain-save"></a>', 1)[1].split("<a id=", 1)[0]
    assert "| `TestSaveRestore::test_save_and_restore` | refusal verified |" in save, save
    core = test_section.split('<a id="test-core"></a>', 1)[1].split("<a id=", 1)[0]
    assert "| `TestLookups::test_list_domains_and_records_agree` | passed |" in core, core
    assert "No kit report from this run" in text.split("## `qemu`", 1)[1].split("\n## ", 1)[0]
    matrix = (ROOT / "docs" / "capabilities.md").read_text()
    assert "[✔](conformance.md#test-domain-save)" in matrix  # the matrix's yes links to this section


def test_a_missing_report_fails_only_under_ci(tmp_path: Path) -> None:
    empty = tmp_path / "kit"
    empty.mkdir()
    out = tmp_path / "conformance.md"
    for ci, code in ((None, 0), ("false", 0), ("true", 1), ("1", 1)):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(empty), "--output", str(out)],
            capture_output=True,
            text=True,
            env=_env(ci),
            check=False,
        )
        assert done.returncode == code, (ci, done.stderr)
        assert "no kit report from the suites core" in done.stderr

"""Partial drivers are first-class: ``test:///default?without=X`` passes the whole kit for every capability X.

Each run is the documented command (``pytest --pyargs virtabs.testing --virtabs-uri=URI``) in a
subprocess started from an empty directory, two at a time. A run passes when pytest exits 0, the
report shows X (and its sub-capabilities) as "refusal verified" with the rest declared and passing
(or, where every test of a declared capability also needs X, "untested" with those tests listed as
not run), and nothing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from virtabs import Capability

CAPABILITIES = sorted(c.value for c in Capability)


def run_kit(uri: str, workdir: Path) -> tuple[int, str, dict[str, object] | None]:
    """Run the kit against ``uri`` from ``workdir``; (exit code, output, JSON report)."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
            "--pyargs",
            "virtabs.testing",
            f"--virtabs-uri={uri}",
            f"--virtabs-report-file={report}",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    data = json.loads(report.read_text()) if report.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, data


def check_partial_run(cap: str, code: int, output: str, report: dict[str, object] | None) -> list[str]:
    """What is wrong with the run of ``test:///default?without=cap`` (empty: nothing)."""
    problems = []
    if code != 0:
        problems.append(f"exit code {code}:\n{output[-3000:]}")
    if report is None:
        return [*problems, "no report written"]
    uris = report["uris"]
    assert isinstance(uris, dict)
    rows = next(iter(uris.values()))["rows"]
    dropped = [c for c in CAPABILITIES if c == cap or c.startswith(cap + ".")]
    for name, row in rows.items():
        want = "refusal verified" if name in dropped else "pass"
        blocked = row["result"] == "untested" and all(t["kind"] == "blocked" for t in row["tests"]) and row["tests"]
        if row["result"] != want and not blocked:
            problems.append(f"{name}: {row['result']} ({row['summary']}), expected {want}")
    if "skipped" in output.splitlines()[-1]:
        problems.append(f"skips: {output.splitlines()[-1]}")
    return problems


@pytest.mark.timeout(900)  # twenty kit runs; on a shared 2-core machine they may outlast the default 300 s
def test_every_single_capability_can_be_missing(tmp_path: Path) -> None:
    def one(cap: str) -> tuple[str, list[str]]:
        code, output, report = run_kit(f"test:///default?without={cap}", tmp_path / cap)
        return cap, check_partial_run(cap, code, output, report)

    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        results = dict(pool.map(one, CAPABILITIES))
    failed = {cap: problems for cap, problems in results.items() if problems}
    assert not failed, "\n".join(f"without={cap}:\n  " + "\n  ".join(p) for cap, p in failed.items())


@pytest.mark.parametrize("cap", ["block.copy.pivot"])
def test_the_issue_case_without_pivot_runs_the_pivot_rule_as_a_refusal(tmp_path: Path, cap: str) -> None:
    code, output, report = run_kit(f"test:///default?without={cap}", tmp_path)
    assert check_partial_run(cap, code, output, report) == []
    assert report is not None
    row = next(iter(report["uris"].values()))["rows"]["block.copy.pivot"]
    ids = {t["test"]: t for t in row["tests"]}
    pivot_rule = ids["TestBlockCopyRules::test_pivot_before_ready_is_block_copy_active"]
    assert (pivot_rule["kind"], pivot_rule["status"]) == ("refusal", "pass")

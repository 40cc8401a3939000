"""The capability x result report, and the ``virtabs-contract`` command.

``virtabs-contract --uri test:///default`` runs the contract suite against a URI
and prints a Markdown table a driver author pastes into their README::

    | capability | declared | result | tests |
    |---|---|---|---|
    | block.copy | yes | pass | 14 passed |
    | events | no | not-supported-verified | 3 refusals verified |

Results: ``pass`` (declared, every test passed), ``not-supported-verified``
(not declared, and every refusal check passed: ``NotSupportedError`` before
the host is touched, and the driver's own method refuses too),
``known-failure`` (only listed known failures failed), ``fail``, and
``untested`` (no test exercised it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from .._capabilities import Capability

__all__ = ["CORE", "ReportCollector", "main", "render_text"]

CORE = "(core)"
"""The row of tests that need no capability (lookups, errors, listing, signatures)."""

_RANK = {"fail": 4, "known-failure": 3, "untested": 0, "pass": 1, "not-supported-verified": 1}


class ReportCollector:
    """Accumulates test reports of contract tests (those carrying ``virtabs_test`` properties)."""

    def __init__(self) -> None:
        self._tests: dict[str, dict[str, Any]] = {}

    def has_data(self) -> bool:
        """True once a contract test reported."""
        return bool(self._tests)

    def add(self, report: Any) -> None:
        """Record one phase report (setup, call or teardown) of a test."""
        props = dict(report.user_properties)
        if "virtabs_test" not in props:
            return
        entry = self._tests.setdefault(report.nodeid, {"status": "pass", "props": {}})
        entry["props"].update(props)
        status = _phase_status(report)
        if status is not None and _status_rank(status) >= _status_rank(entry["status"]):
            entry["status"] = status

    def build(self) -> dict[str, Any]:
        """The report: ``{"uris": {uri: {...}}}``; see :func:`render_text` for the fields."""
        uris: dict[str, dict[str, Any]] = {}
        for nodeid, entry in sorted(self._tests.items()):
            props = entry["props"]
            uri = str(props.get("virtabs_uri", "?"))
            data = uris.setdefault(
                uri,
                {"driver": props.get("virtabs_driver"), "declared": props.get("virtabs_declared"), "rows": {}},
            )
            if data["driver"] is None:
                data["driver"] = props.get("virtabs_driver")
            if data["declared"] is None:
                data["declared"] = props.get("virtabs_declared")
            required = list(props.get("virtabs_required", []))
            missing = list(props.get("virtabs_missing", []))
            kind = "refusal" if missing else "run"
            for cap in (missing or required) or [CORE]:
                row = data["rows"].setdefault(cap, _empty_row())
                row["tests"].append({"id": nodeid, "status": entry["status"], "kind": kind})
        for data in uris.values():
            declared = set(data["declared"] or [])
            rows = data["rows"]
            for cap in [CORE, *sorted(c.value for c in Capability)]:
                row = rows.setdefault(cap, _empty_row())
                row["declared"] = None if cap == CORE else cap in declared
                row.update(_summarise(row))
            data["rows"] = {k: rows[k] for k in [CORE, *sorted(c.value for c in Capability)]}
        return {"uris": uris}


def _empty_row() -> dict[str, Any]:
    return {"tests": []}


def _phase_status(report: Any) -> str | None:
    if report.when == "call":
        if report.passed:
            return "pass"
        if report.skipped:
            return "known-failure" if hasattr(report, "wasxfail") else "skipped"
        return "fail"
    if report.failed:
        return "error"
    if report.skipped:
        return "known-failure" if hasattr(report, "wasxfail") else "skipped"
    return None


def _status_rank(status: str) -> int:
    return {"pass": 0, "known-failure": 1, "skipped": 2, "fail": 3, "error": 4}.get(status, 0)


def _summarise(row: dict[str, Any]) -> dict[str, Any]:
    tests = row["tests"]
    counts = {"passed": 0, "failed": 0, "known": 0, "verified": 0, "refusals_failed": 0}
    for t in tests:
        ok = t["status"] == "pass"
        if t["status"] == "known-failure":
            counts["known"] += 1
        elif t["kind"] == "refusal":
            counts["verified" if ok else "refusals_failed"] += 1
        else:
            counts["passed" if ok else "failed"] += 1
    if counts["failed"] or counts["refusals_failed"]:
        result = "fail"
    elif counts["known"]:
        result = "known-failure"
    elif counts["passed"] and not counts["verified"]:
        result = "pass"
    elif counts["verified"] and not counts["passed"]:
        result = "not-supported-verified"
    elif counts["passed"]:
        result = "pass"
    else:
        result = "untested"
    parts = []
    if counts["passed"]:
        parts.append(f"{counts['passed']} passed")
    if counts["verified"]:
        parts.append(f"{counts['verified']} refusal{'s' if counts['verified'] != 1 else ''} verified")
    if counts["known"]:
        parts.append(f"{counts['known']} known failure{'s' if counts['known'] != 1 else ''}")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["refusals_failed"]:
        parts.append(f"{counts['refusals_failed']} refusal{'s' if counts['refusals_failed'] != 1 else ''} failed")
    return {"result": result, "summary": ", ".join(parts) or "-", **counts}


def render_text(report: dict[str, Any], *, failures: bool = True) -> str:
    """The report as Markdown: one table per URI, then the failing tests."""
    out: list[str] = []
    for uri, data in report["uris"].items():
        out.append(f"virtabs contract report: {uri} (driver {data.get('driver') or '?'})\n\n")
        out.append("| capability | declared | result | tests |\n|---|---|---|---|\n")
        for cap, row in data["rows"].items():
            declared = "-" if row["declared"] is None else ("yes" if row["declared"] else "no")
            out.append(f"| {cap} | {declared} | {row['result']} | {row['summary']} |\n")
        bad = sorted(
            {
                t["id"]
                for row in data["rows"].values()
                for t in row["tests"]
                if t["status"] in ("fail", "error", "skipped")
            }
        )
        if failures and bad:
            out.append("\nfailing tests:\n")
            out.extend(f"- {t}\n" for t in bad)
        out.append("\n")
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``virtabs-contract``: run the contract suite against URIs and print the capability table."""
    parser = argparse.ArgumentParser(
        prog="virtabs-contract",
        description="Run the virtabs contract suite against a driver and print the capability x result table.",
    )
    parser.add_argument("--uri", action="append", required=True, help="connection URI (repeatable)")
    parser.add_argument("--known-failures", metavar="FILE", help="YAML/JSON mapping test id -> reason")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    parser.add_argument("--output", "-o", metavar="FILE", help="also write the Markdown table to FILE")
    parser.add_argument("--verbose", "-v", action="store_true", help="show pytest's own output")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    args = parser.parse_args(argv)

    import pytest

    fd, report_path = tempfile.mkstemp(prefix="virtabs-contract-", suffix=".json")
    os.close(fd)
    try:
        pytest_args = ["--pyargs", "virtabs.testing", "-p", "no:cacheprovider", f"--virtabs-report-file={report_path}"]
        pytest_args += [f"--virtabs-uri={u}" for u in args.uri]
        if args.known_failures:
            pytest_args.append(f"--virtabs-known-failures={args.known_failures}")
        pytest_args += (
            ["-rfE"]
            if args.verbose
            else [
                "-q",
                "--no-header",
            ]
        )
        pytest_args += list(args.pytest_args)
        if args.verbose:
            code = pytest.main(pytest_args)
        else:
            with open(os.devnull, "w") as sink:
                saved = sys.stdout
                sys.stdout = sink
                try:
                    code = pytest.main(pytest_args)
                finally:
                    sys.stdout = saved
        try:
            with open(report_path, encoding="utf-8") as fh:
                report = json.load(fh)
        except (OSError, ValueError):
            print(f"virtabs-contract: the suite produced no report (pytest exit code {int(code)})", file=sys.stderr)
            return int(code) or 1
    finally:
        os.unlink(report_path)
    text = json.dumps(report, indent=2, sort_keys=True) + "\n" if args.json else render_text(report)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(render_text(report, failures=False))
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

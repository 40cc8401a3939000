"""The capability x result report, and the ``virtabs-contract`` command.

``virtabs-contract --uri test:///default`` runs the contract suite against a URI
and prints a Markdown table a driver author pastes into their README::

    | capability | declared | result | tests |
    |---|---|---|---|
    | block.copy | yes | pass | 14 passed |
    | events | no | refusal verified | 3 refusals verified |

Results: ``pass`` (declared, every test passed), ``refusal verified``
(not declared, and every refusal check passed: ``NotSupportedError`` before
the host is touched, and the driver class does not implement it without
declaring it; the test's body did not run, so this is never a pass),
``known-failure`` (only listed known failures failed, each with the message
it is pinned to), ``not observable`` (every test found an effect the target
declares it cannot observe: a simulator that moves no data; never a pass),
``fail``, and ``untested`` (no test exercised it). A capability the driver class declares
but the connection drops shows ``dropped: <reason>`` in the declared column.

After the table comes one entry per failing test: the capabilities it tests,
the first line of its assertion and the command that reruns it alone.
A missing pytest is a one-line error: ``pip install 'virtabs[testing]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from .._capabilities import Capability

__all__ = [
    "CORE",
    "NOT_OBSERVABLE",
    "REFUSAL_VERIFIED",
    "ReportCollector",
    "first_error_line",
    "main",
    "render_text",
]

CORE = "(core)"
"""The row of tests that need no capability (lookups, errors, listing, signatures)."""

REFUSAL_VERIFIED = "refusal verified"
"""The result of a capability the connection does not declare and whose refusal checks all passed."""

NOT_OBSERVABLE = "not observable"
"""The result of a test (or a capability all of whose tests) found an effect the target cannot observe."""


def first_error_line(text: str) -> str:
    """The first assertion/error line of a pytest failure text (its first ``E`` line, else its first line)."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("E "):
            return line[1:].strip()
    return lines[0].strip() if lines else ""


def _default_rerun(nodeid: str, kit_id: str, uri: str) -> str:
    return f"pytest {shlex.quote(nodeid)} --virtabs-uri={shlex.quote(uri)}"


class ReportCollector:
    """Accumulates test reports of contract tests (those carrying ``virtabs_test`` properties)."""

    def __init__(self, rerun: Callable[[str, str, str], str] | None = None) -> None:
        self._tests: dict[str, dict[str, Any]] = {}
        self._rerun = rerun or _default_rerun

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
        if status == "not-observable":
            entry["reason"] = props.get("virtabs_not_observable", "")
        elif status == "known-failure":
            entry["reason"] = str(getattr(report, "wasxfail", "") or "")
        if status in ("fail", "error") and "error" not in entry:
            text = getattr(report, "longreprtext", None) or str(getattr(report, "longrepr", "") or "")
            entry["error"] = first_error_line(text)
            entry["phase"] = report.when

    def build(self) -> dict[str, Any]:
        """The report: ``{"uris": {uri: {...}}}``; see :func:`render_text` for the fields."""
        uris: dict[str, dict[str, Any]] = {}
        for nodeid, entry in sorted(self._tests.items()):
            props = entry["props"]
            uri = str(props.get("virtabs_uri", "?"))
            data = uris.setdefault(
                uri,
                {
                    "driver": props.get("virtabs_driver"),
                    "declared": props.get("virtabs_declared"),
                    "dropped": props.get("virtabs_dropped"),
                    "rows": {},
                },
            )
            for key in ("driver", "declared", "dropped"):
                if data.get(key) is None:
                    data[key] = props.get(f"virtabs_{key}")
            required = list(props.get("virtabs_required", []))
            missing = list(props.get("virtabs_missing", []))
            kind = "refusal" if missing else "run"
            test = {
                "id": nodeid,
                "test": props.get("virtabs_test", nodeid),
                "status": entry["status"],
                "kind": kind,
                "requires": required,
                "spi_calls": list(props.get("virtabs_spi_calls", [])),
            }
            if "error" in entry:
                test["error"] = entry["error"]
                test["phase"] = entry.get("phase")
            if entry.get("reason") and entry["status"] in ("not-observable", "known-failure"):
                test["reason"] = entry["reason"]
            if entry["status"] in ("fail", "error", "skipped"):
                test["rerun"] = self._rerun(nodeid, str(test["test"]), uri)
            for cap in (missing or required) or [CORE]:
                row = data["rows"].setdefault(cap, _empty_row())
                row["tests"].append(test)
            for cap in [c for c in required if c not in missing] if missing else []:
                # declared, but the test also needs an undeclared capability: its body did not run
                row = data["rows"].setdefault(cap, _empty_row())
                row["tests"].append({**test, "kind": "blocked", "blocked_by": missing})
        for data in uris.values():
            declared = set(data["declared"] or [])
            dropped = dict(data.get("dropped") or {})
            rows = data["rows"]
            for cap in [CORE, *sorted(c.value for c in Capability)]:
                row = rows.setdefault(cap, _empty_row())
                row["declared"] = None if cap == CORE else cap in declared
                if cap in dropped:
                    row["dropped"] = dropped[cap] or "(the connection gave no reason)"
                row.update(_summarise(row))
            data["rows"] = {k: rows[k] for k in [CORE, *sorted(c.value for c in Capability)]}
        return {"uris": uris}


def _empty_row() -> dict[str, Any]:
    return {"tests": []}


def _phase_status(report: Any) -> str | None:
    if report.skipped and "virtabs_not_observable" in dict(report.user_properties):
        return "not-observable"
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
    return {"pass": 0, "not-observable": 1, "known-failure": 1, "skipped": 2, "fail": 3, "error": 4}.get(status, 0)


def _summarise(row: dict[str, Any]) -> dict[str, Any]:
    tests = row["tests"]
    counts = {
        "passed": 0,
        "failed": 0,
        "known": 0,
        "not_observable": 0,
        "verified": 0,
        "refusals_failed": 0,
        "blocked": 0,
    }
    blockers: set[str] = set()
    for t in tests:
        ok = t["status"] == "pass"
        if t["kind"] == "blocked":
            counts["blocked"] += 1
            blockers.update(t.get("blocked_by", []))
        elif t["status"] == "known-failure":
            counts["known"] += 1
        elif t["status"] == "not-observable":
            counts["not_observable"] += 1
        elif t["kind"] == "refusal":
            counts["verified" if ok else "refusals_failed"] += 1
        else:
            counts["passed" if ok else "failed"] += 1
    if counts["failed"] or counts["refusals_failed"]:
        result = "fail"
    elif counts["known"]:
        result = "known-failure"
    elif counts["not_observable"] and not counts["passed"]:
        result = NOT_OBSERVABLE
    elif counts["passed"] and not counts["verified"]:
        result = "pass"
    elif counts["verified"] and not counts["passed"]:
        result = REFUSAL_VERIFIED
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
    if counts["not_observable"]:
        parts.append(f"{counts['not_observable']} not observable on this target")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["refusals_failed"]:
        parts.append(f"{counts['refusals_failed']} refusal{'s' if counts['refusals_failed'] != 1 else ''} failed")
    if counts["blocked"]:
        parts.append(f"{counts['blocked']} not run (they also need {', '.join(sorted(blockers))})")
    return {"result": result, "summary": ", ".join(parts) or "-", **counts}


def render_text(report: dict[str, Any], *, failures: bool = True) -> str:
    """The report as Markdown: one table per URI, then each failing test with its first error and rerun command."""
    out: list[str] = []
    for uri, data in report["uris"].items():
        out.append(f"virtabs contract report: {uri} (driver {data.get('driver') or '?'})\n\n")
        out.append("| capability | declared | result | tests |\n|---|---|---|---|\n")
        for cap, row in data["rows"].items():
            declared = "-" if row["declared"] is None else ("yes" if row["declared"] else "no")
            if row.get("dropped"):
                declared = f"dropped: {row['dropped']}"
            out.append(f"| {cap} | {declared} | {row['result']} | {row['summary']} |\n")
        bad: dict[str, dict[str, Any]] = {}
        for cap, row in data["rows"].items():
            for t in row["tests"]:
                if t["status"] in ("fail", "error", "skipped"):
                    entry = bad.setdefault(t["id"], {"test": t, "caps": []})
                    entry["caps"].append(cap)
        if failures and bad:
            out.append("\nfailing tests:\n")
            for nodeid in sorted(bad):
                t = bad[nodeid]["test"]
                caps = ", ".join(bad[nodeid]["caps"])
                out.append(f"- {t.get('test', nodeid)} [{caps}] ({t['status']})\n")
                if t.get("error"):
                    out.append(f"    {t['error']}\n")
                if t.get("rerun"):
                    out.append(f"    rerun: {t['rerun']}\n")
        out.append("\n")
    return "".join(out)


def _contract_rerun(uris: Sequence[str]) -> Callable[[str, str, str], str]:
    def rerun(nodeid: str, kit_id: str, uri: str) -> str:
        expr = " and ".join(kit_id.split("::"))
        return f"virtabs-contract --uri {shlex.quote(uri)} -- -k {shlex.quote(expr)}"

    return rerun


def main(argv: Sequence[str] | None = None) -> int:
    """``virtabs-contract``: run the contract suite against URIs and print the capability table."""
    parser = argparse.ArgumentParser(
        prog="virtabs-contract",
        description="Run the virtabs contract suite against a driver and print the capability x result table.",
    )
    parser.add_argument("--uri", action="append", required=True, help="connection URI (repeatable)")
    parser.add_argument("--known-failures", metavar="FILE", help="YAML/JSON mapping test id -> {raises, reason}")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    parser.add_argument("--output", "-o", metavar="FILE", help="also write the Markdown table to FILE")
    parser.add_argument("--verbose", "-v", action="store_true", help="show pytest's own output")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (after --)")
    args = parser.parse_args(argv)

    try:
        import pytest
    except ImportError:
        print(
            "virtabs-contract: pytest is not installed; install it with: pip install 'virtabs[testing]'",
            file=sys.stderr,
        )
        return 2

    workdir = tempfile.mkdtemp(prefix="virtabs-contract-")
    report_path = os.path.join(workdir, "report.json")
    ini = os.path.join(workdir, "pytest.ini")
    with open(ini, "w", encoding="utf-8") as fh:
        fh.write("[pytest]\n")  # the caller's directory configures nothing: the run is the same anywhere
    try:
        pytest_args = [
            "-c",
            ini,
            "--rootdir",
            workdir,
            "--pyargs",
            "virtabs.testing",
            "-p",
            "no:cacheprovider",
            f"--virtabs-report-file={report_path}",
        ]
        pytest_args += [f"--virtabs-uri={u}" for u in args.uri]
        if args.known_failures:
            pytest_args.append(f"--virtabs-known-failures={os.path.abspath(args.known_failures)}")
        pytest_args += ["-rfE"] if args.verbose else ["-q", "--no-header"]
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
        shutil.rmtree(workdir, ignore_errors=True)
    rerun = _contract_rerun(args.uri)
    for uri, data in report["uris"].items():
        for row in data["rows"].values():
            for t in row["tests"]:
                if "rerun" in t:
                    t["rerun"] = rerun(t["id"], t.get("test", t["id"]), uri)
    text = json.dumps(report, indent=2, sort_keys=True) + "\n" if args.json else render_text(report)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(render_text(report, failures=False))
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

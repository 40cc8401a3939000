"""Every test of this distribution must run: a skip (of a contract test or any other) is a failure.

The contract kit never skips an undeclared capability (it verifies the refusals instead), and the
in-memory host needs nothing installed, so a skip here can only mean something is broken.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} was skipped ({report.longrepr!r}); the example driver runs every test"
    return report

"""Each deliberately broken driver (one broken promise each) is caught; its honest twin passes the same tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import broken_drivers, dishonest_drivers

HERE = Path(__file__).parent
JOB_TIMEOUT = 4.0
"""Seconds the kit waits for an effect before it calls it missing (short: the honest driver is instant)."""


def run(pytester: pytest.Pytester, driver: str, selection: str) -> pytest.RunResult:
    pytester.syspathinsert(HERE)
    pytester.makeconftest(dishonest_drivers.conftest_source(driver, "broken_drivers", JOB_TIMEOUT))
    pytester.makepyfile(test_contract=dishonest_drivers.SUITE)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--virtabs-uri=test:///default", "-k", selection)


@pytest.mark.parametrize("driver", sorted(broken_drivers.CASES))
def test_the_broken_driver_is_caught(pytester: pytest.Pytester, driver: str) -> None:
    selection, line = broken_drivers.CASES[driver]
    result = run(pytester, driver, selection)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    assert "skipped" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines([line])


@pytest.mark.parametrize("driver", sorted(broken_drivers.CASES))
def test_the_honest_twin_passes_the_same_tests(pytester: pytest.Pytester, driver: str) -> None:
    selection, _ = broken_drivers.CASES[driver]
    result = run(pytester, broken_drivers.TWINS.get(driver, "TestDriver"), selection)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and outcomes.get("failed", 0) == 0, result.stdout.str()
    assert "skipped" not in outcomes and outcomes.get("errors", 0) == 0, result.stdout.str()

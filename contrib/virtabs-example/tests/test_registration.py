"""The registration guard: a driver that declares a capability without its methods is refused when loaded.

The broken drivers below are installed the way every driver is, through an entry point: a
``*.dist-info`` directory (METADATA and entry_points.txt) next to their module, on ``sys.path``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import virtabs
from virtabs.spi import Capability, Driver, InternalError, methods_for, missing_methods

from virtabs_example.driver import ExampleDriver

BROKEN = '''
from virtabs.spi import Capabilities, Driver
from virtabs_example.driver import ExampleDriver


class OverclaimingDriver(ExampleDriver):
    """The example driver, claiming domain.save without implementing save and restore."""

    name = "overclaim"
    capabilities = Capabilities.of(*ExampleDriver.capabilities.supported, "domain.save")


class BareDriver(Driver):
    """Declares domain.start and implements nothing at all."""

    name = "bare"
    capabilities = Capabilities.of("domain.start")
'''


@pytest.fixture
def broken_drivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_drivers.py").write_text(BROKEN)
    dist = tmp_path / "virtabs_broken-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: virtabs-broken\nVersion: 0.0.1\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [virtabs.drivers]
            overclaim = broken_drivers:OverclaimingDriver
            bare = broken_drivers:BareDriver
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_declared_capability_without_its_methods_is_refused_by_open(broken_drivers: None) -> None:
    assert "overclaim" in {d.name for d in virtabs.installed_drivers()}
    with pytest.raises(InternalError) as exc:
        virtabs.open("overclaim:///")
    message = exc.value.message
    assert "OverclaimingDriver does not implement what it declares" in message
    assert "save (declared domain.save)" in message and "restore (declared domain.save)" in message


def test_the_mandatory_reads_are_required_too(broken_drivers: None) -> None:
    with pytest.raises(InternalError) as exc:
        virtabs.open("bare:///")
    for method in ("start (declared domain.start)", "host_info", "list_domains", "domain_info", "disks", "nics"):
        assert method in exc.value.message


def test_the_example_declares_exactly_what_it_implements() -> None:
    assert missing_methods(ExampleDriver, ExampleDriver.capabilities) == {}
    declared = ExampleDriver.capabilities.supported
    for cap in Capability:
        overridden = [m for m in methods_for(cap) if getattr(ExampleDriver, m) is not getattr(Driver, m)]
        assert bool(overridden) == (cap in declared and bool(methods_for(cap))), cap

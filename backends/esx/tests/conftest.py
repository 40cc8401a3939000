"""pytest wiring of the virtabs-esx tests: one vcsim (TLS verified, paging and virtual disk doubles on) per
session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers are plain modules next to this file (no package: other suites also have a "tests" dir).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vcsim_harness import Pki, Vcsim, build_vcsim, make_pki, missing_tools, start_vcsim
from virtabs.testing.plugin import in_ci


def need_vcsim() -> None:
    """Skip (fail under CI) when vcsim cannot be built here."""
    hint = missing_tools()
    if hint is None:
        return
    if in_ci():
        pytest.fail(hint)
    pytest.skip(hint)


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The vcsim binary, built once into tests/.build/."""
    need_vcsim()
    return build_vcsim()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The run's throw-away CA and 2048-bit server certificate."""
    need_vcsim()
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def vcsim(vcsim_binary: Path, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vcsim]:
    """A vCenter simulator (``-ds 2 -paging -disks``) serving HTTPS with the run's certificate; stopped at the
    end."""
    args = ("-ds", "2", "-paging", "-disks")
    sim = start_vcsim(vcsim_binary, tmp_path_factory.mktemp("vcsim"), pki=pki, args=args)
    yield sim
    sim.stop()

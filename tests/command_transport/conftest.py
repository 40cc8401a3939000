"""Fixtures of the command-transport tests: a real sshd on 127.0.0.1 (see ``sshd_server.py``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from virtabs.testing.plugin import in_ci


def _load_sshd_module() -> ModuleType:
    name = "virtabs_test_sshd"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("sshd_server.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sshd_server = _load_sshd_module()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A started sshd; skipped without openssh-server outside CI, a failure under CI."""
    missing = sshd_server.sshd_available()
    if missing:
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    server = sshd_server.Sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()

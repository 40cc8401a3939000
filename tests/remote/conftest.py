"""Fixtures of the remote tests: a real sshd on 127.0.0.1 whose sessions find ``virtabs-remote`` on PATH
(and a second one on 127.0.0.3, another "host", for the tests that need two).

The server is tests/command_transport/sshd_server.py (Debian's /usr/sbin/sshd, its own host key and
config, key authentication only); the sessions it starts get this worktree's ``.venv/bin`` first on
PATH, so the helper that runs on the "remote" host is the one installed in the venv.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from virtabs.testing.plugin import in_ci


def _load_sshd_module() -> ModuleType:
    name = "virtabs_test_sshd"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).parent.parent / "command_transport" / "sshd_server.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sshd_server = _load_sshd_module()

VENV_BIN = str(Path(sys.executable).parent)
"""The directory holding this interpreter and the virtabs-remote script installed with it."""


def start_sshd(root: Path, path: str, address: str = "127.0.0.1", env: dict[str, str] | None = None) -> object:
    """A started sshd on ``address`` whose sessions see ``path`` as PATH (and ``env``); skipped without
    openssh-server (failed in CI)."""
    missing = sshd_server.sshd_available()
    if missing:
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    server = sshd_server.Sshd(root, set_env={**(env or {}), "PATH": path}, address=address)
    server.start()
    return server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An sshd whose sessions find virtabs-remote on PATH (the venv's bin first)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"), f"{VENV_BIN}:/usr/bin:/bin")
    yield server
    server.stop()


SECOND_HOST = "127.0.0.3"
"""The second sshd's address: another loopback address than the first's, with its own port and host key."""


@pytest.fixture(scope="session")
def second_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A second "host": another sshd (its own host key, address and port) whose sessions find virtabs-remote.
    A connection to it has a channel of its own, never shared with one to :func:`sshd`."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-second"), f"{VENV_BIN}:/usr/bin:/bin", SECOND_HOST)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd_without_helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """An sshd whose sessions' PATH has no virtabs-remote (a host where virtabs is not installed)."""
    assert not os.path.exists("/usr/bin/virtabs-remote") and not os.path.exists("/bin/virtabs-remote")
    server = start_sshd(tmp_path_factory.mktemp("sshd-bare"), "/usr/bin:/bin")
    yield server
    server.stop()


@pytest.fixture
def sshd_with_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, str]], object]]:
    """Starts sshds whose sessions find virtabs-remote and get more environment variables (``PYTHONPATH``:
    a distribution installed on that "host" only); each is stopped at the end of the test."""
    started: list[object] = []

    def start(env: dict[str, str]) -> object:
        server = start_sshd(tmp_path_factory.mktemp("sshd-env"), f"{VENV_BIN}:/usr/bin:/bin", env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()  # type: ignore[attr-defined]

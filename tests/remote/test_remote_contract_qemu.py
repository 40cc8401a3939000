"""The contract suite over ``qemu+ssh://``: an embed root behind a real sshd, reached through the
virtabs-remote helper; the QEMU backend's own target runs on the remote host through an ssh door of its
own (``virtabs.testing.remote_door``), making and reading images there. Guests run under TCG."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtabs.testing.remote_door import RemoteDoorTarget
from virtabs.testing.suite import *  # noqa: F403


@pytest.fixture(scope="session")
def _remote_root() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="vtrc-", dir="/tmp")  # short: QMP socket paths stay under 108 bytes
    yield root
    for pidfile in Path(root).glob("**/qemu.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def virtabs_uri(sshd: object, _remote_root: str) -> str:
    return sshd.uri("qemu", "/embed", root=_remote_root, accel="tcg")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def virtabs_target(virtabs_uri: str) -> Iterator[RemoteDoorTarget]:
    target = RemoteDoorTarget(virtabs_uri)
    yield target
    target.close()

"""xen+ssh:// against a real sshd that is not a dom0, and a host that never answers: who logs in, and how long it takes.

No Xen is needed: the driver logs in, then finds the host is not a dom0 (``ConnectError`` naming
``user@host:port``), which shows which user ssh logged in as; a refused user is an ``AuthError``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import virtabs
from virtabs import AuthError, ConnectError, OperationTimeoutError
from virtabs.testing.listeners import SilentListener
from virtabs.testing.plugin import in_ci

REPO = Path(__file__).resolve().parents[3]


def _load_sshd_module() -> ModuleType:
    name = "virtabs_test_sshd"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "command_transport" / "sshd_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenSSH server on 127.0.0.1 (Debian's sshd, its own keys and config)."""
    sshd_server = _load_sshd_module()
    missing = sshd_server.sshd_available()
    if missing:
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    server = sshd_server.Sshd(tmp_path_factory.mktemp("xen-sshd"))
    server.start()
    yield server
    server.stop()


def _not_dom0(exc: BaseException) -> bool:
    text = str(exc)
    return "is not a Xen dom0" in text or text.startswith("no xl on ")


@pytest.mark.timeout(120)
def test_the_uris_user_wins_over_virtabs_username(sshd: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTABS_USERNAME", "virtabs-nobody")
    with pytest.raises(ConnectError) as exc:
        virtabs.open(sshd.uri("xen"))  # root@ in the URI: logged in as root, then "not a dom0"
    assert _not_dom0(exc.value) and f"{sshd.user}@127.0.0.1:{sshd.port}" in str(exc.value)
    without_user = sshd.uri("xen").replace(f"//{sshd.user}@", "//")
    with pytest.raises(AuthError, match=f"virtabs-nobody@127.0.0.1:{sshd.port}"):
        virtabs.open(without_user)  # no user in the URI: VIRTABS_USERNAME is the one ssh sends
    monkeypatch.delenv("VIRTABS_USERNAME")
    with pytest.raises(ConnectError) as exc:
        virtabs.open(without_user)  # neither: ssh's default (the local login name) logs in
    assert _not_dom0(exc.value) and f"127.0.0.1:{sshd.port}" in str(exc.value)


@pytest.mark.timeout(20)  # the bound: well under the 30 s default an unbounded open would wait
def test_opening_xen_ssh_to_a_silent_host_ends_within_the_timeout(sshd: Any) -> None:
    with SilentListener() as silent:
        uri = f"xen+ssh://root@{silent.address}/?known_hosts={sshd.known_hosts}"
        with pytest.raises((ConnectError, OperationTimeoutError)) as exc:
            virtabs.open(uri, timeout=1)
        assert silent.accepted
    assert silent.address in str(exc.value)

"""``lxc+ssh://`` over a real sshd: a busybox container on the "remote" host, driven through the helper.

What the container does on the remote host is checked through a door of our own there: LXC's own tools
(``lxc-ls``, ``lxc-info``) and ``test -e`` run over a separate ssh command with the server's key, never
through virtabs and never by assuming the test shares the host's file system. The root file system is
made on the remote host the same way. Real LXC needs root, liblxc's binding and busybox-static: without
them the test skips (fails under CI).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator

import pytest

import virtabs
from virtabs import DomainSpec, DomainState, LifecycleEvent, LifecycleEventType, OperationDeniedError
from virtabs.testing.plugin import in_ci

MiB = 1 << 20


def _missing_lxc() -> str | None:
    if os.geteuid() != 0:
        return "real LXC needs root"
    for tool in ("lxc-start", "lxc-info", "lxc-ls"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install lxc)"
    try:
        import lxc  # noqa: F401
        from virtabs_lxc.testing import busybox_binary
    except ImportError:
        return "the LXC backend or liblxc's binding is not installed (pip install -e backends/lxc)"
    if busybox_binary() is None:
        return "busybox-static is not installed (apt-get install busybox-static)"
    return None


def door(server: object, command: str, check: bool = True) -> str:
    """Run ``command`` on the sshd's host through an ssh connection of the test's own; its stdout."""
    argv = [
        "ssh",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={server.known_hosts}",  # type: ignore[attr-defined]
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-i",
        str(server.client_key),  # type: ignore[attr-defined]
        "-p",
        str(server.port),  # type: ignore[attr-defined]
        f"{server.user}@127.0.0.1",  # type: ignore[attr-defined]
        "--",
        command,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{command!r} on the remote host failed ({result.returncode}): {result.stderr}")
    return result.stdout


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def lxc_state(server: object, lxcpath: str, name: str) -> str:
    """LXC's own word for the container's state on the remote host (``lxc-info -s``)."""
    out = door(server, shlex.join(["lxc-info", "-P", lxcpath, "-n", name, "-s", "-H"]))
    return out.strip()


@pytest.fixture
def remote_lxcpath(sshd: object) -> Iterator[str]:
    """A private lxcpath on the remote host: every container in it is stopped and the directory removed."""
    missing = _missing_lxc()
    if missing:
        if in_ci():
            pytest.fail(missing)
        pytest.skip(missing)
    path = tempfile.mkdtemp(prefix="vtrlxc-")
    yield path
    for name in door(sshd, shlex.join(["lxc-ls", "-P", path, "-1"]), check=False).split():
        door(sshd, shlex.join(["lxc-stop", "-P", path, "-n", name, "-k"]), check=False)
    shutil.rmtree(path, ignore_errors=True)


def test_a_container_over_lxc_ssh_is_defined_run_frozen_and_removed_on_the_remote_host(
    sshd: object, remote_lxcpath: str
) -> None:
    name = f"vtr-{uuid.uuid4().hex[:8]}"
    rootfs = f"{remote_lxcpath}/rootfs/{name}"  # in the lxcpath, not at its top (virtabs_lxc._rootfs)
    make_rootfs = (
        f"from pathlib import Path; from virtabs_lxc.testing import build_busybox_rootfs as b; b(Path({rootfs!r}))"
    )
    door(sshd, shlex.join(["python3", "-c", make_rootfs]))  # the venv's python: first on the sessions' PATH
    from virtabs_lxc.testing import LxcTarget

    uri = sshd.uri("lxc", "/") + "&" + urllib.parse.urlencode({"path": remote_lxcpath}, safe="/")  # type: ignore[attr-defined]
    events: list[LifecycleEventType] = []

    def record_lifecycle(event: object) -> None:
        if isinstance(event, LifecycleEvent) and event.domain == name:
            events.append(event.type)

    with virtabs.open(uri, timeout=60) as conn:
        assert conn.driver_name == "lxc" and conn.supports("domain.suspend")
        dom = conn.define_domain(
            DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, os_type="exe", extra=LxcTarget.extra(rootfs))
        )
        assert name in door(sshd, shlex.join(["lxc-ls", "-P", remote_lxcpath, "-1"])).split()
        assert lxc_state(sshd, remote_lxcpath, name) == "STOPPED"
        with conn.subscribe(record_lifecycle):
            dom.start()
            ready = shlex.join(["test", "-e", f"{rootfs}/run/virtabs-ready"])
            wait_until(lambda: door(sshd, ready + " && echo up", check=False).strip() == "up", "busybox init to run")
            assert lxc_state(sshd, remote_lxcpath, name) == "RUNNING"
            info = dom.info()
            assert info.state == DomainState.RUNNING and info.native_state == "RUNNING" and info.cpu_time_ns > 0
            (record,) = [r for r in conn.domain_records() if r.name == name]
            assert record.state == DomainState.RUNNING and record.uuid == dom.uuid
            dom.suspend()
            assert lxc_state(sshd, remote_lxcpath, name) == "FROZEN"
            assert dom.state() == DomainState.PAUSED
            dom.resume()
            assert lxc_state(sshd, remote_lxcpath, name) == "RUNNING"
            dom.destroy()
            assert lxc_state(sshd, remote_lxcpath, name) == "STOPPED"
            wait_until(lambda: LifecycleEventType.STOPPED in events, "the stop event pushed by the helper")
        assert LifecycleEventType.STARTED in events
        with virtabs.open(uri, readonly=True, timeout=60) as ro:
            with pytest.raises(OperationDeniedError, match="read-only"):
                ro.lookup_domain(name).start()  # read-only is read-only on the helper too
            assert lxc_state(sshd, remote_lxcpath, name) == "STOPPED"
        dom.undefine()
        assert name not in door(sshd, shlex.join(["lxc-ls", "-P", remote_lxcpath, "-1"])).split()
        kept = shlex.join(["test", "-x", f"{rootfs}/bin/busybox"]) + " && echo kept"
        assert door(sshd, kept).strip() == "kept"  # a user-supplied rootfs outlives undefine

"""Issue 25 over ``lxc+ssh://``: the helper runs the LXC driver on the far host, so the networks and the
containers' NICs are the far host's, as a local connection there lists them. Needs root (LXC, a bridge)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtabs
from virtabs.testing.plugin import in_ci


@pytest.fixture
def lxcpath() -> Iterator[Path]:
    reason = None
    if os.geteuid() != 0:
        reason = "LXC and a host bridge need root"
    else:
        try:
            import lxc  # noqa: F401
        except ImportError:
            reason = "liblxc's Python binding is not installed (pip install virtabs-lxc)"
    if reason is not None:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    path = Path(tempfile.mkdtemp(prefix="vtrl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_networks_over_ssh_are_the_far_hosts(sshd: object, lxcpath: Path) -> None:
    bridge = f"vtb-{secrets.token_hex(4)}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, capture_output=True)
    try:
        name = f"vtrl{secrets.token_hex(3)}"
        (lxcpath / name).mkdir()
        (lxcpath / name / "config").write_text(
            f"lxc.uts.name = {name}\nlxc.net.0.type = veth\nlxc.net.0.link = {bridge}\n"
            "lxc.net.0.hwaddr = 00:16:3e:00:00:04\n"
        )
        # the helper's lxcpath is the URI's path= parameter (sshd.uri's own path is the URI path)
        uri = sshd.uri("lxc", "/") + "&" + urllib.parse.urlencode({"path": str(lxcpath)}, safe="/")  # type: ignore[attr-defined]
        with virtabs.open(uri, timeout=60) as conn:
            assert conn.supports("network")
            remote = [n.last_info for n in conn.list_networks()]
            by_name = {n.name: n for n in remote}
            assert [(a.domain_name, a.mac) for a in by_name[bridge].attachments] == [(name, "00:16:3e:00:00:04")]
            assert [n.network for n in conn.lookup_domain(name).nics()] == [bridge]
            with pytest.raises(virtabs.NoNetworkError):
                conn.lookup_network(f"{bridge}-not")
        with virtabs.open(f"lxc:///?path={lxcpath}", readonly=True) as local:
            here = [n.last_info for n in local.list_networks()]
        # the host's other bridges may come and go between the two reads (other tests, other engines): compare ours
        pick = {bridge, "host", "none"}
        assert [n for n in here if n.name in pick] == [n for n in remote if n.name in pick]  # extra too
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)

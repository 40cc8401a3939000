"""``qemu+ssh://`` over a real sshd: an embed root on the "remote" host, a block copy started by a client
that is then killed, seen and pivoted by a new connection (daemonless QEMU keeps the job)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtabs
from virtabs import BlockJobType, DiskSpec, DomainSpec, DomainState, NicSpec
from virtabs.testing.plugin import in_ci

MiB = 1 << 20


@pytest.fixture
def embed_root() -> Iterator[Path]:
    for tool in ("qemu-system-x86_64", "qemu-img"):
        if shutil.which(tool) is None:
            if in_ci():
                pytest.fail(f"{tool} missing: apt-get install qemu-system-x86 qemu-utils")
            pytest.skip(f"{tool} missing")
    root = Path(tempfile.mkdtemp(prefix="vtrq-", dir="/tmp"))  # short: QMP socket paths stay under 108 bytes
    yield root
    for pidfile in root.glob("**/qemu.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


def test_a_copy_survives_its_client_and_a_new_connection_pivots_it(sshd: object, embed_root: Path) -> None:
    image = embed_root / "disk.qcow2"
    dest = embed_root / "copy.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    uri = sshd.uri("qemu", "/embed", root=str(embed_root), accel="tcg")  # type: ignore[attr-defined]
    with virtabs.open(uri, timeout=60) as conn:
        assert conn.driver_name == "qemu" and conn.supports("block.copy.pivot")
        dom = conn.define_domain(
            DomainSpec(
                name="remote-copy", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", str(image), "qcow2"),)
            )
        )
        dom.start(paused=True)
    script = (
        "import sys, virtabs\n"
        "conn = virtabs.open(sys.argv[1], timeout=60)\n"
        "job = conn.lookup_domain('remote-copy').block_copy('vda', sys.argv[2])\n"
        "job.wait_ready(timeout=60)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    client = subprocess.Popen(
        [sys.executable, "-c", script, uri, str(dest)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        client.kill()
        client.wait()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    with virtabs.open(uri, timeout=60) as conn:
        dom = conn.lookup_domain("remote-copy")
        assert dom.state() == DomainState.PAUSED
        info = dom.block_job_info("vda")
        assert info is not None and info.type == BlockJobType.COPY and info.ready, info
        records = {r.name: r for r in conn.domain_records()}
        assert [j.disk for j in records["remote-copy"].block_jobs] == ["vda"]
        dom.block_job_abort("vda", virtabs.BlockJobAbortFlags.PIVOT)
        assert dom.block_job_info("vda") is None
        assert [d.path for d in dom.disks()] == [str(dest)]
        dom.destroy()
        dom.undefine()


def test_networks_over_ssh_are_the_far_hosts_as_its_local_driver_lists_them(sshd: object, embed_root: Path) -> None:
    """Issue 25: the helper runs the QEMU driver on the far host, so its bridges and NICs are read there."""
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("creating a host bridge needs root")
        pytest.skip("creating a host bridge needs root")
    bridge = f"vtb-{secrets.token_hex(4)}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, capture_output=True)
    try:
        uri = sshd.uri("qemu", "/embed", root=str(embed_root), accel="tcg")  # type: ignore[attr-defined]
        with virtabs.open(uri, timeout=60) as conn:
            assert conn.supports("network")
            dom = conn.define_domain(
                DomainSpec(
                    name="remote-nets",
                    memory_bytes=64 * MiB,
                    vcpus=1,
                    nics=(NicSpec(network=f"bridge:{bridge}"), NicSpec(network="user")),
                )
            )
            remote = [n.last_info for n in conn.list_networks()]
            assert [n.name for n in remote] == ["user", bridge]
            assert [(a.domain_uuid, a.mac) for a in remote[1].attachments] == [(dom.uuid, dom.nics()[0].mac)]
            assert [n.network for n in dom.nics()] == [bridge, "user"]
            assert conn.lookup_network(bridge).last_info == remote[1]
            with pytest.raises(virtabs.NoNetworkError):
                conn.lookup_network(f"{bridge}-not")
        with virtabs.open(f"qemu:///embed?root={embed_root}&accel=tcg", readonly=True) as local:
            here = [n.last_info for n in local.list_networks()]
        assert here == remote  # extra too: the records freeze it (tuples), whichever side made them
    finally:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)

"""``qemu+ssh://`` over a real sshd: an embed root on the "remote" host, a block copy started by a client
that is then killed, seen and pivoted by a new connection (daemonless QEMU keeps the job)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtabs
from virtabs import BlockJobType, DiskSpec, DomainSpec, DomainState
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

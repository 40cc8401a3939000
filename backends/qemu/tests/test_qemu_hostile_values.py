"""Issue 21.1 on QEMU: hostile values in every text field, read back from a real QEMU.

The command line carries a spec in three syntaxes: ``-blockdev``/``-device`` JSON (json.dumps escapes
everything), QEMU's ``key=value,...`` option strings, where a comma inside a value is written doubled
(QEMU's own escaping: ``-name guest=a,,b`` is the name ``a,b``), and plain arguments. Each domain here is
started paused (TCG) from a state root and disk paths full of hostile fragments, and QEMU itself is asked
(QMP) what it understood: the name, every disk's file name and the QMP sockets it listens on are exactly
the intended ones. A bridge or tap name that would add ``helper=``/``script=`` (a program QEMU runs as
root) reaches QEMU as a name and the hook never runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from qemu_helpers import make_driver
from virtabs.spi import DiskSpec, DomainSpec, NicSpec, OperationFailedError
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

from virtabs_qemu._qmp import QMPClient

MiB = 1 << 20
TARGETS = [f"vd{c}" for c in "abcdefg"]


@pytest.fixture
def hostile_root() -> Iterator[Path]:
    """A state root whose path holds a comma, '=', quotes and a space (the QMP socket and console log live in it)."""
    d = Path(tempfile.mkdtemp(prefix="vq,=x'\" "))
    yield d
    for pidfile in d.glob("run/*/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), 9)
    shutil.rmtree(d, ignore_errors=True)


def _image(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "1M"], check=True)
    return str(path)


def test_qemu_reads_back_every_hostile_value(hostile_root: Path) -> None:
    driver = make_driver(hostile_root)
    images = hostile_root / "img"
    chunks = [HOSTILE_FRAGMENTS[i : i + len(TARGETS)] for i in range(0, len(HOSTILE_FRAGMENTS), len(TARGETS))]
    for number, chunk in enumerate(chunks):
        name = f"x-+y.z_{number}"  # the widest a domain name may be
        disks = [
            DiskSpec(target=target, path=_image(images / f"{number}{fragment},file.raw,readonly=on"), format="raw")
            for target, fragment in zip(TARGETS, chunk, strict=False)
        ]
        spec = DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=disks, nics=[NicSpec(network="user")])
        ref = driver.define_domain(spec)
        driver.start(ref, paused=True)
        try:
            with QMPClient(str(hostile_root / "run" / name / "qmp.sock"), timeout=30) as q:
                assert q.execute("query-name") == {"name": name}
                nodes = {n["node-name"]: n for n in q.execute("query-named-block-nodes", {"flat": True})}
                for disk in disks:
                    assert nodes[f"file-{disk.target}"]["file"] == disk.path
                    assert nodes[f"fmt-{disk.target}"]["ro"] is False
                serial = {c["label"]: c["filename"] for c in q.execute("query-chardev")}["serial0"]
            # QEMU opened the console log and the QMP socket at their exact paths (we just talked to it), not at
            # a path cut at the root's comma (/tmp/vq), which it would have been without the doubling
            run = hostile_root / "run" / name
            assert serial == "file" and (run / "console.log").is_file()
            assert not os.path.exists(str(hostile_root).split(",")[0])
        finally:
            driver.destroy(ref)
            driver.undefine(ref)
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("kind", ["bridge", "tap"])
def test_a_network_name_cannot_add_a_hook(root: Path, tmp_path: Path, kind: str) -> None:
    """``bridge:x,helper=HOOK`` and ``tap:x,script=HOOK``: QEMU sees one odd name and never runs HOOK."""
    marker = tmp_path / "hook-ran"
    hook = tmp_path / "hook"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    hook.chmod(stat.S_IRWXU)
    option = "helper" if kind == "bridge" else "script"
    driver = make_driver(root)  # a plain root: only the network name is hostile here
    spec = DomainSpec(
        name=f"hook{kind}", memory_bytes=64 * MiB, vcpus=1, nics=[NicSpec(network=f"{kind}:x,{option}={hook}")]
    )
    ref = driver.define_domain(spec)
    with pytest.raises(OperationFailedError):
        driver.start(ref, paused=True)
    driver.undefine(ref)
    assert not marker.exists(), f"QEMU ran the {option} hook: the network name changed the -netdev option"

"""The Python API on a test node kept in a file: define, start, copy a disk, pivot, inspect.

    .venv/bin/python examples/python_api.py [NODE.json]

Without an argument it works in a temporary directory. The same script runs on
QEMU by changing the URI to ``qemu:///embed?root=DIR`` (and pointing the disk
at a real image). Everything used here is the public ``virtabs`` package.
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

import virtabs


def main(node_file: Path) -> None:
    """Define ``web-1`` on ``test://NODE_FILE``, copy its disk and pivot to the copy."""
    if not node_file.exists():
        node_file.write_text("{}")  # an empty node: no domains, no pools
    uri = f"test://{node_file.resolve()}"
    with virtabs.open(uri) as conn:
        try:  # rerunnable: remove what an earlier run left
            old = conn.lookup_domain("web-1")
            if old.state() != virtabs.DomainState.SHUTOFF:
                old.destroy()
            old.undefine()
        except virtabs.NoDomainError:
            pass
        spec = virtabs.DomainSpec(
            name="web-1",
            memory_bytes=512 * 1024**2,
            vcpus=1,
            disks=(virtabs.DiskSpec(target="vda", path="/images/web-1.qcow2", format="qcow2"),),
            nics=(virtabs.NicSpec(network="default"),),
        )
        dom = conn.define_domain(spec)
        dom.start()
        print(f"{dom.name}: {dom.state().name.lower()}, disks {[d.path for d in dom.disks()]}")

        dest = f"/images/web-1-{uuid.uuid4().hex[:8]}.qcow2"  # a new name each run: images outlive domains
        job = dom.block_copy("vda", dest, bandwidth=0)  # 0 = unlimited
        info = job.wait_ready(timeout=60)  # phase 1: the copy; from now on every write is mirrored
        print(f"copy ready: {info.cur} of {info.end} bytes")
        job.pivot()  # phase 2 ends: the domain runs on the copy
        print(f"after pivot: {[d.path for d in dom.disks()]}")

    # another process (or this one, later) sees the same state: the node file keeps it
    saved = json.loads(node_file.read_text())
    print("saved in", node_file.name, "->", [(d["name"], d["state"]) for d in saved["domains"]])


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "lab.json")

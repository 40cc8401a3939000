"""Issue 21.1 on the test driver: hostile values in every text field survive its node file.

A file-backed node (``test:///PATH.json``) is written with ``json.dumps`` (which escapes quotes,
backslashes and, as ASCII, U+2028/U+0085): one definition carrying every hostile fragment in every text
field is read back by another process exactly as defined, and the file is one JSON document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtabs
from virtabs.drivers.test import reset_all_nodes
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

MiB = 1 << 20
READ_BACK = """
import json, sys, virtabs
with virtabs.open(sys.argv[1]) as conn:
    print(json.dumps([conn.lookup_domain(n).spec().to_dict() for n in sys.argv[2:]]))
"""


def _spec(index: int, fragment: str) -> dict[str, object]:
    return {
        "name": f"x-+y.z_{index}",
        "memory_bytes": 64 * MiB,
        "vcpus": 1,
        "disks": [{"target": "vda", "path": f"/images/{fragment}/a{fragment}.img"}],
        "nics": [{"network": f"net{fragment}", "model": f"virtio{fragment}", "mac": "52:54:00:00:00:01"}],
        "extra": {"test": {f"key{fragment}": [f"value{fragment}", {fragment: fragment}]}},
    }


def test_another_process_reads_back_every_hostile_value(tmp_path: Path) -> None:
    node = tmp_path / "node.json"
    node.write_text("{}")
    uri = f"test://{node}"
    specs = [_spec(i, fragment) for i, fragment in enumerate(HOSTILE_FRAGMENTS)]
    with virtabs.open(uri) as conn:
        wanted = [conn.define_domain(spec).spec().to_dict() for spec in specs]
    json.loads(node.read_text())  # one JSON document, whatever the values held
    env = {"PATH": "/usr/bin:/bin", "VIRTABS_CONFIG": str(tmp_path / "none.toml")}
    proc = subprocess.run(
        [sys.executable, "-c", READ_BACK, uri, *[str(s["name"]) for s in specs]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(proc.stdout) == wanted
    for spec, got in zip(specs, wanted, strict=True):
        assert got["disks"][0]["path"] == spec["disks"][0]["path"]  # type: ignore[index]
        assert got["nics"][0]["network"] == spec["nics"][0]["network"]  # type: ignore[index]
        assert got["extra"] == spec["extra"]
    assert not os.path.exists(MARKER)


@pytest.fixture(autouse=True)
def _fresh_nodes() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()

"""Issue 21.1 on VirtualBox: hostile values in every text field, locally and over a real sshd.

VBoxManage takes every value as its own argument (the command transport quotes each one for the remote
shell), and prints strings back in ``--machinereadable`` with ``\\`` and ``"`` escaped. Each definition
goes through the driver into the VBoxManage simulator; the simulator's own state (what VirtualBox would
save in the machine's settings) holds exactly the intended values, the driver reads the same values back
through ``showvminfo --machinereadable``, and no command a fragment holds ran.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

SIM = str(Path(__file__).resolve().parent / "vboxmanage_sim" / "VBoxManage")
MiB = 1 << 20
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]


@pytest.fixture
def conn(any_uri: str) -> Iterator[virtabs.Connection]:
    with virtabs.open(any_uri) as c:
        yield c


def _home(conn: virtabs.Connection, request: pytest.FixtureRequest) -> Path:
    if conn.parsed_uri.transport == "ssh":
        return Path(request.getfixturevalue("vbox_sshd").vbox_home)
    return Path(os.environ["VBOX_USER_HOME"])


def _sim(home: Path, *args: str) -> None:
    subprocess.run([SIM, *args], env={**os.environ, "VBOX_USER_HOME": str(home)}, check=True, capture_output=True)


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_every_hostile_value_reaches_virtualbox_whole(
    conn: virtabs.Connection, request: pytest.FixtureRequest, tmp_path: Path, fragment: str
) -> None:
    home = _home(conn, request)
    path = tmp_path / f"d{fragment}x" / f"disk {fragment}.vdi"
    path.parent.mkdir(parents=True, exist_ok=True)
    _sim(home, "createmedium", "disk", "--filename", str(path), "--sizebyte", str(MiB), "--format", "VDI")
    name = f"x-+y.z_{HOSTILE_FRAGMENTS.index(fragment)}"
    spec = DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=(DiskSpec("sda", str(path), format="vdi", bus="sata"),),
        nics=(NicSpec(network=f"net{fragment}", mac="08:00:27:00:00:01", model=f"virtio{fragment}"),),
        extra={"vbox": {"ostype": "Linux_64"}},
    )
    dom = conn.define_domain(spec)
    try:
        state = json.loads((home / "vboxsim.json").read_text())
        (vm,) = [m for m in state["machines"] if m["uuid"] == dom.uuid]
        assert vm["name"] == name
        assert vm["ostype"] == "Linux_64"
        assert [nic["target"] for nic in vm["nics"].values()] == [f"net{fragment}"]
        media = {m["uuid"]: m["location"] for m in state["media"]}
        assert [media[a["medium"]] for a in vm["attachments"].values()] == [str(path)]
        back = dom.spec()
        assert [d.path for d in back.disks] == [str(path)]
        assert [n.network for n in back.nics] == [f"net{fragment}"]
        assert back.nics[0].mac == "08:00:27:00:00:01"
    finally:
        dom.undefine()
        _sim(home, "closemedium", "disk", str(path), "--delete")
    assert not os.path.exists(MARKER)

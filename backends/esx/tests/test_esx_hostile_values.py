"""Issue 21.1 on ESX/vCenter: hostile values in every text field, through pyVmomi into vcsim.

The driver builds pyVmomi objects (a ConfigSpec with device backings), which pyVmomi serialises to SOAP
with XML escaping: the only text the driver builds itself is a datastore path, ``[datastore] dir/file``,
which has no escaping, so a datastore name holding a bracket is refused. Each definition goes through the
driver into vcsim, and the VM vcsim made holds exactly the intended disk file and network backing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import virtabs
from vcsim_harness import Vcsim
from virtabs import Credentials, DiskSpec, DomainSpec, InvalidArgumentError, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

from virtabs_esx._paths import datastore_path

MiB = 1 << 20
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]


@pytest.fixture
def conn(vcsim: Vcsim) -> Iterator[virtabs.Connection]:
    assert vcsim.pki is not None
    uri = f"vpx://{vcsim.host}:{vcsim.port}/?cafile={vcsim.pki.ca}"
    with virtabs.open(uri, credentials=Credentials(vcsim.username, vcsim.password)) as c:
        yield c


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_vcsim_holds_every_hostile_value(conn: virtabs.Connection, fragment: str) -> None:
    name = f"x-+y.z_{HOSTILE_FRAGMENTS.index(fragment)}"
    path = f"/vmfs/volumes/LocalDS_0/{name}/disk{fragment.replace('/', '_')}.vmdk"  # no folder is made
    spec = DomainSpec(
        name=name,
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=(DiskSpec("sda", path, format="vmdk", bus="scsi"),),
        nics=(NicSpec(network="VM Network", model=f"e1000{fragment}"),),
        extra={"esx.guest_id": "otherGuest"},
    )
    dom = conn.define_domain(spec)
    try:
        back = dom.spec()
        assert [d.path for d in back.disks] == [path]
        assert [n.network for n in back.nics] == ["VM Network"]
        assert back.name == name
    finally:
        dom.undefine()
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("datastore", ["a] [b", "x[", "]"], ids=repr)
def test_a_datastore_name_with_a_bracket_is_refused(datastore: str) -> None:
    """``[a] [b] f.vmdk`` would be the file ``[b] f.vmdk`` on datastore ``a``: refused, never written."""
    with pytest.raises(InvalidArgumentError, match="'\\[' or '\\]'"):
        datastore_path(f"/vmfs/volumes/{datastore}/dir/f.vmdk")
    assert datastore_path("/vmfs/volumes/ds 1/dir/f.vmdk") == ("ds 1", "[ds 1] dir/f.vmdk")

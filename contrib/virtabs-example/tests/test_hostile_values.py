"""Issue 21.1 on the example driver: hostile values in every text field reach its host's objects whole.

The example host takes structured objects (no text format, as pyVmomi's objects for ESX): nothing is
built from strings, so each value arrives as given. One machine per fragment; the host's own record and
the driver's read-back hold exactly the intended values.
"""

from __future__ import annotations

import os
import uuid

import pytest
import virtabs
from virtabs import DiskSpec, DomainSpec, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER

from virtabs_example import host

MiB = 1 << 20


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=[f"{i}" for i in range(len(HOSTILE_FRAGMENTS))])
def test_every_hostile_value_reaches_the_host_whole(fragment: str) -> None:
    node = f"hostile-{uuid.uuid4().hex[:8]}"
    spec = DomainSpec(
        name="x-+y.z_1",
        memory_bytes=64 * MiB,
        vcpus=1,
        disks=(DiskSpec("vda", f"/images/{fragment}/a{fragment}.img"),),
        nics=(NicSpec(network=f"net{fragment}", model=f"virtio{fragment}", mac="52:54:00:00:00:01"),),
    )
    with virtabs.open(f"example:///{node}") as conn:
        dom = conn.define_domain(spec)
        (machine,) = host.connect(node).machines()
        assert [d.path for d in machine.config.disks] == [spec.disks[0].path]
        assert [(n.network, n.model) for n in machine.config.nics] == [(spec.nics[0].network, spec.nics[0].model)]
        back = dom.spec()
        assert (back.disks, back.nics) == (spec.disks, spec.nics)
        dom.undefine()
    assert not os.path.exists(MARKER)

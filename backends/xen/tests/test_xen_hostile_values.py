"""Issue 21.1 on Xen: hostile values in every spec text field, read back by the real xl.cfg parser.

The renderer quotes what an xl.cfg string can hold (``\\`` and ``"`` escaped) and refuses what a vif
(commas with no escaping) cannot: a value that passed the core still cannot add a key, a list item or a
``script=`` hook. Every generated file is read by libxlutil 4.17 exactly as ``xl create`` reads it, and
every disk specification by ``xlu_disk_parse`` as ``xl block-attach`` does.
"""

from __future__ import annotations

import os
import re

import pytest
import xen_xlu as xlu
from virtabs import DiskSpec, DomainSpec, InvalidArgumentError, NicSpec
from virtabs.testing.hostile import HOSTILE_FRAGMENTS, MARKER
from xen_helpers import require

from virtabs_xen._cfg import render_config, vif_string, xen_vdev

MiB = 1 << 20
UUID = "6f1c5f0e-1d2b-4c1e-9a55-2f7e8c1b0a11"
IDS = [f"{i}:{f[:12]!r}" for i, f in enumerate(HOSTILE_FRAGMENTS)]


def _spec(fragment: str) -> DomainSpec:
    """Every text field Xen writes verbatim carries ``fragment``; the rest hold the most a rule allows."""
    return DomainSpec(
        name="x-+y.z_1",  # the widest name the core allows
        memory_bytes=128 * MiB,
        vcpus=1,
        os_type="xen",
        uuid=UUID,
        disks=(
            DiskSpec("vda", f"/srv/xen/{fragment}.img"),
            DiskSpec("xvdb", f"/srv/{fragment}/b, vdev=xvdz, script=/bin/touch {fragment}.img", readonly=True),
        ),
        nics=(NicSpec(network="xenbr0", mac="00:16:3e:00:00:01", model="e1000"),),
        extra={
            "xen": {
                "kernel": f"/boot/{fragment}vmlinuz",
                "ramdisk": f"{fragment}/initrd",
                "cmdline": f'console=hvc0 {fragment} root="/dev/xvda" {fragment}',
            }
        },
    )


@pytest.mark.parametrize("fragment", HOSTILE_FRAGMENTS, ids=IDS)
def test_the_real_parser_reads_back_exactly_the_hostile_values(fragment: str) -> None:
    require(xlu.AVAILABLE, "libxlutil.so.4.17 (apt-get install xen-utils-4.17)")
    spec = _spec(fragment)
    text = render_config(spec, UUID)
    keys = ["name", "uuid", "type", "kernel", "ramdisk", "cmdline", "on_poweroff", "on_reboot", "on_crash"]
    parsed = xlu.parse_config(text, strings=keys, longs=["memory", "vcpus"], lists=["disk", "vif"])
    settings = spec.extra["xen"]
    assert parsed.strings == {
        "name": spec.name,
        "uuid": UUID,
        "type": "pv",
        "kernel": settings["kernel"],
        "ramdisk": settings["ramdisk"],
        "cmdline": settings["cmdline"],
        "on_poweroff": "destroy",
        "on_reboot": "restart",
        "on_crash": "destroy",
    }
    assert parsed.longs == {"memory": 128, "vcpus": 1}
    assert len(parsed.lists["disk"]) == len(spec.disks)
    for item, disk in zip(parsed.lists["disk"], spec.disks, strict=True):
        got = xlu.parse_disk(item)
        assert (got.pdev_path, got.vdev, got.readwrite, got.script) == (
            disk.path,
            xen_vdev(disk.target),
            not disk.readonly,
            None,
        )
    assert parsed.lists["vif"] == ["mac=00:16:3e:00:00:01, bridge=xenbr0, model=e1000"]
    # the keys of the file are exactly the ones the renderer writes: nothing was added by a value
    code = [line for line in text.split("\n") if line and not line.startswith("#")]  # xl ends lines at \n only
    assert [line.split(" = ", 1)[0] for line in code] == [
        "name", "uuid", "type", "memory", "maxmem", "vcpus", "maxvcpus", "kernel", "ramdisk", "cmdline",
        "disk", "vif", "on_poweroff", "on_reboot", "on_crash",
    ]  # fmt: skip
    assert not os.path.exists(MARKER)


@pytest.mark.parametrize("fragment", [f for f in HOSTILE_FRAGMENTS if not re.fullmatch(r"[\w.-]*", f, re.A)], ids=repr)
def test_a_vif_refuses_what_it_cannot_hold(fragment: str) -> None:
    """A vif is split at commas with no escaping: a hostile model or bridge is refused, never written."""
    for nic in (NicSpec(network="xenbr0", model=f"e1000{fragment}"), NicSpec(network=f"br{fragment}")):
        spec = DomainSpec(name="vif", memory_bytes=128 * MiB, vcpus=1, nics=(nic,), os_type="hvm")
        with pytest.raises(InvalidArgumentError, match=r"vif model|bridge name"):
            render_config(spec, UUID)


def test_a_disk_path_ending_in_a_comma_is_refused() -> None:
    """libxlutil strips one trailing comma from ``target=``: the file read would not be the one named."""
    require(xlu.AVAILABLE, "libxlutil.so.4.17 (apt-get install xen-utils-4.17)")
    assert xlu.parse_disk("format=raw, vdev=xvda, access=rw, target=/a,").pdev_path == "/a"  # the parser's rule
    with pytest.raises(InvalidArgumentError, match="ending in ','"):
        render_config(DomainSpec(name="c", memory_bytes=128 * MiB, vcpus=1, disks=(DiskSpec("hda", "/a,"),)), UUID)


def test_the_vif_rule_can_fail() -> None:
    """The injection the rule is for: without it, a model would add ``script=`` to the vif."""
    require(xlu.AVAILABLE, "libxlutil.so.4.17 (apt-get install xen-utils-4.17)")
    assert vif_string(NicSpec(network="xenbr0", model="e1000")) == "bridge=xenbr0, model=e1000"
    with pytest.raises(InvalidArgumentError, match="vif model"):
        vif_string(NicSpec(model="e1000, script=/bin/touch"))

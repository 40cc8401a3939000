"""Pure translations (no simulator): datastore paths, disk targets, power states, thumbprints."""

from __future__ import annotations

import pytest
from virtabs.spi import DomainState, InvalidArgumentError

from virtabs_esx._paths import datastore_path, domain_state, posix_path, slot_of, target_name
from virtabs_esx._tls import normalise_thumbprint


def test_datastore_paths_both_ways() -> None:
    assert posix_path("[LocalDS_0] web/web.vmdk") == "/vmfs/volumes/LocalDS_0/web/web.vmdk"
    assert posix_path("[LocalDS_0]") == "/vmfs/volumes/LocalDS_0"
    assert datastore_path("/vmfs/volumes/LocalDS_0/web/web.vmdk") == ("LocalDS_0", "[LocalDS_0] web/web.vmdk")
    assert datastore_path("/vmfs/volumes/ds 1") == ("ds 1", "[ds 1]")
    assert datastore_path("[ds] a/b.vmdk") == ("ds", "[ds] a/b.vmdk")
    for bad in ("/srv/x.vmdk", "relative.vmdk", "/vmfs/volumes/", "[unclosed x.vmdk"):
        with pytest.raises(InvalidArgumentError):
            datastore_path(bad)


@pytest.mark.parametrize(
    ("kind", "bus", "unit", "target"),
    [
        ("pvscsi", 0, 0, "vda"),
        ("pvscsi", 0, 6, "vdg"),
        ("pvscsi", 0, 8, "vdh"),  # unit 7 is the controller's own
        ("pvscsi", 0, 15, "vdo"),
        ("pvscsi", 1, 0, "vdp"),
        ("scsi", 0, 1, "sdb"),
        ("ide", 0, 0, "hda"),
        ("ide", 1, 1, "hdd"),
        ("pvscsi", 3, 15, "vdbh"),
    ],
)
def test_targets_round_trip(kind: str, bus: int, unit: int, target: str) -> None:
    assert target_name(kind, bus, unit) == target
    assert slot_of(target) == (kind, bus, unit)


def test_other_controllers_and_bad_targets() -> None:
    assert target_name("sata", 0, 1) == "sata0:1"
    assert slot_of("vdb", "virtio") == ("pvscsi", 0, 1)
    for target, bus in (("xvda", None), ("vda", "scsi"), ("hde", None), ("vdbi", None), ("sda1", None)):
        with pytest.raises(InvalidArgumentError):
            slot_of(target, bus)


def test_power_states() -> None:
    assert domain_state("poweredOn") == DomainState.RUNNING
    assert domain_state("poweredOff") == DomainState.SHUTOFF
    assert domain_state("suspended") == DomainState.SHUTOFF  # stopped, memory on disk: like a managed save
    assert domain_state(None) == DomainState.NOSTATE


def test_thumbprints() -> None:
    digest = bytes(range(32))
    text = ":".join(f"{b:02X}" for b in digest)
    assert normalise_thumbprint(text) == digest
    assert normalise_thumbprint(text.replace(":", "").lower()) == digest
    for bad in ("AB:CD", "zz" * 32, "00" * 20):  # too short, not hex, SHA-1 length
        with pytest.raises(InvalidArgumentError):
            normalise_thumbprint(bad)

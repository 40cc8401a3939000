"""Records with mapping fields are the same records after the remote protocol.

JSON has arrays and objects only, so a record whose ``extra`` held a tuple came back holding a list and
compared unequal to the driver's (``NetworkInfo.extra`` did, on QEMU and LXC). The records now freeze their
mapping fields when made (lists and tuples inside become tuples, mappings read-only hashable dicts), and
decoding builds records through their constructors: both sides hold the same values, and hash alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import virtabs
from virtabs import DomainState
from virtabs.remote._protocol import decode_value, encode_value, method_schema
from virtabs.spi import DomainRecord, DomainRef, MigrationTicket, NetworkInfo

NESTED: dict[str, Any] = {
    "ports": ("vnet7", "vnet8"),
    "options": {"mtu": 1500, "addresses": ["10.0.0.1/24", ("fd00::1/64",)], "empty": []},
    "labels": {"team": "a"},
    "flag": True,
    "nothing": None,
}


def _round_trip(value: Any, hint: Any) -> Any:
    """``value`` through the protocol's encoder, a JSON text (as on the wire) and its decoder."""
    return decode_value(json.loads(json.dumps(encode_value(value, hint))), hint)


@pytest.mark.parametrize(
    ("record", "hint"),
    [
        (
            NetworkInfo("br0", "id-1", "bridge", "bridge", device="br0", extra=NESTED),
            method_schema("lookup_network").result,
        ),
        (
            DomainRecord(
                name="a",
                uuid="6695eb01-f6a4-8304-79aa-97f2502e193f",
                state=DomainState.RUNNING,
                native_state="running",
                vcpus=1,
                memory_bytes=1 << 30,
                os_type="hvm",
                autostart=False,
                extra=NESTED,
                field_errors={"nics": "gone"},
            ),
            DomainRecord,
        ),
        (
            MigrationTicket(DomainRef("a", "6695eb01-f6a4-8304-79aa-97f2502e193f"), cookie={"node": "/n"}),
            MigrationTicket,
        ),
    ],
    ids=["NetworkInfo", "DomainRecord", "MigrationTicket"],
)
def test_every_record_with_a_mapping_field_survives_the_codec(record: Any, hint: Any) -> None:
    back = _round_trip(record, hint)
    assert back == record
    assert hash(back) == hash(record)


def test_a_record_s_extra_is_frozen_deeply() -> None:
    info = NetworkInfo("br0", None, "bridge", "bridge", extra={"ports": ["a", "b"], "more": {"x": [1, [2]]}})
    assert info.extra == {"ports": ("a", "b"), "more": {"x": (1, (2,))}}
    assert info == NetworkInfo("br0", None, "bridge", "bridge", extra={"ports": ("a", "b"), "more": {"x": (1, (2,))}})
    assert (
        len({info, NetworkInfo("br0", None, "bridge", "bridge", extra={"ports": ("a", "b"), "more": {"x": (1, (2,))}})})
        == 1
    )
    with pytest.raises(TypeError):
        info.extra["ports"] = ()  # type: ignore[index]
    with pytest.raises(TypeError):
        info.extra["more"].update(y=1)
    assert json.loads(json.dumps(info.extra)) == {"ports": ["a", "b"], "more": {"x": [1, [2]]}}


def test_networks_over_ssh_equal_the_far_hosts_own(sshd: object, tmp_path: Path) -> None:
    """A node's networks with nested extras, read over the real channel (ssh, helper) and read there."""
    node = tmp_path / "node.json"
    node.write_text(
        json.dumps(
            {
                "domains": [
                    {
                        "name": "web",
                        "uuid": "1fad433f-1b18-4193-b33a-500620086b52",
                        "memory_bytes": 64 << 20,
                        "vcpus": 1,
                        "nics": [{"mac": "52:54:00:00:00:01", "network": "lan"}],
                    }
                ],
                "networks": [
                    {
                        "name": "lan",
                        "uuid": "0807bbeb-5a74-4624-b3d8-bf58f6e7e227",
                        "kind": "bridge",
                        "device": "br0",
                        "vlan_ids": [10, 20],
                        "extra": NESTED,
                    },
                    {"name": "plain", "uuid": "8831b223-50de-497c-9d2e-7c1f5a0a3b11", "kind": "nat"},
                ],
            }
        )
    )
    with virtabs.open(sshd.uri("test", str(node)), timeout=60) as conn:  # type: ignore[attr-defined]
        remote = [n.last_info for n in conn.list_networks()]
        looked_up = conn.lookup_network("lan").last_info
        records = conn.domain_records()
    with virtabs.open(f"test://{node}", readonly=True) as local:
        here = [n.last_info for n in local.list_networks()]
        local_records = local.domain_records()
    assert [n.name for n in here] == ["lan", "plain"]
    assert here[0].extra["options"]["addresses"] == ("10.0.0.1/24", ("fd00::1/64",))
    assert remote == here
    assert looked_up == here[0]
    assert {*remote, *here} == set(here)  # hashable, and equal ones hash alike
    assert records == local_records

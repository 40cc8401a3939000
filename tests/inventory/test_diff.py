"""diff(): appeared, vanished, changed per (host uri, uuid); failed hosts are unknown, not vanished."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

import virtabs.inventory as inv


@pytest.fixture
def base(make_node: Callable[..., str]) -> dict[str, Any]:
    return inv.collect([make_node("d1", domains=3, seed=1), make_node("d2", domains=3, seed=2)]).to_dict()


def _dom(doc: dict[str, Any], host: int, index: int) -> dict[str, Any]:
    dom: dict[str, Any] = doc["hosts"][host]["domains"][index]
    return dom


def test_identical_runs_have_no_changes(base: dict[str, Any]) -> None:
    result = inv.diff(base, copy.deepcopy(base))
    assert not result.has_changes
    assert "no differences" in result.to_text()


def test_appeared_vanished_changed(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    gone = new["hosts"][0]["domains"].pop(2)
    extra = copy.deepcopy(_dom(new, 1, 0))
    extra["uuid"] = "00000000-0000-0000-0000-0000000000aa"
    extra["name"] = "newcomer"
    new["hosts"][1]["domains"].append(extra)
    _dom(new, 0, 0)["state"] = "shutoff"
    _dom(new, 0, 0)["disks"][0]["capacity_bytes"] += 1024
    _dom(new, 0, 1)["nics"].append({"mac": "52:54:00:ff:ff:ff", "network": "lan", "model": "e1000", "ips": []})
    result = inv.diff(base, new)
    assert result.has_changes
    assert result.vanished == ({"host_uri": base["hosts"][0]["uri"], "uuid": gone["uuid"], "name": gone["name"]},)
    assert [a["name"] for a in result.appeared] == ["newcomer"]
    changed = {c["name"]: c for c in result.changed}
    assert set(changed) == {"d1-vm000", "d1-vm001"}
    fields = {c["field"]: c for c in changed["d1-vm000"]["changes"]}
    assert fields["state"] == {"field": "state", "change": "modified", "old": "running", "new": "shutoff"}
    assert fields["disks.vda.capacity_bytes"]["new"] - fields["disks.vda.capacity_bytes"]["old"] == 1024
    (nic,) = changed["d1-vm001"]["changes"]
    assert nic["field"] == "nics.52:54:00:ff:ff:ff" and nic["change"] == "added"
    data = json.loads(result.to_json())
    assert data["summary"]["appeared"] == 1 and data["summary"]["vanished"] == 1 and data["summary"]["changed"] == 2
    text = result.to_text()
    assert "+ newcomer" in text and f"- {gone['name']}" in text and 'state: "running" -> "shutoff"' in text
    kinds = [json.loads(line)["kind"] for line in result.to_jsonl().splitlines()]
    assert kinds.count("changed") == 2


def test_keyed_by_host_and_uuid(base: dict[str, Any]) -> None:
    """The same uuid on two hosts is two domains; a move shows as vanished + appeared + moved."""
    new = copy.deepcopy(base)
    moving = new["hosts"][0]["domains"].pop(0)
    new["hosts"][1]["domains"].append(moving)
    result = inv.diff(base, new)
    assert [v["uuid"] for v in result.vanished] == [moving["uuid"]]
    assert [a["uuid"] for a in result.appeared] == [moving["uuid"]]
    assert result.moved == (
        {
            "uuid": moving["uuid"],
            "name": moving["name"],
            "from_host_uri": base["hosts"][0]["uri"],
            "to_host_uri": base["hosts"][1]["uri"],
        },
    )


def test_a_failed_host_is_unknown_not_vanished(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    host = new["hosts"][0]
    host["domains"] = []
    host["error"] = {"code": 68, "code_name": "OPERATION_TIMEOUT", "message": "too slow"}
    result = inv.diff(base, new)
    assert result.vanished == () and result.appeared == ()
    assert result.hosts_unknown == ({"host_uri": host["uri"], "run": "new", "error": "OPERATION_TIMEOUT: too slow"},)
    assert not result.has_changes
    assert "? host" in result.to_text()


def test_hosts_appeared_and_vanished(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    dropped = new["hosts"].pop(1)
    result = inv.diff(base, new)
    assert result.hosts_vanished == (dropped["uri"],)
    assert len(result.vanished) == 3
    back = inv.diff(new, base)
    assert back.hosts_appeared == (dropped["uri"],)
    assert len(back.appeared) == 3


def test_host_fields_changes(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    new["hosts"][0]["memory_bytes"] *= 2
    new["hosts"][0]["collected_at"] = "2030-01-01T00:00:00.000Z"  # always differs: ignored
    (item,) = inv.diff(base, new).hosts_changed
    assert [c["field"] for c in item["changes"]] == ["memory_bytes"]


def test_volatile_fields_are_ignored_and_ignore_is_extensible(base: dict[str, Any]) -> None:
    new = copy.deepcopy(base)
    _dom(new, 0, 0)["extra"]["cpu_time_ns"] = 123
    _dom(new, 0, 0)["disks"][0]["allocation_bytes"] += 1
    result = inv.diff(base, new)
    assert [c["field"] for c in result.changed[0]["changes"]] == ["disks.vda.allocation_bytes"]
    assert not inv.diff(base, new, ignore=[*inv.DEFAULT_IGNORE, "disks.*.allocation_bytes"]).has_changes


def test_two_real_runs(make_node: Callable[..., str]) -> None:
    uri = make_node("live", domains=2)
    old = inv.collect([uri])
    import virtabs

    with virtabs.open(uri) as conn:
        conn.lookup_domain("live-vm000").destroy()
    new = inv.collect([uri])
    result = inv.diff(old, new)
    (changed,) = result.changed
    fields = {c["field"] for c in changed["changes"]}
    assert {"state", "native_state"} <= fields

"""Output formats and the published JSON Schema."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import virtabs
import virtabs.inventory as inv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mixed(make_node: Callable[..., str]) -> inv.Inventory:
    """Two good hosts (same domain names on both) and a dead one."""
    a = make_node("alpha", domains=4, seed=1)
    b = make_node("beta.example.com", domains=4, seed=2)
    return inv.collect([inv.HostTarget(a, name="alpha"), b, "nosuch:///gone"])


def test_docs_schema_is_the_packaged_schema() -> None:
    docs = json.loads((ROOT / "docs" / "inventory-schema-v3.json").read_text())
    assert docs == inv.schema()
    jsonschema.Draft202012Validator.check_schema(docs)


def _with_a_directory_volume(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its first host's pool as the inventory writes it once the pool holds a directory volume
    (format ``dir``, no capacity: a Docker or Podman named volume)."""
    from virtabs.inventory._model import PoolInventory

    with virtabs.open("test:///default") as conn:
        pool = conn.lookup_storage_pool("default-pool")
        volumes = tuple(v.info() for v in pool.list_volumes())
        info = pool.info()
    directory = virtabs.VolumeInfo("data", info.name, f"{info.path}/data", "dir", None)
    doc["hosts"][0]["pools"] = [PoolInventory(info, (*volumes, directory)).to_dict()]
    return doc


def test_a_null_volume_capacity_is_schema_version_3() -> None:
    """Version 3 exists for one change: a volume's capacity may be null (a directory volume). The published
    version 2 schema refuses that null, so a document holding one is not labelled 2; the same document without
    it is a valid version 2 document, and a version 2 document is still read."""
    v2 = json.loads((ROOT / "docs" / "inventory-schema-v2.json").read_text())
    doc = _with_a_directory_volume(inv.collect(["test:///default"]).to_dict())
    assert doc["schema_version"] == 3
    inv.validate(doc)
    volume = doc["hosts"][0]["pools"][0]["volumes"][-1]
    assert (volume["format"], volume["capacity_bytes"]) == ("dir", None)
    assert doc["hosts"][0]["pools"][0]["field_errors"]["volumes.data.capacity_bytes"].startswith(
        "NOT_REPORTED: a directory volume"
    )
    as_v2 = {**doc, "schema_version": 2}
    with pytest.raises(jsonschema.ValidationError) as refused:
        jsonschema.validate(as_v2, v2)
    assert list(refused.value.absolute_path)[-1] == "capacity_bytes" and refused.value.instance is None
    without = inv.collect(["test:///default"]).to_dict()
    jsonschema.validate({**without, "schema_version": 2}, v2)
    with pytest.raises(jsonschema.ValidationError):
        inv.validate({**without, "schema_version": 2})  # the current schema is version 3's only


def test_json_validates_against_the_schema(mixed: inv.Inventory) -> None:
    doc = json.loads(inv.render(mixed, "json"))
    jsonschema.validate(doc, inv.schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert doc["schema_version"] == 3
    assert doc["summary"] == {"hosts": 3, "hosts_ok": 2, "hosts_failed": 1, "domains": 8}


def test_the_schema_rejects_a_string_in_place_of_a_value(mixed: inv.Inventory) -> None:
    doc = mixed.to_dict()
    doc["hosts"][0]["domains"][0]["memory_bytes"] = "unknown"
    with pytest.raises(jsonschema.ValidationError):
        inv.validate(doc)
    doc = mixed.to_dict()
    doc["hosts"][0]["domains"][0]["disks"][0]["capacity_bytes"] = "20G"
    with pytest.raises(jsonschema.ValidationError):
        inv.validate(doc)
    doc = mixed.to_dict()
    doc["hosts"][0]["domains"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        inv.validate(doc)


def _domain_validator() -> jsonschema.Draft202012Validator:
    schema = inv.schema()
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/domain", "$defs": schema["$defs"]})


def test_jsonl_one_object_per_domain_and_one_closing_each_host(mixed: inv.Inventory) -> None:
    lines = inv.render(mixed, "jsonl").splitlines()
    objs = [json.loads(line) for line in lines]
    hosts = len(mixed.hosts)
    assert len(objs) == 8 + hosts
    validator = _domain_validator()
    line_validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/jsonl_line", "$defs": inv.schema()["$defs"]})
    for obj in objs:
        line_validator.validate(obj)
        assert "domains" not in obj["host"] and "pools" not in obj["host"]
        if obj["domain"] is not None:
            assert set(obj) == {"host", "domain"}
            validator.validate(obj["domain"])
            assert obj["host"]["error"] is None
        else:
            assert set(obj) == {"host", "domain", "host_end"}
    ends = [o for o in objs if o["domain"] is None]
    assert len(ends) == hosts
    (dead,) = [o for o in ends if o["host"]["error"] is not None]
    assert dead["host"]["error"]["code"] == 1001
    assert dead["host_end"] == {
        "generated_at": mixed.to_dict()["generated_at"],
        "domains": 0,
        "pools": None,
        "networks": None,
    }
    assert inv.assemble([line + "\n" for line in lines]) == mixed.to_dict()


def test_csv_columns_are_stable_and_documented(mixed: inv.Inventory) -> None:
    text = inv.render(mixed, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = next(csv.reader(io.StringIO(text)))
    assert tuple(header) == inv.CSV_COLUMNS
    assert len(rows) == 8 + 1
    row = next(r for r in rows if r["name"] == "alpha-vm000")
    assert row["host_name"] == "alpha"
    assert row["memory_bytes"] == str(1024**3)
    assert row["disk_capacity_bytes"] == str(20 * 1024**3)
    assert row["disk_targets"] == "vda"
    assert row["autostart"] == "true"
    assert row["host_error"] == ""
    dead = next(r for r in rows if r["host_error"])
    assert dead["host_uri"] == "nosuch:///gone" and dead["name"] == ""
    assert dead["host_error"].startswith("DRIVER_NOT_FOUND (1001): ")
    doc = (ROOT / "docs" / "inventory.md").read_text()
    documented = re.findall(r"^\| `(\w+)` \|", doc.split("## CSV columns", 1)[1].split("\n## ", 1)[0], re.M)
    assert tuple(documented) == inv.CSV_COLUMNS


def test_csv_unknown_values_are_empty_not_made_up(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtabs.drivers.test import TestDriver
    from virtabs.spi import Driver

    monkeypatch.setattr(TestDriver, "inventory", Driver.inventory)

    def broken(self: TestDriver, dom: Any) -> Any:
        raise virtabs.OperationFailedError("no disks today")

    monkeypatch.setattr(TestDriver, "disks", broken)
    rows = list(csv.DictReader(io.StringIO(inv.render(inv.collect([make_node("c")]), "csv"))))
    assert rows[0]["disk_count"] == "" and rows[0]["disk_capacity_bytes"] == ""
    assert json.loads(rows[0]["field_errors"])["disks"].startswith("OPERATION_FAILED")


_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def test_ansible_dynamic_inventory(mixed: inv.Inventory) -> None:
    data = json.loads(inv.render(mixed, "ansible"))
    hostvars = data["_meta"]["hostvars"]
    assert len(hostvars) == 8
    groups = {k: v for k, v in data.items() if k != "_meta"}
    for name, group in groups.items():
        assert _GROUP.match(name), name
        for host in group.get("hosts", []):
            assert host in hostvars
        for child in group.get("children", []):
            assert child in groups
    assert set(data["all"]["children"]) == set(groups) - {"all"}
    assert "host_alpha" in groups and "host_beta_example_com" in groups
    assert "driver_test" in groups and "state_running" in groups and "state_shutoff" in groups
    assert len(groups["driver_test"]["hosts"]) == 8
    some = hostvars[groups["host_alpha"]["hosts"][0]]
    assert some["virtabs_host_uri"].startswith("test:///")
    assert some["virtabs_memory_bytes"] == 1024**3
    assert some["ansible_host"].startswith("10.")


def test_ansible_names_stay_unique_when_domain_names_clash(make_node: Callable[..., str]) -> None:
    a = make_node("one", domains=2, seed=1)
    desc_b = json.loads(Path(a.removeprefix("test://")).read_text())
    for i, dom in enumerate(desc_b["domains"]):
        dom["uuid"] = f"00000000-0000-0000-0000-00000000ff{i:02d}"
    desc_b["host"]["hostname"] = "two"
    b = make_node("two", description=desc_b)
    data = inv.to_ansible_dict(inv.collect([a, b]))
    names = list(data["_meta"]["hostvars"])
    assert len(names) == len(set(names)) == 4
    assert "one-vm000@one" in names and "one-vm000@two" in names
    same_label = inv.to_ansible_dict(
        inv.collect([a, make_node("three", description={**desc_b, "host": {"hostname": "one"}})])
    )
    assert len(set(same_label["_meta"]["hostvars"])) == 4  # even when the host labels clash too


def test_sanitize_group() -> None:
    assert inv.sanitize_group("host_kvm-1.example.com") == "host_kvm_1_example_com"
    assert inv.sanitize_group("9lives") == "_9lives"
    assert inv.sanitize_group("") == "_"
    assert inv.sanitize_group("état") == "_tat"


def test_table(mixed: inv.Inventory) -> None:
    text = inv.render(mixed, "table")
    assert "alpha-vm000" in text and "beta.example.com-vm003" in text
    assert "DRIVER_NOT_FOUND" in text
    assert "2/3 hosts ok, 1 failed, 8 domains" in text
    assert "\x1b[" not in text  # no colour codes in a file


def test_unknown_format() -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="known: json, jsonl, csv, table, ansible"):
        inv.render(inv.collect(["test:///default"]), "xml")


def test_formats_accept_a_loaded_document(mixed: inv.Inventory, tmp_path: Path) -> None:
    path = tmp_path / "inv.json"
    path.write_text(inv.render(mixed, "json"))
    doc = inv.load_inventory(path)
    for fmt in inv.FORMATS:
        if fmt == "json":
            assert json.loads(inv.render(doc, fmt)) == mixed.to_dict()
        else:
            assert inv.render(doc, fmt) == inv.render(mixed, fmt)


ANSIBLE_INVENTORY = shutil.which("ansible-inventory") or shutil.which(
    "ansible-inventory", path=str(Path(sys.executable).parent)
)


def test_ansible_accepts_it(mixed: inv.Inventory, tmp_path: Path) -> None:
    # ansible-core is in the dev extra (scripts/bootstrap installs it): a missing one is a failure, not a skip.
    assert ANSIBLE_INVENTORY, "ansible-core is not installed: pip install 'virtabs[dev]' (or bash scripts/bootstrap)"
    data = tmp_path / "inv.json"
    data.write_text(inv.render(mixed, "ansible"))
    script = tmp_path / "inventory.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = "--list" ] && cat {data} && exit 0\necho "{{}}"\n')
    script.chmod(0o755)
    out = subprocess.run(
        [ANSIBLE_INVENTORY, "-i", str(script), "--list"], capture_output=True, text=True, check=True, timeout=120
    )
    listed = json.loads(out.stdout)
    assert set(listed["_meta"]["hostvars"]) == set(json.loads(data.read_text())["_meta"]["hostvars"])
    assert "WARNING" not in out.stderr.upper() or "invalid" not in out.stderr.lower()

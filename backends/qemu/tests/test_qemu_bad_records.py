"""Issue 14, item 7: one bad definition file never hides the rest. A file with a missing key, a wrong type,
no JSON object, or a directory named ``*.json`` is skipped with a warning naming the file; listing and
inventory still show every other domain, the inventory shows the bad one as a per-record error."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
import virtabs
from virtabs import NoDomainError, OperationFailedError, OperationInvalidError
from virtabs.spi import DomainSpec

MiB = 1 << 20

BAD = {
    "missing-spec": {"uuid": str(uuid.uuid4())},
    "missing-uuid": {"spec": {"name": "missing-uuid", "memory_bytes": 64 * MiB, "vcpus": 1}},
    "uuid-int": {"uuid": 5, "spec": {"name": "uuid-int", "memory_bytes": 64 * MiB, "vcpus": 1}},
    "spec-string": {"uuid": str(uuid.uuid4()), "spec": "not an object"},
    "memory-string": {"uuid": str(uuid.uuid4()), "spec": {"name": "memory-string", "memory_bytes": "lots", "vcpus": 1}},
    "snapshots-string": {
        "uuid": str(uuid.uuid4()),
        "spec": {"name": "snapshots-string", "memory_bytes": 64 * MiB, "vcpus": 1},
        "snapshots": "abc",
    },
    "a-list": ["not", "an", "object"],
}


@pytest.mark.no_qemu
def test_bad_definition_files_are_skipped_with_a_warning_naming_them(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    for name in ("alpha", "zulu"):
        conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1))
    domains = root / "domains"
    for name, data in BAD.items():
        (domains / f"{name}.json").write_text(json.dumps(data))
    (domains / "not-json.json").write_bytes(b"{\xff truncated")
    (domains / "a-directory.json").mkdir()
    bad_names = {*BAD, "not-json", "a-directory"}

    with caplog.at_level(logging.WARNING, logger="virtabs.qemu"):
        assert [d.name for d in conn.list_domains()] == ["alpha", "zulu"]
    warned = "\n".join(r.getMessage() for r in caplog.records)
    for name in bad_names:
        assert str(domains / f"{name}.json") in warned, f"no warning names {name}.json"

    records = {r.name: r for r in conn.domain_records()}
    assert set(records) == {"alpha", "zulu", *bad_names}
    for name in ("alpha", "zulu"):
        assert records[name].memory_bytes == 64 * MiB and not records[name].field_errors
    for name in bad_names:
        err = records[name].field_errors["definition"]
        assert str(domains / f"{name}.json") in err, err
        assert records[name].memory_bytes is None

    # the doors that read one definition: a clean error naming the file, never a raw exception
    for name in bad_names:
        with pytest.raises(OperationFailedError, match=f"{name}.json"):
            conn.lookup_domain(name)
    alpha = conn.lookup_domain("alpha")
    assert conn.lookup_domain(alpha.uuid).name == "alpha"  # the UUID scan passes over the bad files
    with pytest.raises(NoDomainError):
        conn.lookup_domain(str(uuid.uuid4()))
    # a name whose file is unreadable is not free for a new definition that would overwrite it
    with pytest.raises(OperationInvalidError, match="already exists"):
        conn.define_domain(DomainSpec(name="a-directory", memory_bytes=64 * MiB, vcpus=1))
    conn.define_domain(DomainSpec(name="mike", memory_bytes=64 * MiB, vcpus=1))
    assert [d.name for d in conn.list_domains()] == ["alpha", "mike", "zulu"]
    conn.close()

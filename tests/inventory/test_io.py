"""Atomic writes, host lists (--config) and reading inventories back."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import virtabs
import virtabs.inventory as inv


def test_write_atomic_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    inv.write_atomic(target, "first\n")
    assert target.read_text() == "first\n"
    inv.write_atomic(target, b"second\n")
    assert target.read_text() == "second\n"
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_atomic_keeps_the_mode_of_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    target.chmod(0o640)
    inv.write_atomic(target, "new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        inv.write_atomic(tmp_path / "new.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failure_mid_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    target = tmp_path / "inventory.json"
    target.write_text("the old inventory")

    class Exploding:
        """A file object that writes half of the data, then fails."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def __enter__(self) -> Exploding:
            return self

        def __exit__(self, *exc: object) -> None:
            self.real.close()

        def write(self, data: bytes) -> int:
            self.real.write(data[: len(data) // 2])
            self.real.flush()
            raise failure

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Exploding(real_fdopen(fd, mode)))
    with pytest.raises(type(failure)):
        inv.write_atomic(target, "x" * 100_000)
    assert target.read_text() == "the old inventory"
    assert os.listdir(tmp_path) == ["inventory.json"]  # no temp file left behind


def test_a_failing_rename_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "inventory.json"
    target.write_text("old")

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        inv.write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["inventory.json"]


def test_hosts_toml(tmp_path: Path) -> None:
    path = tmp_path / "hosts.toml"
    path.write_text(
        'timeout = 12.5\nconcurrency = 3\n\n[[hosts]]\nuri = "test:///default"\nname = "lab"\n\n'
        '[[hosts]]\nuri = "qemu:///session"\ntimeout = 5\n'
    )
    hosts, settings = inv.load_hosts_file(path)
    assert hosts == [inv.HostTarget("test:///default", name="lab"), inv.HostTarget("qemu:///session", timeout=5)]
    assert settings == {"timeout": 12.5, "concurrency": 3}


def test_hosts_yaml_list_and_table(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text("- test:///default\n- uri: qemu:///session\n  alias: mine\n")
    hosts, settings = inv.load_hosts_file(path)
    assert hosts == [inv.HostTarget("test:///default"), inv.HostTarget("qemu:///session", name="mine")]
    assert settings == {}
    path2 = tmp_path / "hosts.yml"
    path2.write_text("timeout: 3\nhosts:\n  - uri: test:///default\n")
    assert inv.load_hosts_file(path2) == ([inv.HostTarget("test:///default")], {"timeout": 3})


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("h.toml", '[[hosts]]\nuri = "esx://h/"\npassword = "x"\n', "credentials"),
        ("h.yaml", "- uri: esx://h/\n  username: root\n", "credentials"),
        ("h.toml", '[[hosts]]\nuri = "test:///default"\ncolour = "red"\n', "unknown key"),
        ("h.toml", '[[hosts]]\nname = "x"\n', "'uri' is missing"),
        ("h.toml", '[[hosts]]\nuri = "test:///default"\ntimeout = -1\n', "positive number"),
        ("h.toml", 'timeout = "soon"\n[[hosts]]\nuri = "test:///default"\n', "positive number"),
        ("h.toml", 'concurrency = 0\n[[hosts]]\nuri = "test:///default"\n', "concurrency"),
        ("h.toml", "hosts = []\n", "non-empty"),
        ("h.toml", "[[hosts]\n", "not valid TOML"),
        ("h.yaml", "hosts: [\n", "not valid YAML"),
        ("h.yaml", "42\n", "expected a list"),
        ("h.yaml", "- 42\n", "expected a URI string"),
        ("h.toml", 'extra = 1\n[[hosts]]\nuri = "test:///default"\n', "unknown key"),
    ],
)
def test_bad_host_lists(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(virtabs.InvalidArgumentError, match=match):
        inv.load_hosts_file(path)


def test_missing_host_list(tmp_path: Path) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="cannot read host list"):
        inv.load_hosts_file(tmp_path / "nope.toml")


def test_load_inventory_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("host_uri,name\n")
    with pytest.raises(virtabs.InvalidArgumentError, match="not an inventory JSON"):
        inv.load_inventory(bad)
    bad.write_text(json.dumps({"schema_version": 4, "hosts": []}))
    with pytest.raises(virtabs.InvalidArgumentError, match="schema version 4; this virtabs reads versions 1, 2 and 3"):
        inv.load_inventory(bad)
    for version in (1, 2, 3):
        readable = tmp_path / f"v{version}.json"
        readable.write_text(json.dumps({"schema_version": version, "hosts": []}))
        assert inv.load_inventory(readable)["schema_version"] == version
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(virtabs.InvalidArgumentError, match="not an inventory JSON"):
        inv.load_inventory(bad)
    with pytest.raises(virtabs.InvalidArgumentError, match="cannot read"):
        inv.load_inventory(tmp_path / "missing.json")


def test_redact_uri() -> None:
    assert inv.redact_uri("test:///default") == "test:///default"
    assert inv.redact_uri("esx://admin:s3cret@vc/?no_verify=1") == "esx://admin:***@vc/?no_verify=1"
    assert "s3cret" not in inv.redact_uri("hyperv://h/?password=s3cret&api_token=s3cret")


def test_validate_without_jsonschema_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jsonschema", None)  # what a missing package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'virtabs\[schema\]'") as info:
        inv.validate({"schema_version": 1})
    assert "\n" not in str(info.value)

"""Bad input at every door of the public API: one check, in the core, with the right error class.

Issue 14: names that become paths stay inside their root, input is checked completely (a trailing
newline, NUL, 10,000 characters, wrong types, impossible sizes), no secret is ever echoed. Each
attack goes through the public API (and some through the CLI) against the in-memory test driver,
and asserts both the error class and that the driver was never reached.
"""

from __future__ import annotations

import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import virtabs
from virtabs.drivers.test import reset_all_nodes

from .conftest import HOST_TOUCHING, OpenRecording

BAD_TEXT = ["web\n", "web\x00x", "x" * 10_000, "", "\t", "a\rb"]
TRAVERSAL = ["..", ".", "../domains/test.json", "a/../../etc", "/etc/passwd", "a\\..\\b"]


@pytest.fixture
def conn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[virtabs.Connection]:
    monkeypatch.chdir(tmp_path)  # a door that wrongly accepted a relative path would write here, not in the repo
    reset_all_nodes()
    with virtabs.open("test:///default") as c:
        yield c
    reset_all_nodes()


def doors(conn: virtabs.Connection, value: Any) -> dict[str, Callable[[], object]]:
    """Every public entry point that takes a name or a path from the caller."""
    dom = conn.lookup_domain("test")
    pool = conn.lookup_storage_pool("default-pool")
    return {
        "lookup_domain": lambda: conn.lookup_domain(value),
        "lookup_storage_pool": lambda: conn.lookup_storage_pool(value),
        "lookup_volume": lambda: pool.lookup_volume(value),
        "create_volume": lambda: pool.create_volume(value, 1 << 20),
        "create_snapshot": lambda: dom.create_snapshot(value),
        "revert_to_snapshot": lambda: dom.revert_to_snapshot(value),
        "delete_snapshot": lambda: dom.delete_snapshot(value),
        "save": lambda: dom.save(value),
        "restore": lambda: conn.restore(value),
        "block_job_info": lambda: dom.block_job_info(value),
        "detach_disk": lambda: dom.detach_disk(value),
        "block_copy dest": lambda: dom.block_copy("vda", value),
    }


@pytest.mark.parametrize("value", BAD_TEXT, ids=["newline", "nul", "10k", "empty", "tab", "cr"])
def test_bad_text_is_invalid_argument_at_every_door(conn: virtabs.Connection, value: str) -> None:
    for door, call in doors(conn, value).items():
        with pytest.raises(virtabs.InvalidArgumentError) as err:
            call()
        assert err.value.code == 8, door


@pytest.mark.parametrize("value", TRAVERSAL)
def test_names_cannot_climb_out_of_their_root(conn: virtabs.Connection, value: str) -> None:
    dom = conn.lookup_domain("test")
    pool = conn.lookup_storage_pool("default-pool")
    for door, call in {
        "lookup_storage_pool": lambda: conn.lookup_storage_pool(value),
        "lookup_volume": lambda: pool.lookup_volume(value),
        "create_volume": lambda: pool.create_volume(value, 1 << 20),
        "create_snapshot": lambda: dom.create_snapshot(value),
        "revert_to_snapshot": lambda: dom.revert_to_snapshot(value),
        "delete_snapshot": lambda: dom.delete_snapshot(value),
    }.items():
        with pytest.raises(virtabs.InvalidArgumentError):
            call()
            pytest.fail(f"{door} accepted {value!r}")


def test_volume_names_may_be_relative_paths_inside_the_pool(open_recording: OpenRecording) -> None:
    # A datastore volume is dir/disk.vmdk: components are checked one by one, never '..' or absolute.
    from virtabs import _rules

    assert _rules.require_volume_name("vm1/disk.vmdk") == "vm1/disk.vmdk"
    for bad in ("vm1/../x", "/abs", "C:\\x", "a//b", "a/", "a/./b"):
        with pytest.raises(virtabs.InvalidArgumentError):
            _rules.require_volume_name(bad)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("memory_bytes", 1 << 70, "impossible"),
        ("vcpus", 1_000_000, "impossible"),
        ("memory_bytes", "1G", "positive integer"),
        ("vcpus", True, "positive integer"),
        ("name", "web\n", "invalid domain name"),
        ("name", 42, "invalid domain name"),
        ("disks", [{"target": "vda", "path": "/d.img", "readonly": "yes"}], "readonly must be true or false"),
        ("disks", [{"target": "vda", "path": 42}], "needs a path"),
        ("disks", [{"target": "vda\n", "path": "/d.img"}], "invalid disk target"),
        ("disks", "vda", "must be a list"),
        ("disks", [{"target": "vda", "path": "/d.img", "colour": "red"}], "invalid disk"),
        ("nics", [{"network": 5}], "NIC network"),
        ("nics", [{"mac": "52:54:00:00:00:01\n"}], "invalid MAC"),
    ],
)
def test_definitions_are_checked_completely(
    open_recording: OpenRecording, field: str, value: object, message: str
) -> None:
    conn, driver = open_recording()
    data: dict[str, object] = {"name": "web", "memory_bytes": 1 << 30, "vcpus": 1, field: value}
    with pytest.raises(virtabs.InvalidArgumentError, match=message):
        conn.define_domain(data)
    assert not set(driver.calls) & HOST_TOUCHING


@pytest.mark.parametrize("path", ["disk.img", "./disk.img", "../x/disk.img"])
def test_relative_disk_paths_are_refused_at_define_and_attach(open_recording: OpenRecording, path: str) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="absolute path"):
        conn.define_domain(
            {"name": "web", "memory_bytes": 1 << 30, "vcpus": 1, "disks": [{"target": "vda", "path": path}]}
        )
    with pytest.raises(virtabs.InvalidArgumentError, match="absolute path"):
        conn.lookup_domain("vm1").attach_disk(virtabs.DiskSpec("vdb", path))
    assert not set(driver.calls) & HOST_TOUCHING


def test_host_paths_of_other_systems_are_not_relative() -> None:
    from virtabs import _rules

    for path in ("/srv/a.img", "[LocalDS_0] vm/vm.vmdk", "C:\\VMs\\a.vhdx", "\\\\server\\share\\a.vhdx"):
        assert _rules.require_host_path(path, "path") == path
    for path in ("[", "[pU72", "[ds]x", "[a/b] x"):
        with pytest.raises(virtabs.InvalidArgumentError):
            _rules.require_host_path(path, "path")


def test_impossible_volume_sizes_are_refused(conn: virtabs.Connection) -> None:
    pool = conn.lookup_storage_pool("default-pool")
    with pytest.raises(virtabs.InvalidArgumentError, match="impossible"):
        pool.create_volume("huge.qcow2", 10**20 * (1 << 40))
    assert "huge.qcow2" not in [v.name for v in pool.list_volumes()]


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "esx://root:hunter2@host:99999/",
        "esx://root:hunter2@host/",
        "esx://host/?password=hunter2",
        "esx://host/?a=1&Passwd=hunter2",
        "esx://root:hunter2@host/#frag",
        "EsX!://root:hunter2@host/",
        "qemu+ssh://root:pw#hunter2@host/system",
        "libvirt:///?uri=qemu%2Bssh%3A%2F%2Froot%3Ahunter2%40h%2Fsystem",
        "esx://host/?x=ssh%3A%2F%2Fu%3Ahunter2%40h",
    ],
)
def test_a_password_in_a_uri_is_refused_and_never_echoed(uri: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError) as err:
        virtabs.open(uri)
    assert "hunter2" not in str(err.value) and "hunter2" not in repr(err.value)


def test_the_cli_never_echoes_a_password_either() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "virtabs.cli", "-c", "esx://root:hunter2@host:99999/", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "hunter2" not in result.stdout + result.stderr
    assert "code 8" in result.stderr and "Traceback" not in result.stderr


# --- fuzz -------------------------------------------------------------------------------------

uri_text = st.text(alphabet=string.printable + "é\x00", max_size=80)
secret = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=16)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=uri_text, user=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8), pw=secret, rest=uri_text)
def test_fuzz_uri_parsing_fails_only_cleanly_and_never_leaks(prefix: str, user: str, pw: str, rest: str) -> None:
    assume(pw not in prefix + user + rest)
    for text in (
        f"{prefix}://{user}:{pw}@{rest}",
        f"esx://{user}:{pw}@{rest}",
        f"{prefix}{rest}",
        f"x://h/?password={pw}",
    ):
        try:
            uri = virtabs.parse_uri(text)
        except virtabs.InvalidArgumentError as exc:
            assert pw not in str(exc)
        else:
            assert pw not in str(uri) and pw not in repr(uri)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=300))
def test_fuzz_names_through_the_public_api(conn: virtabs.Connection, name: str) -> None:
    # Any text at any door: a virtabs error with a code, never a crash, never an escape from the root.
    for call in doors(conn, name).values():
        try:
            call()
        except virtabs.VirtabsError as exc:
            assert exc.code > 0
            assert not isinstance(exc, virtabs.InternalError)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["name", "memory_bytes", "vcpus", "disks", "nics", "uuid", "os_type", "extra", "bogus"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans(), st.lists(st.integers(), max_size=2)),
    )
)
def test_fuzz_definitions(data: dict[str, object]) -> None:
    try:
        spec = virtabs.DomainSpec.from_dict(data)
    except virtabs.InvalidArgumentError:
        return
    assert virtabs.DomainSpec.from_dict(spec.to_dict()) == spec

"""Issue 21.5: a huge caller value gives a bounded one-line message that states its length.

A 10 MB domain name used to come back whole in the error (and the CLI printed it as its "one line").
Every door of the public API that takes a caller's text quotes it through ``quote`` (an 80-character
prefix and the length), here on the test driver, and through the CLI as a real process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

import virtabs
from virtabs.drivers.test import reset_all_nodes

HUGE = 10_000_000
MiB = 1 << 20


def _assert_bounded(err: virtabs.VirtabsError, length: int) -> None:
    message = str(err)
    assert len(message) < 1_000, f"{len(message)} characters: {message[:200]!r}..."
    assert "\n" not in message
    assert f"{length} characters" in message, message


def _spec(**changes: object) -> dict[str, object]:
    spec: dict[str, object] = {"name": "web", "memory_bytes": 64 * MiB, "vcpus": 1}
    spec.update(changes)
    return spec


def _doors(conn: virtabs.Connection) -> Iterator[tuple[str, Callable[[str], object]]]:
    dom = conn.lookup_domain("test")
    pool = conn.list_storage_pools()[0]
    yield "lookup_domain", conn.lookup_domain
    yield "define name", lambda v: conn.define_domain(_spec(name=v))
    yield "define disk path", lambda v: conn.define_domain(_spec(disks=[{"target": "vda", "path": "/" + v}]))
    yield "define disk target", lambda v: conn.define_domain(_spec(disks=[{"target": v, "path": "/a.img"}]))
    yield "define nic network", lambda v: conn.define_domain(_spec(nics=[{"network": v + "\n"}]))
    yield "define os_type", lambda v: conn.define_domain(_spec(os_type=v))
    yield "define uuid", lambda v: conn.define_domain(_spec(uuid=v))
    yield "lookup_storage_pool", conn.lookup_storage_pool
    yield "lookup_volume", pool.lookup_volume
    yield "create_volume", lambda v: pool.create_volume(v, 1 << 20)
    yield "create_snapshot", dom.create_snapshot
    yield "revert_to_snapshot", dom.revert_to_snapshot
    yield "delete_snapshot", dom.delete_snapshot
    yield "restore", lambda v: conn.restore("/" + v)
    yield "save", lambda v: dom.save("/" + v)
    yield "attach_disk", lambda v: dom.attach_disk(virtabs.DiskSpec(target="vdz", path="/" + v))
    yield "detach_disk", dom.detach_disk


def test_a_10_mb_value_gives_a_bounded_one_line_message_at_every_door() -> None:
    huge = "x" * HUGE
    with virtabs.open("test:///default") as conn:
        for door, call in _doors(conn):
            with pytest.raises(virtabs.VirtabsError) as info:
                call(huge)
            shown = (
                HUGE + 1
                if door in ("define disk path", "restore", "save", "attach_disk", "define nic network")
                else HUGE
            )
            try:
                _assert_bounded(info.value, shown)
            except AssertionError as exc:
                raise AssertionError(f"{door}: {exc}") from None


def test_the_cli_prints_one_bounded_line_for_a_100_kb_name(tmp_path: object) -> None:
    """``virtabs dominfo <100 KB name>`` as a real process: one short line on stderr, with the length."""
    name = "n" * 100_000
    env = {"PATH": "/usr/bin:/bin", "VIRTABS_CONFIG": f"{tmp_path}/no-config.toml"}
    proc = subprocess.run(
        [sys.executable, "-m", "virtabs.cli", "-c", "test:///default", "dominfo", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[:500]
    assert len(lines[0]) < 1_000
    assert "100000 characters" in lines[0]
    assert lines[0].startswith("error: ") and "n" * 80 in lines[0]


@pytest.fixture(autouse=True)
def _fresh_nodes() -> Iterator[None]:
    reset_all_nodes()
    yield
    reset_all_nodes()

"""Issue 14 through the CLI: the attacks of the probe, typed at the ``virtabs`` command on a QEMU embed root.

Each test runs the real CLI (``python -m virtabs.cli``) as a separate process against
``qemu:///embed?root=DIR`` and checks three things: the attack did nothing (files outside the root
untouched, no connection made, nothing created), the refusal is one ``error:`` line with the right
libvirt error code, and no traceback or secret reaches the user.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from virtabs import ErrorCode

SECRET = "hunter2-s3cret"


def cli(root: Path, *args: str, uri: str | None = None, readonly: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    argv = [sys.executable, "-m", "virtabs.cli", "-c", uri or f"qemu:///embed?root={root}"]
    if readonly:
        argv.append("-r")
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def refused(proc: subprocess.CompletedProcess[str], code: ErrorCode) -> str:
    """The one error line of a refused command, after checking its shape."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    # a warning (TCG instead of an unusable KVM) is a line of its own, never part of the error
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"code {int(code)}" in lines[0], lines[0]
    return lines[0]


def test_volume_names_cannot_leave_the_pool(root: Path) -> None:
    assert cli(root, "vol-create", "default", "inside.img", "1M").returncode == 0
    victim = root / "domains" / "victim.json"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("{}")
    outside = root.parent / f"{root.name}-outside.img"
    for args in (
        ("vol-delete", "default", "../domains/victim.json"),
        ("vol-delete", "default", str(victim)),
        ("vol-create", "default", f"../../{outside.name}", "1M"),
        ("vol-create", "default", "a/../../b.img", "1M"),
    ):
        refused(cli(root, *args), ErrorCode.INVALID_ARG)
    assert victim.read_text() == "{}"
    assert not outside.exists()
    listing = json.loads(cli(root, "vol-list", "default", "--json").stdout)
    assert [v["name"] for v in listing] == ["inside.img"]


@pytest.mark.parametrize(
    "name",
    ["bad\n", "a" * 10_000, "..", "x/y"],
    ids=["trailing-newline", "10k-chars", "dot-dot", "slash"],
)
def test_bad_names_are_invalid_argument_at_the_cli(root: Path, name: str) -> None:
    spec = root / "spec.json"
    spec.write_text(json.dumps({"name": name, "memory_bytes": 64 << 20, "vcpus": 1}))
    refused(cli(root, "define", str(spec)), ErrorCode.INVALID_ARG)
    refused(cli(root, "vol-create", "default", name, "1M"), ErrorCode.INVALID_ARG)
    assert not (root / "domains").exists() or list((root / "domains").iterdir()) == []


def test_impossible_sizes_are_refused_at_define(root: Path) -> None:
    for fields in ({"memory_bytes": 2**70, "vcpus": 1}, {"memory_bytes": 64 << 20, "vcpus": 1_000_000}):
        spec = root / "spec.json"
        spec.write_text(json.dumps({"name": "big", **fields}))
        refused(cli(root, "define", str(spec)), ErrorCode.INVALID_ARG)
    refused(cli(root, "vol-create", "default", "huge.img", str(10**20 * 2**40)), ErrorCode.INVALID_ARG)


def test_a_password_in_the_uri_is_refused_and_never_echoed(root: Path) -> None:
    for uri in (
        f"qemu:///embed?root={root}&password={SECRET}",
        f"qemu://admin:{SECRET}@localhost/embed?root={root}",
        f"qemu:///embed?root={root}&pass%77ord={SECRET}",
    ):
        for extra in ((), ("--debug",)):
            proc = subprocess.run(
                [sys.executable, "-m", "virtabs.cli", *extra, "-c", uri, "list"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert proc.returncode != 0
            assert SECRET not in proc.stdout + proc.stderr, (uri, extra)
            assert "Traceback" not in proc.stderr or extra  # --debug prints tracebacks, never the secret


def test_read_only_cli_writes_nothing(root: Path) -> None:
    refused(cli(root, "vol-create", "default", "x.img", "1M", readonly=True), ErrorCode.OPERATION_DENIED)
    assert cli(root, "list", readonly=True).returncode == 0
    assert cli(root, "vol-list", "default", readonly=True).returncode == 0
    assert sorted(p.name for p in root.iterdir()) == []


def test_a_missing_root_is_a_connect_error_and_stays_missing(root: Path) -> None:
    missing = root / "not-there"
    line = refused(cli(root, "list", uri=f"qemu:///embed?root={missing}"), ErrorCode.NO_CONNECT)
    assert "not-there" in line
    assert not missing.exists()


def _qcow2_header_naming(backing: str, size: int = 1 << 20) -> bytes:
    """A qcow2 v2 header whose backing file is ``backing`` (what a guest can write into its raw disk)."""
    name = backing.encode()
    offset = 72
    header = struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", 2, offset, len(name), 16, size, 0, 0, 0, 0, 0, 0, 0)
    return header + name


def test_a_qcow2_header_inside_a_raw_volume_is_never_followed(root: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    secret = root.parent / f"{root.name}-host-secret"
    secret.write_text(SECRET)
    try:
        assert cli(root, "vol-create", "default", "disk.raw", "1M", "--format", "raw").returncode == 0
        images = root / "images"
        for name, backing in (("disk.raw", f"nbd:127.0.0.1:{port}"), ("planted.img", str(secret))):
            data = bytearray((images / name).read_bytes() if (images / name).exists() else bytes(1 << 20))
            head = _qcow2_header_naming(backing)
            data[: len(head)] = head
            (images / name).write_bytes(bytes(data))
        proc = cli(root, "vol-list", "default", "--json")
        assert proc.returncode == 0, proc.stderr
        volumes = {v["name"]: v for v in json.loads(proc.stdout)}
        assert volumes["disk.raw"]["format"] == "raw"
        assert volumes["planted.img"]["format"] == "raw"
        assert SECRET not in proc.stdout + proc.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing connected to the NBD server named in the header
    finally:
        listener.close()
        secret.unlink()


def test_one_bad_definition_never_hides_the_rest_at_the_cli(root: Path) -> None:
    spec = root / "spec.json"
    for name in ("alpha", "zulu"):
        spec.write_text(json.dumps({"name": name, "memory_bytes": 64 << 20, "vcpus": 1}))
        assert cli(root, "define", str(spec)).returncode == 0
    domains = root / "domains"
    (domains / "broken.json").write_bytes(b"{\xff truncated")
    (domains / "wrong-type.json").write_text(json.dumps({"uuid": 5, "spec": "not an object"}))
    (domains / "a-directory.json").mkdir()
    proc = cli(root, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [d["name"] for d in json.loads(proc.stdout)] == ["alpha", "zulu"]
    assert "Traceback" not in proc.stderr
    for bad in ("broken.json", "wrong-type.json", "a-directory.json"):
        assert str(domains / bad) in proc.stderr, f"no warning names {bad}: {proc.stderr!r}"


def test_a_planted_shared_session_directory_is_refused_at_the_cli(root: Path) -> None:
    shared = root / "tmp"
    shared.mkdir(mode=0o1777)
    planted = shared / f"virtabs-{os.getuid()}"
    planted.mkdir()
    os.chmod(planted, 0o777)  # another user could have made it, or could write into it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTABS_", "XDG_"))}
    env.update(HOME=str(root / "home"), TMPDIR=str(shared))
    proc = subprocess.run(
        [sys.executable, "-m", "virtabs.cli", "-c", "qemu:///session", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = refused(proc, ErrorCode.NO_CONNECT)
    assert f"refusing the shared directory {planted}" in line
    assert list(planted.iterdir()) == []  # nothing was put into it

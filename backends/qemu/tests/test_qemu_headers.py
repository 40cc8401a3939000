"""Image facts without a process: qcow2/raw headers read in Python agree with qemu-img, unusual images fall back
to it, hostile headers never crash the reader, formats are never guessed, ``-version`` runs once per binary."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from qemu_helpers import SIZE, make_driver, qemu_img
from virtabs.spi import DiskSpec, DomainSpec, OperationFailedError

from virtabs_qemu import _headers, _img, _process

MiB = 1 << 20
KEYS = ("filename", "format", "virtual-size", "actual-size", "backing-filename", "backing-filename-format")


def _reference(path: Path, fmt: str) -> list[dict[str, object]]:
    data = json.loads(qemu_img("info", "--output=json", "--backing-chain", "-U", "-f", fmt, str(path)))
    return [{k: layer[k] for k in KEYS if k in layer} for layer in (data if isinstance(data, list) else [data])]


@pytest.fixture
def images(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    d = tmp_path
    qemu_img("create", "-q", "-f", "qcow2", str(d / "base.qcow2"), str(SIZE))
    qemu_img("create", "-q", "-f", "raw", str(d / "r.raw"), str(10 * MiB))
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", str(d / "rel.qcow2"))
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(d / "rel.qcow2"), "-F", "qcow2", str(d / "top.qcow2"))
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(d / "r.raw"), "-F", "raw", str(d / "overraw.qcow2"))
    qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", str(d / "v2.qcow2"), str(3 << 30))
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", str(d / "big.qcow2"), str(5 << 30))
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", str(d / "small.qcow2"), str(5 * MiB))
    return {
        p.name: (p, "raw" if p.suffix == ".raw" else "qcow2") for p in d.iterdir() if p.suffix in (".qcow2", ".raw")
    }


def test_headers_agree_with_qemu_img(images: dict[str, tuple[Path, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {name: _reference(path, fmt) for name, (path, fmt) in images.items()}
    monkeypatch.setattr(_img, "qemu_img", _no_process)
    for name, (path, fmt) in images.items():
        mine = [{k: layer[k] for k in KEYS if k in layer} for layer in _img.chain(str(path), fmt)]
        assert mine == expected[name], name


def test_unusual_images_fall_back_to_qemu_img(tmp_path: Path) -> None:
    ext = tmp_path / "ext.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'ext.data'}", str(ext), str(16 * MiB))
    proto = tmp_path / "proto.qcow2"
    spec = json.dumps({"driver": "raw", "file": {"driver": "file", "filename": str(tmp_path / "ext.data")}})
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", f"json:{spec}", "-F", "raw", str(proto), str(16 * MiB))
    for path in (ext, proto):
        with pytest.raises(_headers.Unusual):
            _headers.read_chain(str(path), "qcow2")
        assert _img.chain(str(path), "qcow2")[0]["virtual-size"] == 16 * MiB  # qemu-img answered


def test_backing_loop_and_missing_backing_are_errors_not_hangs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(b), str(MiB))
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(b), "-F", "qcow2", str(a))
    qemu_img("rebase", "-u", "-f", "qcow2", "-b", str(a), "-F", "qcow2", str(b))  # b -> a -> b
    with pytest.raises(OperationFailedError):
        _img.chain(str(a), "qcow2")
    c = tmp_path / "c.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", str(tmp_path / "gone.qcow2"), "-F", "qcow2", str(c), str(MiB))
    with pytest.raises(OperationFailedError, match="gone"):
        _img.chain(str(c), "qcow2")


def test_mangled_headers_never_crash_the_reader(images: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    source = images["top.qcow2"][0].read_bytes()[: 1 << 17]
    rng = random.Random(17)
    target = tmp_path / "mangled.qcow2"
    for _ in range(3000):
        data = bytearray(source[: rng.choice([40, 80, 110, 600, 4096, len(source)])])
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(min(len(data), 700))] = rng.randrange(256)
        target.write_bytes(data)
        try:
            layers = _headers.read_chain(str(target), "qcow2")
        except (_headers.Unusual, OSError):
            continue
        assert layers[0].format == "qcow2" and layers[0].virtual_size >= 0


def test_volume_formats_are_never_guessed(root: Path) -> None:
    """A qcow2 header in a file the driver did not create (a guest can write one) is listed as raw."""
    drv = make_driver(root)
    pool = drv.lookup_storage_pool("default").path
    assert pool is not None
    planted = Path(pool) / "planted.img"
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/hostname", "-F", "raw", str(planted), str(SIZE))
    vol = drv.lookup_volume("default", "planted.img")
    assert vol.format == "raw" and vol.backing_chain == () and vol.capacity_bytes == planted.stat().st_size
    made = drv.create_volume("default", "made.qcow2", SIZE, "qcow2", None)
    assert made.format == "qcow2" and made.capacity_bytes == SIZE


def test_disk_facts_without_qemu_img(
    root: Path, images: dict[str, tuple[Path, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    drv = make_driver(root)
    top = images["top.qcow2"][0]
    ref = drv.define_domain(
        DomainSpec(name="h", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", str(top), format="qcow2"),))
    )
    monkeypatch.setattr(_img, "qemu_img", _no_process)
    disk = drv.disks(ref)[0]
    assert disk.capacity_bytes == SIZE
    assert disk.backing_chain == (str(images["rel.qcow2"][0]), str(images["base.qcow2"][0]))
    assert list(drv.inventory()[0].disks) == [disk]


@pytest.mark.no_qemu
def test_emulator_version_asked_once_per_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "qemu-system-fake"
    fake.write_text(f"#!{sys.executable}\nprint('QEMU emulator version 9.1.2 (fake)')\n")
    fake.chmod(0o755)
    runs: list[list[str]] = []
    real = _process.run_bounded

    def counting(argv: list[str], *args: Any, **kwargs: Any) -> object:
        runs.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(_process, "run_bounded", counting)
    assert _process.Emulator(str(fake), "tcg").version() == (9, 1, 2)
    assert _process.Emulator(str(fake), "tcg").version() == (9, 1, 2)
    assert len(runs) == 1
    fake.write_text(f"#!{sys.executable}\nprint('QEMU emulator version 9.2.0 (rebuilt)')\n")
    os.utime(fake, ns=(0, 1))  # a new build of the binary: asked again
    assert _process.Emulator(str(fake), "tcg").version() == (9, 2, 0)
    assert len(runs) == 2


def _no_process(*args: str, **kwargs: object) -> str:
    raise AssertionError(f"qemu-img {' '.join(args)} ran")


def test_emulator_commands_kept_for_the_next_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real QEMU is asked once; a new process (the in-memory answers forgotten) reads the cache file, and a
    rebuilt binary (another mtime) or a torn file is asked again."""
    import shutil

    real_qemu = shutil.which("qemu-system-x86_64")
    assert real_qemu, "QEMU is installed on every machine these tests run on"
    binary = tmp_path / "bin" / "qemu-system-x86_64"
    binary.parent.mkdir()
    binary.write_text(f'#!/bin/sh\nexec {real_qemu} "$@"\n')  # a path of its own: nothing cached for it yet
    binary.chmod(0o755)
    cache = tmp_path / "cache"
    runs: list[list[str]] = []
    real = _process.run_bounded

    def counting(argv: list[str], *args: Any, **kwargs: Any) -> object:
        runs.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(_process, "run_bounded", counting)
    first = _process.Emulator(str(binary), "tcg", cache_dir=str(cache)).qmp_commands()
    assert "blockdev-mirror" in first and len(runs) == 1
    version = _process.Emulator(str(binary), "tcg").version()
    monkeypatch.setattr(_process, "_COMMANDS", {})  # a new process
    monkeypatch.setattr(_process, "_VERSIONS", {})
    again = _process.Emulator(str(binary), "tcg", cache_dir=str(cache))
    assert again.qmp_commands() == first and again.version() == version and len(runs) == 1
    (kept,) = cache.iterdir()
    kept.write_text(kept.read_text()[:40])  # torn
    monkeypatch.setattr(_process, "_COMMANDS", {})
    monkeypatch.setattr(_process, "_VERSIONS", {})
    assert _process.Emulator(str(binary), "tcg", cache_dir=str(cache)).qmp_commands() == first and len(runs) == 2
    os.utime(binary, ns=(0, 1))  # a new build at the same path: asked again
    monkeypatch.setattr(_process, "_COMMANDS", {})
    monkeypatch.setattr(_process, "_VERSIONS", {})
    assert _process.Emulator(str(binary), "tcg", cache_dir=str(cache)).qmp_commands() == first and len(runs) == 3

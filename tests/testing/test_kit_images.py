"""The qemu-img content door against real images made by qemu-img and written by qemu-io."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from virtabs.testing.images import QemuImgContent, qemu_img_digest
from virtabs.testing.plugin import in_ci


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is missing: apt-get install qemu-utils"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def test_content_and_layers_of_a_real_chain(tmp_path: Path) -> None:
    qemu_img, qemu_io = need("qemu-img"), need("qemu-io")
    base, top, flat, other = (str(tmp_path / n) for n in ("base.qcow2", "top.qcow2", "flat.qcow2", "other.qcow2"))
    sh(qemu_img, "create", "-q", "-f", "qcow2", base, "4M")
    sh(qemu_io, "-c", "write -P 0x11 0 64k", base)
    sh(qemu_img, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
    sh(qemu_io, "-c", "write -P 0x22 64k 64k", top)
    sh(qemu_img, "convert", "-O", "qcow2", top, flat)
    sh(qemu_img, "create", "-q", "-f", "qcow2", other, "4M")
    door = QemuImgContent()
    assert door.image_digest(None, flat) == door.image_digest(None, top), "a flattened copy reads the same"
    assert door.image_digest(None, other) != door.image_digest(None, top)
    assert door.layer_digest(None, top) != door.layer_digest(None, flat), "the top layer alone lacks the base"
    assert door.layer_digest(None, top) != door.image_digest(None, top)
    assert door.image_digest(None, str(tmp_path / "absent.qcow2")) is None
    assert os.path.exists(top) and qemu_img_digest(top, layer_only=True) == door.layer_digest(None, top)

"""Image files named like qemu-img options reach the real qemu-img as files (issue 21.4).

qemu-img parses its command line with GNU getopt_long: an image called ``-h`` given as is would print the
help text and exit 0 (its "JSON" then fails to parse), ``--help`` likewise, and ``-o`` would swallow the
next argument as an option value.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from virtabs.testing.plugin import in_ci

from virtabs_qemu import _img

NAMES = ["-h", "--help", "-o", "--output=human"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("qemu-img") is None:
        if in_ci():
            pytest.fail("qemu-img is not installed (Debian: apt install qemu-utils)")
        pytest.skip("qemu-img is not installed")
    monkeypatch.chdir(tmp_path)  # relative names: the operand is read relative to the working directory
    return tmp_path


@pytest.mark.parametrize("name", NAMES)
def test_create_info_resize_of_an_image_named_like_an_option(in_tmp: Path, name: str) -> None:
    _img.create(name, "qcow2", 1 << 20)
    assert (in_tmp / name).is_file()
    assert _img.probe_format(name) == "qcow2"
    (layer,) = _img.chain(name, "qcow2")
    assert layer["virtual-size"] == 1 << 20 and layer["format"] == "qcow2"
    _img.resize(name, "qcow2", 2 << 20)
    assert _img.chain(name, "qcow2")[0]["virtual-size"] == 2 << 20


def test_a_backing_chain_through_option_like_names(in_tmp: Path) -> None:
    _img.create("-base", "qcow2", 1 << 20)
    _img.create("--top", "qcow2", None, backing="-base", backing_fmt="qcow2")
    layers = _img.chain("--top", "qcow2")
    assert [os.path.basename(str(layer["filename"])) for layer in layers] == ["--top", "-base"]

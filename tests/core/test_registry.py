"""Driver discovery through real entry points (fake distributions written to a temp dir on sys.path)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import virtabs
from virtabs._registry import installed_drivers, load_driver_class


def make_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[virtabs.drivers]\n{lines}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


DRIVER_SOURCE = """
    from virtabs.spi import Driver, Capabilities
    class FakeDriver(Driver):
        name = "fake"
        description = "a fake"
        capabilities = Capabilities.of("domain.start")
"""


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # A never-reused directory name: stevedore caches entry points on disk keyed by the sys.path entries.
    root = tmp_path / uuid.uuid4().hex
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_test_driver_is_registered_through_its_entry_point() -> None:
    names = {e.name: e for e in installed_drivers()}
    assert names["test"].target == "virtabs.drivers.test:TestDriver"
    assert names["test"].distribution == "virtabs"


def test_unknown_scheme_names_the_installed_drivers() -> None:
    with pytest.raises(virtabs.DriverNotFoundError, match="no driver for URI scheme 'nosuch'.*test") as err:
        virtabs.open("nosuch:///")
    assert err.value.code == 1001
    assert "pip install" not in err.value.message  # no made-up package for an unknown scheme


def test_a_known_backend_that_is_not_installed_gets_the_real_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from virtabs import _registry

    monkeypatch.setattr(_registry, "_entries", lambda: {})
    with pytest.raises(virtabs.DriverNotFoundError) as err:
        _registry.load_driver_class("vpx")
    assert "pip install -e backends/esx" in err.value.message and "virtabs-esx" in err.value.message


def test_a_third_party_driver_is_found_and_loaded(on_path: Path) -> None:
    make_dist(on_path, "virtabs-fake", {"fake": "fake_driver:FakeDriver"}, {"fake_driver": DRIVER_SOURCE})
    cls = load_driver_class("fake")
    assert cls.__name__ == "FakeDriver"


def test_missing_dependency_is_driver_unavailable_with_a_hint(on_path: Path) -> None:
    make_dist(on_path, "virtabs-broken", {"broken": "broken_driver:Driver"}, {"broken_driver": "import pyvmomi_x\n"})
    with pytest.raises(virtabs.DriverUnavailableError, match="pyvmomi_x.*reinstall virtabs-broken") as err:
        virtabs.open("broken:///")
    assert isinstance(err.value, ImportError)


def test_two_distributions_claiming_one_scheme_is_an_error(on_path: Path) -> None:
    make_dist(on_path / "a", "virtabs-dup-a", {"dup": "dup_a:FakeDriver"}, {"dup_a": DRIVER_SOURCE})
    make_dist(on_path / "b", "virtabs-dup-b", {"dup": "dup_b:FakeDriver"}, {"dup_b": DRIVER_SOURCE})
    sys.path[:0] = [str(on_path / "a"), str(on_path / "b")]
    try:
        with pytest.raises(
            virtabs.InternalError, match="claimed by several distributions.*virtabs-dup-a.*virtabs-dup-b"
        ):
            load_driver_class("dup")
    finally:
        sys.path.remove(str(on_path / "a"))
        sys.path.remove(str(on_path / "b"))


def test_open_and_listing_import_no_backend() -> None:
    code = (
        "import sys, virtabs\n"
        "virtabs.installed_drivers()\n"
        "c = virtabs.open('test:///default'); c.list_domains()\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('pyVmomi', 'winrm', 'libvirt', 'virtabs_qemu', 'virtabs_libvirt')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Driver discovery through real entry points (fake distributions written to a temp dir on sys.path)."""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import virtabs
from virtabs import _registry
from virtabs._registry import installed_drivers, load_driver_class
from virtabs._registry_scan import DriverEntry, _read_directories, _read_importlib_metadata


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
    # A never-reused directory name: the registry reads the entry points once per sys.path.
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


# --- the reading of the entry points: the metadata directories directly, importlib.metadata where needed ---


def _both_readings() -> tuple[dict[str, list[DriverEntry]] | None, dict[str, list[DriverEntry]]]:
    return _read_directories(_registry.GROUP), _read_importlib_metadata(_registry.GROUP)


def test_the_directory_reading_is_importlib_metadatas(on_path: Path) -> None:
    """Over this environment plus distributions shaped like what pip, setuptools and hand-made metadata
    leave: comments, blank lines and other groups around the section, an ``.egg-info`` directory, a
    ``Name`` that differs from the directory's name, and one distribution on two ``sys.path`` entries with
    different entry points (importlib.metadata keeps the first on the path only)."""
    make_dist(on_path / "first", "virtabs-twice", {"twice": "twice_first:FakeDriver"}, {})
    make_dist(on_path / "second", "virtabs-twice", {"twice": "twice_second:FakeDriver"}, {})
    info = on_path / "Virtabs.Odd_Name-2.0.egg-info"
    info.mkdir()
    (info / "PKG-INFO").write_text("Metadata-Version: 1.2\nName: Virtabs.Odd-Name\nVersion: 2.0\n\nName: not this\n")
    (info / "entry_points.txt").write_text(
        "# written by hand\n[console_scripts]\nodd = odd:main\n\n[virtabs.drivers]\n  # a comment\n"
        "odd   =   odd_driver:FakeDriver  \n\n[other.group]\nodd = x:y\n"
    )
    no_group = on_path / "plain-1.0.dist-info"
    no_group.mkdir()
    (no_group / "METADATA").write_text("Metadata-Version: 2.1\nName: plain\nVersion: 1.0\n")
    (no_group / "entry_points.txt").write_text("[console_scripts]\nplain = plain:main\n")
    sys.path[:0] = [str(on_path / "first"), str(on_path / "second")]
    try:
        direct, reference = _both_readings()
    finally:
        sys.path.remove(str(on_path / "first"))
        sys.path.remove(str(on_path / "second"))
    assert direct == reference
    assert direct["twice"] == [DriverEntry("twice", "twice_first:FakeDriver", "virtabs-twice")]
    assert direct["odd"] == [DriverEntry("odd", "odd_driver:FakeDriver", "Virtabs.Odd-Name")]
    assert {"test", "fake"} - set(direct) == {"fake"}  # this environment's drivers are there too


def test_a_driver_in_a_zip_on_sys_path_is_read_through_importlib_metadata(on_path: Path) -> None:
    archive = on_path / "drivers.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped_driver.py", textwrap.dedent(DRIVER_SOURCE))
        zf.writestr(
            "virtabs_zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: virtabs-zipped\nVersion: 1.0\n"
        )
        zf.writestr(
            "virtabs_zipped-1.0.dist-info/entry_points.txt", "[virtabs.drivers]\nzipped = zipped_driver:FakeDriver\n"
        )
    sys.path.insert(0, str(archive))
    try:
        assert _read_directories(_registry.GROUP) is None
        assert _registry._scan_once().read_by == "importlib.metadata"
        entry = {e.name: e for e in installed_drivers()}["zipped"]
        assert (entry.target, entry.distribution) == ("zipped_driver:FakeDriver", "virtabs-zipped")
        assert load_driver_class("zipped").__module__ == "zipped_driver"
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop("zipped_driver", None)


class _OneDistributionFinder(importlib.abc.MetaPathFinder):
    """A distribution finder of the kind importlib.metadata asks besides the path finder (as a plugin
    system or a bundler installs): it serves one distribution's metadata from memory."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def find_spec(self, *args: object, **kwargs: object) -> None:
        return None

    def find_distributions(self, context: object = None) -> Iterator[importlib.metadata.Distribution]:
        files = self.files

        class InMemory(importlib.metadata.Distribution):
            def read_text(self, filename: str) -> str | None:
                return files.get(filename)

            def locate_file(self, path: object) -> Path:
                raise FileNotFoundError(path)

        yield InMemory()


def test_another_distribution_finder_is_read_through_importlib_metadata(
    on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (on_path / "found_driver.py").write_text(textwrap.dedent(DRIVER_SOURCE))
    finder = _OneDistributionFinder(
        {
            "METADATA": "Metadata-Version: 2.1\nName: virtabs-found\nVersion: 1.0\n",
            "entry_points.txt": "[virtabs.drivers]\nfound = found_driver:FakeDriver\n",
        }
    )
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, finder])
    assert _read_directories(_registry.GROUP) is None
    assert _registry._scan_once().read_by == "importlib.metadata"
    assert load_driver_class("found").__module__ == "found_driver"


def test_the_importlib_metadata_backport_reads_the_same_directories(
    on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that imports the ``importlib_metadata`` backport puts its ``MetadataPathFinder`` on
    ``sys.meta_path`` (the core suite's collection does): it reads the directories of ``sys.path`` this
    reading reads, so the directories are still read, and to the same result, not through importlib.metadata."""
    importlib_metadata = pytest.importorskip("importlib_metadata")
    make_dist(on_path, "virtabs-backported", {"backported": "backported_driver:FakeDriver"}, {})
    finder = importlib_metadata.MetadataPathFinder()
    monkeypatch.setattr(sys, "meta_path", [*[f for f in sys.meta_path if type(f) is not type(finder)], finder])
    direct, reference = _both_readings()
    assert direct is not None
    assert direct == reference
    assert direct["backported"] == [DriverEntry("backported", "backported_driver:FakeDriver", "virtabs-backported")]
    assert _registry._scan_once().read_by == "directories"


def test_this_environment_is_read_from_its_directories() -> None:
    """The venv's editable installs add import finders but no distribution finder: no importlib.metadata."""
    assert _registry._scan_once().read_by == "directories"


def test_an_entry_point_naming_no_attribute_is_an_internal_error(on_path: Path) -> None:
    make_dist(on_path, "virtabs-typo", {"typo": "typo_driver:FakeDriverr"}, {"typo_driver": DRIVER_SOURCE})
    with pytest.raises(virtabs.InternalError, match=r"'typo' \(typo_driver:FakeDriverr\) cannot be loaded"):
        load_driver_class("typo")


def test_an_entry_point_names_a_dotted_attribute(on_path: Path) -> None:
    source = DRIVER_SOURCE + "    class Holder:\n        Driver = FakeDriver\n"
    make_dist(on_path, "virtabs-nested", {"nested": "nested_driver:Holder.Driver"}, {"nested_driver": source})
    assert load_driver_class("nested") is sys.modules["nested_driver"].FakeDriver

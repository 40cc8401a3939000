"""Import budget of the start-up path (issue 17 item 3): what ``import virtabs``, ``virtabs --help`` and
``virtabs -c test:///default list`` import, read from ``python -X importtime`` in a fresh interpreter.

These tests assert module lists, never times: a module that is not imported costs nothing, on any machine.
Each forbidden module is one that the start-up path used to import (or would, without the lazy registry,
the lazy package and the lazy command table); the positive controls at the end prove that the same
parser does see those modules when they are imported.
"""

from __future__ import annotations

import importlib.metadata
import os
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

from .test_registry import DRIVER_SOURCE, make_dist

BACKEND_DEPENDENCIES = ("pyVmomi", "winrm", "docker", "lxc", "_lxc", "libvirt")
"""Heavy third-party modules of the backends (imported by a driver's __init__, never on start-up)."""

CLI_LIBRARIES = ("click", "rich", "stevedore", "yaml", "jsonschema")
ENTRY_POINT_SCANNING = ("importlib.metadata", "stevedore", "virtabs._registry_scan")
"""Reading the entry points of every installed distribution (the registry's scan; importlib.metadata and
stevedore, which read them before it)."""
DISTRIBUTION_METADATA = ("importlib.metadata", "stevedore", "email")
"""What reading the entry points through importlib.metadata (and loading through stevedore) imported: about
25-55 ms of every remote helper's start, which opens one driver. The registry reads ``entry_points.txt``
itself where importlib.metadata would see nothing more (see virtabs._registry_scan)."""

TOPIC_MODULES = ("virtabs.cli._domains", "virtabs.cli._blockjobs", "virtabs.cli._storage", "virtabs.cli._host")


def _env(tmp_path: Path, pythonpath: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTABS_", "PYTHONPROFILEIMPORTTIME"))}
    env["VIRTABS_CONFIG"] = str(tmp_path / "no-config.toml")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return env


_REPORT = "\nimport sys as _s\n_s.stderr.write('MODULES ' + ' '.join(_s.modules) + '\\n')\n"


def _imported(code: str, tmp_path: Path, pythonpath: Path | None = None) -> set[str]:
    """Every module ``python -X importtime -c CODE`` imported (run in ``tmp_path``, not in the checkout).

    Read from the import-time log (stderr) and from ``sys.modules`` at the end: the log misses a module
    imported through ``importlib.import_module`` (the lazy command table, the embedded driver), though it
    shows what that module imports.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"try:\n{_indent(code)}\nfinally:{_indent(_REPORT)}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path, pythonpath),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "encodings" in names, proc.stderr  # the log was read (the interpreter always imports encodings)
    (report,) = [line for line in proc.stderr.splitlines() if line.startswith("MODULES ")]
    return names | set(report.split()[1:])


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


def _run_console_script(*args: str) -> str:
    """Code running the ``virtabs`` console script of this environment with ARGS, as the shell runs it."""
    script = Path(sys.executable).with_name("virtabs")
    assert script.is_file(), f"no console script {script}: install virtabs (pip install -e .)"
    return (
        f"import sys\nsys.argv = {[str(script), *args]!r}\n"
        f"try:\n    exec(compile(open({str(script)!r}).read(), {str(script)!r}, 'exec'), {{'__name__': '__main__'}})\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code"
    )


@pytest.fixture(scope="module")
def interpreter_baseline(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """What a bare ``python -c pass`` imports in this environment (site, .pth files of editable installs)."""
    return _imported("pass", tmp_path_factory.mktemp("baseline"))


def _forbidden(names: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules in ``names`` that are one of ``packages`` or inside one, or a ``virtabs_*`` backend."""
    return sorted(
        n for n in names if n.startswith("virtabs_") or any(n == p or n.startswith(p + ".") for p in packages)
    )


def _within(names: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules in ``names`` that are one of ``packages`` or inside one."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_import_virtabs_imports_no_cli_library_no_scan_no_backend(
    tmp_path: Path, interpreter_baseline: set[str]
) -> None:
    names = _imported("import virtabs", tmp_path) - interpreter_baseline
    assert "virtabs" in names
    packages = CLI_LIBRARIES + ENTRY_POINT_SCANNING + BACKEND_DEPENDENCIES + ("attr", "attrs", "typing")
    assert _forbidden(names, packages) == []
    # PEP 562: nothing but the package itself; a private module is imported by the first name that needs it
    assert sorted(n for n in names if n.startswith("virtabs.")) == []


def test_help_imports_no_command_module_no_scan_no_backend(tmp_path: Path, interpreter_baseline: set[str]) -> None:
    names = _imported(_run_console_script("--help"), tmp_path) - interpreter_baseline
    assert "virtabs.cli._main" in names and "click" in names
    packages = ("rich", "yaml", "jsonschema", "attr", "attrs", "virtabs.inventory", *TOPIC_MODULES)
    assert _forbidden(names, packages + ENTRY_POINT_SCANNING + BACKEND_DEPENDENCIES) == []
    assert "virtabs.cli._inventory" not in names
    assert sorted(n for n in names if n.startswith("virtabs._")) == []  # the core is not loaded to print help


def test_list_on_the_embedded_driver_reads_no_entry_point(tmp_path: Path, interpreter_baseline: set[str]) -> None:
    """``virtabs -c test:///default list``: its command module and the test driver, nothing else heavy.

    stdout is a pipe here, so the table is plain text and rich is not imported (on a terminal it is).
    """
    names = _imported(_run_console_script("-c", "test:///default", "list"), tmp_path) - interpreter_baseline
    assert {"virtabs.cli._domains", "virtabs.drivers.test", "virtabs._connection"} <= names
    others = tuple(m for m in TOPIC_MODULES if m != "virtabs.cli._domains")
    packages = ("rich", "yaml", "jsonschema", "virtabs.inventory", "virtabs.cli._inventory", *others)
    assert _forbidden(names, packages + ENTRY_POINT_SCANNING + BACKEND_DEPENDENCIES) == []
    # `-c` is handed to click as --connect: click's failed long-option match would import difflib
    assert "difflib" not in names


def test_opening_the_embedded_driver_reads_no_entry_point(tmp_path: Path, interpreter_baseline: set[str]) -> None:
    code = "import virtabs\nwith virtabs.open('test:///default') as c:\n    assert [d.name for d in c.list_domains()]"
    names = _imported(code, tmp_path) - interpreter_baseline
    assert "virtabs.drivers.test" in names
    assert _forbidden(names, CLI_LIBRARIES + ENTRY_POINT_SCANNING + BACKEND_DEPENDENCIES) == []


def test_the_embedded_table_is_what_the_virtabs_distribution_publishes() -> None:
    """EMBEDDED (loaded without a scan) says exactly what virtabs' own entry points say, and loads the same class."""
    published = {
        ep.name: ep.value
        for ep in importlib.metadata.entry_points(group=_registry.GROUP)
        if ep.dist is not None and ep.dist.name == "virtabs"
    }
    assert published == _registry.EMBEDDED
    for name, target in _registry.EMBEDDED.items():
        (ep,) = [e for e in importlib.metadata.entry_points(group=_registry.GROUP, name=name) if e.value == target]
        assert _registry.load_driver_class(name) is ep.load()


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh directory on sys.path for fake distributions (a never-reused name: the registry reads once per path)."""
    root = tmp_path / uuid.uuid4().hex
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root


def test_a_second_claim_on_an_embedded_scheme_is_reported_and_never_loaded(on_path: Path) -> None:
    make_dist(on_path, "virtabs-squatter", {"test": "squatter:FakeDriver"}, {"squatter": DRIVER_SOURCE})
    with pytest.raises(virtabs.InternalError, match="'test' is claimed by several distributions.*virtabs-squatter"):
        virtabs.installed_drivers()
    assert _registry.load_driver_class("test").__module__ == "virtabs.drivers.test"
    assert "squatter" not in sys.modules


# --- positive controls: the same parser sees the modules these tests forbid when they are imported ---------


def test_control_the_parser_sees_click_and_a_scan(tmp_path: Path, interpreter_baseline: set[str]) -> None:
    names = _imported("import click, virtabs; virtabs.installed_drivers()", tmp_path)
    assert {"click", "virtabs._registry_scan"} <= names - interpreter_baseline


def test_a_third_party_driver_is_found_through_its_entry_point_without_importlib_metadata(
    tmp_path: Path, interpreter_baseline: set[str]
) -> None:
    """A driver installed as a distribution of its own (an entry point in its ``entry_points.txt``) is
    found and loaded by reading that file: neither importlib.metadata (and the email package under it)
    nor stevedore is imported. Until this budget they were (the test above it was a control that they
    were); each ssh connection's helper paid for them."""
    root = tmp_path / "dists"
    make_dist(root, "virtabs-fake", {"fake": "fake_driver:FakeDriver"}, {"fake_driver": DRIVER_SOURCE})
    code = "from virtabs._registry import load_driver_class\nassert load_driver_class('fake').__name__ == 'FakeDriver'"
    names = _imported(code, tmp_path, pythonpath=root) - interpreter_baseline
    assert {"virtabs._registry_scan", "fake_driver"} <= names
    assert _within(names, DISTRIBUTION_METADATA) == []


def test_control_a_zip_on_the_path_is_read_through_importlib_metadata(
    tmp_path: Path, interpreter_baseline: set[str]
) -> None:
    """The parser sees importlib.metadata when the registry needs it: a distribution inside a zip archive
    on ``sys.path``, which only importlib.metadata reads."""
    archive = tmp_path / "dists.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fake_driver.py", textwrap.dedent(DRIVER_SOURCE))
        zf.writestr("virtabs_fake-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: virtabs-fake\nVersion: 1.0\n")
        zf.writestr("virtabs_fake-1.0.dist-info/entry_points.txt", "[virtabs.drivers]\nfake = fake_driver:FakeDriver\n")
    code = "from virtabs._registry import load_driver_class\nassert load_driver_class('fake').__name__ == 'FakeDriver'"
    names = _imported(code, tmp_path, pythonpath=archive) - interpreter_baseline
    assert {"importlib.metadata", "email", "fake_driver"} <= names


def test_the_remote_helper_opens_a_driver_without_importlib_metadata(
    tmp_path: Path, interpreter_baseline: set[str]
) -> None:
    """What ``virtabs-remote`` runs to serve ``example+ssh://H/budget``: its own imports, then opening the
    driver's local URI (the example driver is a distribution of its own, found through its entry point)."""
    code = "import virtabs.remote._helper\nimport virtabs\nvirtabs.open('example:///budget').close()"
    names = _imported(code, tmp_path) - interpreter_baseline
    assert {"virtabs._registry_scan", "virtabs_example.driver"} <= names
    assert _within(names, DISTRIBUTION_METADATA) == []


def test_the_remote_helper_imports_no_tls(tmp_path: Path) -> None:
    """ssh starts a new helper for every connection, so its imports are set-up time: it needs no ``ssl``
    (only the TLS backends' error messages do, and they import it when they load)."""
    names = _imported("import virtabs.remote._helper", tmp_path)
    assert "virtabs.spi" in names
    assert "ssl" not in names and "virtabs.spi._tls" not in names

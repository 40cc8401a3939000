"""Every script in examples/ runs, in a temporary directory, with the venv's tools on PATH (issue 15).

The examples need nothing but what scripts/bootstrap (and .ci/run) install: the core, the in-repo
backends (the contract example uses contrib/virtabs-example) and the kit's pytest.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import virtabs
import virtabs.aio
from virtabs.testing.plugin import in_ci

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(tmp_path: Path, *argv: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        list(argv), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_example_is_covered() -> None:
    covered = {
        "python_api.py",
        "aio_status.py",
        "cli_session.sh",
        "inventory_export.py",
        "contract_example.sh",
    }
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")}
    assert present == covered, "add a test for each new example"


def test_python_api(tmp_path: Path) -> None:
    out = _run(tmp_path, sys.executable, str(EXAMPLES / "python_api.py"), str(tmp_path / "lab.json"))
    assert "after pivot: ['/images/web-1-" in out
    # rerunnable on the same node file
    out = _run(tmp_path, sys.executable, str(EXAMPLES / "python_api.py"), str(tmp_path / "lab.json"))
    assert "[('web-1', 'running')]" in out


def test_aio_status(tmp_path: Path) -> None:
    out = _run(tmp_path, sys.executable, str(EXAMPLES / "aio_status.py"))
    assert "test         running  2 vCPU(s)" in out
    assert "events: BlockJobEvent" in out


def test_cli_session(tmp_path: Path) -> None:
    out = _run(tmp_path, "bash", str(EXAMPLES / "cli_session.sh"))
    assert "Domain 'vm' started" in out and "Successfully pivoted" in out
    assert "/images/vm-copy.qcow2" in out
    assert out.rstrip().endswith("[]")  # undefined at the end


def test_inventory_export(tmp_path: Path) -> None:
    out = _run(tmp_path, sys.executable, str(EXAMPLES / "inventory_export.py"), str(tmp_path))
    assert "1/1 hosts ok, 1 domains" in out
    assert (tmp_path / "hosts.csv").read_text().startswith("host_uri,")
    assert '"_meta"' in (tmp_path / "inventory.json").read_text()
    assert (tmp_path / "virtabs.prom").read_text().endswith("# EOF\n")


def test_contract_run_of_the_example_driver(tmp_path: Path) -> None:
    if "example" not in {e.name for e in virtabs.installed_drivers()}:
        if in_ci():
            pytest.fail("contrib/virtabs-example is not installed (scripts/bootstrap installs it)")
        pytest.skip("contrib/virtabs-example is not installed: run bash scripts/bootstrap")
    out = _run(tmp_path, "bash", str(EXAMPLES / "contract_example.sh"), timeout=600)
    assert "| domain.define | yes | pass |" in out
    assert not list(ROOT.glob("example.md"))


SYNC_TO_ASYNC = {
    virtabs.Connection: virtabs.aio.AsyncConnection,
    virtabs.Domain: virtabs.aio.AsyncDomain,
    virtabs.StoragePool: virtabs.aio.AsyncStoragePool,
    virtabs.Volume: virtabs.aio.AsyncVolume,
    virtabs.BlockJob: virtabs.aio.AsyncBlockJob,
    virtabs.MigrationJob: virtabs.aio.AsyncMigrationJob,
}


@pytest.mark.parametrize("sync_cls", list(SYNC_TO_ASYNC), ids=lambda c: c.__name__)
def test_the_typed_aio_wrappers_cover_the_sync_api(sync_cls: type) -> None:
    """docs/aio.md promises a typed awaitable for every public method (and each property)."""
    async_cls = SYNC_TO_ASYNC[sync_cls]
    names = {n for n in dir(sync_cls) if not n.startswith("_")}
    missing = sorted(n for n in names if not hasattr(async_cls, n))
    assert missing == []
    for name in names:
        sync_attr, async_attr = inspect.getattr_static(sync_cls, name), inspect.getattr_static(async_cls, name)
        if isinstance(sync_attr, property):
            assert isinstance(async_attr, property), name
            continue
        if name in ("subscribe", "supports"):  # no I/O: plain methods
            continue
        assert inspect.iscoroutinefunction(async_attr), name
        ret = inspect.signature(async_attr).return_annotation
        sync_ret = str(inspect.signature(sync_attr).return_annotation)
        for cls, acls in SYNC_TO_ASYNC.items():
            if cls.__name__ in sync_ret.replace("list[", "").rstrip("]").split(" | "):
                assert acls.__name__ in str(ret), (name, ret)
        assert "Any" not in str(ret), (name, ret)

"""``test:///PATH.json`` keeps its state between processes (atomic writes under a lock file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import virtabs
from virtabs.drivers.test import reset_all_nodes

VM_YAML = """\
name: vm
memory_bytes: 512M
vcpus: 1
disks: [{target: vda, path: /guest/vm.qcow2, format: qcow2}]
nics: [{network: default}]
"""


def _cli(env: dict[str, str], uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "virtabs.cli", "-c", uri, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_define_then_start_in_new_processes(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    node = tmp_path / "lab.json"
    node.write_text("{}")
    (tmp_path / "vm.yaml").write_text(VM_YAML)
    uri = f"test://{node}"
    proc = _cli(subprocess_env, uri, "define", str(tmp_path / "vm.yaml"))
    assert proc.returncode == 0, proc.stderr
    proc = _cli(subprocess_env, uri, "start", "vm")
    assert proc.returncode == 0, proc.stderr
    proc = _cli(subprocess_env, uri, "list", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [(d["name"], d["state"]) for d in json.loads(proc.stdout)] == [("vm", "running")]
    saved = json.loads(node.read_text())
    assert saved["domains"][0]["name"] == "vm" and saved["domains"][0]["state"] == "running"
    assert not list(tmp_path.glob(".virtabs-test-*")), "a temporary file was left behind"


def test_reload_when_another_process_changed_the_file(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    node = tmp_path / "lab.json"
    node.write_text(json.dumps({"domains": [{"name": "a", "memory_bytes": 1 << 20, "vcpus": 1}]}))
    uri = f"test://{node}"
    try:
        with virtabs.open(uri) as conn:
            assert [d.name for d in conn.list_domains()] == ["a"]
            (tmp_path / "vm.yaml").write_text(VM_YAML)
            proc = _cli(subprocess_env, uri, "define", str(tmp_path / "vm.yaml"))
            assert proc.returncode == 0, proc.stderr
            # this process sees the other's change without reconnecting, and keeps both on its next write
            assert sorted(d.name for d in conn.list_domains()) == ["a", "vm"]
            conn.lookup_domain("a").start()
        saved = {d["name"]: d["state"] for d in json.loads(node.read_text())["domains"]}
        assert saved == {"a": "running", "vm": "shutoff"}
    finally:
        reset_all_nodes()


WRITER = """
import sys, virtabs
uri, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with virtabs.open(uri) as conn:
    for i in range(n):
        conn.define_domain(virtabs.DomainSpec(name=f"{prefix}{i}", memory_bytes=1 << 20, vcpus=1))
"""


def test_two_processes_lose_no_update(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    node = tmp_path / "lab.json"
    node.write_text("{}")
    uri = f"test://{node}"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, uri, prefix, "15"], env=subprocess_env, stderr=subprocess.PIPE)
        for prefix in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = {d["name"] for d in json.loads(node.read_text())["domains"]}
    assert names == {f"{p}{i}" for p in "ab" for i in range(15)}


def test_missing_node_file_is_a_connect_error(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    proc = _cli(subprocess_env, f"test://{tmp_path}/missing.json", "list")
    assert proc.returncode != 0
    assert "missing.json" in proc.stderr and "NO_CONNECT" in proc.stderr


def test_changes_made_under_the_plain_lock_are_saved_too(tmp_path: Path) -> None:
    """attach_disk and create_volume change the node outside a transaction: they are written back as well."""
    node = tmp_path / "lab.json"
    node.write_text(
        json.dumps(
            {
                "pools": [{"name": "p", "path": str(tmp_path / "pool")}],
                "domains": [{"name": "a", "memory_bytes": 1 << 20, "vcpus": 1}],
            }
        )
    )
    uri = f"test://{node}"
    try:
        with virtabs.open(uri) as conn:
            conn.lookup_domain("a").attach_disk(virtabs.DiskSpec(target="vdb", path="/img/b.qcow2", format="qcow2"))
            conn.lookup_storage_pool("p").create_volume("v.qcow2", 1 << 30)
        reset_all_nodes()  # forget this process's copy: what follows comes from the file
        with virtabs.open(uri) as conn:
            assert [d.target for d in conn.lookup_domain("a").disks()] == ["vdb"]
            assert [v.name for v in conn.lookup_storage_pool("p").list_volumes()] == ["v.qcow2"]
    finally:
        reset_all_nodes()


def test_reads_do_not_rewrite_the_file(tmp_path: Path) -> None:
    node = tmp_path / "lab.json"
    node.write_text(json.dumps({"domains": [{"name": "a", "memory_bytes": 1 << 20, "vcpus": 1}]}))
    try:
        with virtabs.open(f"test://{node}") as conn:
            for dom in conn.list_domains():
                dom.info()
                dom.disks()
        assert json.loads(node.read_text()) == {"domains": [{"name": "a", "memory_bytes": 1 << 20, "vcpus": 1}]}
    finally:
        reset_all_nodes()

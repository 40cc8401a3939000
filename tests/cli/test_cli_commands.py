"""Every ``virtabs`` command through click's CliRunner against ``test:///default``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import Result

import virtabs
from virtabs import DomainRecord
from virtabs.cli import cli

GiB = 1 << 30
TEST_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

Run = Callable[..., Result]
RunJson = Callable[..., Any]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.output
    return result


def fails(result: Result, code: int, name: str) -> str:
    """Assert the one-line error contract and return the line."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert lines[0].endswith(f"[code {code} {name}]")
    assert "Traceback" not in result.stderr
    return lines[0]


def disk(run_json: RunJson, target: str) -> dict[str, Any]:
    disks = {d["target"]: d for d in run_json("domblklist", "test")}
    return disks[target]  # type: ignore[no-any-return]


# --- help -------------------------------------------------------------------------------------

READ_COMMANDS = [
    "list",
    "dominfo",
    "domstate",
    "domblklist",
    "domiflist",
    "snapshot-list",
    "blockjob",
    "pool-list",
    "pool-info",
    "vol-list",
    "net-list",
    "net-info",
    "drivers",
    "capabilities",
    "hostinfo",
    "version",
]


ALL_COMMANDS = cli.list_commands(click.Context(cli))
"""Every ``virtabs`` command, lazily registered ones included (``cli.commands`` holds only those imported so far)."""


def test_the_command_list_is_the_real_one() -> None:
    """The parametrized tests below cover every command: the list is not the (empty) set imported so far."""
    assert set(READ_COMMANDS) <= set(ALL_COMMANDS), sorted(set(READ_COMMANDS) - set(ALL_COMMANDS))
    for name in ("blockcopy", "blockcommit", "blockpull", "start", "destroy", "inventory"):
        assert name in ALL_COMMANDS
    assert len(ALL_COMMANDS) == len(set(ALL_COMMANDS))


def test_group_help_lists_every_command(run: Run) -> None:
    result = ok(run("--help", uri=None))
    for name in ALL_COMMANDS:
        assert f"  {name} " in result.stdout
    assert "-c, --connect URI" in result.stdout
    assert "Example" in result.stdout


@pytest.mark.parametrize("name", sorted(ALL_COMMANDS))
def test_every_command_help_has_a_summary_and_an_example(run: Run, name: str) -> None:
    result = ok(run(name, "--help", uri=None))
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Usage: virtabs {name}")
    assert lines[2].strip(), "a one-line summary follows the usage line"
    assert "Example" in result.stdout
    assert f"virtabs -c test:///default {name}" in result.stdout or f"virtabs {name}" in result.stdout


@pytest.mark.parametrize("name", READ_COMMANDS)
def test_read_commands_offer_json(run: Run, name: str) -> None:
    assert "--json" in ok(run(name, "--help", uri=None)).stdout


def test_version_option(run: Run) -> None:
    assert ok(run("--version", uri=None)).stdout.strip() == f"virtabs {virtabs.__version__}"


def test_no_command_is_a_usage_error(run: Run) -> None:
    assert run("no-such-command").exit_code == 2


# --- reads ------------------------------------------------------------------------------------


def test_list_human_and_json(run: Run, run_json: RunJson) -> None:
    out = ok(run("list")).stdout.splitlines()
    assert out[0].split() == ["Name", "UUID", "State"]
    assert out[1].split() == ["test", TEST_UUID, "running"]
    assert "\x1b[" not in "".join(out), "no colours when not a TTY"
    assert run_json("list") == [{"name": "test", "uuid": TEST_UUID, "state": "running", "native_state": "running"}]
    assert ok(run("list", "--all")).stdout == ok(run("list")).stdout


def test_list_is_one_bulk_call_not_an_info_per_domain(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker's info() waits about a second per container for a stats sample: list uses the bulk hook.
    from virtabs.drivers.test import TestDriver

    bulk_calls: list[int] = []
    inventory = TestDriver.inventory

    def counted(self: TestDriver) -> list[DomainRecord]:
        bulk_calls.append(1)
        return inventory(self)

    def no_info(self: TestDriver, dom: object) -> None:
        raise AssertionError(f"list asked domain_info of {dom}")

    monkeypatch.setattr(TestDriver, "inventory", counted)
    monkeypatch.setattr(TestDriver, "domain_info", no_info)
    for args in (("list",), ("list", "--json"), ("list", "--inactive")):
        result = ok(run(*args))
        assert "test" in result.stdout or args == ("list", "--inactive")
    assert len(bulk_calls) == 3


def test_list_filters(run: Run, run_json: RunJson) -> None:
    assert [d["name"] for d in run_json("list", "--active")] == ["test"]
    assert run_json("list", "--inactive") == []
    ok(run("destroy", "test"))
    assert run_json("list", "--active") == []
    assert [d["state"] for d in run_json("list", "--inactive")] == ["shutoff"]
    assert "shut off" in ok(run("list")).stdout


def test_dominfo(run: Run, run_json: RunJson) -> None:
    info = run_json("dominfo", "test")
    assert info["name"] == "test"
    assert info["uuid"] == TEST_UUID
    assert info["state"] == "running"
    assert info["vcpus"] == 2
    assert info["memory_bytes"] == 2 * GiB
    assert info["max_memory_bytes"] == 8 * GiB
    assert info["os_type"] == "hvm"
    assert isinstance(info["cpu_time_ns"], int)
    text = ok(run("dominfo", TEST_UUID)).stdout
    assert "Used memory:" in text and "2.0 GiB" in text
    assert "CPU(s):" in text


def test_domstate(run: Run, run_json: RunJson) -> None:
    assert ok(run("domstate", "test")).stdout == "running\n"
    assert run_json("domstate", "test") == {
        "name": "test",
        "uuid": TEST_UUID,
        "state": "running",
        "native_state": "running",
    }


def test_domblklist_and_domiflist(run: Run, run_json: RunJson) -> None:
    disks = run_json("domblklist", "test")
    assert len(disks) == 1
    assert disks[0]["target"] == "vda"
    assert disks[0]["path"] == "/guest/diskimage1"
    assert disks[0]["capacity_bytes"] == GiB
    assert disks[0]["backing_chain"] == []
    text = ok(run("domblklist", "test")).stdout
    assert "/guest/diskimage1" in text and "1.0 GiB" in text
    nics = run_json("domiflist", "test")
    assert len(nics) == 1
    assert nics[0]["network"] == "default"
    assert nics[0]["ips"] == ["192.168.122.2"]
    assert "192.168.122.2" in ok(run("domiflist", "test")).stdout


def test_hostinfo_capabilities_version(run: Run, run_json: RunJson) -> None:
    host = run_json("hostinfo")
    assert host["hostname"] == "test-host"
    assert host["cpus"] == 16
    assert host["memory_bytes"] == 16 * GiB
    assert "Memory size:" in ok(run("hostinfo")).stdout

    caps = run_json("capabilities")
    assert caps["driver"] == "test"
    assert caps["uri"] == "test:///default"
    assert set(caps["capabilities"]) == {c.value for c in virtabs.Capability}
    assert all(entry["supported"] for entry in caps["capabilities"].values())
    assert "block.copy.pivot" in ok(run("capabilities")).stdout

    version = run_json("version")
    assert version["virtabs"] == virtabs.__version__
    assert version["driver"] == "test"
    assert version["hypervisor_version"] == host["hypervisor_version"]
    text = ok(run("version")).stdout
    assert virtabs.__version__ in text and "test:///default" in text


# --- drivers ----------------------------------------------------------------------------------


def test_drivers_json_and_matrix(run: Run, run_json: RunJson) -> None:
    drivers = {d["name"]: d for d in run_json("drivers")}
    test = drivers["test"]
    assert test["available"] is True
    assert test["distribution"] == "virtabs"
    assert test["description"]
    assert set(test["capabilities"]) == {c.value for c in virtabs.Capability}
    text = ok(run("drivers")).stdout
    assert "Capability" in text
    matrix_row = next(line for line in text.splitlines() if line.startswith("block.copy.pivot"))
    assert "yes" in matrix_row


def test_drivers_does_not_instantiate_drivers(run_json: RunJson, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtabs.drivers import test as test_driver

    def boom(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("virtabs drivers must not instantiate a driver")

    monkeypatch.setattr(test_driver.TestDriver, "__init__", boom)
    assert any(d["name"] == "test" and d["available"] for d in run_json("drivers"))


def test_drivers_shows_a_broken_driver_as_unavailable(
    run: Run, run_json: RunJson, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtabs import _registry

    real_installed = _registry.installed_drivers
    real_load = _registry.load_driver_class

    def installed() -> list[_registry.DriverEntry]:
        return [*real_installed(), _registry.DriverEntry("broken", "virtabs_broken:Driver", "virtabs-broken")]

    def load(name: str) -> type:
        if name == "broken":
            raise virtabs.DriverUnavailableError("driver 'broken' is installed but cannot load: missing module 'x'")
        return real_load(name)

    monkeypatch.setattr(_registry, "installed_drivers", installed)
    monkeypatch.setattr(_registry, "load_driver_class", load)
    drivers = {d["name"]: d for d in run_json("drivers")}
    assert drivers["broken"]["available"] is False
    assert "missing module" in drivers["broken"]["error"]
    assert drivers["test"]["available"] is True
    text = ok(run("drivers")).stdout
    assert "unavailable: driver 'broken' is installed but cannot load" in text


# --- lifecycle --------------------------------------------------------------------------------


def state_of(run_json: RunJson) -> str:
    return run_json("domstate", "test")["state"]  # type: ignore[no-any-return]


def test_lifecycle(run: Run, run_json: RunJson) -> None:
    assert "suspended" in ok(run("suspend", "test")).stdout
    assert state_of(run_json) == "paused"
    assert ok(run("domstate", "test")).stdout == "paused\n"
    assert "resumed" in ok(run("resume", "test")).stdout
    assert state_of(run_json) == "running"
    assert "rebooted" in ok(run("reboot", "test")).stdout
    assert state_of(run_json) == "running"
    assert "shutdown" in ok(run("shutdown", "test")).stdout
    assert state_of(run_json) == "shutoff"
    assert "started (paused)" in ok(run("start", "test", "--paused")).stdout
    assert state_of(run_json) == "paused"
    assert "destroyed" in ok(run("destroy", "test")).stdout
    assert state_of(run_json) == "shutoff"
    ok(run("start", "test"))
    assert "shut off" in ok(run("shutdown", "test", "--timeout", "5")).stdout
    assert state_of(run_json) == "shutoff"


def test_invalid_state_transitions_are_code_55(run: Run) -> None:
    fails(run("resume", "test"), 55, "OPERATION_INVALID")
    fails(run("start", "test"), 55, "OPERATION_INVALID")


def test_save_and_restore(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    target = str(tmp_path / "test.save")
    assert "saved" in ok(run("save", "test", target)).stdout
    assert state_of(run_json) == "shutoff"
    assert "restored" in ok(run("restore", target)).stdout
    assert state_of(run_json) == "running"


def test_managedsave_then_start_resumes(run: Run, run_json: RunJson) -> None:
    assert "state saved" in ok(run("managedsave", "test")).stdout
    info = run_json("dominfo", "test")
    assert (info["state"], info["state_reason"], info["managed_save"]) == ("shutoff", "saved", True)
    assert "shut off (saved)" in ok(run("dominfo", "test")).stdout
    fails(run("managedsave", "test"), 55, "OPERATION_INVALID")  # nothing runs to save
    fails(run("undefine", "test"), 55, "OPERATION_INVALID")  # refused while the image exists
    ok(run("start", "test"))
    info = run_json("dominfo", "test")
    assert (info["state"], info["state_reason"], info["managed_save"]) == ("running", None, False)


def test_managedsave_remove(run: Run, run_json: RunJson) -> None:
    ok(run("managedsave", "test"))
    assert "Removed managedsave image" in ok(run("managedsave-remove", "test")).stdout
    assert run_json("dominfo", "test")["managed_save"] is False
    assert "no managed save image" in ok(run("managedsave-remove", "test")).stdout
    assert "Managed save: no" in ok(run("dominfo", "test")).stdout


def test_define_yaml_with_sizes_then_undefine(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    spec = tmp_path / "vm1.yaml"
    spec.write_text(
        "name: vm1\nmemory_bytes: 512M\nvcpus: 1\n"
        "disks: [{target: vda, path: /default-pool/vm1.qcow2, format: qcow2}]\nnics: [{network: default}]\n"
    )
    assert "Domain 'vm1' defined" in ok(run("define", str(spec))).stdout
    info = run_json("dominfo", "vm1")
    assert info["memory_bytes"] == 512 * (1 << 20)
    assert info["vcpus"] == 1
    assert info["state"] == "shutoff"
    assert disk_paths(run_json, "vm1") == ["/default-pool/vm1.qcow2"]
    assert "undefined" in ok(run("undefine", "vm1")).stdout
    fails(run("dominfo", "vm1"), 42, "NO_DOMAIN")


def disk_paths(run_json: RunJson, dom: str) -> list[str]:
    return [d["path"] for d in run_json("domblklist", dom)]


def test_define_json_bytes_and_stdin(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    spec = tmp_path / "vm2.json"
    spec.write_text(json.dumps({"name": "vm2", "memory_bytes": GiB, "vcpus": 2}))
    ok(run("define", str(spec)))
    assert run_json("dominfo", "vm2")["memory_bytes"] == GiB
    ok(run("define", "-", input=json.dumps({"name": "vm3", "memory_bytes": "1GiB", "vcpus": 1})))
    assert run_json("dominfo", "vm3")["memory_bytes"] == GiB
    names = {d["name"] for d in run_json("list")}
    assert names == {"test", "vm2", "vm3"}


def test_define_errors(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: vm1\nmemory_bytes: 1G\nvcpus: 1\ncolour: blue\n")
    assert "colour" in fails(run("define", str(bad)), 8, "INVALID_ARG")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "not valid JSON" in fails(run("define", str(broken)), 8, "INVALID_ARG")
    badsize = tmp_path / "size.yaml"
    badsize.write_text("name: vm1\nmemory_bytes: lots\nvcpus: 1\n")
    fails(run("define", str(badsize)), 8, "INVALID_ARG")
    assert run("define", str(tmp_path / "missing.yaml")).exit_code == 2


def test_undefine_running_domain_is_refused(run: Run) -> None:
    fails(run("undefine", "test"), 55, "OPERATION_INVALID")


# --- snapshots --------------------------------------------------------------------------------


def test_snapshots(run: Run, run_json: RunJson) -> None:
    assert ok(run("snapshot-list", "test")).stdout.splitlines()[0].split()[:2] == ["Name", "Creation"]
    assert run_json("snapshot-list", "test") == []
    assert "s1 created" in ok(run("snapshot-create", "test", "s1")).stdout
    ok(run("snapshot-create", "test", "s2"))
    snaps = run_json("snapshot-list", "test")
    assert [s["name"] for s in snaps] == ["s1", "s2"]
    assert snaps[0]["state"] == "running"
    assert snaps[0]["domain"] == "test"
    assert "T" in snaps[0]["created_at"]  # ISO-8601
    ok(run("destroy", "test"))
    assert "reverted" in ok(run("snapshot-revert", "test", "s1")).stdout
    assert state_of(run_json) == "running"
    assert "deleted" in ok(run("snapshot-delete", "test", "s2")).stdout
    assert [s["name"] for s in run_json("snapshot-list", "test")] == ["s1"]
    fails(run("snapshot-revert", "test", "nope"), 72, "NO_DOMAIN_SNAPSHOT")


# --- devices ----------------------------------------------------------------------------------


def test_attach_and_detach_disk(run: Run, run_json: RunJson) -> None:
    result = ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2", "--readonly"))
    assert "attached" in result.stdout
    vdb = disk(run_json, "vdb")
    assert vdb["path"] == "/default-pool/overlay.qcow2"
    assert vdb["format"] == "qcow2"
    assert vdb["readonly"] is True
    assert vdb["backing_chain"] == ["/default-pool/base.qcow2"]
    assert "detached" in ok(run("detach-disk", "test", "vdb")).stdout
    assert [d["target"] for d in run_json("domblklist", "test")] == ["vda"]


def test_attach_disk_bad_format_is_invalid_arg(run: Run) -> None:
    fails(run("attach-disk", "test", "vdb", "/x.img", "--format", "floppy"), 8, "INVALID_ARG")


# --- block jobs -------------------------------------------------------------------------------


def test_blockcopy_wait_pivot_then_domblklist_shows_the_copy(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    dest = str(tmp_path / "copy.img")
    result = ok(run("blockcopy", "test", "vda", dest, "--wait", "--pivot", "--verbose"))
    assert result.stdout.strip() == "Successfully pivoted"
    assert result.stderr == "", "the progress bar stays silent when stderr is not a TTY"
    assert disk(run_json, "vda")["path"] == dest
    assert dest in ok(run("domblklist", "test")).stdout
    assert run_json("blockjob", "test", "vda", "--info") is None


def test_blockcopy_finish_stays_on_the_source(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    dest = str(tmp_path / "copy.img")
    assert ok(run("blockcopy", "test", "vda", dest, "--finish")).stdout.strip() == "Successfully copied"
    assert disk(run_json, "vda")["path"] == "/guest/diskimage1"


def test_blockcopy_wait_leaves_a_mirroring_job(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    dest = str(tmp_path / "copy.qcow2")
    result = ok(run("blockcopy", "test", "vda", dest, "--wait", "--format", "qcow2"))
    assert result.stdout.strip() == "Now in mirroring phase"
    job = run_json("blockjob", "test", "vda", "--info")
    assert job["type"] == "copy"
    assert job["ready"] is True
    assert job["cur"] == job["end"]
    assert "Block Copy: [100 %] ready" in ok(run("blockjob", "test", "vda")).stdout
    assert "pivoted" in ok(run("blockjob", "test", "vda", "--pivot")).stdout
    vda = disk(run_json, "vda")
    assert (vda["path"], vda["format"]) == (dest, "qcow2")


def test_blockcopy_move_chain_keeps_the_layers_and_is_refused_where_undeclared(
    run: Run, run_json: RunJson, tmp_path: Path
) -> None:
    ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2"))
    dest = str(tmp_path / "moved.qcow2")
    assert ok(run("blockcopy", "test", "vdb", dest, "--move-chain", "--pivot")).stdout.strip() == "Successfully pivoted"
    vdb = disk(run_json, "vdb")
    assert (vdb["path"], vdb["format"], vdb["backing_chain"]) == (dest, "qcow2", [dest + ".1"])
    line = fails(
        run(
            "blockcopy",
            "test",
            "vda",
            str(tmp_path / "x.img"),
            "--move-chain",
            uri="test:///default?without=block.copy.move_chain",
        ),
        3,
        "NO_SUPPORT",
    )
    assert "block.copy.move_chain" in line


def test_blockcopy_async_then_blockjob_info_speed_abort(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    dest = str(tmp_path / "slow.img")
    assert ok(run("blockcopy", "test", "vda", dest, "--bandwidth", "1")).stdout.strip() == "Block Copy started"
    job = run_json("blockjob", "test", "vda")
    assert job["type"] == "copy"
    assert job["ready"] is False
    assert job["bandwidth"] == 1 << 20
    assert job["end"] == GiB
    assert job["cur"] < job["end"]
    assert "Block Copy: [" in ok(run("blockjob", "test", "vda", "--info")).stdout
    ok(run("blockjob", "test", "vda", "--bandwidth", "2"))
    assert run_json("blockjob", "test", "vda")["bandwidth"] == 2 << 20
    # a second job on the same disk and a pivot before ready are both code 83
    fails(run("blockcopy", "test", "vda", str(tmp_path / "other.img")), 83, "BLOCK_COPY_ACTIVE")
    fails(run("blockjob", "test", "vda", "--pivot"), 83, "BLOCK_COPY_ACTIVE")
    fails(run("save", "test", str(tmp_path / "s")), 83, "BLOCK_COPY_ACTIVE")
    assert "aborted" in ok(run("blockjob", "test", "vda", "--abort")).stdout
    assert run_json("blockjob", "test", "vda") is None
    assert "No current block job for vda" in ok(run("blockjob", "test", "vda")).stdout
    assert disk(run_json, "vda")["path"] == "/guest/diskimage1"


def test_blockcopy_timeout_aborts_the_job(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    result = run("blockcopy", "test", "vda", str(tmp_path / "slow.img"), "--bandwidth", "1", "--timeout", "0.3")
    line = fails(result, 68, "OPERATION_TIMEOUT")
    assert "aborted" in line
    assert run_json("blockjob", "test", "vda") is None


def test_blockcopy_usage_errors(run: Run, tmp_path: Path) -> None:
    dest = str(tmp_path / "c.img")
    assert run("blockcopy", "test", "vda", dest, "--verbose").exit_code == 2
    assert run("blockcopy", "test", "vda", dest, "--pivot", "--finish").exit_code == 2
    assert run("blockcopy", "test", "vda", dest, "--raw", "--format", "qcow2").exit_code == 2
    assert run("blockcopy", "test", "vda", dest, "--bandwidth", "-1").exit_code == 2
    fails(run("blockcopy", "test", "vda", "relative.img"), 8, "INVALID_ARG")
    fails(run("blockcopy", "test", "vdz", dest), 8, "INVALID_ARG")


def test_blockcopy_raw_and_shallow_flags(run: Run, run_json: RunJson, tmp_path: Path) -> None:
    ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2"))
    dest = str(tmp_path / "shallow.qcow2")
    ok(run("blockcopy", "test", "vdb", dest, "--shallow", "--pivot"))
    vdb = disk(run_json, "vdb")
    assert vdb["path"] == dest
    assert vdb["backing_chain"] == ["/default-pool/base.qcow2"]
    raw = str(tmp_path / "raw.img")
    ok(run("blockcopy", "test", "vda", raw, "--raw", "--pivot"))
    assert disk(run_json, "vda")["format"] == "raw"


def test_blockpull(run: Run, run_json: RunJson) -> None:
    ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2"))
    assert ok(run("blockpull", "test", "vdb", "--wait", "--verbose")).stdout.strip() == "Pull complete"
    assert disk(run_json, "vdb")["backing_chain"] == []


def test_blockpull_async(run: Run, run_json: RunJson) -> None:
    ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2"))
    assert ok(run("blockpull", "test", "vdb", "--bandwidth", "1")).stdout.strip() == "Block Pull started"
    assert run_json("blockjob", "test", "vdb")["type"] == "pull"
    fails(run("blockjob", "test", "vdb", "--pivot"), 55, "OPERATION_INVALID")
    ok(run("blockjob", "test", "vdb", "--abort"))


def test_blockcommit_active_pivot(run: Run, run_json: RunJson) -> None:
    ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2"))
    result = ok(run("blockcommit", "test", "vdb", "--active", "--pivot", "--verbose"))
    assert result.stdout.strip() == "Successfully pivoted"
    assert disk(run_json, "vdb")["path"] == "/default-pool/base.qcow2"


def test_blockcommit_active_wait_then_synchronized(run: Run, run_json: RunJson) -> None:
    ok(run("attach-disk", "test", "vdb", "/default-pool/overlay.qcow2", "--format", "qcow2"))
    assert ok(run("blockcommit", "test", "vdb", "--active", "--wait")).stdout.strip() == "Now in synchronized phase"
    assert run_json("blockjob", "test", "vdb")["type"] == "active_commit"
    ok(run("blockjob", "test", "vdb", "--abort"))


def test_blockcommit_intermediate_layer(run: Run, run_json: RunJson) -> None:
    ok(run("vol-create", "default-pool", "top.qcow2", "4G", "--backing", "/default-pool/overlay.qcow2"))
    ok(run("attach-disk", "test", "vdb", "/default-pool/top.qcow2", "--format", "qcow2"))
    assert disk(run_json, "vdb")["backing_chain"] == ["/default-pool/overlay.qcow2", "/default-pool/base.qcow2"]
    result = ok(run("blockcommit", "test", "vdb", "--top", "/default-pool/overlay.qcow2", "--wait"))
    assert result.stdout.strip() == "Commit complete"
    assert disk(run_json, "vdb")["backing_chain"] == ["/default-pool/base.qcow2"]


def test_blockcommit_errors(run: Run) -> None:
    assert run("blockcommit", "test", "vda", "--pivot").exit_code == 2
    fails(run("blockcommit", "test", "vda", "--active"), 8, "INVALID_ARG")  # vda has no backing image


def test_blockjob_option_conflicts(run: Run) -> None:
    assert run("blockjob", "test", "vda", "--abort", "--bandwidth", "3").exit_code == 2
    assert run("blockjob", "test", "vda", "--abort", "--json").exit_code == 2
    fails(run("blockjob", "test", "vda", "--abort"), 55, "OPERATION_INVALID")


# --- storage ----------------------------------------------------------------------------------


def test_pools(run: Run, run_json: RunJson) -> None:
    pools = run_json("pool-list")
    assert [p["name"] for p in pools] == ["default-pool"]
    assert pools[0]["capacity_bytes"] == 100 * GiB
    assert pools[0]["active"] is True
    info = run_json("pool-info", "default-pool")
    assert info["path"] == "/default-pool"
    assert info["uuid"] == "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566"
    assert "100.0 GiB" in ok(run("pool-list")).stdout
    assert "Capacity:" in ok(run("pool-info", "default-pool")).stdout
    fails(run("pool-info", "nope"), 49, "NO_STORAGE_POOL")


def test_networks(run: Run, run_json: RunJson) -> None:
    nets = run_json("net-list")
    assert [(n["name"], n["kind"], n["device"], n["active"]) for n in nets] == [("default", "nat", "virbr0", True)]
    assert nets[0]["attachments"] == [
        {"domain_uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "domain_name": "test", "mac": "52:54:00:a3:41:7e"}
    ]
    info = run_json("net-info", "dd8fe884-6c02-601e-7551-cca97df1c5df")
    assert info["name"] == "default"
    assert info["subnets"] == [
        {"cidr": "192.168.122.0/24", "gateway": "192.168.122.1", "dhcp_ranges": [["192.168.122.2", "192.168.122.254"]]}
    ]
    table = ok(run("net-list")).stdout
    assert "default" in table and "192.168.122.0/24" in table and "virbr0" in table
    text = ok(run("net-info", "default")).stdout
    assert "192.168.122.0/24 via 192.168.122.1 dhcp 192.168.122.2-192.168.122.254" in text
    assert "NIC of test:" in text and "52:54:00:a3:41:7e" in text
    fails(run("net-info", "dmz"), 43, "NO_NETWORK")
    fails(run("net-list", uri="test:///default?without=network"), 3, "NO_SUPPORT")


def test_volumes(run: Run, run_json: RunJson) -> None:
    names = [v["name"] for v in run_json("vol-list", "default-pool")]
    assert names == ["base.qcow2", "overlay.qcow2"]
    assert "created" in ok(run("vol-create", "default-pool", "data.qcow2", "10G")).stdout
    ok(run("vol-create", "default-pool", "small.img", "1048576", "--format", "raw"))
    vols = {v["name"]: v for v in run_json("vol-list", "default-pool")}
    assert vols["data.qcow2"]["capacity_bytes"] == 10 * GiB
    assert vols["data.qcow2"]["format"] == "qcow2"
    assert vols["small.img"]["capacity_bytes"] == 1 << 20
    assert "10.0 GiB" in ok(run("vol-list", "default-pool")).stdout
    assert "deleted" in ok(run("vol-delete", "default-pool", "data.qcow2")).stdout
    assert "data.qcow2" not in {v["name"] for v in run_json("vol-list", "default-pool")}
    fails(run("vol-delete", "default-pool", "data.qcow2"), 50, "NO_STORAGE_VOL")
    assert run("vol-create", "default-pool", "x.qcow2", "ten").exit_code == 2


# --- errors -----------------------------------------------------------------------------------


def test_unknown_domain_is_one_line_with_code_42(run: Run) -> None:
    line = fails(run("dominfo", "nope"), 42, "NO_DOMAIN")
    assert "nope" in line


@pytest.mark.parametrize(
    "args",
    [
        ("domstate", "nope"),
        ("start", "nope"),
        ("destroy", "nope"),
        ("snapshot-list", "nope"),
        ("domblklist", "nope"),
        ("blockjob", "nope", "vda"),
    ],
)
def test_unknown_domain_everywhere(run: Run, args: tuple[str, ...]) -> None:
    fails(run(*args), 42, "NO_DOMAIN")


def test_debug_prints_a_traceback_and_logs(run: Run) -> None:
    result = run("--debug", "dominfo", "nope")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "DEBUG" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].endswith("[code 42 NO_DOMAIN]")


def test_unknown_driver(run: Run) -> None:
    line = fails(run("list", uri="nosuchdriver:///"), 1001, "DRIVER_NOT_FOUND")
    assert "test" in line  # names the installed drivers


def test_password_in_uri_is_refused_and_not_printed(run: Run) -> None:
    result = run("list", uri="esx://root:s3cr3t-pw@host/")
    fails(result, 8, "INVALID_ARG")
    assert "s3cr3t-pw" not in result.output


def test_readonly_connection_refuses_writes(run: Run, run_json: RunJson) -> None:
    fails(run("-r", "destroy", "test", uri=None), 29, "OPERATION_DENIED")
    assert ok(run("-r", "domstate", "test", uri=None)).stdout == "running\n"


def test_default_uri_from_environment(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTABS_DEFAULT_URI", "test:///default")
    assert "test" in ok(run("list", uri=None)).stdout


def test_global_timeout_validation(run: Run) -> None:
    assert run("--timeout", "0", "list", uri=None).exit_code == 2
    assert ok(run("--timeout", "5", "list", uri=None)).stdout


def test_unexpected_exception_is_one_line_without_traceback(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtabs import _api

    def boom(self: object) -> None:
        raise ZeroDivisionError("surprise")

    monkeypatch.setattr(_api.Connection, "host_info", boom)
    result = run("hostinfo")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "internal error: ZeroDivisionError: surprise" in result.stderr
    assert "Traceback" not in result.stderr


def test_keyboard_interrupt_exits_130(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtabs import _api

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_api.Connection, "host_info", interrupted)
    result = run("hostinfo")
    assert result.exit_code == 130
    assert result.stderr.strip() == "virtabs: interrupted"


# --- lazily imported subcommands ------------------------------------------------------------


def test_lazy_command_that_does_not_exist_is_not_listed(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtabs.cli import _main

    monkeypatch.setitem(_main.LAZY_COMMANDS, "ghost", _main.LazyCommand("virtabs.cli._ghost", "ghost", "Boo."))
    assert "ghost" not in ok(run("--help", uri=None)).stdout
    assert run("ghost").exit_code == 2


def test_lazy_command_is_listed_and_runs(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    from virtabs.cli import _main

    monkeypatch.setitem(
        _main.LAZY_COMMANDS, "echo-uri", _main.LazyCommand("tests_cli_lazy_module", "command", "Print the URI.")
    )

    @click.command()
    @click.pass_context
    def command(ctx: click.Context) -> None:
        click.echo(f"uri={ctx.find_root().obj.uri}")

    module = type(sys)("tests_cli_lazy_module")
    module.command = command  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_cli_lazy_module", module)
    monkeypatch.setattr(_main.LazyCommand, "available", lambda self: True)
    monkeypatch.delitem(cli.commands, "echo-uri", raising=False)
    try:
        assert "Print the URI." in ok(run("--help", uri=None)).stdout
        assert ok(run("echo-uri")).stdout == "uri=test:///default\n"
    finally:
        cli.commands.pop("echo-uri", None)


def test_inventory_subcommand_is_wired(run: Run) -> None:
    from virtabs.cli import _main

    assert _main.LAZY_COMMANDS["inventory"].available()
    assert "inventory" in ok(run("--help", uri=None)).stdout
    assert "Usage: virtabs inventory" in ok(run("inventory", "--help", uri=None)).stdout
    result = run("inventory", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "test" in result.stdout

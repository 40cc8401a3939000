"""The ``inventory`` click command (standalone; the ``virtabs`` group adds it)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import virtabs.inventory as inv
from virtabs.cli import _inventory
from virtabs.cli._inventory import inventory_command


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("VIRTABS_DEFAULT_URI", raising=False)
    monkeypatch.setenv("VIRTABS_CONFIG", str(tmp_path / "no-config.toml"))
    return CliRunner()


def _run(runner: CliRunner, *args: str, obj: Any = None) -> Any:
    return runner.invoke(inventory_command, list(args), obj=obj, catch_exceptions=False)


def test_no_uri_inventories_the_default_node(runner: CliRunner) -> None:
    result = _run(runner)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # not a terminal: json
    inv.validate(doc)
    assert doc["hosts"][0]["uri"] == "test:///default"
    assert [d["name"] for d in doc["hosts"][0]["domains"]] == ["test"]
    assert result.stderr == ""  # no progress display when not a terminal


def test_partial_failure_is_exit_3_and_all_failed_is_1(runner: CliRunner) -> None:
    result = _run(runner, "test:///default", "nosuch:///x", "--format", "json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["summary"]["hosts_failed"] == 1
    assert "warning: host nosuch:///x" in result.stderr and "[code 1001 DRIVER_NOT_FOUND]" in result.stderr
    result = _run(runner, "nosuch:///x", "test:///nonexistent/f.json", "--format", "json")
    assert result.exit_code == 1
    quiet = _run(runner, "nosuch:///x", "--quiet", "--format", "json")
    assert quiet.exit_code == 1 and quiet.stderr == ""


def test_output_file_and_format_from_its_suffix(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "hosts.csv"
    result = _run(runner, "test:///default", "--output", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0]["name"] == "test"
    out2 = tmp_path / "inv.data"
    assert _run(runner, "--output", str(out2)).exit_code == 0
    inv.validate(json.loads(out2.read_text()))  # unknown suffix: json


@pytest.mark.parametrize("fmt", inv.FORMATS)
def test_every_format(runner: CliRunner, fmt: str) -> None:
    result = _run(runner, "test:///default", "--format", fmt)
    assert result.exit_code == 0
    assert "test" in result.stdout


def test_config_file(runner: CliRunner, tmp_path: Path, make_node: Callable[..., str]) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f'timeout = 30\n[[hosts]]\nuri = "{make_node("cfg1")}"\nname = "first"\n'
        f'[[hosts]]\nuri = "{make_node("cfg2", seed=2)}"\n'
    )
    result = _run(runner, "--config", str(hosts), "--format", "jsonl")
    assert result.exit_code == 0, result.output
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objs) == 6 + 2  # three domains per host, and the line closing each host
    assert {o["host"]["name"] for o in objs} == {"first", None}
    assert [o["host_end"]["domains"] for o in objs if "host_end" in o] == [3, 3]


def test_usage_errors_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "hosts.toml"
    bad.write_text('[[hosts]]\nuri = "esx://h/"\npassword = "hunter2"\n')
    result = runner.invoke(inventory_command, ["--config", str(bad)])
    assert result.exit_code == 2
    assert "credentials" in result.stderr and "hunter2" not in result.stderr
    assert runner.invoke(inventory_command, ["--ignore", "x"]).exit_code == 2
    assert runner.invoke(inventory_command, ["--format", "xml"]).exit_code == 2
    assert runner.invoke(inventory_command, ["--timeout", "0"]).exit_code == 2
    assert runner.invoke(inventory_command, ["--concurrency", "0"]).exit_code == 2
    assert runner.invoke(inventory_command, ["--config", str(tmp_path / "missing.toml")]).exit_code == 2


def test_diff(runner: CliRunner, tmp_path: Path, make_node: Callable[..., str]) -> None:
    import virtabs

    uri = make_node("dd", domains=2)
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    assert _run(runner, uri, "-o", str(old)).exit_code == 0
    same = _run(runner, "--diff", str(old), str(old), "--format", "json")
    assert same.exit_code == 0
    assert json.loads(same.stdout)["summary"]["changed"] == 0
    with virtabs.open(uri) as conn:
        conn.lookup_domain("dd-vm000").destroy()
    assert _run(runner, uri, "-o", str(new)).exit_code == 0
    result = _run(runner, "--diff", str(old), str(new), "--format", "json")
    assert result.exit_code == 1
    (changed,) = json.loads(result.stdout)["changed"]
    assert changed["name"] == "dd-vm000"
    text = _run(runner, "--diff", str(old), str(new), "--format", "table")
    assert "~ dd-vm000" in text.stdout
    ignored = _run(
        runner, "--diff", str(old), str(new), "--ignore", "*state", "--ignore", "nics.*.ips", "--format", "json"
    )
    assert ignored.exit_code == 0
    assert runner.invoke(inventory_command, ["--diff", str(old), str(new), "--format", "csv"]).exit_code == 2
    assert runner.invoke(inventory_command, ["--diff", str(old), str(new), "test:///default"]).exit_code == 2
    csv_file = tmp_path / "x.csv"
    csv_file.write_text("a,b\n")
    assert runner.invoke(inventory_command, ["--diff", str(old), str(csv_file)]).exit_code == 2


def test_ctrl_c_writes_nothing(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "inv.json"
    out.write_text("previous run")

    def interrupted(*args: Any, **kwargs: Any) -> inv.Inventory:
        raise KeyboardInterrupt

    monkeypatch.setattr("virtabs.cli._inventory.collect", interrupted)
    result = runner.invoke(inventory_command, ["-o", str(out)])
    assert result.exit_code == 130
    assert "interrupted while collecting; the output file was not changed" in result.stderr
    assert out.read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.json"]


def test_ctrl_c_while_writing_keeps_the_old_file(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "inv.json"
    out.write_text("previous run")

    def interrupted_replace(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted_replace)
    result = runner.invoke(inventory_command, ["-o", str(out)])
    assert result.exit_code == 130
    assert out.read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.json"]


def test_global_connect_option_is_used_without_uris(runner: CliRunner, make_node: Callable[..., str]) -> None:
    uri = make_node("global")

    class State:
        def __init__(self, uri: str) -> None:
            self.uri = uri

    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = State(uri)

    group.add_command(inventory_command)
    result = runner.invoke(group, ["inventory", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["hosts"][0]["uri"] == uri


def test_progress_display_on_a_terminal(make_node: Callable[..., str]) -> None:
    progress = _inventory._Progress(2, enabled=True)
    with progress.running():
        result = inv.collect([make_node("p1"), "nosuch:///y"], on_host_done=progress.host_done)
    assert (progress.done, progress.failed, progress.domains) == (2, 1, 3)
    assert result.exit_status == 3


def test_help_documents_exit_status(runner: CliRunner) -> None:
    result = runner.invoke(inventory_command, ["--help"])
    assert result.exit_code == 0
    assert "3 partial" in result.stdout and "--diff" in result.stdout


def test_a_missing_output_directory_is_a_usage_error_before_collecting(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> inv.Inventory:
        raise AssertionError("collected although the output cannot be written")

    monkeypatch.setattr("virtabs.cli._inventory.collect", never)
    result = runner.invoke(inventory_command, ["-o", str(tmp_path / "no" / "such" / "dir.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_global_timeout_bounds_each_call(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, make_node: Callable[..., str]
) -> None:
    seen: dict[str, Any] = {}
    real = inv.collect

    def spy(*args: Any, **kwargs: Any) -> inv.Inventory:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr("virtabs.cli._inventory.collect", spy)

    class State:
        uri = None
        timeout = 2.5

    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = State()

    group.add_command(inventory_command)
    result = runner.invoke(group, ["inventory", make_node("gt"), "--timeout", "30", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert seen["call_timeout"] == 2.5 and seen["timeout"] == 30


def test_sigterm_is_treated_like_ctrl_c(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    out = tmp_path / "inv.json"
    out.write_text("previous run")

    def terminated(*args: Any, **kwargs: Any) -> inv.Inventory:
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("virtabs.cli._inventory.collect", terminated)
    result = runner.invoke(inventory_command, ["-o", str(out)])
    assert result.exit_code == 130
    assert out.read_text() == "previous run"
    assert signal.getsignal(signal.SIGTERM) is before  # restored


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_real_interrupt_leaves_the_old_file(tmp_path: Path, make_node: Callable[..., str], signame: str) -> None:
    """A separate process, a host that hangs, a real signal: exit 130 and the old file untouched."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "inv.json"
    out.write_text("previous run")
    ready = tmp_path / "ready"
    script = f"""
import pathlib, time
from virtabs.drivers.test import TestDriver
from virtabs.cli._inventory import inventory_command
def hang(self):
    pathlib.Path({str(ready)!r}).touch()
    time.sleep(60)
TestDriver.inventory = hang
inventory_command.main([{make_node("hang")!r}, "-o", {str(out)!r}, "--timeout", "120"])
"""
    env = {**os.environ, "VIRTABS_CONFIG": str(tmp_path / "none.toml")}
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted while collecting" in err
    assert out.read_text() == "previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["inv.json", "ready", "hang.json", "hang.json.lock"])

"""Streaming (collect_stream, --format jsonl host by host), an interrupted run's partial file, and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import virtabs
import virtabs.inventory as inv
from virtabs.cli._inventory import inventory_command
from virtabs.testing.fleet import make_fleet


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("VIRTABS_DEFAULT_URI", raising=False)
    monkeypatch.setenv("VIRTABS_CONFIG", str(tmp_path / "no-config.toml"))
    return CliRunner()


def _run(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(inventory_command, list(args), catch_exceptions=False)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_times(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc.pop("generated_at")
    for host in doc["hosts"]:
        host.pop("collected_at")
    return doc


def test_stream_yields_a_host_while_another_is_still_running(tmp_path: Path) -> None:
    fast, hanging = make_fleet(tmp_path, hosts=1, domains=2, hanging=1)
    stream = inv.collect_stream([hanging, fast], timeout=600)
    index, host = next(stream)  # the hanging host sleeps an hour per call: only the other can be done
    assert (index, host.uri, host.ok, len(host.domains)) == (1, inv.host_key(inv.HostTarget(fast))[0], True, 2)
    stream.close()


def test_stream_checks_its_arguments_at_once() -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="concurrency"):
        inv.collect_stream(["test:///default"], concurrency=0)


def test_on_host_done_sees_each_host_before_the_run_ends(tmp_path: Path) -> None:
    uris = make_fleet(tmp_path, hosts=3, domains=1)
    seen: list[str] = []
    result = inv.collect(uris, on_host_done=lambda h: seen.append(h.uri))
    assert sorted(seen) == sorted(h.uri for h in result.hosts) and len(seen) == 3


def test_jsonl_file_is_streamed_then_renamed_and_assembles_to_the_json_document(
    runner: CliRunner, tmp_path: Path
) -> None:
    uris = make_fleet(tmp_path / "fleet", hosts=4, domains=3, dead=1)
    out = tmp_path / "estate.jsonl"
    result = _run(runner, *uris, "--output", str(out), "--quiet")
    assert result.exit_code == 3, result.output
    assert not Path(f"{out}.partial").exists()
    lines = _lines(out)
    assert len(lines) == 4 * 3 + 5
    as_json = _run(runner, *uris, "--format", "json", "--quiet")
    assembled = inv.assemble(out, inv.plan(uris))
    inv.validate(assembled)
    assert _without_times(assembled) == _without_times(json.loads(as_json.stdout))


def _partial_hosts(path: Path) -> int:
    try:
        blocks, _ = inv.read_blocks(path)
    except virtabs.InvalidArgumentError:
        return 0
    return len(blocks)


def test_interrupted_jsonl_run_leaves_a_valid_partial_file_and_resume_finishes_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    uris = make_fleet(tmp_path / "fleet", hosts=5, domains=2, hanging=1)
    out = tmp_path / "estate.jsonl"
    out.write_text("the previous run's file\n")
    partial = Path(f"{out}.partial")
    env = {**os.environ, "VIRTABS_CONFIG": str(tmp_path / "no-config.toml")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from virtabs.cli import main; main()",
            "inventory",
            *uris,
            "--output",
            str(out),
            "--timeout",
            "600",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _partial_hosts(partial) < 5:  # the five quick hosts are written; the hanging one never is
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the quick hosts were never written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"--resume {out}.partial" in err
    assert out.read_text() == "the previous run's file\n"  # the final file is only ever replaced whole
    done = _lines(partial)
    assert {line["host"]["uri"] for line in done} == {inv.host_key(inv.HostTarget(u))[0] for u in uris[:5]}
    # resume: only the hanging host is collected (and now times out); the five come from the partial file
    result = _run(runner, *uris, "--resume", str(partial), "--output", str(out), "--timeout", "1", "--quiet")
    assert result.exit_code == 3, result.output
    assert not partial.exists() and not Path(f"{partial}.new").exists()
    merged = _lines(out)
    ends = [line for line in merged if "host_end" in line]
    assert len(ends) == 6
    assert ends[-1]["host"]["error"]["code_name"] == "OPERATION_TIMEOUT"
    before = {line["host"]["uri"]: line["host"]["collected_at"] for line in done}
    assert {e["host"]["uri"]: e["host"]["collected_at"] for e in ends[:5]} == before  # not collected again


def test_resume_collects_the_failed_hosts_again_and_merges(runner: CliRunner, tmp_path: Path) -> None:
    uris = make_fleet(tmp_path / "fleet", hosts=2, domains=2, dead=1)
    first = tmp_path / "first.jsonl"
    assert _run(runner, *uris, "--output", str(first), "--quiet").exit_code == 3
    dead = tmp_path / "fleet" / "dead000.json"
    dead.write_text((tmp_path / "fleet" / "host00000.json").read_text())  # the dead host is back
    merged = tmp_path / "merged.json"
    result = _run(runner, *uris, "--resume", str(first), "--output", str(merged), "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(merged.read_text())
    inv.validate(doc)
    assert [h["uri"] for h in doc["hosts"]] == [inv.host_key(inv.HostTarget(u))[0] for u in uris]
    assert doc["summary"] == {"hosts": 3, "hosts_ok": 3, "hosts_failed": 0, "domains": 6}
    old = {e["host"]["uri"]: e["host"]["collected_at"] for e in _lines(first) if "host_end" in e}
    assert [h["collected_at"] for h in doc["hosts"][:2]] == [old[h["uri"]] for h in doc["hosts"][:2]]
    assert doc["hosts"][2]["collected_at"] != old[doc["hosts"][2]["uri"]]


def test_a_torn_last_line_is_ignored_and_a_foreign_file_refused(runner: CliRunner, tmp_path: Path) -> None:
    uris = make_fleet(tmp_path / "fleet", hosts=2, domains=1)
    out = tmp_path / "a.jsonl"
    assert _run(runner, *uris, "--output", str(out)).exit_code == 0
    text = out.read_text()
    torn = tmp_path / "torn.jsonl"
    torn.write_text(text + text.splitlines()[0][:40])  # a run killed in the middle of a write
    blocks, complete = inv.read_blocks(torn)
    assert len(blocks) == 2 and complete == len(text.encode())
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"not": "an inventory"}\n')
    result = runner.invoke(inventory_command, [*uris, "--resume", str(foreign)])
    assert result.exit_code == 2 and "not a line of" in result.stderr


def test_resume_of_a_complete_run_collects_nothing(runner: CliRunner, tmp_path: Path) -> None:
    uris = make_fleet(tmp_path / "fleet", hosts=3, domains=2)
    first = tmp_path / "first.jsonl"
    assert _run(runner, *uris, "--output", str(first), "--quiet").exit_code == 0
    for node in (tmp_path / "fleet").glob("host*.json"):
        node.unlink()  # collecting any host again would now fail
    again = tmp_path / "again.jsonl"
    result = _run(runner, *uris, "--resume", str(first), "--output", str(again))
    assert result.exit_code == 0, result.output
    # the same lines (the blocks in the order given, not of completion), and no other host (not the default URI)
    assert sorted(again.read_text().splitlines()) == sorted(first.read_text().splitlines())

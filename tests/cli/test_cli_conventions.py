"""One output convention (issue 15): lower-case enums in JSON, global options anywhere, MiB/s progress."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from virtabs import BlockJobType, DomainState
from virtabs.cli._blockjobs import speed_text
from virtabs.cli._output import to_jsonable

Run = Callable[..., Result]


def test_every_enum_is_a_lower_case_name() -> None:
    assert to_jsonable(DomainState.RUNNING) == "running"
    assert to_jsonable(BlockJobType.ACTIVE_COMMIT) == "active_commit"
    assert to_jsonable({DomainState.SHUTOFF: [BlockJobType.COPY]}) == {"shutoff": ["copy"]}


def test_json_of_the_cli_is_lower_case(run: Run, tmp_path: Path) -> None:
    result = run("dominfo", "test", "--json")
    assert json.loads(result.stdout)["state"] == "running"
    assert run("blockcopy", "test", "vda", str(tmp_path / "c.img"), "--bandwidth", "1").exit_code == 0
    job = json.loads(run("blockjob", "test", "vda", "--json").stdout)
    assert job["type"] == "copy"
    assert all(not v.isupper() for v in job.values() if isinstance(v, str))


def test_global_options_after_the_subcommand(run: Run) -> None:
    before = run("list", "--json", uri=None)
    after = run("list", "--json", "-c", "test:///default", uri=None)
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert run("list", "--connect=test:///default", "--readonly", "--timeout", "5", uri=None).exit_code == 0
    # --readonly after the subcommand is the global one: a write is refused
    refused = run("suspend", "test", "--readonly")
    assert refused.exit_code == 1 and "OPERATION_DENIED" in refused.stderr


def test_debug_after_the_subcommand_prints_the_traceback(run: Run) -> None:
    result = run("dominfo", "nope", "--debug")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "[code 42 NO_DOMAIN]" in result.stderr


def test_a_subcommand_keeps_its_own_option_of_the_same_name(run: Run, tmp_path: Path) -> None:
    # blockcopy's --timeout is its wait timeout (abort after S seconds), not the per-call timeout
    result = run("blockcopy", "test", "vda", str(tmp_path / "slow.img"), "--bandwidth", "1", "--timeout", "0.3")
    assert result.exit_code == 1
    assert "OPERATION_TIMEOUT" in result.stderr


def test_speed_is_in_mib_per_second() -> None:
    assert speed_text(5 * 1024 * 1024) == "5.0 MiB/s"
    assert speed_text(None) == "?"


def test_the_progress_bar_uses_one_unit_system(tmp_path: Path) -> None:
    """On a terminal, --verbose draws sizes in MiB and the speed in MiB/s (never MB/s)."""
    main, sub = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTABS_")}
    env.update(COLUMNS="160", TERM="xterm")
    code = [sys.executable, "-m", "virtabs.cli", "-c", "test:///default", "blockcopy", "test", "vda"]
    proc = subprocess.Popen(
        [*code, str(tmp_path / "c.img"), "--bandwidth", "400", "--wait", "--verbose", "--finish"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=sub,
        env=env,
    )
    os.close(sub)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(main)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "MiB/s" in text and "MiB" in text
    assert "MB/s" not in text.replace("MiB/s", "")

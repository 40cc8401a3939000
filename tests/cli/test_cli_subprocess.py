"""The CLI as a real process: ``python -m virtabs.cli`` (and the ``virtabs`` console script)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import virtabs

BASE = [sys.executable, "-m", "virtabs.cli", "-c", "test:///default"]


def virtabs_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BASE, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_list_json(subprocess_env: dict[str, str]) -> None:
    proc = virtabs_cli(subprocess_env, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        {"name": "test", "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "state": "running", "native_state": "running"}
    ]
    assert proc.stderr == ""


def test_human_output_has_no_escape_codes_off_a_tty(subprocess_env: dict[str, str]) -> None:
    for args in (("list",), ("domblklist", "test"), ("drivers",), ("pool-list",)):
        proc = virtabs_cli(subprocess_env, *args)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b[" not in proc.stdout
        assert all(line == line.rstrip() for line in proc.stdout.splitlines())


def test_unknown_domain_one_line_code_42_no_traceback(subprocess_env: dict[str, str]) -> None:
    proc = virtabs_cli(subprocess_env, "dominfo", "nope")
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert "code 42" in lines[0] and lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_usage_error_exits_2(subprocess_env: dict[str, str]) -> None:
    proc = virtabs_cli(subprocess_env, "dominfo")
    assert proc.returncode == 2
    assert "Missing argument" in proc.stderr


def test_blockcopy_wait_pivot(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    dest = str(tmp_path / "copy.img")
    proc = virtabs_cli(subprocess_env, "blockcopy", "test", "vda", dest, "--wait", "--pivot", "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Successfully pivoted"
    assert proc.stderr == ""  # no progress bar when stderr is a pipe


def test_help_and_version(subprocess_env: dict[str, str]) -> None:
    proc = virtabs_cli(subprocess_env, "--help")
    assert proc.returncode == 0
    assert "blockcopy" in proc.stdout and "drivers" in proc.stdout
    proc = virtabs_cli(subprocess_env, "version", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["virtabs"] == virtabs.__version__


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_while_waiting_exits_130_and_aborts(
    subprocess_env: dict[str, str], tmp_path: Path, signum: int
) -> None:
    # The CLI, with BlockJob.wait_ready announcing on stdout that the command has begun to wait.
    announce = (
        "import sys, virtabs._api as api\n"
        "wait_ready = api.BlockJob.wait_ready\n"
        "def announced(self, *args, **kwargs):\n"
        "    print('waiting', flush=True)\n"
        "    return wait_ready(self, *args, **kwargs)\n"
        "api.BlockJob.wait_ready = announced\n"
        "sys.argv = ['virtabs', *sys.argv[1:]]\n"
        "from virtabs.cli import main\n"
        "main()\n"
    )
    args = ["blockcopy", "test", "vda", str(tmp_path / "slow.img"), "--bandwidth", "1", "--wait"]
    proc = subprocess.Popen(
        [sys.executable, "-c", announce, *BASE[3:], *args],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "waiting\n", proc.communicate()  # the copy of 1 GiB at 1 MiB/s is running
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip() == "virtabs: interrupted; the block copy job was aborted"
    assert "Traceback" not in err


def test_console_script(subprocess_env: dict[str, str]) -> None:
    script = Path(sys.executable).parent / "virtabs"
    if not script.exists():
        pytest.skip("the virtabs console script is not installed next to this interpreter")
    proc = subprocess.run(
        [str(script), "-c", "test:///default", "domstate", "test"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "running\n"


def test_help_does_not_import_heavy_modules(subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import virtabs.cli\n"
        "result = CliRunner().invoke(virtabs.cli.cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('rich', 'yaml', 'stevedore', 'virtabs.cli._inventory', 'virtabs.inventory') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""

#!/usr/bin/env python3
"""Whole-process CLI cost, virtabs against its peers measured in the same run.

Reports, as ratios (never asserted in tests):
  - `virtabs -c test:///default list`  vs  `virsh -c test:///default list --all` (Debian's libvirt-clients)
  - `virtabs -c test:///default list`  vs  `python -c "import click"` (the floor of any click CLI)
  - `python -c "import virtabs"`        vs  `python -c "pass"` (the interpreter's own start-up)
  - `virtabs --help`                    vs  `virsh --help`, and vs the click floor
  - `virtabs list` with stdout on a pseudo-terminal (bold headings and a rule, as rich draws them) vs the same floor

Issue 17's targets: `virtabs list` at most 4x virsh and within 1.5x of the click floor.

The floors, for what no Python CLI on this interpreter can go below:
  - `python -c pass`, `python -c "import click"` and `python -c "import click, attrs"` (click plus the
    one library virtabs' models are built on; `list` returns them) against `virsh list --all`;
  - the room the 1.5x target leaves: 1.5 x the click floor minus the click + attrs floor, against what
    `virtabs list` spends above the click + attrs floor.

The commands are run in alternation (one of each per round, the round's order rotated), so a
load spike on a shared machine hits every command alike; each figure is the median of the rounds.
Two clocks: wall time (what a user waits) and CPU time (user + system of the child, which a busy
machine disturbs less). Every command runs the interpreter and the modules of this environment
(byte-compiled first), from a directory outside the checkout.

    .venv/bin/python bench/bench_cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# Measure what users run: byte-compiled modules. (Some environments set PYTHONDONTWRITEBYTECODE,
# which would make every run re-compile virtabs from source.) No user config, no forced colours.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME", "FORCE_COLOR") and not k.startswith("VIRTABS_")
}
TTY = "virtabs list (tty)"
"""The one command whose stdout is a pseudo-terminal (all others write to a pipe)."""


def _run(name: str, cmd: list[str], cwd: str) -> tuple[float, float]:
    """Run ``cmd`` once; its wall time and CPU time (user + system), in seconds."""
    tty_fds = os.openpty() if name == TTY else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        if tty_fds is None:
            subprocess.run(cmd, check=True, capture_output=True, env=ENV, cwd=cwd)
        else:
            subprocess.run(cmd, check=True, stdout=tty_fds[1], stderr=subprocess.PIPE, env=ENV, cwd=cwd)
    finally:
        wall = time.perf_counter() - start
        if tty_fds is not None:
            for fd in tty_fds:
                os.close(fd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def timed_alternating(commands: dict[str, list[str]], runs: int, cwd: str) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each command over ``runs`` rounds (after one warm-up each).

    Each round runs every command once, starting at a different one each round.
    """
    names = list(commands)
    for name, cmd in commands.items():
        _run(name, cmd, cwd)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(runs):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = _run(name, commands[name], cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in names}


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "virtabs"), quiet=1)
    virtabs = str(BIN / "virtabs")
    virsh = shutil.which("virsh")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import click": [sys.executable, "-c", "import click"],
        "import click, attrs": [sys.executable, "-c", "import click, attrs"],
        "import virtabs": [sys.executable, "-c", "import virtabs"],
        "virtabs list": [virtabs, "-c", "test:///default", "list"],
        "virtabs --help": [virtabs, "--help"],
        TTY: [virtabs, "-c", "test:///default", "list"],
    }
    if virsh:
        commands["virsh list --all"] = [virsh, "-c", "test:///default", "list", "--all"]
        commands["virsh --help"] = [virsh, "--help"]
    else:
        print("virsh not found (apt-get install libvirt-clients): virsh rows skipped", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as cwd:
        ENV["VIRTABS_CONFIG"] = str(Path(cwd) / "no-config.toml")
        t = timed_alternating(commands, args.runs, cwd)
    rows = [
        ("import virtabs", "python -c pass"),
        ("virtabs list", "import click"),
        ("virtabs --help", "import click"),
        (TTY, "import click"),
    ]
    if virsh:
        rows += [("virtabs list", "virsh list --all"), ("virtabs --help", "virsh --help")]
        rows += [(floor, "virsh list --all") for floor in ("python -c pass", "import click", "import click, attrs")]
    rows.append(("import click, attrs", "import click"))
    print(f"medians of {args.runs} alternating rounds (a shared, loaded machine: compare ratios, not seconds)")
    print(f"{'virtabs':<21}{'wall s':>8}{'cpu s':>8}   {'peer':<21}{'wall s':>8}{'cpu s':>8}   ratio wall   ratio cpu")
    for ours, peer in rows:
        (ow, oc), (pw, pc) = t[ours], t[peer]
        print(f"{ours:<21}{ow:>8.4f}{oc:>8.4f}   {peer:<21}{pw:>8.4f}{pc:>8.4f}   {ow / pw:>9.2f}x  {oc / pc:>9.2f}x")
    print()
    print("issue 17 targets (wall-time medians):")
    floor = t["virtabs list"][0] / t["import click"][0]
    print(f"  virtabs list / import click floor: {floor:.2f}x (target <= 1.5x)")
    if virsh:
        print(
            f"  virtabs list / virsh list --all:   {t['virtabs list'][0] / t['virsh list --all'][0]:.2f}x (target <= 4x)"
        )
    click_floor, attrs_floor, list_wall = t["import click"][0], t["import click, attrs"][0], t["virtabs list"][0]
    print(
        f"  room the 1.5x target leaves above click + attrs: {(1.5 * click_floor - attrs_floor) * 1000:.1f} ms;"
        f" virtabs list spends {(list_wall - attrs_floor) * 1000:.1f} ms there"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

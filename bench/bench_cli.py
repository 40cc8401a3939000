#!/usr/bin/env python3
"""Whole-process CLI cost, virtabs against its peer measured in the same run.

Reports, as ratios (never asserted in tests):
  - `virtabs -c test:///default list`  vs  `virsh -c test:///default list --all` (Debian's libvirt-clients)
  - `virtabs -c test:///default list`  vs  `python -c "import click"` (the floor of any click CLI)
  - `python -c "import virtabs"`        vs  `python -c "pass"` (the interpreter's own start-up)
  - `virtabs --help`                    vs  `virsh --help`, and vs the click floor

The commands are run in alternation (one of each per round, the round's order rotated), so a
load spike on a shared machine hits every command alike; each figure is the median of the rounds.

    .venv/bin/python bench/bench_cli.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# Measure what users run: byte-compiled modules. (Some environments set PYTHONDONTWRITEBYTECODE,
# which would make every run re-compile virtabs from source.)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed_alternating(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall time of each command over ``runs`` rounds (after one warm-up each), in seconds.

    Each round runs every command once, starting at a different one each round.
    """
    names = list(commands)
    for cmd in commands.values():
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(runs):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            subprocess.run(commands[name], check=True, capture_output=True, env=ENV)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


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
        "import virtabs": [sys.executable, "-c", "import virtabs"],
        "virtabs list": [virtabs, "-c", "test:///default", "list"],
        "virtabs --help": [virtabs, "--help"],
    }
    if virsh:
        commands["virsh list --all"] = [virsh, "-c", "test:///default", "list", "--all"]
        commands["virsh --help"] = [virsh, "--help"]
    else:
        print("virsh not found (apt-get install libvirt-clients): virsh rows skipped", file=sys.stderr)
    t = timed_alternating(commands, args.runs)
    rows = [
        ("import virtabs", "python -c pass"),
        ("virtabs list", "import click"),
        ("virtabs --help", "import click"),
    ]
    if virsh:
        rows += [("virtabs list", "virsh list --all"), ("virtabs --help", "virsh --help")]
    print(f"medians of {args.runs} alternating rounds (a shared, loaded machine: compare ratios, not seconds)")
    print(f"{'virtabs':<18}{'seconds':>9}   {'peer':<20}{'seconds':>9}   ratio (virtabs/peer)")
    for ours, peer in rows:
        print(f"{ours:<18}{t[ours]:>9.4f}   {peer:<20}{t[peer]:>9.4f}   {t[ours] / t[peer]:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

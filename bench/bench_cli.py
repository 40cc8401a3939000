#!/usr/bin/env python3
"""Whole-process CLI cost, virtabs against its peer measured in the same run.

Reports, as ratios (never asserted in tests):
  - `virtabs -c test:///default list`  vs  `virsh -c test:///default list --all` (Debian's libvirt-clients)
  - `python -c "import virtabs"`        vs  `python -c "pass"` (the interpreter's own start-up)
  - `virtabs --help`                    vs  `virsh --help`

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


def timed(cmd: list[str], runs: int) -> float:
    """Median wall time of ``runs`` executions (after one warm-up), in seconds."""
    subprocess.run(cmd, check=True, capture_output=True, env=ENV)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "virtabs"), quiet=1)
    virtabs = str(BIN / "virtabs")
    virsh = shutil.which("virsh")
    rows = []
    py_pass = timed([sys.executable, "-c", "pass"], args.runs)
    py_import = timed([sys.executable, "-c", "import virtabs"], args.runs)
    rows.append(("import virtabs", py_import, "python -c pass", py_pass))
    vt_list = timed([virtabs, "-c", "test:///default", "list"], args.runs)
    vt_help = timed([virtabs, "--help"], args.runs)
    if virsh:
        rows.append(
            (
                "virtabs list",
                vt_list,
                "virsh list --all",
                timed([virsh, "-c", "test:///default", "list", "--all"], args.runs),
            )
        )
        rows.append(("virtabs --help", vt_help, "virsh --help", timed([virsh, "--help"], args.runs)))
    else:
        print("virsh not found (apt-get install libvirt-clients): peer rows skipped", file=sys.stderr)
    print(f"{'virtabs':<18}{'seconds':>9}   {'peer':<20}{'seconds':>9}   ratio (virtabs/peer)")
    for name, ours, peer_name, peer in rows:
        print(f"{name:<18}{ours:>9.4f}   {peer_name:<20}{peer:>9.4f}   {ours / peer:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Query costs of two versions of the QEMU backend, measured in the same run (never asserted).

Each version is a ``backends/qemu`` tree (``--version NAME=DIR``, e.g. one extracted from an
earlier commit with ``git archive``); every measurement runs in a fresh process that imports
``virtabs_qemu`` from that tree, against the same core. Measurements, alternating versions each
round (``--runs``), medians printed with the ratio to the first version:

* ``state``: ``dom.state()`` of a running domain with a qcow2 chain disk, calls/s;
* ``job-info``: ``dom.block_job_info("vda")`` during a copy throttled to 1 KiB/s, calls/s;
* ``disks``: ``dom.disks()`` of that domain (three-layer chain), calls/s;
* ``inventory``: ``conn.domain_records()`` (the bulk hook) of ``--domains`` defined domains with a chain disk each
  (half of them running), seconds.

Run from the repository::

    git archive cf27d10 backends/qemu | tar -x -C /tmp/before
    .venv/bin/python backends/qemu/tools/bench_rooms.py --version before=/tmp/before/backends/qemu \\
        --version now=backends/qemu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    r"""
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    import virtabs
    from virtabs import BlockRebaseFlags, DiskSpec, DomainSpec

    MiB = 1 << 20
    seconds, domains, root = float(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    img = root / "img"
    img.mkdir()

    def chain(prefix):
        below = None
        for name in ("base", "snap1", "snap2"):
            p = img / f"{prefix}-{name}.qcow2"
            args = ["qemu-img", "create", "-q", "-f", "qcow2"] + (["-b", str(below), "-F", "qcow2"] if below else [])
            subprocess.run([*args, str(p), str(64 * MiB)], check=True)
            below = p
        return below

    def rate(fn):
        n, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            fn()
            n += 1
        return n / seconds

    conn = virtabs.open(f"qemu:///embed?root={root}")
    out = {}
    try:
        doms = []
        for i in range(domains):
            spec = DomainSpec(name=f"d{i}", memory_bytes=64 * MiB, vcpus=1,
                              disks=(DiskSpec("vda", str(chain(f"d{i}")), format="qcow2"),))
            doms.append(conn.define_domain(spec))
        for d in doms[: max(1, domains // 2)]:
            d.start(paused=True)
        dom = doms[0]
        out["state"] = rate(dom.state)
        out["disks"] = rate(dom.disks)
        t = time.monotonic()
        records = conn.domain_records()
        assert len(records) == domains
        out["inventory"] = time.monotonic() - t
        dom.block_rebase("vda", str(img / "copy.qcow2"), bandwidth=1024,
                         flags=BlockRebaseFlags.COPY | BlockRebaseFlags.BANDWIDTH_BYTES)
        out["job-info"] = rate(lambda: dom.block_job_info("vda"))
        dom.block_job_abort("vda")
    finally:
        for pidfile in root.glob("run/*/qemu.pid"):
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    print(json.dumps(out))
    """
)

ROWS = (("state", "calls/s"), ("job-info", "calls/s"), ("disks", "calls/s"), ("inventory", "s"))


def measure(tree: str, seconds: float, domains: int) -> dict[str, float]:
    """One child process importing ``virtabs_qemu`` from ``tree``."""
    with tempfile.TemporaryDirectory(prefix="vtb-") as root:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(seconds), str(domains), root],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> int:
    """Measure every version ``--runs`` times, alternating, and print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="append", required=True, help="NAME=DIR of a backends/qemu tree")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--domains", type=int, default=20)
    args = parser.parse_args()
    versions = [tuple(v.split("=", 1)) for v in args.version]
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, _ in versions}
    for run in range(args.runs):
        order = versions[run % len(versions) :] + versions[: run % len(versions)]
        for name, tree in order:
            samples[name].append(measure(tree, args.seconds, args.domains))
            print(f"run {run + 1} {name}: {samples[name][-1]}", flush=True)
    first = versions[0][0]
    print(f"\n{'measure':<12}{'unit':<9}" + "".join(f"{name:>14}" for name, _ in versions) + "   ratio to " + first)
    for key, unit in ROWS:
        medians = {name: statistics.median(s[key] for s in samples[name]) for name, _ in versions}
        cells = "".join(f"{medians[name]:>14.3f}" for name, _ in versions)
        ratios = " ".join(
            f"{name}: {(medians[name] / medians[first]) if unit == 'calls/s' else (medians[first] / medians[name]):.2f}x"
            for name, _ in versions[1:]
        )
        print(f"{key:<12}{unit:<9}{cells}   {ratios}")
    print("ratio > 1: faster than the first version (calls/s higher, seconds lower)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

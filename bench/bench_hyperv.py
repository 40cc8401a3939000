#!/usr/bin/env python3
"""hyperv driver: a 200-VM inventory in ONE WinRM command vs one WinRM command per VM, as a ratio.

The host is the WS-Management simulator (``backends/hyperv/tests/wsman_sim``, run as
``python -m virtabs_hyperv_sim`` in a process of its own) over HTTPS with certificate verification and
Basic authentication; pywinrm is the real client. Two ways to read every VM with its disks (VHD facts
and parent chain) and NICs, through the same driver and the same open connection:

* ``bulk``: ``conn.domain_records()``: the driver's inventory hook, one PowerShell script, one WinRM
  command (Command, Receive, Signal on an open shell);
* ``per-VM``: ``conn.list_domains()`` then ``dom.spec()`` for each VM: one script per VM (the same
  cmdlets, one VM at a time), what a loop over the public API costs.

Both run ``--runs`` times (median reported) against the same 200 VMs. The simulator's PowerShell is a
Python interpreter, so absolute times say nothing about a real Hyper-V host, where each command also
starts a powershell.exe (hundreds of ms): the ratio here is a lower bound of the real one.

    .venv/bin/python bench/bench_hyperv.py [--vms 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import virtabs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--vms", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ns = ap.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "virtabs_hyperv_sim", "--vms", str(ns.vms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        uri = f"hyperv://127.0.0.1:{info['port']}/?auth=basic&cafile={info['cafile']}"
        with virtabs.open(uri, credentials=(info["username"], info["password"])) as conn:
            client = conn._driver._client  # the WinRM command counter of this connection

            def bulk() -> int:
                records = conn.domain_records()
                assert len(records) == ns.vms and all(r.disks and r.nics for r in records)
                return len(records)

            def per_vm() -> int:
                specs = [dom.spec() for dom in conn.list_domains()]
                assert len(specs) == ns.vms and all(s.disks and s.nics for s in specs)
                return len(specs)

            results = {}
            for name, fn in (("bulk", bulk), ("per-VM", per_vm)):
                times, commands = [], 0
                for _ in range(ns.runs):
                    before = client.commands
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                    commands = client.commands - before
                results[name] = (statistics.median(times), commands)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    print(f"hyperv inventory of {ns.vms} VMs on the WS-Man simulator (HTTPS, Basic), median of {ns.runs} runs")
    print(f"{'method':<8} {'seconds':>9} {'WinRM commands':>15} {'ms/VM':>8}")
    for name, (secs, cmds) in results.items():
        print(f"{name:<8} {secs:>9.3f} {cmds:>15} {secs / ns.vms * 1000:>8.2f}")
    ratio = results["per-VM"][0] / results["bulk"][0]
    print(f"ratio per-VM / bulk: {ratio:.1f}x (bulk is faster by this factor)")


if __name__ == "__main__":
    main()

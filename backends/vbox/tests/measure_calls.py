"""What driver calls cost on the VBoxManage simulator, locally and over the test sshd (not a test).

    .venv/bin/python backends/vbox/tests/measure_calls.py [--machines 20]

Defines N machines in a fresh simulator state on each transport and times ``dom.info()`` (one
``showvminfo``), ``list_domains()`` (one ``list vms``), ``domain_records()`` (one host call for all
machines) and the naive alternative, ``info()`` of every machine in a loop. Prints medians; asserts
nothing about time. The simulator's own start-up (a Python process per VBoxManage call) dominates.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import virtabs
from virtabs import DiskSpec, DomainSpec

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location(
    "virtabs_test_sshd", HERE.parents[2] / "tests" / "command_transport" / "sshd_server.py"
)
assert spec is not None and spec.loader is not None
sshd_server = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sshd_server)
MiB = 1 << 20


def median_ms(fn: object, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def measure(uri: str, machines: int) -> dict[str, float]:
    with virtabs.open(uri) as conn:
        pool = conn.lookup_storage_pool("default")
        doms = []
        for i in range(machines):
            vol = pool.create_volume(f"m{i}.vdi", 16 * MiB, format="vdi")
            doms.append(
                conn.define_domain(
                    DomainSpec(name=f"m{i}", memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", vol.path),))
                )
            )
        return {
            "dom.info() (1 showvminfo)": median_ms(lambda: doms[0].info(), 20),
            "list_domains() (1 list vms)": median_ms(conn.list_domains, 10),
            f"domain_records() of {machines} (1 host call)": median_ms(conn.domain_records, 5),
            f"info() of each of {machines} in a loop": median_ms(lambda: [d.info() for d in doms], 3),
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=20)
    n = parser.parse_args().machines
    with tempfile.TemporaryDirectory(prefix="vt-vbox-measure-") as tmp:
        local_home, remote_home = Path(tmp, "local"), Path(tmp, "remote")
        os.environ["PATH"] = f"{HERE / 'vboxmanage_sim'}{os.pathsep}{os.environ['PATH']}"
        os.environ["VBOX_USER_HOME"] = str(local_home)
        server = sshd_server.Sshd(
            Path(tmp, "sshd"),
            set_env={"PATH": f"{HERE / 'vboxmanage_sim'}:/usr/bin:/bin", "VBOX_USER_HOME": str(remote_home)},
        )
        server.start()
        try:
            local = measure("vbox:///session", n)
            remote = measure(server.uri("vbox", "/session"), n)
        finally:
            server.stop()
    print(f"{'':48s} {'local':>10s} {'ssh':>10s}")
    for key in local:
        print(f"{key:48s} {local[key]:8.1f}ms {remote[key]:8.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

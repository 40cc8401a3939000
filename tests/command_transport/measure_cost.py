"""Measure what one command costs over the transport: multiplexed ssh vs a fresh ``ssh host true`` vs local.

Not a test (prints numbers, asserts nothing about time). Run as root or as any user sshd accepts::

    .venv/bin/python tests/command_transport/measure_cost.py [--calls 50]

It starts its own sshd on 127.0.0.1 (see sshd_server.py) and stops it at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from virtabs import parse_uri
from virtabs.spi import CommandTransport

spec = importlib.util.spec_from_file_location("virtabs_test_sshd", Path(__file__).with_name("sshd_server.py"))
assert spec is not None and spec.loader is not None
sshd_server = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sshd_server)


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    n = parser.parse_args().calls
    with tempfile.TemporaryDirectory(prefix="vt-measure-") as tmp:
        server = sshd_server.Sshd(Path(tmp))
        server.start()
        try:
            uri = server.uri("xen")
            fresh_argv = [
                "ssh", "-T", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={server.known_hosts}",
                "-i", str(server.client_key), "-p", str(server.port), "-l", server.user, "127.0.0.1", "true",
            ]  # fmt: skip
            transport = CommandTransport(parse_uri(uri))
            t0 = time.perf_counter()
            transport.connect()
            connect_ms = (time.perf_counter() - t0) * 1000
            mux = timed(lambda: transport.run(["true"]), n)
            fresh = timed(lambda: subprocess.run(fresh_argv, check=True, stdin=subprocess.DEVNULL), max(10, n // 3))
            local_t = CommandTransport(parse_uri("xen:///"))
            local = timed(lambda: local_t.run(["true"]), n)
            transport.close()
        finally:
            server.stop()
    print(f"calls per series: {n} (fresh ssh: {max(10, n // 3)})")
    print(f"master connection (handshake + auth, once):  {connect_ms:7.1f} ms")
    for label, series in (
        ("multiplexed ssh run(['true'])", mux),
        ("fresh `ssh host true`", fresh),
        ("local run(['true'])", local),
    ):
        print(
            f"{label:40s} median {statistics.median(series):7.1f} ms   min {min(series):7.1f} ms   max {max(series):7.1f} ms"
        )
    print(f"fresh / multiplexed (medians): {statistics.median(fresh) / statistics.median(mux):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Live migration with storage (issue 23): virtabs between two embed roots against a bare QMP script.

One run each (never asserted in tests). The guest: the QEMU tests' tiny kernel + busybox guest
under TCG, ``--memory`` of RAM (256 MiB), one qcow2 disk of ``--disk`` (1 GiB) holding ``--data``
(256 MiB) written with ``qemu-io`` before it starts. Each side migrates its own freshly booted guest
(the boot is not timed) with NON_SHARED_DISK from one state root to another, on unix sockets:

- virtabs: ``dom.migrate(dst, flags=LIVE | NON_SHARED_DISK | PERSIST_DEST, max_downtime=...)`` and
  ``job.wait()``: prepare (image, ``-incoming defer`` QEMU, NBD export), mirror, memory, switch,
  finish (``cont``), confirm (the source QEMU stopped);
- bare QMP: the same steps by hand, a plain socket client and no virtabs: ``qemu-img create``, the
  source's own command line re-launched with the new disk, sockets and ``-incoming defer``,
  ``nbd-server-start``/``block-export-add``, ``migrate-incoming``, ``blockdev-add`` +
  ``blockdev-mirror``, READY, ``migrate`` to ``pre-switchover``, ``block-job-cancel``,
  ``migrate-continue``, ``completed``, ``nbd-server-stop`` + ``cont``, source ``quit``.

Prints the wall times, their ratio (virtabs / bare: the bare script is the ceiling) and the downtime
QEMU reports for each against the requested ``--max-downtime``. Everything it makes (temporary roots,
QEMU processes) is removed at the end, also on error or Ctrl-C::

    .venv/bin/python bench/bench_migrate.py [--memory 256M] [--disk 1G] [--data 256M] [--max-downtime 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from virtabs_qemu.testing import guest_extra, wait_console

import virtabs
from virtabs import DiskSpec, DomainSpec, MigrateFlags

MiB = 1 << 20
STEPS: dict[str, list[tuple[str, float]]] = {}
"""When each step (bare QMP) or phase (virtabs, seen every 0.2 s) was reached, in seconds from the start."""


def parse_size(text: str) -> int:
    """``256M``, ``1G`` or bytes."""
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


class BareQMP:
    """A plain QMP client: a unix socket and ``json``."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60.0)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")
        json.loads(self.reader.readline())
        self.call("qmp_capabilities")

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """The command's ``return`` (events in front are skipped); RuntimeError on an error reply."""
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = json.loads(self.reader.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")

    def close(self) -> None:
        """Close the socket."""
        self.reader.close()
        self.sock.close()


def boot(root: Path, memory: int, disk: int, data: int) -> tuple[virtabs.Connection, virtabs.Domain]:
    """A running guest in the embed root ``root`` whose disk holds ``data`` bytes."""
    image = root / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), str(disk)], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {data}", str(image)], check=True,
                   capture_output=True)  # fmt: skip
    conn = virtabs.open(f"qemu:///embed?root={root}&accel=tcg", timeout=120)
    spec = DomainSpec(
        name="mig", memory_bytes=memory, vcpus=1, disks=(DiskSpec("vda", str(image), "qcow2"),), extra=guest_extra()
    )
    dom = conn.define_domain(spec)
    dom.start()
    wait_console(root / "run" / "mig" / "console.log", "virtabs-guest: ready", timeout=120)
    return conn, dom


def run_virtabs(a: Path, b: Path, args: argparse.Namespace) -> tuple[float, int | None]:
    """Wall time of ``migrate(...).wait()`` and the downtime QEMU reported."""
    src, dom = boot(a, args.memory, args.disk, args.data)
    dst = virtabs.open(f"qemu:///embed?root={b}&accel=tcg", timeout=120)
    start = time.perf_counter()
    marks = STEPS["virtabs"] = []

    def phase(info: virtabs.MigrationInfo) -> None:
        if not marks or marks[-1][0] != info.phase:
            marks.append((info.phase, time.perf_counter() - start))

    job = dom.migrate(
        dst, flags=MigrateFlags.LIVE | MigrateFlags.NON_SHARED_DISK | MigrateFlags.PERSIST_DEST,
        max_downtime=args.max_downtime,
    )  # fmt: skip
    moved = job.wait(progress=phase)
    seconds = time.perf_counter() - start
    downtime = job.info().downtime_ms
    moved.destroy()
    src.close()
    dst.close()
    return seconds, downtime


def _wait(q: BareQMP, pred: Any, what: str) -> Any:
    deadline = time.monotonic() + 600
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_bare(a: Path, b: Path, args: argparse.Namespace) -> tuple[float, int | None]:
    """The same steps by hand; the source guest is booted by virtabs (not timed), the rest is QMP."""
    src, dom = boot(a, args.memory, args.disk, args.data)
    pid = int((a / "run" / "mig" / "qemu.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    src_qmp = str(next(a.glob("run/mig/qmp.sock")))
    b.mkdir(exist_ok=True)
    dst_disk, nbd, mem, dst_qmp = b / "disk.qcow2", str(b / "nbd.sock"), str(b / "mig.sock"), str(b / "qmp.sock")
    start = time.perf_counter()
    marks = STEPS["bare QMP"] = []

    def mark(step: str) -> None:
        marks.append((step, time.perf_counter() - start))

    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(dst_disk), str(args.disk)], check=True)
    new = []
    for arg in (x.decode() for x in argv):
        arg = arg.replace(str(a / "disk.qcow2"), str(dst_disk))
        if arg.startswith("unix:"):
            arg = f"unix:{b}/{len(new)}.sock,server=on,wait=off"
        arg = arg.replace(str(a / "run" / "mig"), str(b))
        new.append(arg)
    qmp_index = new.index("-qmp") + 1
    new[qmp_index] = f"unix:{dst_qmp},server=on,wait=off"
    subprocess.run([*new, "-incoming", "defer"], check=True, cwd="/")
    mark("destination QEMU up")
    d = BareQMP(dst_qmp)
    d.call("nbd-server-start", {"addr": {"type": "unix", "data": {"path": nbd}}})
    d.call("block-export-add", {"type": "nbd", "id": "m", "node-name": "fmt-vda", "name": "vda", "writable": True})
    d.call("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    d.call("migrate-incoming", {"uri": f"unix:{mem}"})
    s = BareQMP(src_qmp)
    s.call("migrate-set-capabilities", {"capabilities": [
        {"capability": "events", "state": True}, {"capability": "pause-before-switchover", "state": True}]})  # fmt: skip
    s.call("migrate-set-parameters", {"downtime-limit": args.max_downtime})
    s.call("blockdev-add", {"driver": "nbd", "node-name": "m", "server": {"type": "unix", "path": nbd},
                            "export": "vda"})  # fmt: skip
    s.call("blockdev-mirror", {"job-id": "m", "device": "fmt-vda", "target": "m", "sync": "full",
                               "auto-dismiss": False})  # fmt: skip
    _wait(s, lambda: all(j.get("ready") for j in s.call("query-block-jobs")), "the mirror")
    mark("mirror ready")
    s.call("migrate", {"uri": f"unix:{mem}"})
    _wait(s, lambda: s.call("query-migrate")["status"] == "pre-switchover", "pre-switchover")
    mark("pre-switchover")
    s.call("block-job-cancel", {"device": "m"})
    _wait(s, lambda: all(j["status"] == "concluded" for j in s.call("query-jobs")), "the mirror to end")
    s.call("job-dismiss", {"id": "m"})
    s.call("blockdev-del", {"node-name": "m"})
    s.call("migrate-continue", {"state": "pre-switchover"})
    mig = _wait(s, lambda: (m := s.call("query-migrate"))["status"] == "completed" and m, "completed")
    _wait(d, lambda: d.call("query-status")["status"] != "inmigrate", "the destination")
    d.call("nbd-server-stop")
    d.call("cont")
    mark("destination running")
    with contextlib.suppress(Exception):
        s.call("quit")
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.01)
    mark("source gone")
    seconds = time.perf_counter() - start
    d.call("quit")
    s.close()
    d.close()
    with contextlib.suppress(virtabs.VirtabsError):
        dom.undefine()
    src.close()
    return seconds, mig.get("downtime")


def kill_under(root: Path) -> None:
    """SIGKILL every QEMU whose command line names something under ``root``."""
    needle = str(root).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"qemu-system" in argv and needle in argv:
                    os.kill(int(entry), signal.SIGKILL)


def main() -> int:
    """Run both, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=parse_size, default=256 * MiB)
    parser.add_argument("--disk", type=parse_size, default=1 << 30)
    parser.add_argument("--data", type=parse_size, default=256 * MiB)
    parser.add_argument("--max-downtime", type=int, default=300, help="ms")
    args = parser.parse_args()
    roots = [Path(tempfile.mkdtemp(prefix="vtbm-")) for _ in range(4)]
    try:
        v_time, v_down = run_virtabs(roots[0], roots[1], args)
        b_time, b_down = run_bare(roots[2], roots[3], args)
    finally:
        for root in roots:
            kill_under(root)
            shutil.rmtree(root, ignore_errors=True)
    print(f"guest {args.memory // MiB} MiB, disk {args.disk // MiB} MiB with {args.data // MiB} MiB of data, "
          f"NON_SHARED_DISK, max_downtime {args.max_downtime} ms, TCG, unix sockets")  # fmt: skip
    print(f"{'':<10} {'wall time':>10} {'downtime':>10}")
    print(f"{'virtabs':<10} {v_time:>9.2f}s {v_down!s:>8} ms")
    print(f"{'bare QMP':<10} {b_time:>9.2f}s {b_down!s:>8} ms")
    print(f"ratio virtabs / bare QMP: {v_time / b_time:.2f}x (ceiling: 1.1x)")
    for who, marks in STEPS.items():
        print(f"{who}: " + ", ".join(f"{step} {t:.2f}s" for step, t in marks))
    for who, down in (("virtabs", v_down), ("bare QMP", b_down)):
        verdict = "within" if down is not None and down <= args.max_downtime else "OVER"
        print(f"{who}: downtime {down} ms {verdict} the requested {args.max_downtime} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

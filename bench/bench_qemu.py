#!/usr/bin/env python3
"""The QEMU backend against its peers, libvirt 9.0 and qemu-img, measured in the same run.

Prints a table of ratios virtabs / peer (never asserted in tests):

1. Queries, ops/s (higher is better), virtabs ``qemu:///embed?root=DIR`` against libvirt-python on
   ``qemu:///system`` (libvirtd), the same QEMU binary, one connection each, alternating who goes first:
   - ``dom.state()`` and ``dom.info()`` on a tiny diskless KVM domain started paused;
   - ``dom.block_job_info("vda")`` against libvirt's ``blockJobInfo("vda")`` during a block copy that
     runs throughout (a 256 MiB chain copied at 64 KiB/s, cancelled afterwards; its progress is printed after the rounds);
   - for reference, virtabs ``test:///default`` against libvirt ``test:///default`` (domain ``test``);
   - the ceiling of any job query: a bare QMP client (a socket, ``json``, no virtabs, no libvirt) sending
     ``query-block-jobs`` in a loop on the same copying domain's own QMP socket. QEMU sends no event
     for copy progress, so every fresh answer costs this round trip; no client can beat this row.

   virtabs answers these from a leased QMP monitor that follows QEMU's events (``_live``): a zero-timeout
   ``poll`` before each read, ``query-block-jobs`` on the already-open connection for job progress.
   ``--queries-only`` skips the copy measurements below.
2. Block copy + pivot of a running KVM domain, wall time (lower is better). The disk is the qcow2 chain
   base <- snap1 <- snap2 of ``--size`` (default 1G) with every byte written: 0xaa in base [0, 1/2),
   0xbb in snap1 [1/2, 3/4), 0xcc in snap2 [3/4, 1). Timed from the start of the job until the pivot
   has returned, plus a final ``sync``:
   - virtabs: ``dom.block_rebase("vda", dest, flags=COPY | COPY_RAW)``, ``job.wait_ready()``, ``job.pivot()``;
   - libvirt: ``dom.blockCopy("vda", <raw dest>, flags=VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)``, poll
     ``blockJobInfo`` until ``cur == end`` (with the same back-off as virtabs' ``wait_ready``: 10 ms
     growing by 1.5x up to 250 ms), then ``blockJobAbort(..., VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)``.
3. The same flatten against ``qemu-img convert -f qcow2 -O raw snap2.qcow2 out.raw`` plus ``sync``, wall time.

Every copy works on its own freshly written chain (so no run reads another's copy of the source); the
chain is flushed with ``sync`` before the clock starts, and each result is checked afterwards (pattern by
pattern with ``qemu-io``, after the domain has stopped) so a fast but wrong copy shows. The three kinds of
run alternate within each of ``--runs`` rounds, each going first in turn; the table shows medians, the
lines below it every run and when its copy job became ready (the rest is pivot, job teardown and sync).

libvirtd is never started by this script. Without it (no ``/run/libvirt/libvirt-sock``) the
``qemu:///system`` rows are skipped with a line saying how to start it, as root::

    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    virtlogd -d && libvirtd -d

Images that libvirtd's QEMU (user libvirt-qemu) opens live in a temporary directory under
``/var/lib/libvirt/images``; virtabs' state root and images live under ``/tmp`` (same file system here).
Everything the bench creates (domains, QEMU processes, temporary directories) is removed at the end,
also on error or Ctrl-C. Run it as root (libvirtd's ``qemu:///system``), from the repository::

    .venv/bin/python bench/bench_qemu.py [--size 1G] [--runs 3] [--seconds 2]
    .venv/bin/python bench/bench_qemu.py --size 256M --runs 1      # a quick run
    .venv/bin/python bench/bench_qemu.py --queries-only --runs 5   # the query rows only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import virtabs
from virtabs import BlockRebaseFlags, DiskSpec, DomainSpec

MiB = 1 << 20
GiB = 1 << 30
LIBVIRT_SOCK = "/run/libvirt/libvirt-sock"
LIBVIRT_IMAGES = "/var/lib/libvirt/images"
START_HINT = "as root: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; virtlogd -d && libvirtd -d"
JOB_TIMEOUT = 600.0
QUERY_JOB_SIZE = 256 * MiB
QUERY_JOB_BANDWIDTH = 64 << 10
"""The copy that runs while ``block_job_info`` is measured: 256 MiB at 64 KiB/s (libvirt's copy runs faster than its limit at first: the size keeps it going)."""
PREFIX = f"vtbench{os.getpid()}"

TINY_XML = """<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features><clock offset='utc'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <video><model type='none'/></video>
    <memballoon model='none'/>{disk}
  </devices>
</domain>"""
DISK_XML = """
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{path}'/><target dev='vda' bus='virtio'/></disk>"""


def parse_size(text: str) -> int:
    """``1G``, ``256M``, ``512MiB``, ``1073741824`` -> bytes (a multiple of 4 MiB, for the chain layout)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 256M)")
    size = int(m.group(1)) * {"": 1, "k": 1 << 10, "m": MiB, "g": GiB}[m.group(2).lower()]
    if size < 4 * MiB or size % (4 * MiB):
        raise argparse.ArgumentTypeError(f"size must be a positive multiple of 4 MiB, got {text!r}")
    return size


def human(size: int) -> str:
    return f"{size // GiB} GiB" if size % GiB == 0 else f"{size // MiB} MiB"


# --- images -----------------------------------------------------------------------------------------


def layers(size: int) -> list[tuple[str, int, int, int]]:
    """(name, pattern, offset, length): base 0xaa [0, 1/2), snap1 0xbb [1/2, 3/4), snap2 0xcc [3/4, 1)."""
    half, quarter = size // 2, size // 4
    return [("base", 0xAA, 0, half), ("snap1", 0xBB, half, quarter), ("snap2", 0xCC, half + quarter, quarter)]


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def make_chain(directory: Path, size: int) -> Path:
    """base <- snap1 <- snap2 in ``directory``, explicit formats, every byte written; returns snap2."""
    below: Path | None = None
    for name, pattern, offset, length in layers(size):
        path = directory / f"{name}.qcow2"
        backing = ["-b", str(below), "-F", "qcow2"] if below is not None else []
        run("qemu-img", "create", "-q", "-f", "qcow2", *backing, str(path), str(size))
        run("qemu-io", "-f", "qcow2", "-c", f"write -P {pattern:#04x} {offset} {length}", str(path))
        below = path
    assert below is not None
    os.sync()  # the chain's dirty pages are not flushed inside a timed section
    return below


def check_raw(path: Path, size: int) -> str:
    """'ok', or what is wrong with the flattened raw copy (read with an explicit format, never probed)."""
    if not path.exists():
        return "missing"
    actual = path.stat().st_size
    if actual != size:
        return f"size {actual} != {size}"
    for name, pattern, offset, length in layers(size):
        res = subprocess.run(
            ["qemu-io", "-r", "-U", "-f", "raw", "-c", f"read -P {pattern:#04x} {offset} {length}", str(path)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0 or "Pattern verification failed" in res.stdout + res.stderr:
            return f"{name}'s {pattern:#04x} data missing"
    return "ok"


def kill_qemus_under(root: Path) -> None:
    """Last resort: SIGKILL any QEMU whose pidfile is under ``root`` (the embed driver's run dir)."""
    for pidfile in root.glob("**/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


# --- measuring ----------------------------------------------------------------------------------------


def ops_per_second(fn: Callable[[], object], seconds: float) -> float:
    """Calls of ``fn`` per second over ``seconds`` (after 20 warm-up calls)."""
    for _ in range(20):
        fn()
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def timed(fn: Callable[[], float | None]) -> tuple[float, str]:
    """Wall time of ``fn`` plus a final ``sync``; ``fn`` may return the ``perf_counter`` its job became ready."""
    start = time.perf_counter()
    ready = fn()
    os.sync()
    seconds = time.perf_counter() - start
    return seconds, f"ready after {ready - start:.3f} s, " if ready is not None else ""


class BareQMP:
    """A plain QMP client on one socket: what a single round trip to QEMU costs, without any library."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10.0)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")
        greeting = json.loads(self.reader.readline())
        if "QMP" not in greeting:
            raise RuntimeError(f"{path}: not a QMP greeting: {greeting}")
        self.call("qmp_capabilities")

    def call(self, command: str) -> Any:
        """Send ``command``; its ``return`` value (events that arrive first are skipped)."""
        self.sock.sendall(b'{"execute": "%s"}\n' % command.encode())
        while True:
            reply = json.loads(self.reader.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


# --- virtabs ------------------------------------------------------------------------------------------


class VirtabsQemu:
    """A ``qemu:///embed`` connection whose state root and images live in one temporary directory."""

    def __init__(self) -> None:
        # short: the QMP socket path must stay under 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix="vtb-"))
        self.conn = virtabs.open(f"qemu:///embed?root={self.root}")
        self.domains: list[virtabs.Domain] = []

    def define(self, name: str, disk: Path | None = None) -> virtabs.Domain:
        disks = (DiskSpec("vda", str(disk), format="qcow2"),) if disk is not None else ()
        dom = self.conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1, disks=disks))
        self.domains.append(dom)
        return dom

    def remove(self, dom: virtabs.Domain) -> None:
        with contextlib.suppress(Exception):
            if dom.state().is_active:
                dom.destroy()
        with contextlib.suppress(Exception):
            dom.undefine()
        if dom in self.domains:
            self.domains.remove(dom)

    def close(self) -> None:
        for dom in list(self.domains):
            self.remove(dom)
        with contextlib.suppress(Exception):
            self.conn.close()
        kill_qemus_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def start_query_job(self) -> virtabs.Domain:
        """A running domain whose disk is being copied slowly (for the ``block_job_info`` rate)."""
        images = self.root / "qjob"
        images.mkdir()
        dom = self.define(f"{PREFIX}-qjob", make_chain(images, QUERY_JOB_SIZE))
        dom.start()
        dom.block_copy("vda", str(images / "copy.qcow2"), bandwidth=QUERY_JOB_BANDWIDTH)
        return dom

    def qmp_socket_of(self, dom: virtabs.Domain) -> Path:
        """The main QMP socket of ``dom`` under the state root (idle while the queries are measured:
        virtabs reads through its leased monitors)."""
        found = [p for p in self.root.rglob("*.sock") if p.name in ("qmp.sock", f"{dom.name}.sock")]
        found = [p for p in found if dom.name in str(p)]
        if len(found) != 1:
            raise RuntimeError(f"QMP socket of {dom.name} not found under {self.root}: {found}")
        return found[0]

    def copy_run(self, index: int, size: int) -> tuple[float, str]:
        """One block copy + pivot on a fresh chain; (seconds, when it was ready and the check of the copy)."""
        images = self.root / f"img{index}"
        images.mkdir()
        try:
            top = make_chain(images, size)
            dest = images / "copy.raw"
            dom = self.define(f"{PREFIX}-copy{index}", top)
            try:
                dom.start()

                def copy() -> float:
                    job = dom.block_rebase("vda", str(dest), flags=BlockRebaseFlags.COPY | BlockRebaseFlags.COPY_RAW)
                    job.wait_ready(timeout=JOB_TIMEOUT)
                    ready = time.perf_counter()
                    job.pivot()
                    return ready

                seconds, ready = timed(copy)
            finally:
                self.remove(dom)
            return seconds, ready + check_raw(dest, size)
        finally:
            shutil.rmtree(images, ignore_errors=True)


# --- libvirt ------------------------------------------------------------------------------------------


def import_libvirt() -> Any:
    try:
        import libvirt
    except ImportError:
        return None
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions, not on stderr
    return libvirt


class LibvirtQemu:
    """``qemu:///system`` through libvirtd; images in a temporary directory libvirt-qemu can read."""

    def __init__(self, libvirt: Any) -> None:
        self.lv = libvirt
        self.conn = libvirt.open("qemu:///system")
        parent = LIBVIRT_IMAGES if os.path.isdir(LIBVIRT_IMAGES) else None
        self.directory = Path(tempfile.mkdtemp(prefix="vtbench-", dir=parent))
        os.chmod(self.directory, 0o755)
        self.domains: list[Any] = []

    def define(self, name: str, disk: Path | None = None) -> Any:
        xml = TINY_XML.format(name=name, disk=DISK_XML.format(path=disk) if disk is not None else "")
        dom = self.conn.defineXML(xml)
        self.domains.append(dom)
        return dom

    def remove(self, dom: Any) -> None:
        with contextlib.suppress(self.lv.libvirtError):
            if dom.isActive():
                dom.destroy()
        with contextlib.suppress(self.lv.libvirtError):
            dom.undefine()
        if dom in self.domains:
            self.domains.remove(dom)

    def close(self) -> None:
        for dom in list(self.domains):
            self.remove(dom)
        with contextlib.suppress(self.lv.libvirtError):
            self.conn.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def start_query_job(self) -> Any:
        """A running domain whose disk is being copied slowly (for the ``blockJobInfo`` rate)."""
        lv = self.lv
        images = self.directory / "qjob"
        images.mkdir()
        os.chmod(images, 0o755)
        dom = self.define(f"{PREFIX}-qjob", make_chain(images, QUERY_JOB_SIZE))
        dom.create()
        dest_xml = f"<disk type='file'><driver type='raw'/><source file='{images / 'copy.raw'}'/></disk>"
        params = {lv.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: QUERY_JOB_BANDWIDTH}
        dom.blockCopy("vda", dest_xml, params, flags=lv.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
        return dom

    def copy_run(self, index: int, size: int) -> tuple[float, str]:
        lv = self.lv
        images = self.directory / f"img{index}"
        images.mkdir()
        os.chmod(images, 0o755)
        try:
            top = make_chain(images, size)
            dest = images / "copy.raw"
            dom = self.define(f"{PREFIX}-copy{index}", top)
            try:
                dom.create()
                dest_xml = f"<disk type='file'><driver type='raw'/><source file='{dest}'/></disk>"

                def copy() -> float:
                    dom.blockCopy("vda", dest_xml, flags=lv.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
                    deadline = time.monotonic() + JOB_TIMEOUT
                    delay = 0.01  # the back-off of virtabs' BlockJob.wait_ready
                    while True:
                        info = dom.blockJobInfo("vda", 0)
                        if not info:
                            raise RuntimeError("libvirt block copy ended before it was ready")
                        if info["end"] > 0 and info["cur"] == info["end"]:
                            ready = time.perf_counter()
                            try:
                                dom.blockJobAbort("vda", lv.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                                return ready
                            except lv.libvirtError as exc:  # cur == end a moment before QEMU says ready
                                if exc.get_error_code() != lv.VIR_ERR_BLOCK_COPY_ACTIVE:
                                    raise
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"libvirt block copy not ready after {JOB_TIMEOUT}s: {info}")
                        time.sleep(delay)
                        delay = min(delay * 1.5, 0.25)

                seconds, ready = timed(copy)
            finally:
                self.remove(dom)
            return seconds, ready + check_raw(dest, size)
        finally:
            shutil.rmtree(images, ignore_errors=True)


def match_niceness(dom: Any) -> str:
    """Give the QEMU of libvirt domain ``dom`` this process's niceness, which virtabs' QEMUs inherit (the bench
    may run under ``nice``; libvirtd starts its QEMUs at its own). Returns what was done."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        pid = int(Path(f"/run/libvirt/qemu/{dom.name()}.pid").read_text().strip())
        before = os.getpriority(os.PRIO_PROCESS, pid)
        if before != ours:
            os.setpriority(os.PRIO_PROCESS, pid, ours)
        return f"libvirt's QEMU {pid}: nice {before} -> {os.getpriority(os.PRIO_PROCESS, pid)}"
    except (OSError, ValueError) as exc:
        return f"libvirt's QEMU niceness unchanged ({exc})"


def libvirtd_problem(libvirt: Any) -> str | None:
    """None when qemu:///system answers, else why not."""
    if libvirt is None:
        return "libvirt-python is not installed (.venv/bin/pip install libvirt-python)"
    if not os.path.exists(LIBVIRT_SOCK):
        return f"libvirtd is not running (no {LIBVIRT_SOCK}); start it {START_HINT}"
    try:
        libvirt.open("qemu:///system").close()
    except libvirt.libvirtError as exc:
        return f"qemu:///system does not answer ({exc}); start libvirtd {START_HINT}"
    return None


# --- qemu-img -------------------------------------------------------------------------------------------


def convert_run(index: int, size: int) -> tuple[float, str]:
    directory = Path(tempfile.mkdtemp(prefix="vtb-convert-"))
    try:
        top = make_chain(directory, size)
        out = directory / "out.raw"

        def convert() -> None:
            run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(top), str(out))

        seconds, _ = timed(convert)
        return seconds, check_raw(out, size)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- main -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM runs the ``finally`` blocks too (Ctrl-C already does)."""

    def handler(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def median(samples: list[float]) -> float | None:
    return statistics.median(samples) if samples else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=GiB, help="virtual disk size (default 1G; e.g. 256M)")
    parser.add_argument("--runs", type=int, default=3, help="rounds of every measurement (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each ops/s sample (default 2)")
    parser.add_argument("--queries-only", action="store_true", help="only the query rows (no copy+pivot, no convert)")
    args = parser.parse_args()
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs and --seconds must be positive")
    missing = [t for t in ("qemu-system-x86_64", "qemu-img", "qemu-io") if shutil.which(t) is None]
    if missing:
        print(f"QEMU tools missing: {', '.join(missing)} (apt-get install qemu-system-x86 qemu-utils)")
        return 1

    libvirt = import_libvirt()
    problem = libvirtd_problem(libvirt)
    qemu_version = run("qemu-system-x86_64", "--version").splitlines()[0]
    kvm = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg (no usable /dev/kvm)"
    print(f"{qemu_version}; accel {kvm}; disk {human(args.size)} chain, every byte written; {args.runs} run(s)")
    if libvirt is not None:
        v = libvirt.getVersion()
        print(f"libvirt library {v // 10**6}.{v // 1000 % 1000}.{v % 1000}")
    if problem:
        print(f"SKIPPED libvirt qemu:///system rows: {problem}")

    keys = ("vt_state", "lv_state", "vt_info", "lv_info", "vt_job", "lv_job", "bare_job", "vt_test", "lv_test")
    samples: dict[str, list[float]] = {k: [] for k in (*keys, "vt_copy", "lv_copy", "convert")}
    checks: list[str] = []
    vt: VirtabsQemu | None = None
    lq: LibvirtQemu | None = None
    lv_tiny: Any = None
    lv_qjob: Any = None
    jobs_after = ""
    bare: BareQMP | None = None
    vt_test = virtabs.open("test:///default")
    lv_test = libvirt.open("test:///default") if libvirt is not None else None
    with sigterm_as_exit():
        try:
            vt = VirtabsQemu()
            vt_tiny = vt.define(f"{PREFIX}-tiny")
            vt_tiny.start(paused=True)
            vt_test_dom = vt_test.lookup_domain("test")
            vt_qjob = vt.start_query_job()
            bare = BareQMP(vt.qmp_socket_of(vt_qjob))
            bare_jobs = bare.call("query-block-jobs")
            if len(bare_jobs) != 1 or bare_jobs[0].get("device") is None:
                raise RuntimeError(f"bare QMP sees no copy job: {bare_jobs}")
            if problem is None:
                lq = LibvirtQemu(libvirt)
                lv_tiny = lq.define(f"{PREFIX}-tiny")
                lv_tiny.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
                lv_qjob = lq.start_query_job()
                niceness = [match_niceness(d) for d in (lv_tiny, lv_qjob)]
                print(
                    f"nice: this process and virtabs' QEMUs {os.getpriority(os.PRIO_PROCESS, 0)}; "
                    + "; ".join(niceness)
                )
            print(
                f"state: virtabs {vt_tiny.state().name}"
                + (f", libvirt {lv_tiny.state()} (VIR_DOMAIN_PAUSED={libvirt.VIR_DOMAIN_PAUSED})" if lq else "")
            )
            for dom_job in (vt_qjob.block_job_info("vda"),):
                if dom_job is None or dom_job.ready:
                    raise RuntimeError(f"the query copy job is not running: {dom_job}")
            print(
                f"copy job: virtabs {vt_qjob.block_job_info('vda')}"
                + (f"; libvirt {lv_qjob.blockJobInfo('vda', 0)}" if lq else "")
            )
            # Each measure: its contenders by side ("vt" virtabs, "lv" libvirt, "bare" a plain QMP client).
            measures: list[tuple[str, dict[str, Callable[[], object] | None]]] = [
                ("state", {"vt": vt_tiny.state, "lv": lv_tiny.state if lq else None}),
                ("info", {"vt": vt_tiny.info, "lv": lv_tiny.info if lq else None}),
                (
                    "job",
                    {
                        "vt": lambda: vt_qjob.block_job_info("vda"),
                        "lv": (lambda: lv_qjob.blockJobInfo("vda", 0)) if lq else None,
                        "bare": lambda: bare.call("query-block-jobs") if bare is not None else None,
                    },
                ),
            ]
            if lv_test is not None:
                lv_test_dom = lv_test.lookupByName("test")
            measures.append(
                ("test", {"vt": vt_test_dom.state, "lv": lv_test_dom.state if lv_test is not None else None})
            )
            for index in range(args.runs):
                print(f"round {index + 1}/{args.runs} ...", file=sys.stderr, flush=True)
                for key, sides in measures:
                    order = list(sides.items())
                    shift = index % len(order)  # who goes first rotates
                    for side, fn in order[shift:] + order[:shift]:
                        if fn is not None:
                            samples[f"{side}_{key}"].append(ops_per_second(fn, args.seconds))
                jobs_after = f"virtabs {vt_qjob.block_job_info('vda')}" + (
                    f"; libvirt {lv_qjob.blockJobInfo('vda', 0)}" if lq else ""
                )
                if args.queries_only:
                    continue
                copies: list[tuple[str, str, Callable[[int, int], tuple[float, str]]]] = [
                    ("vt_copy", "virtabs copy+pivot", vt.copy_run),
                    ("convert", "qemu-img convert", convert_run),
                ]
                if lq is not None:
                    copies.insert(1, ("lv_copy", "libvirt copy+pivot", lq.copy_run))
                shift = index % len(copies)  # each kind goes first in turn: no order bias
                for key, label, copy_run in copies[shift:] + copies[:shift]:
                    seconds, detail = copy_run(index, args.size)
                    samples[key].append(seconds)
                    checks.append(f"run {index + 1} {label:<19} {seconds:.3f} s ({detail})")
        finally:
            if bare is not None:
                bare.close()
            if lq is not None:
                lq.close()
            if vt is not None:
                vt.close()
            vt_test.close()
            if lv_test is not None:
                lv_test.close()

    size = human(args.size)
    print(f"copy jobs after the query rounds: {jobs_after}")
    copy = "block_rebase COPY|COPY_RAW+pivot"
    rows = [
        ("state query", "ops/s", "qemu:///embed dom.state()", "vt_state", "libvirt qemu:///system state()", "lv_state"),
        ("info query", "ops/s", "qemu:///embed dom.info()", "vt_info", "libvirt qemu:///system info()", "lv_info"),
        (
            "job query (copying)",
            "ops/s",
            'dom.block_job_info("vda")',
            "vt_job",
            'libvirt blockJobInfo("vda")',
            "lv_job",
        ),
        (
            "job query ceiling",
            "ops/s",
            "bare QMP query-block-jobs",
            "bare_job",
            'libvirt blockJobInfo("vda")',
            "lv_job",
        ),
        (
            "job query overhead",
            "ops/s",
            'dom.block_job_info("vda")',
            "vt_job",
            "bare QMP query-block-jobs",
            "bare_job",
        ),
        (
            "state query",
            "ops/s",
            "test:///default dom.state()",
            "vt_test",
            "libvirt test:///default state()",
            "lv_test",
        ),
        (f"copy+pivot {size}", "s", copy, "vt_copy", "libvirt blockCopy+pivot", "lv_copy"),
        (f"flatten {size}", "s", copy, "vt_copy", "qemu-img convert -O raw", "convert"),
    ]
    print()
    print(f"{'measure':<20}{'unit':<7}{'virtabs':<34}{'median':>10}   {'peer':<33}{'median':>10}   virtabs/peer")
    for measure, unit, ours_name, ours_key, peer_name, peer_key in rows:
        ours, peer = median(samples[ours_key]), median(samples[peer_key])
        fmt = "{:>10.1f}" if unit == "ops/s" else "{:>10.3f}"
        ours_text = fmt.format(ours) if ours is not None else f"{'-':>10}"
        peer_text = fmt.format(peer) if peer is not None else f"{'skipped':>10}"
        ratio = f"{ours / peer:>6.2f}x" if ours is not None and peer else "     -"
        print(f"{measure:<20}{unit:<7}{ours_name:<34}{ours_text}   {peer_name:<33}{peer_text}   {ratio}")
    print("ops/s: higher is better, ratio > 1 means virtabs is faster; s: lower is better, ratio > 1 means slower")
    if problem:
        print(f"libvirt qemu:///system rows skipped: {problem}")
    print("\nruns (wall time incl. sync; each copy checked against the source's patterns):")
    for line in checks:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

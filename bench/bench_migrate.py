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
import uuid
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


LIBVIRTD_CONF = """unix_sock_dir = "{base}/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
listen_tcp = 0
listen_tls = 0
host_uuid = "{uuid}"
log_outputs = "3:file:{base}/log/libvirtd.log"
"""
QEMU_CONF = """security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
namespaces = [ ]
remember_owner = 0
user = "root"
group = "root"
"""
START = """#!/bin/sh
set -e
mount -t tmpfs tmpfs /run/libvirt
mount --bind {base}/lib /var/lib/libvirt
mount --bind {base}/cache /var/cache/libvirt
mount --bind {base}/etc /etc/libvirt
mount --bind {base}/log /var/log/libvirt
exec libvirtd -f {base}/etc/libvirtd.conf -p {base}/libvirtd.pid
"""
DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='KiB'>{memory_kib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>{append}</cmdline></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/{name}.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='/var/lib/libvirt/images/{name}.console'/></serial>
  </devices>
</domain>
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def libvirt_pair_unavailable() -> str | None:
    """Why two libvirtd instances cannot run here, or None."""
    if os.geteuid() != 0:
        return "two privileged libvirtd instances need root (each in a mount namespace of its own)"
    for tool in ("libvirtd", "virsh", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def run_libvirt_pair(base: Path, args: argparse.Namespace) -> tuple[float, int | None, str]:
    """``virsh migrate --live --copy-storage-all`` between two libvirtd instances on this machine.

    Each libvirtd runs in a mount namespace of its own (``unshare -m``) over its own /run/libvirt
    (tmpfs), /var/lib/libvirt, /var/cache/libvirt, /etc/libvirt and /var/log/libvirt, with its own socket
    directory and ``host_uuid`` (libvirt refuses a migration between two equal host UUIDs). The disk path
    /var/lib/libvirt/images/NAME.qcow2 is thus a different file for each (libvirt's copy-storage needs the
    destination image at the same path, pre-created). The migration and NBD ports are given
    (``--migrateuri``, ``--disks-port``, ``--listen-address 127.0.0.1``: both share the network). The
    wall time of the ``virsh migrate`` command, the downtime from ``domjobinfo --completed``.
    """
    name = f"vtbench-{os.getpid()}"
    daemons: list[subprocess.Popen[bytes]] = []
    uris = []
    try:
        for side in ("a", "b"):
            home = base / side
            for sub in ("etc", "sock", "lib/images", "cache", "log"):
                (home / sub).mkdir(parents=True, exist_ok=True)
            (home / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF.format(base=home, uuid=uuid.uuid4()))
            (home / "etc" / "qemu.conf").write_text(QEMU_CONF)
            start = home / "start.sh"
            start.write_text(START.format(base=home))
            start.chmod(0o755)
            log = open(home / "daemon.out", "wb")  # noqa: SIM115 - kept open for the daemon's life
            daemons.append(subprocess.Popen(["unshare", "-m", "--propagation", "private", str(start)],
                                            stdout=log, stderr=log))  # fmt: skip
            uris.append(f"qemu+unix:///system?socket={home}/sock/libvirt-sock")
        for side, daemon in zip(("a", "b"), daemons, strict=True):
            sock = base / side / "sock" / "libvirt-sock"
            deadline = time.monotonic() + 60
            while not sock.exists():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"libvirtd {side} did not start: {(base / side / 'daemon.out').read_text()}")
                time.sleep(0.1)
        src_img = base / "a" / "lib" / "images" / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(src_img), str(args.disk)], check=True)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {args.data}", str(src_img)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        dst_img = base / "b" / "lib" / "images" / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(dst_img), str(args.disk)], check=True)
        extra = guest_extra()["qemu"]
        assert isinstance(extra, dict)
        xml = base / "dom.xml"
        xml.write_text(DOMAIN_XML.format(name=name, memory_kib=args.memory // 1024, **extra))
        virsh = ["virsh", "-q", "-c", uris[0]]
        subprocess.run([*virsh, "define", str(xml)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*virsh, "start", name], check=True, stdout=subprocess.DEVNULL)
        wait_console(base / "a" / "lib" / "images" / f"{name}.console", "virtabs-guest", timeout=120)
        mig_port, nbd_port = _free_port(), _free_port()
        migrate = [*virsh, "migrate", "--live", "--copy-storage-all", "--persistent", name, uris[1],
                   "--migrateuri", f"tcp://127.0.0.1:{mig_port}", "--listen-address", "127.0.0.1",
                   "--disks-port", str(nbd_port)]  # fmt: skip
        start_time = time.perf_counter()
        subprocess.run(migrate, check=True, timeout=600)
        seconds = time.perf_counter() - start_time
        info = subprocess.run([*virsh, "domjobinfo", "--completed", name], capture_output=True, text=True).stdout
        down = next((int(line.split()[2]) for line in info.splitlines() if line.startswith("Total downtime:")), None)
        state = subprocess.run(["virsh", "-q", "-c", uris[1], "domstate", name], capture_output=True, text=True)
        return seconds, down, state.stdout.strip()
    finally:
        for uri in reversed(uris):
            subprocess.run(["virsh", "-q", "-c", uri, "destroy", name], capture_output=True)
        for daemon in daemons:
            daemon.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(10)
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()


def main() -> int:
    """Run both, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", type=parse_size, default=256 * MiB)
    parser.add_argument("--disk", type=parse_size, default=1 << 30)
    parser.add_argument("--data", type=parse_size, default=256 * MiB)
    parser.add_argument("--max-downtime", type=int, default=300, help="ms")
    parser.add_argument(
        "--libvirt-pair",
        action="store_true",
        help="also virsh migrate --live --copy-storage-all between two libvirtd instances (root)",
    )
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
    if args.libvirt_pair:
        missing = libvirt_pair_unavailable()
        if missing:
            print(f"libvirtd pair: not run: {missing}")
            return 0
        base = Path(tempfile.mkdtemp(prefix="vtbl-"))
        try:
            l_time, l_down, state = run_libvirt_pair(base, args)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{'virsh':<10} {l_time:>9.2f}s {l_down!s:>8} ms  (libvirt 2 x libvirtd, TCP on 127.0.0.1; "
              f"destination {state})")  # fmt: skip
        print(f"ratio virtabs / virsh migrate --live --copy-storage-all: {v_time / l_time:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""``qemu+ssh://`` through virtabs-remote against libvirt's own remote driver, in the same run (ratios).

Both go through one private sshd on 127.0.0.1 (tests/command_transport/sshd_server.py: its own host
key, key authentication only), whose sessions find ``virtabs-remote`` in this venv (and get this
process's ``PYTHONPATH``, so ``PYTHONPATH=/tmp/old-checkout`` measures another virtabs on both ends):

1. ``dom.state()`` / ``dom.info()`` calls per second on a tiny diskless domain started paused: virtabs
   ``qemu+ssh://root@127.0.0.1:PORT/embed?root=DIR`` against libvirt-python on
   ``qemu+ssh://root@127.0.0.1:PORT/system`` (OpenSSH + virt-ssh-helper to libvirtd), one connection
   each, rounds alternating who goes first, medians.
2. Connection set-up to the first answer (open, lookup, ``state()``, close), against libvirt's, with
   ``ssh host true`` (same key, same known_hosts, BatchMode) as the floor; medians.
3. Inventory of ``--hosts`` embed roots x ``--domains`` defined domains behind the same sshd
   (``virtabs.inventory.collect`` of ``qemu+ssh://.../embed?root=R_i``, from a cold start, so the
   channel's set-up is included; and again with a connection to the sshd already open, so that only the
   sessions are opened) against the same roots read locally (``qemu:///embed?root=R_i``) and
   against libvirt-python's loop over as many hosts: ``open(qemu+ssh://...)``, ``getAllDomainStats()``,
   ``close()`` per host, on a libvirtd holding as many defined domains.

libvirtd is never started here; without ``/run/libvirt/libvirt-sock`` the libvirt rows are skipped with
a line saying how to start it (as root: ``chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; virtlogd -d &&
libvirtd -d``). Everything the bench creates is removed at the end. Run from the repository, as root::

    .venv/bin/python bench/bench_remote.py [--seconds 2] [--rounds 3] [--setup-runs 7] [--hosts 20] [--domains 20]
        [--parts rates,setup,inventory] [--helper LABEL=COMMAND ...]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import virtabs
from virtabs import DomainSpec

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
LIBVIRT_SOCK = "/run/libvirt/libvirt-sock"
START_HINT = "as root: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; virtlogd -d && libvirtd -d"
PREFIX = f"vtremote{os.getpid()}"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sshd_server = _load("virtabs_bench_sshd", ROOT / "tests" / "command_transport" / "sshd_server.py")
bench_qemu = _load("virtabs_bench_qemu", ROOT / "bench" / "bench_qemu.py")


def ops_per_second(fn: Callable[[], object], seconds: float) -> float:
    """Calls of ``fn`` per second over ``seconds`` (four per loop turn, as the peer numbers were taken)."""
    count = 0
    start = time.perf_counter()
    while True:
        fn()
        fn()
        fn()
        fn()
        count += 4
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Bench:
    """The sshd, the virtabs roots and the libvirt domains of one run (all removed by :meth:`close`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="vtr-"))
        venv_bin = str(Path(sys.executable).parent)
        far_env = {"PATH": f"{venv_bin}:/usr/bin:/bin"}
        if os.environ.get("PYTHONPATH"):  # the far side runs the same virtabs as this process (a before/after)
            far_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.sshd = sshd_server.Sshd(self.dir / "sshd", set_env=far_env)
        self.sshd.start()
        self.ssh_base = [
            "ssh",
            "-i",
            str(self.sshd.client_key),
            "-o",
            f"UserKnownHostsFile={self.sshd.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ]
        wrapper = self.dir / "ssh"
        wrapper.write_text(
            f"#!/bin/sh\nexec /usr/bin/ssh -o UserKnownHostsFile={self.sshd.known_hosts} -o GlobalKnownHostsFile=/dev/null "
            '-o BatchMode=yes "$@"\n'
        )
        wrapper.chmod(0o755)
        query = urllib.parse.urlencode({"keyfile": str(self.sshd.client_key), "command": str(wrapper)}, safe="/")
        self.libvirt_uri = f"qemu+ssh://{self.sshd.user}@127.0.0.1:{self.sshd.port}/system?{query}"
        self.roots: list[Path] = []
        self.libvirt_domains: list[Any] = []
        self.libvirt_conn: Any = None

    def virtabs_uri(self, root: Path) -> str:
        return str(self.sshd.uri("qemu", "/embed", root=str(root)))

    def new_root(self) -> Path:
        root = Path(tempfile.mkdtemp(prefix="vr-", dir="/tmp"))  # short: QMP socket paths stay under 108 bytes
        self.roots.append(root)
        return root

    def close(self) -> None:
        for dom in self.libvirt_domains:
            with contextlib.suppress(Exception):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(Exception):
                dom.undefine()
        if self.libvirt_conn is not None:
            with contextlib.suppress(Exception):
                self.libvirt_conn.close()
        for root in self.roots:
            with contextlib.suppress(Exception), virtabs.open(f"qemu:///embed?root={root}") as conn:
                for dom in conn.list_domains():
                    with contextlib.suppress(Exception):
                        if dom.state().is_active:
                            dom.destroy()
            bench_qemu.kill_qemus_under(root)
            shutil.rmtree(root, ignore_errors=True)
        self.sshd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def libvirt_problem(libvirt: Any) -> str | None:
    if libvirt is None:
        return "libvirt-python is not installed in this venv"
    if not os.path.exists(LIBVIRT_SOCK):
        return f"libvirtd is not running ({LIBVIRT_SOCK} missing); {START_HINT}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--setup-runs", type=int, default=7)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--domains", type=int, default=20)
    parser.add_argument("--parts", default="rates,setup,inventory", help="comma-separated: rates, setup, inventory")
    parser.add_argument(
        "--helper",
        action="append",
        default=[],
        metavar="LABEL=COMMAND",
        help="also time the set-up with ?helper=COMMAND on the far side (another virtabs build), in the same rotation",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    libvirt = bench_qemu.import_libvirt()
    problem = libvirt_problem(libvirt)
    if problem:
        print(f"libvirt rows skipped: {problem}")
    bench = Bench(args)
    rows: list[tuple[str, str, str, str]] = []
    try:
        # --- 1. state()/info() rates -----------------------------------------------------------------
        root = bench.new_root()
        uri = bench.virtabs_uri(root)
        conn = virtabs.open(uri, timeout=60)
        name = f"{PREFIX}-tiny"
        dom = conn.define_domain(DomainSpec(name=name, memory_bytes=64 * MiB, vcpus=1))
        dom.start(paused=True)
        lconn = ldom = None
        if not problem:
            lconn = bench.libvirt_conn = libvirt.open(bench.libvirt_uri)
            ldom = lconn.defineXML(bench_qemu.TINY_XML.format(name=name, disk=""))
            bench.libvirt_domains.append(ldom)
            ldom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        rates = (
            ("dom.state(), ops/s", dom.state, (lambda: ldom.state()) if ldom is not None else None),
            ("dom.info(), ops/s", dom.info, (lambda: ldom.info()) if ldom is not None else None),
        )
        for label, ours, theirs in rates if "rates" in parts else ():
            mine: list[float] = []
            peer: list[float] = []
            for index in range(args.rounds):
                order = [("v", ours), ("l", theirs)] if index % 2 == 0 else [("l", theirs), ("v", ours)]
                for who, fn in order:
                    if fn is None:
                        continue
                    (mine if who == "v" else peer).append(ops_per_second(fn, args.seconds))
            m = statistics.median(mine)
            if peer:
                p = statistics.median(peer)
                rows.append((label, f"{m:,.0f}", f"libvirt qemu+ssh {p:,.0f}", f"{m / p:.2f}x"))
            else:
                rows.append((label, f"{m:,.0f}", "-", "-"))
        conn.close()

        # --- 2. set-up to first answer ---------------------------------------------------------------
        if "setup" in parts:

            def virtabs_setup(target: str = uri) -> None:
                with virtabs.open(target, timeout=60) as c:
                    c.lookup_domain(name).state()

            variants = {}  # --helper LABEL=COMMAND: another helper build on the far side, in the same rotation
            for spec in args.helper:
                label, _, command = spec.partition("=")
                variants[label] = functools.partial(
                    virtabs_setup, f"{uri}&helper={urllib.parse.quote(command, safe='/')}"
                )

            def libvirt_setup() -> None:
                c = libvirt.open(bench.libvirt_uri)
                c.lookupByName(name).state()
                c.close()

            floor_argv = [*bench.ssh_base, "-p", str(bench.sshd.port), f"{bench.sshd.user}@127.0.0.1", "true"]

            def floor() -> None:
                subprocess.run(floor_argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)

            setups: dict[str, list[float]] = {"v": [], "l": [], "f": [], **{label: [] for label in variants}}
            for index in range(args.setup_runs):
                kinds = [("v", virtabs_setup), ("f", floor)] + ([("l", libvirt_setup)] if not problem else [])
                kinds += list(variants.items())
                shift = index % len(kinds)
                for who, fn in kinds[shift:] + kinds[:shift]:
                    setups[who].append(timed(fn))
            v = statistics.median(setups["v"])
            f = statistics.median(setups["f"])
            rows.append(
                ("set-up to first answer, ms", f"{v * 1000:.0f}", f"ssh host true {f * 1000:.0f}", f"{v / f:.2f}x")
            )
            if setups["l"]:
                lv = statistics.median(setups["l"])
                rows.append(
                    (
                        "set-up to first answer, ms",
                        f"{v * 1000:.0f}",
                        f"libvirt qemu+ssh {lv * 1000:.0f}",
                        f"{v / lv:.2f}x",
                    )
                )
            for label in variants:
                h = statistics.median(setups[label])
                rows.append(
                    (
                        f"the same, helper {label}, ms",
                        f"{h * 1000:.0f}",
                        f"ssh host true {f * 1000:.0f}",
                        f"{h / f:.2f}x",
                    )
                )
                if setups["l"]:
                    lv = statistics.median(setups["l"])
                    rows.append(
                        (
                            f"the same, helper {label}, ms",
                            f"{h * 1000:.0f}",
                            f"libvirt qemu+ssh {lv * 1000:.0f}",
                            f"{h / lv:.2f}x",
                        )
                    )

        # --- 3. inventory ------------------------------------------------------------------------------
        if "inventory" in parts:
            roots = [bench.new_root() for _ in range(args.hosts)]
            for r in roots:
                with virtabs.open(f"qemu:///embed?root={r}") as local:
                    for i in range(args.domains):
                        local.define_domain(DomainSpec(name=f"{PREFIX}-d{i}", memory_bytes=64 * MiB, vcpus=1))
            from virtabs.inventory import collect

            local_uris = [f"qemu:///embed?root={r}" for r in roots]
            remote_uris = [bench.virtabs_uri(r) for r in roots]
            lv_stats_domains: list[Any] = []
            if not problem:
                for i in range(args.domains):
                    d = lconn.defineXML(bench_qemu.TINY_XML.format(name=f"{PREFIX}-s{i}", disk=""))
                    bench.libvirt_domains.append(d)
                    lv_stats_domains.append(d)

            def libvirt_loop() -> None:
                for _ in roots:
                    c = libvirt.open(bench.libvirt_uri)
                    c.getAllDomainStats()
                    c.close()

            inv: dict[str, list[float]] = {"local": [], "remote": [], "warm": [], "libvirt": []}
            for _ in range(args.rounds):
                result = collect(remote_uris)
                assert all(h.ok for h in result.hosts), [h.error for h in result.hosts if not h.ok]
                inv["remote"].append(timed(lambda: collect(remote_uris)))
                with virtabs.open(remote_uris[0]):  # keeps the channel up: the collect opens sessions only
                    inv["warm"].append(timed(lambda: collect(remote_uris)))
                inv["local"].append(timed(lambda: collect(local_uris)))
                if not problem:
                    inv["libvirt"].append(timed(libvirt_loop))
            r_ = statistics.median(inv["remote"])
            l_ = statistics.median(inv["local"])
            label = f"inventory {args.hosts} hosts x {args.domains} domains, s"
            w_ = statistics.median(inv["warm"])
            rows.append((label, f"{r_:.3f}", f"the same read locally {l_:.3f}", f"{r_ / l_:.2f}x"))
            rows.append((label + " (channel up)", f"{w_:.3f}", f"the same read locally {l_:.3f}", f"{w_ / l_:.2f}x"))
            if inv["libvirt"]:
                lb = statistics.median(inv["libvirt"])
                rows.append(
                    (label, f"{r_:.3f}", f"libvirt open+getAllDomainStats per host {lb:.3f}", f"{r_ / lb:.2f}x")
                )
    finally:
        bench.close()
        print_rows(rows)  # also the rows measured before a failure
    return 0


def print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    if not rows:
        return
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'virtabs':>10}  {'peer, same run':<44} ratio")
    for what, ours, peer, ratio in rows:
        print(f"{what:<{width}}  {ours:>10}  {peer:<44} {ratio}")
    print("ratios: ops/s virtabs / peer (higher is better); times virtabs / peer (lower is better)")


if __name__ == "__main__":
    sys.exit(main())

"""The contract target of the LXC driver: disposable busybox-static containers.

Published through the entry-point group ``virtabs.testing.targets`` (name ``lxc``). Each domain gets a
copy of a busybox-static root file system (built once per target from the host's ``busybox-static``)
with busybox init as PID 1: it halts on SIGUSR1 and reboots on SIGTERM, which the target sets as the
container's ``lxc.signal.halt`` / ``lxc.signal.reboot``. Networking is ``empty`` so the containers start on
hosts without ``lxcbr0`` (no lxc-net service); the AppArmor profile is liblxc's default (a definition may no
longer choose one, see the LXC README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from virtabs import Connection, Domain, DomainSpec
from virtabs.testing import DefaultTarget

__all__ = ["INITTAB", "LxcTarget", "build_busybox_rootfs", "busybox_binary"]

MiB = 1 << 20

#: busybox init: every boot appends a line to ``/var/log/virtabs-boots``; ``/run/virtabs-ready`` appears
#: once sysinit ran (its signal handlers are set by then) and goes at shutdown.
INITTAB = """\
::sysinit:/bin/sh -c 'echo boot >> /var/log/virtabs-boots; touch /run/virtabs-ready'
::respawn:/bin/sleep 86400
::shutdown:/bin/rm -f /run/virtabs-ready
"""


def busybox_binary() -> str | None:
    """The host's busybox (``busybox-static`` installs ``/bin/busybox``), or None."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return candidate
    return None


def build_busybox_rootfs(dest: Path) -> Path:
    """A minimal root file system at ``dest``: busybox-static with every applet, busybox init, an inittab."""
    busybox = busybox_binary()
    if busybox is None:
        raise RuntimeError("busybox-static is not installed (apt-get install busybox-static)")
    for sub in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "var/log"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.is_symlink():
            link.symlink_to("busybox")
    init = dest / "sbin" / "init"
    if not init.is_symlink():
        init.symlink_to("../bin/busybox")
    (dest / "etc" / "inittab").write_text(INITTAB)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


class LxcTarget(DefaultTarget):
    """Busybox containers with a root file system of their own (user-supplied, not inside the container's directory).

    The driver takes a root file system only inside the connection's roots (its lxcpath, or the URI's
    ``rootfs_dir``): the copies go into the URI's ``rootfs_dir`` when it has one, else into a directory of the
    target's own in the lxcpath (which is no container).
    """

    job_timeout = 30.0
    shutdown_timeout = 30.0

    def __init__(self, workdir: str | None = None) -> None:
        super().__init__(prefix="vtlxc", memory_bytes=64 * MiB)
        self.workdir = workdir or tempfile.mkdtemp(prefix="vtlxc-target-")
        if workdir is None:  # ours: removed with the target (the rootfs template lives here)
            weakref.finalize(self, shutil.rmtree, self.workdir, True)
        self._template: Path | None = None
        self._rootfs: dict[str, Path] = {}
        self._bases: set[Path] = {Path(self.workdir) / "rootfs"}

    def _rootfs_template(self) -> Path:
        if self._template is None:
            self._template = build_busybox_rootfs(Path(self.workdir) / "template")
        return self._template

    def rootfs_base(self, conn: Connection) -> Path:
        """Where this target's root file systems go on ``conn``: ``<rootfs_dir>/<tag>`` when the URI names a
        ``rootfs_dir``, else ``<lxcpath>/<tag>-rootfs`` (``tag`` being the name of the target's directory)."""
        uri = conn.parsed_uri
        tag = Path(self.workdir).name
        given = uri.param("rootfs_dir")
        if given is not None:
            return Path(given) / tag
        lxcpath = uri.param("path")
        if lxcpath is None:
            import lxc  # type: ignore[import-untyped]

            lxcpath = str(lxc.default_config_path)
        return Path(lxcpath) / f"{tag}-rootfs"

    def rootfs_for(self, name: str, base: Path | None = None) -> str:
        """The copy of the busybox root file system for domain ``name`` (made in ``base``, by default the
        target's directory, the first time)."""
        dest = self._rootfs.get(name)
        if dest is None:
            dest = (base or Path(self.workdir) / "rootfs") / name
            self._rootfs[name] = dest
            self._bases.add(dest.parent)
        if not dest.exists():
            shutil.copytree(self._rootfs_template(), dest, symlinks=True)
        return str(dest)

    @staticmethod
    def extra(rootfs: str) -> dict[str, Any]:
        """The ``extra["lxc"]`` of a busybox container on ``rootfs``."""
        return {
            "lxc": {
                "rootfs": rootfs,
                "init": ["/sbin/init"],
                "config": {
                    "lxc.signal.halt": "SIGUSR1",
                    "lxc.signal.reboot": "SIGTERM",
                },
            }
        }

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """64 MiB, one CPU, no disks and no network: a busybox init container on its own rootfs copy."""
        return DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            os_type="exe",
            extra=self.extra(self.rootfs_for(name, self.rootfs_base(conn))),
        )

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """As the default, and a running one is returned once busybox init has run its sysinit line."""
        dom = super().make_domain(conn, running=running)
        if running:
            ready = Path(self.rootfs_for(dom.name)) / "run" / "virtabs-ready"
            deadline = time.monotonic() + self.job_timeout
            while not ready.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"busybox init of {dom.name!r} did not come up in {self.job_timeout}s")
                time.sleep(0.02)
        return dom

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """How many times the container's busybox init has booted (read from its rootfs, not through the driver)."""
        boots = self._rootfs.get(dom.name, Path(self.workdir) / "rootfs" / dom.name) / "var" / "log" / "virtabs-boots"
        try:
            return len(boots.read_text().splitlines())
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        """Remove the target's directory (the template) and its root file systems."""
        for base in self._bases:
            shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def cleanup(self, conn: Connection) -> None:
        """Remove the run's domains, then its root file systems."""
        super().cleanup(conn)
        for base in self._bases:
            shutil.rmtree(base, ignore_errors=True)
        self._rootfs.clear()

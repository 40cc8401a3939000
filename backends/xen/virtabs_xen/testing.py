"""The contract target of the Xen driver: real PV guests (a Linux kernel + a busybox initramfs) on the Xen host.

Published through the entry-point group ``virtabs.testing.targets`` (name ``xen``); the kit builds it
with :meth:`XenTarget.from_uri`. What it needs on the Xen host, all of which ``tests/xenlab/xenlab.sh``
puts in its dom0:

* a PV guest kernel and initramfs (``$VIRTABS_XEN_GUEST_KERNEL``, ``$VIRTABS_XEN_GUEST_RAMDISK``;
  default ``/root/guest/vmlinuz`` and ``/root/guest/initrd.gz``) whose init prints
  ``xenlab-guest: up`` on ``hvc0`` once booted, then ``xenlab-guest: tick N`` every second (its run clock,
  which :meth:`XenTarget.run_clock` reads), and has ``/sbin/poweroff`` (the kernel runs it on
  ``xl shutdown``), and ``xen-blkfront`` for disk hot-plug;
* ``xenconsoled`` logging guest consoles to ``/var/log/xen/console/guest-NAME.log`` (``--log=guest``),
  which :meth:`XenTarget.boot_id` counts boots from, each line stamped with the dom0's time
  (``--timestamp=guest``), which :meth:`XenTarget.run_clock` compares with xenstore's ``/vm/UUID/start_time``;
  ``bash`` (its ``printf`` builtin formats that time);
* QEMU's Xen device model in the dom0 (Debian: ``qemu-system-xen``): the target's disks use the ``qdisk``
  back-end (``$VIRTABS_XEN_DISK_BACKEND``, default ``qdisk``; ``phy`` runs the dom0's block hotplug script);
* a writable directory for images and save files (``$VIRTABS_XEN_CONTRACT_DIR``, default
  ``/var/lib/virtabs-contract``).

Every domain's ``vda`` is one shared, read-only raw image (Xen lets read-only disks be shared), so
defining a hundred domains costs no image; images for hot-plug are sparse raw files made with
``truncate``. The target reaches the host through its own :class:`~virtabs.spi.CommandTransport`
built from the same URI, never through the driver under test.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import time
from typing import Any
from urllib.parse import quote

import virtabs
from virtabs import Connection, Domain, DomainSpec, parse_uri
from virtabs.spi import CommandTransport, DiskSpec, DomainRef
from virtabs.testing import DefaultTarget
from virtabs.testing.target import TargetUnavailable

__all__ = ["XenTarget"]

MiB = 1 << 20
BOOT_LINE = "xenlab-guest: up"
CLOCK_LINE = re.compile(
    r"\[([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})\] .*xenlab-guest: (?:up|tick ([0-9]+))"
)
"""A boot or run-clock line of the guest (``xenlab.sh``'s guest ``/etc/rc``) as xenconsoled logs it with
``--timestamp=guest``: ``[YYYY-MM-DD HH:MM:SS] `` (the dom0's local time) before each line."""
# One round trip, in bash for its printf builtin (each extra process costs about 0.35 s in the nested dom0):
# the second the domain's current instance was made (xenstore's /vm/UUID/start_time, written by libxl when it
# builds the domain, so by `xl create` and by `xl restore` alike), in xenconsoled's timestamp format and
# zone, then the last boot or tick line of the guest's console log. Nothing when the domain is not running.
_CLOCK_SINCE_START = (
    's=$(xenstore-read "/vm/$1/start_time" 2>/dev/null) || exit 0; '
    'printf "%(%Y-%m-%d %H:%M:%S)T\\n" "${s%.*}"; '
    'grep -a -E -- "xenlab-guest: (up|tick [0-9]+)" "$2" | tail -n 1'
)
_IMAGE_BYTES = 64 * MiB
_MAKE_IMAGE = 'mkdir -p -- "$(dirname -- "$1")" && truncate -s "$2" -- "$1"'


class XenTarget(DefaultTarget):
    """Disposable PV domains on a Xen host, and images, save files and boot counts there."""

    job_timeout = 300.0
    listing_domains = 20
    """Defines cost an ssh round trip each on the nested lab: the kit's N+1 listing test uses 20, not 100."""
    shutdown_timeout = 300.0
    boot_timeout = 300.0

    def __init__(self, uri: str, *, directory: str | None = None) -> None:
        super().__init__(prefix="vtxen", memory_bytes=96 * MiB)
        self.kernel = os.environ.get("VIRTABS_XEN_GUEST_KERNEL", "/root/guest/vmlinuz")
        self.ramdisk = os.environ.get("VIRTABS_XEN_GUEST_RAMDISK", "/root/guest/initrd.gz")
        base = directory or os.environ.get("VIRTABS_XEN_CONTRACT_DIR", "/var/lib/virtabs-contract")
        self.host_dir = posixpath.join(base, self.prefix)
        self._transport = CommandTransport(parse_uri(uri), default_timeout=self.job_timeout)
        self._shared: str | None = None
        self._uri = uri
        self._peers: list[Connection] = []
        self.console_dir = "/var/log/xen/console"
        """Where xenconsoled logs each guest's console on the Xen host (``guest-NAME.log``)."""

    @classmethod
    def from_uri(cls, uri: str) -> XenTarget:
        """The kit's constructor: a target on the Xen host the URI names."""
        return cls(uri)

    def close(self) -> None:
        """Close the migration peers, remove this target's directory on the Xen host, stop the ssh connection."""
        for peer in self._peers:
            with contextlib.suppress(Exception):
                peer.close()
        with contextlib.suppress(Exception):
            self._transport.run(["rm", "-rf", "--", self.host_dir])
        self._transport.close()

    def migration_peer(self, conn: Connection) -> Connection:
        """A second connection to the same dom0 with a definitions directory of its own (``dir=``, under this
        target's directory): the one destination ``xl migrate`` is driven to (``_migration``)."""
        directory = posixpath.join(self.host_dir, self.new_name("peer"))
        uri = parse_uri(self._uri)
        params = "&".join(f"{k}={quote(v, safe='/')}" for k, v in {**uri.params, "dir": directory}.items())
        peer = virtabs.open(self._uri.split("?", 1)[0] + "?" + params)
        self._peers.append(peer)
        return peer

    # --- on the Xen host ------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True) -> str:
        """Run a command on the Xen host (the target's own door, not the driver's)."""
        return self._transport.run(list(argv), check=check).out

    def _shared_image(self) -> str:
        if self._shared is None:
            path = posixpath.join(self.host_dir, "shared-vda.img")
            self.run(
                "sh", "-c", 'mkdir -p -- "$(dirname "$1")" && truncate -s "$2" -- "$1"', "sh", path, str(_IMAGE_BYTES)
            )
            self._shared = path
        return self._shared

    def scratch_path(self, conn: Connection, name: str) -> str:
        """A new path in the target's directory on the Xen host."""
        return posixpath.join(self.host_dir, self.new_name(name))

    def save_path(self, conn: Connection, name: str) -> str:
        """A new save-file path on the Xen host (``xl save`` writes there)."""
        return posixpath.join(self.host_dir, self.new_name(name) + ".save")

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """A sparse raw image on the Xen host (the target makes raw images only)."""
        if format != "raw" or backing is not None:
            raise TargetUnavailable(f"the Xen target makes raw images without backing files, not {format!r}")
        self._make_image(path)

    def _make_image(self, path: str) -> None:
        self.run("sh", "-c", _MAKE_IMAGE, "sh", path, str(_IMAGE_BYTES))

    def create_block_device(self, conn: Connection, name: str) -> str:
        """Not provided: the Xen driver has no block copy."""
        raise TargetUnavailable("the Xen target provides no block devices (xl has no block copy)")

    # --- domains ----------------------------------------------------------------------------

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """A PV guest: 96 MiB, one vCPU (up to two), ``vda`` the shared read-only image, no NIC."""
        xen: dict[str, Any] = {
            "type": "pv",
            "kernel": self.kernel,
            "ramdisk": self.ramdisk,
            "cmdline": "console=hvc0 quiet",
            "maxvcpus": 2,
            # QEMU in the dom0 serves the disks: no block hotplug script, which timed out on the loaded
            # nested lab in xl create and in xl's re-creation of a rebooted domain (README: reboot)
            "disk_backend": os.environ.get("VIRTABS_XEN_DISK_BACKEND", "qdisk"),
        }
        return DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            os_type="xen",
            disks=(DiskSpec("vda", self._shared_image(), format="raw", readonly=True),),
            extra={"xen": xen},
        )

    def make_domain(self, conn: Connection, *, running: bool) -> Domain:
        """Define a domain; when ``running``, start it and wait until its guest has booted."""
        dom = super().make_domain(conn, running=running)
        if running:
            self.wait_booted(conn, dom.name, 1)
        return dom

    def make_chain_domain(self, conn: Connection) -> Domain:
        """Not provided: the Xen driver has no block jobs."""
        raise TargetUnavailable("the Xen target builds no backing chains (xl has no block jobs)")

    def boots(self, name: str) -> int:
        """How many times the guest printed its boot line on its console (xenconsoled's log)."""
        log = posixpath.join(self.console_dir, f"guest-{name}.log")
        out = self._transport.run(["grep", "-a", "-c", "-F", "--", BOOT_LINE, log], check=False).out.strip()
        return int(out) if out.isdigit() else 0

    def wait_booted(self, conn: Connection, name: str, count: int) -> None:
        """Wait until the guest's console shows ``count`` boots (``boot_timeout`` seconds at most)."""
        end = time.monotonic() + self.boot_timeout
        while self.boots(name) < count:
            if time.monotonic() > end:
                raise TargetUnavailable(f"guest {name!r} did not print {BOOT_LINE!r} within {self.boot_timeout:g} s")
            time.sleep(1.0)

    def run_clock(self, conn: Connection, dom: Domain | DomainRef) -> float | None:
        """The guest's last ``tick N`` on its console in the domain's current instance; None when the domain
        does not run or its current instance has printed no tick yet.

        xenconsoled appends every instance of a guest to one ``guest-NAME.log``, so right after a start the log's
        last tick is still the previous run's: only lines stamped after the second the current instance was
        made count (see :func:`clock_since_start`). ``xl restore`` makes a new instance too, whose guest goes on
        counting from where it was saved; a fresh boot counts from 1 again.
        """
        log = posixpath.join(self.console_dir, f"guest-{dom.name}.log")
        out = self._transport.run(["bash", "-c", _CLOCK_SINCE_START, "bash", dom.uuid, log], check=False).out
        started, _, last_line = out.partition("\n")
        return clock_since_start(started.strip(), last_line.strip()) if started.strip() else None

    def boot_id(self, conn: Connection, dom: Domain | DomainRef) -> object:
        """The number of boots seen on the guest's console: it grows with every boot, a reboot included."""
        return self.boots(dom.name)


def clock_since_start(started: str, last_line: str) -> float | None:
    """The run clock in ``last_line``, the last boot or tick line of a console log xenconsoled stamps
    (``--timestamp=guest``), if it is a tick stamped after ``started``, the second the domain's current instance
    was made (``YYYY-MM-DD HH:MM:SS`` in the same zone); else None.

    A line stamped in that very second may still be the previous instance's, so it does not count: the next tick
    will. Raises :class:`TargetUnavailable` for a clock line without a stamp (xenconsoled started without
    ``--timestamp=guest``), on which no run can be told from another.
    """
    if not last_line:
        return None
    found = CLOCK_LINE.search(last_line)
    if found is None:
        raise TargetUnavailable(
            f"the guest's console log has no timestamps ({last_line!r}): start xenconsoled with --timestamp=guest"
        )
    stamp, tick = found.groups()
    return float(tick) if tick is not None and stamp > started else None

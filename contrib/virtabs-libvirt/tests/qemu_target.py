"""A ContractTarget for ``libvirt+qemu:///system``: tiny diskful KVM domains on real qcow2 chains."""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Sequence
from typing import Any

from virtabs import Connection, DiskSpec, Domain, DomainSpec, StoragePool
from virtabs.testing import DefaultTarget

MiB = 1 << 20
RTC_BASE = 946684800
"""2000-01-01T00:00:00Z: where the contract domains' RTC starts (``<clock offset='absolute'>``)."""
RTC_TIME = json.dumps({"execute": "qom-get", "arguments": {"path": "/machine", "property": "rtc-time"}})


class QemuTarget(DefaultTarget):
    """Images are real files in ``directory`` made with qemu-img; domains boot nothing (no OS needed).

    The run clock without a guest OS: each domain's RTC starts at 2000-01-01 and follows the VM's own clock
    (``<timer name='rtc' track='guest'/>``: QEMU's ``-rtc clock=vm``), which stands still while the VM is
    stopped and is saved and restored with it; :meth:`run_clock` reads it through QMP (``rtc-time``)."""

    job_timeout = 120.0
    shutdown_timeout = 10.0

    def __init__(self, directory: str, libvirt_uri: str, pool: str | None = None, devices: Sequence[str] = ()) -> None:
        """``devices``: block devices the connection's URI names (``block_device=``), handed out in turn by
        :meth:`create_block_device` (the bridge refuses any other device outside a storage pool)."""
        super().__init__(prefix="vtl", image_dir=directory, pool=pool)
        self._devices = list(devices)
        self.directory = directory
        self.libvirt_uri = libvirt_uri
        self._libvirt: Any = None
        self._loops: list[str] = []
        os.chmod(directory, 0o755)

    def close(self) -> None:
        """Close the target's own libvirt connection (used only to refresh the pool)."""
        if self._libvirt is not None:
            self._libvirt.close()
            self._libvirt = None

    def _img(self, path: str, format: str, size: int = 64 * MiB, backing: str | None = None) -> None:
        cmd = ["qemu-img", "create", "-q", "-f", format]
        if backing is not None:
            cmd += ["-b", backing, "-F", "qcow2"]
        subprocess.run([*cmd, path, str(size)], check=True)

    def _fill(self, path: str, offset_mib: int, length_mib: int, pattern: int) -> None:
        cmd = f"write -P {pattern:#x} {offset_mib}M {length_mib}M"
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", cmd, path], check=True, capture_output=True)

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """A 64 MiB q35 KVM domain whose vda is a fresh 64 MiB qcow2."""
        path = os.path.join(self.directory, f"{name}.qcow2")
        self._img(path, "qcow2")
        extra = {
            "libvirt": {
                "machine": "q35",
                "devices": ["<video><model type='none'/></video>", "<memballoon model='none'/>"],
                "clock": f"<clock offset='absolute' start='{RTC_BASE}'><timer name='rtc' track='guest'/></clock>",
            }
        }
        return DomainSpec(
            name=name, memory_bytes=64 * MiB, vcpus=1, disks=(DiskSpec("vda", path, format="qcow2"),), extra=extra
        )

    def make_chain_domain(self, conn: Connection) -> Domain:
        """base <- snap1 <- snap2, each layer with 16 MiB of its own data, under a running domain."""
        base, snap1, snap2 = (
            os.path.join(self.directory, self.new_name(n)) for n in ("base.qcow2", "snap1.qcow2", "snap2.qcow2")
        )
        self._img(base, "qcow2")
        self._fill(base, 0, 16, 0xAA)
        self._img(snap1, "qcow2", backing=base)
        self._fill(snap1, 16, 16, 0xBB)
        self._img(snap2, "qcow2", backing=snap1)
        self._fill(snap2, 32, 16, 0xCC)
        spec = self.domain_spec(conn, self.new_name("chain"))
        spec = DomainSpec(
            name=spec.name,
            memory_bytes=spec.memory_bytes,
            vcpus=1,
            disks=(DiskSpec("vda", snap2, format="qcow2"),),
            extra=spec.extra,
        )
        dom = conn.define_domain(spec)
        dom.start()
        return dom

    def scratch_path(self, conn: Connection, name: str) -> str:
        """A new file name in the image directory (which is also the dir pool ``pool``)."""
        return os.path.join(self.directory, self.new_name(name))

    def _pool(self, conn: Connection) -> StoragePool | None:
        """The pool, refreshed first: qemu-img creates images behind libvirt's back."""
        pool = super()._pool(conn)
        if pool is not None:
            import libvirt

            with contextlib.suppress(libvirt.libvirtError):
                self._lv().storagePoolLookupByName(pool.name).refresh(0)
        return pool

    def _digest(self, source: str) -> str:
        """sha256 of ``source`` (a path or a qemu ``json:`` image spec) converted to raw by qemu-img.

        The image may be open in a running QEMU (the kit reads while a copy mirrors): see :func:`_file`.
        """
        self._flush_running_domains()
        out = os.path.join(self.directory, self.new_name("digest.raw"))
        try:
            done = subprocess.run(["qemu-img", "convert", "-O", "raw", source, out], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"qemu-img convert of {source} failed: {done.stderr.strip()}")
            digest = hashlib.sha256()
            with open(out, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            return digest.hexdigest()
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out)

    def _lv(self) -> Any:
        import libvirt

        if self._libvirt is None:
            self._libvirt = libvirt.open(self.libvirt_uri)
        return self._libvirt

    def run_clock(self, conn: Connection, dom: Domain) -> float | None:
        """Seconds the domain has run since it started: its RTC (see the class) less 2000-01-01, read with
        ``qom-get /machine rtc-time`` through libvirt's QEMU monitor passthrough; None while it is not running."""
        import libvirt
        import libvirt_qemu

        try:
            d = self._lv().lookupByUUIDString(dom.uuid)
            if not d.isActive():
                return None
            reply = json.loads(libvirt_qemu.qemuMonitorCommand(d, RTC_TIME, 0))
        except libvirt.libvirtError:
            return None
        tm = reply["return"]
        fields = ("tm_year", "tm_mon", "tm_mday", "tm_hour", "tm_min", "tm_sec")
        year, month, day, hour, minute, second = (int(tm[f]) for f in fields)
        return float(calendar.timegm((year + 1900, month + 1, day, hour, minute, second)) - RTC_BASE)

    def _flush_running_domains(self) -> None:
        """Pause and resume this run's running domains: QEMU keeps qcow2 metadata in a cache, and only a
        stop (vm_stop -> bdrv_flush_all) writes it out, so an image it has open reads consistently after."""
        for d in self._lv().listAllDomains(0):
            if d.name().startswith(self.prefix) and d.info()[0] == 1:  # VIR_DOMAIN_RUNNING
                d.suspend()
                d.resume()

    @staticmethod
    def _format(path: str) -> str:
        info = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True, capture_output=True)
        return str(json.loads(info.stdout)["format"])

    def image_digest(self, conn: Connection, path: str) -> str | None:
        """What the guest sees in the image at ``path``: its whole backing chain, read by qemu-img."""
        if not os.path.exists(path):
            return None
        spec = {"driver": self._format(path), "read-only": True, "file": _file(path)}
        return self._digest(f"json:{json.dumps(spec)}")

    def layer_digest(self, conn: Connection, path: str) -> str | None:
        """The data stored in that one file: the image opened without its backing file."""
        if not os.path.exists(path):
            return None
        fmt = self._format(path)
        spec: dict[str, Any] = {"driver": fmt, "read-only": True, "file": _file(path)}
        if fmt == "qcow2":
            spec["backing"] = None
        return self._digest(f"json:{json.dumps(spec)}")

    def create_image(self, conn: Connection, path: str, *, format: str, backing: str | None) -> None:
        """qemu-img create (64 MiB)."""
        self._img(path, format, backing=backing)

    def create_block_device(self, conn: Connection, name: str) -> str:
        """The next of the URI's ``block_device`` loop devices; without one, a loop device over a 64 MiB raw file
        (detached again in cleanup), which the bridge refuses unless it is a volume of a pool of block devices."""
        if self._devices:
            return self._devices.pop(0)
        backing = os.path.join(self.directory, self.new_name(name) + ".loop")
        self._img(backing, "raw")
        dev = subprocess.run(["losetup", "-f", "--show", backing], check=True, capture_output=True, text=True)
        path = dev.stdout.strip()
        self._loops.append(path)
        return path

    def save_path(self, conn: Connection, name: str) -> str:
        """A file in the image directory (libvirtd writes it as root)."""
        return os.path.join(self.directory, self.new_name(name) + ".save")

    def cleanup(self, conn: Connection) -> None:
        """Remove the domains (DefaultTarget's sweep), then the image files of this run."""
        super().cleanup(conn)
        for dev in self._loops:
            subprocess.run(["losetup", "-d", dev], check=False)
        self._loops.clear()
        for entry in os.listdir(self.directory):
            if entry.startswith(self.prefix):
                path = os.path.join(self.directory, entry)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)


def _file(path: str) -> dict[str, str]:
    """qemu's protocol node for ``path`` (a block device or a regular file)."""
    driver = "host_device" if stat.S_ISBLK(os.stat(path).st_mode) else "file"
    # A running QEMU holds the image, a mirror target even against consistent reads: no locks at all.
    return {"driver": driver, "filename": path, "read-only": True, "locking": "off"}

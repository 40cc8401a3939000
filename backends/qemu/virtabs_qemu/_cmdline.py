"""DomainSpec -> QEMU command line.

The generated command line is deterministic (golden-file tested):

* ``-machine q35``, ``-accel kvm`` (``tcg`` when /dev/kvm cannot be opened read-write or is a KVM that
  cannot run a stock guest, such as ``kvm_pvm``),
  ``-nodefaults -no-user-config -display none``, always started with ``-S`` (the
  driver sends ``cont`` unless the domain was started paused);
* every disk is a ``file`` node plus a format node with an **explicit** driver
  (``-blockdev`` JSON; QEMU never probes the top image; the layers below come
  from the image header, whose backing formats are checked before start);
* every PCI device sits on its own ``pcie-root-port`` and four spare ports
  (``hp0``..``hp3``) take hot-plugged disks;
* NICs: ``user``/``default`` -> ``-netdev user``; ``tap:NAME`` -> ``-netdev tap``;
  ``bridge:NAME`` -> ``-netdev bridge``.

Driver-specific settings come from ``spec.extra["qemu"]``: ``machine``, ``cpu``,
``kernel``, ``initrd``, ``append``, ``args`` (a list appended verbatim).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from typing import Any

from virtabs.spi import DiskSpec, DomainSpec, InvalidArgumentError, NicSpec, quote

__all__ = [
    "HOTPLUG_PORTS",
    "LEASE_SOCKETS",
    "blockdev_nodes",
    "build_argv",
    "KvmUnusableWarning",
    "default_accel",
    "kvm_unusable_reason",
    "device_for_disk",
    "file_node_name",
    "fmt_node_name",
    "lease_lock",
    "lease_socket",
    "mac_for",
]

HOTPLUG_PORTS = ("hp0", "hp1", "hp2", "hp3")
"""Spare pcie-root-ports for hot-plugged disks."""

LEASE_SOCKETS = 3
"""Extra QMP monitors of every domain, leased one per virtabs process to follow QEMU's events (``_live``)."""

SUN_PATH_MAX = 108
"""A unix socket path must be shorter than this (``sun_path``, with its terminating NUL)."""

MiB = 1024 * 1024

_NIC_MODELS = {"virtio": "virtio-net-pci", "e1000": "e1000", "e1000e": "e1000e", "rtl8139": "rtl8139"}


class KvmUnusableWarning(RuntimeWarning):
    """/dev/kvm opens but is a KVM that stock guests do not run under: the driver uses TCG instead."""


SYS_MODULE = "/sys/module"
"""Where the kernel lists its loaded modules (a parameter of :func:`kvm_unusable_reason` for tests)."""

UNUSABLE_KVM_MODULES: Mapping[str, str] = {
    "kvm_pvm": (
        "a paravirtual nested KVM (PVM) that runs only PVM-enabled guest kernels: a stock kernel spins in its "
        "decompressor with no console output"
    ),
}
"""Kernel modules whose /dev/kvm cannot boot a stock guest, with why."""


def kvm_unusable_reason(sys_module: str = SYS_MODULE) -> str | None:
    """Why /dev/kvm cannot run a stock guest on this host (a module of :data:`UNUSABLE_KVM_MODULES` is
    loaded), or None."""
    for module, why in UNUSABLE_KVM_MODULES.items():
        if os.path.isdir(os.path.join(sys_module, module)):
            return f"/dev/kvm is provided by {module} ({os.path.join(sys_module, module)}), {why}"
    return None


def default_accel(sys_module: str = SYS_MODULE, kvm_device: str = "/dev/kvm") -> tuple[str, str | None]:
    """The accelerator when the URI names none, and why it is not KVM (None when it is, or when there is
    simply no usable /dev/kvm): ``kvm`` when /dev/kvm opens read-write and is not a KVM that cannot run a
    stock guest (:func:`kvm_unusable_reason`), else ``tcg``."""
    try:
        fd = os.open(kvm_device, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return "tcg", None
    os.close(fd)
    reason = kvm_unusable_reason(sys_module)
    if reason is not None:
        return "tcg", reason
    return "kvm", None


def file_node_name(target: str) -> str:
    """Node name of the protocol (file) node of disk ``target``."""
    return f"file-{target}"


def fmt_node_name(target: str) -> str:
    """Node name of the format node of disk ``target``."""
    return f"fmt-{target}"


def lease_socket(qmp_socket: str, index: int) -> str:
    """The path of lease monitor ``index``, next to the main QMP socket (private like it).

    ``<dir>/qmp.sock`` -> ``<dir>/lease-<index>.sock``; the short fallback ``<dir>/<name>.sock``
    (a directory shared by the domains of a root) -> ``<dir>/<name>.lease-<index>.sock``.
    """
    directory, base = os.path.split(qmp_socket)
    stem = base[: -len(".sock")] if base.endswith(".sock") else base
    leaf = f"lease-{index}.sock" if stem == "qmp" else f"{stem}.lease-{index}.sock"
    return os.path.join(directory, leaf)


def lease_lock(lease: str) -> str:
    """The lock file whose flock leases the monitor at ``lease``."""
    return (lease[: -len(".sock")] if lease.endswith(".sock") else lease) + ".lock"


def mac_for(uuid: str, index: int) -> str:
    """A stable locally administered MAC derived from the domain UUID."""
    hexd = uuid.replace("-", "")
    return f"52:54:00:{hexd[0:2]}:{hexd[2:4]}:{(int(hexd[4:6], 16) + index) % 256:02x}"


def _json(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _opt_escape(value: str) -> str:
    """Escape a value for QEMU's key=value option syntax (commas are doubled)."""
    return value.replace(",", ",,")


def blockdev_nodes(disk: DiskSpec, file_node: str | None = None, fmt_node: str | None = None) -> list[dict[str, Any]]:
    """The two ``blockdev-add`` objects of a disk: protocol node, then format node (explicit driver)."""
    fnode = file_node or file_node_name(disk.target)
    dnode = fmt_node or fmt_node_name(disk.target)
    path = os.path.abspath(disk.path)
    protocol = "host_device" if path.startswith("/dev/") else "file"
    file_obj: dict[str, Any] = {"driver": protocol, "filename": path, "node-name": fnode}
    fmt_obj: dict[str, Any] = {"driver": disk.format, "file": fnode, "node-name": dnode}
    if disk.readonly:
        file_obj["read-only"] = True
        fmt_obj["read-only"] = True
    return [file_obj, fmt_obj]


def device_for_disk(
    disk: DiskSpec, port: str | None, bootindex: int | None = None, node: str | None = None
) -> dict[str, Any]:
    """The ``-device``/``device_add`` object of a disk."""
    drive = node or fmt_node_name(disk.target)
    dev: dict[str, Any]
    if disk.bus == "virtio":
        dev = {"driver": "virtio-blk-pci", "id": disk.target, "drive": drive}
        if port:
            dev["bus"] = port
    elif disk.bus == "scsi":
        dev = {"driver": "scsi-cd" if disk.readonly else "scsi-hd", "id": disk.target, "drive": drive, "bus": "scsi0.0"}
    elif disk.bus in ("sata", "ide"):
        index = ord(disk.target[-1]) - ord("a")
        if index >= 6:
            raise InvalidArgumentError(f"disk {quote(disk.target)}: sata targets go from sda to sdf")
        dev = {"driver": "ide-cd" if disk.readonly else "ide-hd", "id": disk.target, "drive": drive}
        dev["bus"] = f"ide.{index}"
    else:
        raise InvalidArgumentError(
            f"disk {quote(disk.target)}: bus {quote(disk.bus)} is not supported by the qemu driver"
        )
    if bootindex is not None:
        dev["bootindex"] = bootindex
    return dev


def _netdev(nic: NicSpec, netid: str) -> str:
    net = nic.network
    if net in ("user", "default"):
        return f"user,id={netid}"
    kind, _, name = net.partition(":")
    if kind == "tap" and name:
        return f"tap,id={netid},ifname={_opt_escape(name)},script=no,downscript=no"
    if kind == "bridge" and name:
        return f"bridge,id={netid},br={_opt_escape(name)}"
    raise InvalidArgumentError(
        f"network {quote(net)} is not supported by the qemu driver (use 'user', 'default', 'tap:IFNAME' or 'bridge:BRIDGE')"
    )


def build_argv(
    spec: DomainSpec,
    *,
    uuid: str,
    emulator: str,
    accel: str,
    qmp_socket: str,
    pidfile: str,
    console_log: str | None = None,
    incoming: str | None = None,
    loadvm: str | None = None,
    leases: int = LEASE_SOCKETS,
) -> list[str]:
    """The full argv that starts ``spec`` as a daemonized, paused (``-S``) QEMU with a QMP socket
    plus ``leases`` lease monitors (:func:`lease_socket`)."""
    extra: Mapping[str, Any] = spec.extra.get("qemu", {}) if isinstance(spec.extra.get("qemu"), Mapping) else {}
    memory_mib = (spec.memory_bytes + MiB - 1) // MiB
    argv = [
        emulator,
        "-name",
        f"guest={_opt_escape(spec.name)},debug-threads=on",
        "-uuid",
        uuid,
        "-machine",
        str(extra.get("machine", "q35")),
        "-accel",
        accel,
    ]
    if extra.get("cpu"):
        argv += ["-cpu", str(extra["cpu"])]
    argv += [
        "-m",
        f"size={memory_mib}M",
        "-smp",
        str(spec.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-S",
        "-qmp",
        f"unix:{_opt_escape(qmp_socket)},server=on,wait=off",
    ]
    for index in range(leases):
        lease = lease_socket(qmp_socket, index)
        if len(os.fsencode(lease)) >= SUN_PATH_MAX:  # QEMU could not bind it: this domain has no leases
            break
        argv += ["-qmp", f"unix:{_opt_escape(lease)},server=on,wait=off"]
    argv += [
        "-pidfile",
        pidfile,
        "-daemonize",
    ]
    if console_log:
        argv += ["-chardev", f"file,id=serial0,path={_opt_escape(console_log)}", "-serial", "chardev:serial0"]
    for key in ("kernel", "initrd", "append"):
        if extra.get(key):
            argv += [f"-{key}", str(extra[key])]
    pci_index = 1
    ports: list[str] = []

    def port(name: str) -> str:
        nonlocal pci_index
        argv.extend(["-device", _json({"driver": "pcie-root-port", "id": name, "bus": "pcie.0", "chassis": pci_index})])
        pci_index += 1
        ports.append(name)
        return name

    if any(d.bus == "scsi" for d in spec.disks):
        argv += ["-device", _json({"driver": "virtio-scsi-pci", "id": "scsi0", "bus": port("rp-scsi0")})]
    for i, disk in enumerate(spec.disks):
        for node in blockdev_nodes(disk):
            argv += ["-blockdev", _json(node)]
        bus_port = port(f"rp-{disk.target}") if disk.bus == "virtio" else None
        argv += ["-device", _json(device_for_disk(disk, bus_port, bootindex=i + 1))]
    for i, nic in enumerate(spec.nics):
        netid = f"net{i}"
        model = _NIC_MODELS.get(nic.model)
        if model is None:
            raise InvalidArgumentError(
                f"NIC model {quote(nic.model)} is not supported (known: {', '.join(_NIC_MODELS)})"
            )
        argv += ["-netdev", _netdev(nic, netid)]
        dev = {"driver": model, "id": f"{netid}dev", "netdev": netid, "mac": nic.mac or mac_for(uuid, i)}
        dev["bus"] = port(f"rp-{netid}")
        argv += ["-device", _json(dev)]
    for name in HOTPLUG_PORTS:
        port(name)
    if incoming:
        argv += ["-incoming", incoming]
    if loadvm:
        argv += ["-loadvm", loadvm]
    args = extra.get("args", [])
    if not isinstance(args, list | tuple):
        raise InvalidArgumentError(f"domain {quote(spec.name)}: extra.qemu.args must be a list of strings")
    argv += [str(a) for a in args]
    return argv


def incoming_from_file(path: str, offset: int) -> str:
    """The ``-incoming`` URI that streams a saved state from ``path`` starting at byte ``offset``."""
    return f"exec:tail -c +{offset + 1} {shlex.quote(path)}"


def outgoing_to_file(path: str) -> str:
    """The ``migrate`` URI that appends the migration stream to ``path``."""
    return f"exec:cat >> {shlex.quote(path)}"

"""``DomainSpec`` -> xl.cfg (xl.cfg(5)), and back from the header this module writes. Pure functions.

What a spec becomes::

    name, uuid            name = "...", uuid = "..."
    memory_bytes          memory = MiB (rounded up); maxmem = extra maxmem_mib, else memory
    vcpus                 vcpus = N; maxvcpus = extra maxvcpus, else N
    type                  extra "type" (pv | pvh | hvm), else os_type "xen" -> pv, "hvm" -> hvm
    kernel/ramdisk/cmdline extra "kernel", "ramdisk", "cmdline" (paths on the Xen host)
    disks                 disk = [ "format=raw, vdev=xvda, access=rw, target=/path" ]  (xl-disk-configuration(5))
    nics                  vif = [ "mac=..., bridge=..." ]  (xl-network-configuration(5))

Driver-specific settings live in ``spec.extra["xen"]``: ``type``, ``kernel``, ``ramdisk``, ``cmdline``,
``maxmem_mib``, ``maxvcpus``, ``on_poweroff``, ``on_reboot``, ``on_crash``, ``disk_backend``. Unknown keys
are an error.

``disk_backend`` (``phy`` or ``qdisk``; default: xl's own choice, ``phy`` for a raw file) is written as
``backendtype=`` on every disk of the domain. ``qdisk`` serves the disks from QEMU in the dom0
(``qemu-system-xen``) and runs no hotplug script; ``phy`` runs ``/etc/xen/scripts/block`` for each file-backed
disk (a loop device) whenever the domain is created, re-created by a reboot included, and libxl kills that
script after its hotplug timeout: on the loaded nested lab it timed out in ``xl create`` and in xl's restart
after ``xl reboot``, where ``qdisk`` passed (``backends/xen/README.md``).

Disk targets: Xen names virtual disks ``xvdX``, ``sdX`` or ``hdX``; the portable ``vdX`` (virtio) is
written as ``xvdX``, and the host reports it back under that name.

The first lines of every generated file carry the spec as JSON (``# virtabs-spec: {...}``), so
a domain that is defined but not running can be listed from its file alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from virtabs.spi import DiskSpec, DomainSpec, InvalidArgumentError, NicSpec, quote

from ._xl import XlParseError, vdev_number

__all__ = [
    "HEADER",
    "disk_backend",
    "disk_spec_string",
    "guest_type",
    "render_config",
    "spec_from_config",
    "vif_string",
    "xen_vdev",
]

HEADER = "# virtabs-spec: "
_MiB = 1 << 20
_TYPES = ("pv", "pvh", "hvm")
_ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset")
_EXTRA_KEYS = frozenset(
    {"type", "kernel", "ramdisk", "cmdline", "maxmem_mib", "maxvcpus", "on_poweroff", "on_reboot", "on_crash"}
    | {"disk_backend"}
)
_DISK_BACKENDS = ("phy", "qdisk")
_VD_RE = re.compile(r"^vd([a-z]+)$")
_MAC_PREFIX_OK = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# A vif is ``key=value`` pairs split at commas with no escaping (xl-network-configuration(5)): a comma in
# a value would add a key such as ``script=``, run as root in dom0 when the interface comes up. So every
# value written into a vif is a plain token.
_VIF_MODEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def _settings(spec: DomainSpec) -> dict[str, Any]:
    raw = spec.extra.get("xen", {})
    if not isinstance(raw, Mapping):
        raise InvalidArgumentError(f"domain {quote(spec.name)}: extra['xen'] must be a mapping")
    unknown = sorted(set(raw) - _EXTRA_KEYS)
    if unknown:
        raise InvalidArgumentError(
            f"domain {quote(spec.name)}: unknown xen setting(s) {', '.join(unknown)}"
            f" (known: {', '.join(sorted(_EXTRA_KEYS))})"
        )
    settings = dict(raw)
    for key in ("kernel", "ramdisk", "cmdline"):
        if key in settings and not isinstance(settings[key], str):
            raise InvalidArgumentError(f"domain {quote(spec.name)}: xen setting {quote(key)} must be a string")
    for key in ("maxmem_mib", "maxvcpus"):
        if key in settings and (
            not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] <= 0
        ):
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: xen setting {quote(key)} must be a positive integer"
            )
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        if key in settings and settings[key] not in _ACTIONS:
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: {key} must be one of {', '.join(_ACTIONS)}, got {quote(settings[key])}"
            )
    if "disk_backend" in settings and settings["disk_backend"] not in _DISK_BACKENDS:
        raise InvalidArgumentError(
            f"domain {quote(spec.name)}: disk_backend must be one of {', '.join(_DISK_BACKENDS)}, "
            f"got {quote(settings['disk_backend'])}"
        )
    return settings


def disk_backend(spec: DomainSpec) -> str | None:
    """The domain's ``extra["xen"]["disk_backend"]`` (``phy`` or ``qdisk``), or None for xl's default."""
    backend = _settings(spec).get("disk_backend")
    return str(backend) if backend is not None else None


def guest_type(spec: DomainSpec) -> str:
    """``pv``, ``pvh`` or ``hvm``: ``extra["xen"]["type"]``, else from ``os_type`` (``xen`` is PV)."""
    settings = _settings(spec)
    if "type" in settings:
        if settings["type"] not in _TYPES:
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: xen type must be one of pv, pvh, hvm, got {quote(settings['type'])}"
            )
        return str(settings["type"])
    if spec.os_type == "xen":
        return "pv"
    if spec.os_type == "hvm":
        return "hvm"
    raise InvalidArgumentError(
        f"domain {quote(spec.name)}: Xen cannot run os_type {quote(spec.os_type)} (use 'xen' or 'hvm')"
    )


def _quote(value: str, what: str) -> str:
    """A double-quoted xl.cfg string; the parser (libxlutil) undoes ``\\\\`` and ``\\"``."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidArgumentError(f"{what}: control characters are not allowed in an xl.cfg string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def xen_vdev(target: str) -> str:
    """The Xen name of a disk target: ``vdX`` -> ``xvdX``; ``xvdX``, ``sdX``, ``hdX`` unchanged."""
    match = _VD_RE.match(target)
    name = f"xvd{match.group(1)}" if match else target
    try:
        vdev_number(name)
    except XlParseError as exc:
        raise InvalidArgumentError(f"disk {quote(target)}: {exc}") from None
    return name


def disk_spec_string(disk: DiskSpec, backend: str | None = None) -> str:
    """One disk in xl-disk-configuration(5) syntax; ``target=`` comes last (the path may hold commas).

    ``backend`` (``phy`` or ``qdisk``, from :func:`disk_backend`) becomes ``backendtype=``; None leaves it to xl.
    """
    vdev = xen_vdev(disk.target)
    if disk.format not in ("raw", "qcow2", "vhd"):
        raise InvalidArgumentError(
            f"disk {quote(disk.target)}: Xen reads raw, qcow2 or vhd images, not {quote(disk.format)}"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in disk.path):
        raise InvalidArgumentError(f"disk {quote(disk.target)}: control characters in the path")
    if disk.path.endswith(","):
        # ``target=`` takes the rest of the string, but libxlutil's lexer strips one trailing comma from it
        # (libxlu_disk_l.l: STRIP(',')): such a path would name another file
        raise InvalidArgumentError(
            f"disk {quote(disk.target)}: Xen cannot read a path ending in ',' ({quote(disk.path)})"
        )
    access = "ro" if disk.readonly else "rw"
    if backend is not None and backend not in _DISK_BACKENDS:
        raise InvalidArgumentError(f"disk back-end must be one of {', '.join(_DISK_BACKENDS)}, got {quote(backend)}")
    backendtype = f"backendtype={backend}, " if backend is not None else ""
    return f"format={disk.format}, vdev={vdev}, access={access}, {backendtype}target={disk.path}"


def vif_string(nic: NicSpec) -> str:
    """One interface in xl-network-configuration(5) syntax. ``default`` is xl's default bridge."""
    parts = []
    if nic.mac:
        if not _MAC_PREFIX_OK.match(nic.mac):
            raise InvalidArgumentError(f"invalid MAC address {quote(nic.mac)}")
        parts.append(f"mac={nic.mac}")
    if nic.network not in ("default", ""):
        if not _BRIDGE_RE.match(nic.network):
            raise InvalidArgumentError(f"network {quote(nic.network)}: a Xen vif needs a bridge name (1-15 characters)")
        parts.append(f"bridge={nic.network}")
    if nic.model not in ("virtio", "xen", "netfront", ""):
        if not _VIF_MODEL_RE.match(nic.model):
            raise InvalidArgumentError(
                f"NIC model {quote(nic.model)}: a Xen vif model is one word of letters, digits, '_', '.' or '-'"
            )
        parts.append(f"model={nic.model}")
    return ", ".join(parts)


def render_config(spec: DomainSpec, uuid: str) -> str:
    """The xl.cfg text of ``spec`` with domain UUID ``uuid``."""
    settings = _settings(spec)
    gtype = guest_type(spec)
    memory = -(-spec.memory_bytes // _MiB)
    maxmem = settings.get("maxmem_mib", memory)
    if maxmem < memory:
        raise InvalidArgumentError(f"domain {quote(spec.name)}: maxmem_mib {maxmem} is below memory {memory} MiB")
    maxvcpus = settings.get("maxvcpus", spec.vcpus)
    if maxvcpus < spec.vcpus:
        raise InvalidArgumentError(f"domain {quote(spec.name)}: maxvcpus {maxvcpus} is below vcpus {spec.vcpus}")
    if gtype in ("pv", "pvh") and "kernel" not in settings:
        raise InvalidArgumentError(
            f"domain {quote(spec.name)}: a {gtype.upper()} guest needs extra['xen']['kernel'] (a path on the Xen host)"
        )
    header = json.dumps({**spec.to_dict(), "uuid": uuid}, sort_keys=True, separators=(",", ":"))
    lines = [
        "# xl.cfg written by virtabs-xen; edits are replaced on the next define",
        HEADER + header,
        f"name = {_quote(spec.name, 'name')}",
        f"uuid = {_quote(uuid, 'uuid')}",
        f"type = {_quote(gtype, 'type')}",
        f"memory = {memory}",
        f"maxmem = {maxmem}",
        f"vcpus = {spec.vcpus}",
        f"maxvcpus = {maxvcpus}",
    ]
    for key in ("kernel", "ramdisk", "cmdline"):
        if key in settings:
            lines.append(f"{key} = {_quote(settings[key], f'domain {quote(spec.name)}: {key}')}")
    backend = settings.get("disk_backend")
    disks = [_quote(disk_spec_string(d, backend), f"disk {quote(d.target)}") for d in spec.disks]
    vifs = [_quote(vif_string(n), "vif") for n in spec.nics]
    lines.append("disk = [ " + ", ".join(disks) + " ]" if disks else "disk = [ ]")
    lines.append("vif = [ " + ", ".join(vifs) + " ]" if vifs else "vif = [ ]")
    lines.append(f"on_poweroff = {_quote(settings.get('on_poweroff', 'destroy'), 'on_poweroff')}")
    lines.append(f"on_reboot = {_quote(settings.get('on_reboot', 'restart'), 'on_reboot')}")
    lines.append(f"on_crash = {_quote(settings.get('on_crash', 'destroy'), 'on_crash')}")
    return "\n".join(lines) + "\n"


def spec_from_config(text: str) -> tuple[DomainSpec, str] | None:
    """The spec and UUID recorded in a file :func:`render_config` wrote, or None for any other file."""
    for line in text.splitlines()[:5]:
        if line.startswith(HEADER):
            try:
                data = json.loads(line[len(HEADER) :])
                return DomainSpec.from_dict(data), str(data["uuid"])
            except (ValueError, KeyError, TypeError, InvalidArgumentError):
                return None
    return None

"""LXC configuration files: render one from a :class:`~virtabs.spi.DomainSpec`, and read one back.

Pure functions over text (tested with golden files in ``tests/golden/``). How a spec maps:

=====================  ==========================================================================
``DomainSpec``         LXC configuration
=====================  ==========================================================================
``name``               ``lxc.uts.name`` (the container's name is its directory in the lxcpath)
``os_type = "exe"``    a system or application container; ``extra["lxc"]["init"]`` (a command as a
                       list, default ``["/sbin/init"]``) becomes ``lxc.init.cmd``
``memory_bytes``       ``lxc.cgroup.memory.limit_in_bytes`` (cgroup v1) or ``lxc.cgroup2.memory.max``
``vcpus``              CPU bandwidth: ``lxc.cgroup.cpu.cfs_quota_us = vcpus * 100000`` with a
                       100 ms period (v1), or ``lxc.cgroup2.cpu.max = "<quota> 100000"`` (v2)
``nics``               none: ``lxc.net.0.type = empty``; each NIC: a ``veth`` on the bridge named by
                       ``network``, with ``hwaddr`` = ``mac`` when given
``disks``              refused: a container has a root file system (``extra["lxc"]["rootfs"]``), not
                       block disks
``extra["lxc"]``       ``rootfs`` (an existing directory, never deleted by virtabs) or ``template``
                       (+ ``template_args``); ``config``: more ``lxc.*`` keys (a value may be a list),
                       only those of :data:`PASSTHROUGH_KEYS` / :data:`PASSTHROUGH_PREFIXES`
=====================  ==========================================================================

Whoever may define a domain may write ``extra["lxc"]["config"]``, and liblxc runs as root: a key such as
``lxc.hook.pre-start`` runs a command on the host at start, ``lxc.mount.entry`` binds a host path into the
container, ``lxc.apparmor.profile = unconfined`` or ``lxc.cgroup2.devices.allow`` lifts what keeps the
container off the host. So the pass-through is an allow-list of keys whose effect stays inside the container,
checked once here (:func:`settings_from_extra`, before anything is written).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from virtabs.spi import quote

from ._networks import NicFacts

__all__ = [
    "CPU_PERIOD_US",
    "MANAGED_KEYS",
    "MANAGED_PREFIXES",
    "PASSTHROUGH_KEYS",
    "PASSTHROUGH_PREFIXES",
    "ContainerConfig",
    "LxcSettings",
    "init_command",
    "parse_config",
    "passthrough_refusal",
    "render_config",
    "settings_from_extra",
    "spec_values",
    "split_init_command",
]

CPU_PERIOD_US = 100_000
IFNAMSIZ = 16
"""Linux's interface name size, with its NUL: a bridge name has at most 15 bytes."""
DEFAULT_INIT = ("/sbin/init",)
#: Mounts every system container needs (liblxc's own templates set the same ones).
BASE_KEYS: tuple[tuple[str, str], ...] = (
    ("lxc.autodev", "1"),
    ("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed"),
)


#: The keys virtabs writes from the spec itself (never from ``extra["lxc"]["config"]``).
MANAGED_KEYS = frozenset(
    {
        "lxc.uts.name",
        "lxc.rootfs.path",
        "lxc.init.cmd",
        "lxc.autodev",
        "lxc.mount.auto",
        "lxc.cgroup.memory.limit_in_bytes",
        "lxc.cgroup2.memory.max",
        "lxc.cgroup.cpu.cfs_period_us",
        "lxc.cgroup.cpu.cfs_quota_us",
        "lxc.cgroup2.cpu.max",
    }
)
#: Key prefixes virtabs writes from the spec (the NICs).
MANAGED_PREFIXES = ("lxc.net.",)

#: The ``extra["lxc"]["config"]`` keys virtabs passes to liblxc: each acts inside the container only (the
#: signals that stop it, its init's environment, user, group and directory inside its root file system, its
#: consoles' count, autostart order, log level, no_new_privs, personality).
PASSTHROUGH_KEYS = frozenset(
    {
        "lxc.signal.halt",
        "lxc.signal.reboot",
        "lxc.signal.stop",
        "lxc.environment",
        "lxc.init.uid",
        "lxc.init.gid",
        "lxc.init.cwd",
        "lxc.tty.max",
        "lxc.pty.max",
        "lxc.start.auto",
        "lxc.start.delay",
        "lxc.start.order",
        "lxc.group",
        "lxc.log.level",
        "lxc.no_new_privs",
        "lxc.arch",
    }
)
#: Key prefixes passed through as well: resource limits of the container's own processes and cgroup
#: (never ``devices``, ``lxc.cgroup.dir`` and the like, which place it or open host devices).
PASSTHROUGH_PREFIXES = (
    "lxc.prlimit.",
    "lxc.cgroup.memory.",
    "lxc.cgroup.cpu.",
    "lxc.cgroup.cpuset.",
    "lxc.cgroup.pids.",
    "lxc.cgroup.blkio.",
    "lxc.cgroup.hugetlb.",
    "lxc.cgroup2.memory.",
    "lxc.cgroup2.cpu.",
    "lxc.cgroup2.cpuset.",
    "lxc.cgroup2.pids.",
    "lxc.cgroup2.io.",
    "lxc.cgroup2.hugetlb.",
)

# Why the best-known keys outside the list are refused (the error says it; any other key is refused too).
_HOST_REACH: tuple[tuple[str, str], ...] = (
    ("lxc.hook.", "runs a command on the host, as root"),
    ("lxc.include", "reads another configuration file of the host"),
    ("lxc.mount.", "mounts host paths or host file systems into the container"),
    ("lxc.rootfs.", "names the host path or mount of the root file system"),
    ("lxc.apparmor.", "changes the AppArmor confinement that keeps the container off the host"),
    ("lxc.selinux.", "changes the SELinux confinement that keeps the container off the host"),
    ("lxc.seccomp.", "changes the system-call filter (a host file or socket) that keeps the container off the host"),
    ("lxc.cap.", "changes the capabilities the container keeps"),
    ("lxc.cgroup.devices.", "opens host devices to the container"),
    ("lxc.cgroup2.devices.", "opens host devices to the container"),
    ("lxc.cgroup", "places the container in the host's cgroup tree"),
    ("lxc.namespace.", "shares or keeps host namespaces"),
    ("lxc.idmap", "maps host user ids into the container"),
    ("lxc.sysctl.", "writes kernel parameters, some of them the host's"),
    ("lxc.net.", "configures NICs (host interfaces, scripts run on the host): virtabs writes them from the spec"),
    ("lxc.console.", "writes a host file or uses a host terminal"),
    ("lxc.log.file", "writes a host file"),
    ("lxc.monitor.", "changes the host-side monitor process"),
    ("lxc.ephemeral", "removes the container and its root file system when it stops"),
)


def passthrough_refusal(key: str) -> str | None:
    """Why ``key`` may not come from ``extra["lxc"]["config"]``, or None when virtabs passes it through."""
    if key in MANAGED_KEYS:
        return "virtabs writes it from the spec"
    if key in PASSTHROUGH_KEYS or key.startswith(PASSTHROUGH_PREFIXES):
        return None
    for prefix, reason in _HOST_REACH:
        if key.startswith(prefix):
            return reason
    return "it is not one whose effect stays inside the container"


class ConfigError(ValueError):
    """A spec that cannot become an LXC configuration (the driver turns it into InvalidArgumentError)."""


# An LXC configuration is one ``key = value`` a line with no escaping: a newline (or a carriage return,
# which liblxc's line reader also ends a line at, or NUL, which ends its string) in a value would start a
# new key such as ``lxc.hook.pre-start``, run as root by ``start()``. The core refuses these in every spec
# field; the renderer refuses them again, so no value can change the file's structure.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f]")


# liblxc reads a line as ``key = value``: it trims blanks (space, tab) around the value, then strips one
# pair of matching outer quotes (' or "). A value those would change is written inside one more pair of
# double quotes, which is exactly what liblxc strips again: the value reaches liblxc whole.
_BLANKS = " \t"
_QUOTES = "'\""


def _needs_quotes(value: str) -> bool:
    return value != value.strip(_BLANKS) or (len(value) > 1 and value[0] in _QUOTES and value[-1] == value[0])


def _one_line(key: str, value: str) -> str:
    for what, text in (("key", key), ("value", value)):
        found = _LINE_BREAKING.search(text)
        if found:
            raise ConfigError(
                f"the {what} of {key[:80]!r} holds control character {found.group()!r}: an LXC configuration "
                "line cannot hold it"
            )
    return f'{key} = "{value}"' if _needs_quotes(value) else f"{key} = {value}"


def _value(text: str) -> str:
    """A value as liblxc reads it: blanks trimmed, then one pair of matching outer quotes removed."""
    text = text.strip(_BLANKS)
    if len(text) > 1 and text[0] in _QUOTES and text[-1] == text[0]:
        return text[1:-1]
    return text


def init_command(args: Sequence[str]) -> str:
    """The ``lxc.init.cmd`` value of ``args``.

    liblxc splits it at spaces, with no quoting at all (``split_init_cmd``: ``'a b'`` is the two arguments
    ``'a`` and ``b'``), so an argument that is empty or holds a space cannot be written and is refused.
    """
    for arg in args:
        if not arg or " " in arg:
            raise ConfigError(
                f"init argument {quote(arg)}: liblxc splits lxc.init.cmd at spaces with no quoting, so an "
                "argument cannot be empty or hold a space (wrap the command in a script inside the container)"
            )
    return " ".join(args)


def split_init_command(value: str) -> list[str]:
    """The arguments liblxc runs for an ``lxc.init.cmd`` value (split at spaces, empty parts skipped)."""
    return [part for part in value.split(" ") if part]


@dataclass(frozen=True)
class LxcSettings:
    """The ``extra["lxc"]`` part of a spec, checked."""

    rootfs: str | None = None
    template: str | None = None
    template_args: tuple[str, ...] = ()
    init: tuple[str, ...] = DEFAULT_INIT
    config: tuple[tuple[str, str], ...] = ()


def settings_from_extra(name: str, extra: Mapping[str, Any]) -> LxcSettings:
    """Check ``extra["lxc"]`` of domain ``name``; ConfigError names what is wrong."""
    raw = extra.get("lxc", {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"domain {quote(name)}: extra['lxc'] must be a mapping")
    known = {"rootfs", "template", "template_args", "init", "config"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"domain {quote(name)}: unknown extra['lxc'] key(s) {', '.join(unknown)} (known: {sorted(known)})"
        )
    rootfs, template = raw.get("rootfs"), raw.get("template")
    if (rootfs is None) == (template is None):
        raise ConfigError(
            f"domain {quote(name)}: give exactly one of extra['lxc']['rootfs'] (an existing root file system) "
            "or extra['lxc']['template'] (an LXC template such as 'busybox')"
        )
    if rootfs is not None and (not isinstance(rootfs, str) or not rootfs.startswith("/")):
        raise ConfigError(f"domain {quote(name)}: extra['lxc']['rootfs'] must be an absolute path, got {quote(rootfs)}")
    init = raw.get("init", DEFAULT_INIT)
    if isinstance(init, str):
        init = shlex.split(init)
    if not init or not all(isinstance(a, str) and a for a in init):
        raise ConfigError(f"domain {quote(name)}: extra['lxc']['init'] must be a non-empty command")
    args = raw.get("template_args", ())
    if isinstance(args, str) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"domain {quote(name)}: extra['lxc']['template_args'] must be a list of strings")
    if template is not None:
        _check_template(name, template, args)
    config = _config_items(name, raw.get("config", {}))
    return LxcSettings(rootfs=rootfs, template=template, template_args=tuple(args), init=tuple(init), config=config)


# liblxc runs a template as root with ``--path DIR --name NAME --rootfs DIR`` (and ``--mapped-uid/gid``) and
# then the caller's arguments; templates parse them with getopt, where the last one wins: ``--rootfs /`` would
# build the root file system over the host's (seen with the busybox template on a scratch directory).
_LIBLXC_TEMPLATE_OPTIONS = ("path", "name", "rootfs", "mapped-uid", "mapped-gid")
# -p PATH, -n NAME in liblxc's own templates (busybox, download, local ...); a cluster such as -hpDIR too
_LIBLXC_TEMPLATE_SHORT = "pn"
# The download template's switch that takes an image (whose ``config`` it copies into the container's) unsigned.
_UNVERIFIED_DOWNLOAD = ("no-validate",)


def _check_template(name: str, template: Any, args: Sequence[str]) -> None:
    if not isinstance(template, str) or not template or "/" in template:
        # liblxc runs a template given as a path as it is: a script of the caller's choice, as root
        raise ConfigError(
            f"domain {quote(name)}: extra['lxc']['template'] {quote(template)} must be the name of a template in "
            "LXC's template directory (liblxc runs a path as given, as root on the host)"
        )
    for arg in args:
        option = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        # getopt_long takes any unambiguous abbreviation (--root is --rootfs), and short options cluster (-pDIR)
        overrides = (option and any(o.startswith(option) for o in _LIBLXC_TEMPLATE_OPTIONS)) or (
            arg.startswith("-") and not arg.startswith("--") and any(c in _LIBLXC_TEMPLATE_SHORT for c in arg)
        )
        unverified = option and any(o.startswith(option) for o in _UNVERIFIED_DOWNLOAD)
        if overrides or unverified:
            why = (
                "it would override what liblxc tells the template (the container's directory, name and root file "
                "system), and the template runs as root on the host"
                if overrides
                else "it takes an image without checking its signature, and the image's configuration is copied "
                "into the container's"
            )
            raise ConfigError(f"domain {quote(name)}: template argument {quote(arg)} is refused: {why}")


def _config_items(name: str, config: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(config, Mapping):
        raise ConfigError(f"domain {quote(name)}: extra['lxc']['config'] must be a mapping of lxc.* keys")
    items: list[tuple[str, str]] = []
    for key, value in config.items():
        values = value if isinstance(value, list | tuple) else [value]
        bad_key = not isinstance(key, str) or not key.startswith("lxc.") or any(c in key for c in " =")
        if bad_key or _LINE_BREAKING.search(key):
            raise ConfigError(f"domain {quote(name)}: invalid LXC configuration key {quote(key)}")
        refusal = passthrough_refusal(key)
        if refusal is not None:
            raise ConfigError(
                f"domain {quote(name)}: extra['lxc']['config'] key {quote(key)} is refused: {refusal} (virtabs "
                "passes through only keys whose effect stays inside the container; see the LXC driver's docs)"
            )
        for v in values:
            text = str(v)
            if _LINE_BREAKING.search(text):
                raise ConfigError(f"domain {quote(name)}: the value of {key} contains a control character")
            items.append((key, text))
    return tuple(items)


def render_config(
    *,
    name: str,
    rootfs: str | None,
    settings: LxcSettings,
    memory_bytes: int,
    vcpus: int,
    nics: Sequence[tuple[str, str | None]],
    cgroup_v2: bool,
) -> str:
    """The text of ``<lxcpath>/<name>/config``. ``rootfs`` None leaves it to a template.

    ``nics`` are ``(bridge, mac or None)`` pairs.
    """
    keys: list[tuple[str, str]] = [("lxc.uts.name", name)]
    if rootfs is not None:
        keys.append(("lxc.rootfs.path", f"dir:{rootfs}"))
    keys.append(("lxc.init.cmd", init_command(settings.init)))
    keys.extend(BASE_KEYS)
    quota = vcpus * CPU_PERIOD_US
    if cgroup_v2:
        keys.append(("lxc.cgroup2.memory.max", str(memory_bytes)))
        keys.append(("lxc.cgroup2.cpu.max", f"{quota} {CPU_PERIOD_US}"))
    else:
        keys.append(("lxc.cgroup.memory.limit_in_bytes", str(memory_bytes)))
        keys.append(("lxc.cgroup.cpu.cfs_period_us", str(CPU_PERIOD_US)))
        keys.append(("lxc.cgroup.cpu.cfs_quota_us", str(quota)))
    if not nics:
        keys.append(("lxc.net.0.type", "empty"))
    for index, (bridge, mac) in enumerate(nics):
        if len(bridge.encode()) > IFNAMSIZ - 1 and not _LINE_BREAKING.search(bridge):  # that one: below
            # liblxc cuts lxc.net.N.link to an interface name's size: the container would join another bridge
            raise ConfigError(f"network {quote(bridge)}: a bridge name is at most {IFNAMSIZ - 1} bytes")
        keys += [(f"lxc.net.{index}.type", "veth"), (f"lxc.net.{index}.link", bridge)]
        keys.append((f"lxc.net.{index}.flags", "up"))
        if mac:
            keys.append((f"lxc.net.{index}.hwaddr", mac))
    keys.extend(settings.config)
    lines = ["# written by virtabs (virtabs-lxc); lxc.container.conf(5)"]
    lines += [_one_line(key, value) for key, value in keys]
    return "\n".join(lines) + "\n"


@dataclass
class ContainerConfig:
    """A parsed configuration file: every key with its values in file order."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        """The last value of ``key`` (LXC's rule for single-valued keys), or None."""
        values = self.all(key)
        return values[-1] if values else None

    def all(self, key: str) -> list[str]:
        """Every value of ``key``."""
        return [v for k, v in self.items if k == key]

    @property
    def rootfs(self) -> str | None:
        """The root file system directory (``dir:`` prefix removed), or None."""
        value = self.get("lxc.rootfs.path")
        if not value:
            return None
        return value.split(":", 1)[1] if value.startswith("dir:") else value

    def nics(self) -> list[tuple[str, str | None, str]]:
        """``(link, hwaddr, type)`` of each ``lxc.net.N`` that is not ``empty``, by index."""
        indexes = sorted({int(k.split(".")[2]) for k, _ in self.items if k.startswith("lxc.net.") and _index(k)})
        out = []
        for i in indexes:
            kind = self.get(f"lxc.net.{i}.type") or ""
            if kind in ("", "empty", "none"):
                continue
            out.append((self.get(f"lxc.net.{i}.link") or kind, self.get(f"lxc.net.{i}.hwaddr"), kind))
        return out

    def nic_facts(self) -> list[NicFacts]:
        """Every ``lxc.net.N`` by index, as :class:`NicFacts`; a container whose only ``lxc.net`` is ``empty``
        or ``none`` (or that has none: liblxc then gives it loopback only, as ``empty``) has that one."""
        indexes = sorted({int(k.split(".")[2]) for k, _ in self.items if k.startswith("lxc.net.") and _index(k)})
        facts = [
            NicFacts(
                self.get(f"lxc.net.{i}.type") or "",
                self.get(f"lxc.net.{i}.link") or None,
                self.get(f"lxc.net.{i}.hwaddr") or None,
                i,
            )
            for i in indexes
        ]
        real = [nic for nic in facts if nic.type not in ("", "empty", "none")]
        if real:
            return real
        return [NicFacts("none" if any(nic.type == "none" for nic in facts) else "empty", None, None)]


def _index(key: str) -> bool:
    parts = key.split(".")
    return len(parts) >= 4 and parts[2].isdigit()


def parse_config(text: str) -> ContainerConfig:
    """Parse an LXC configuration file (``key = value`` lines, ``#`` comments)."""
    config = ContainerConfig()
    for raw in text.split("\n"):  # liblxc ends a line at \n only (not at U+2028, U+0085 ...)
        line = raw.strip(_BLANKS + "\r")
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        config.items.append((key.strip(_BLANKS), _value(value)))
    return config


def spec_values(config: ContainerConfig) -> tuple[int | None, int | None]:
    """``(memory_bytes, vcpus)`` read back from the cgroup keys; None where the config sets no limit."""
    memory: int | None = None
    vcpus: int | None = None
    for key in ("lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup2.memory.max"):
        value = config.get(key)
        if value and value.isdigit():
            memory = int(value)
    quota, period = config.get("lxc.cgroup.cpu.cfs_quota_us"), config.get("lxc.cgroup.cpu.cfs_period_us")
    cpu_max = config.get("lxc.cgroup2.cpu.max")
    if cpu_max and len(cpu_max.split()) == 2:
        quota, period = cpu_max.split()
    if quota and period and quota.isdigit() and period.isdigit() and int(period) > 0:
        vcpus = max(1, -(-int(quota) // int(period)))
    return memory, vcpus

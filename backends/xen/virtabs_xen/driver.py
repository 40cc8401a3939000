"""The Xen driver: ``xl`` (Xen 4.17's toolstack) on the Xen host, run locally or over ssh.

URIs::

    xen:///                                     xl on this machine (it must be the Xen dom0)
    xen+ssh://root@host/                        xl on ``host`` over one multiplexed OpenSSH connection
    xen+ssh://root@127.0.0.1:2222/?keyfile=/k&known_hosts=/kh
    ...?dir=/var/lib/virtabs-xen                where the definitions of domains are kept (the default)

What xl has and has not:

* xl knows running domains only. A domain that is *defined* but not running is an xl.cfg file this
  driver keeps on the Xen host, ``<dir>/<name>.cfg``, written atomically (temporary file + rename)
  through the command transport; its first lines carry the :class:`DomainSpec` as JSON (``_cfg``).
  ``start`` is ``xl create <dir>/<name>.cfg``.
* Run state comes from ``xl list -v`` (the State flags), configuration of a running domain from
  ``xl list -l`` (libxl's JSON), host facts from ``xl info``; parsers are in ``_xl``.
* Disk hot-plug is ``xl block-attach`` / ``xl block-detach``. Xen names disks ``xvdX``; a disk
  attached or defined as ``vdX`` is written as ``xvdX`` and reported back under the name it was given
  (the names are remembered in the definition, and for hot-plugged disks in ``<dir>/<name>.aliases``).
* No block jobs, no snapshots, no storage pools in xl: not declared. Domain-0 is the host, not a
  domain of this driver (``host_info`` describes it).
* Managed save (libvirt's libxl driver does the same): ``xl save`` into ``<dir>/save/<uuid>.save`` (written
  under a temporary name, renamed once complete); ``start`` of a domain with that image is ``xl restore`` of
  it (the configuration saved in the image, hot-plugged disks included), and the image is removed once
  restored; the image is named by the definition's UUID, so a later domain of the same name never resumes it.
* vCPU and memory changes of a running domain (``xl vcpu-set`` / ``xl mem-set``) have no SPI
  operation yet: :meth:`XenDriver.ex_set_vcpus` and :meth:`XenDriver.ex_set_memory`.

Every call is an argv list; over ssh the transport quotes each argument for the remote shell, so a
domain called ``a b; rm -rf /`` reaches xl as one argument. Where one answer needs several commands
they run in one ``sh -c`` script with the names as positional parameters (one round trip).
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid as _uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs
from virtabs.spi import (
    IP_MISSING,
    URI,
    Capabilities,
    Capability,
    CommandResult,
    CommandTransport,
    ConnectError,
    ConnectOptions,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    DomainState,
    DomainStatus,
    Driver,
    EventPoller,
    HostInfo,
    HostLinks,
    InvalidArgumentError,
    NetworkInfo,
    NicInfo,
    NicSpec,
    NoDomainError,
    OperationFailedError,
    OperationInvalidError,
    PoolInfo,
    VirtabsError,
    VolumeInfo,
    find_network,
    image_volume_capacity,
    networks_with_attachments,
    quote,
)

from . import _cfg, _xl
from ._migration import XenMigration
from ._pools import Pools

__all__ = ["XenDriver"]

MiB = 1 << 20
DEFAULT_DIR = "/var/lib/virtabs-xen"
_SLOW = 300.0  # seconds: xl create/save/restore/block-attach under a loaded host
_EVENT_INTERVAL = 1.0  # seconds between two polls of the host (one round trip each) while someone subscribes
_MARK = "@@virtabs-xen@@"
_RC = "@@virtabs-xen-rc@@"
# A shell function for the multi-command scripts: "s NAME CMD..." prints a section with CMD's stdout.
_SECTION_FN = (
    f's() {{ n=$1; shift; printf \'{_MARK} %s\\n\' "$n"; "$@" 2>/dev/null; printf \'\\n{_RC} %s\\n\' "$?"; }}; '
)
# the host has xl (exit 3 otherwise) and runs as Xen's control domain (exit 4 otherwise)
# (and prints "qemu-img" and "ip" for those the host has: the storage capabilities need qemu-img, the
# network listing iproute2's ip)
_CHECK_HOST = (
    "command -v xl >/dev/null || exit 3; grep -qs control_d /proc/xen/capabilities || exit 4; "
    "command -v qemu-img >/dev/null && echo qemu-img; command -v ip >/dev/null && echo ip; exit 0"
)
XL_CONF = "/etc/xen/xl.conf"
"""xl's global configuration on the Xen host (xl.conf(5)); ``vif.default.bridge`` is read from it."""
XL_DEFAULT_BRIDGE = "xenbr0"
"""The bridge of a vif without ``bridge=`` when xl.conf sets no ``vif.default.bridge`` (xl.conf(5))."""
# xl.conf(5): KEY=VALUE lines, '#' comments; libxlutil keeps the last setting of a key
_DEFAULT_BRIDGE_RE = re.compile(r'^[ \t]*vif\.default\.bridge[ \t]*=[ \t]*"([^"]*)"', re.MULTILINE)
# xl.conf read with shell builtins (read, printf): a process costs about 0.35 s in a dom0 nested under TCG
_READ_XL_CONF = f's xlconf eval \'while IFS= read -r l || [ -n "$l" ]; do printf "%s\\n" "$l"; done < {XL_CONF}\'; '
# what a NIC's network needs: the links (kind and bridge of each) and xl.conf, as sections of a script
_LINK_SECTIONS = "s link ip -json -details link show; " + _READ_XL_CONF
# what a listing of networks needs: the bridges' addresses too (no extra round trip either)
_NET_SECTIONS = _LINK_SECTIONS + "s addr ip -json addr show; "
_COMMAND_NOT_FOUND = 127
_DIR_OK = re.compile(r"^/[A-Za-z0-9_./+-]*$")
_FILE_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
SAVE_DIR = "save"
"""Where managed save images are kept, under the definitions directory (``<dir>/save/<uuid>.save``)."""
_SAVE_SUFFIX = ".save"
# The managed save images' file names, with shell builtins only (no process): a section "saves", one name a
# line. "$1" of the script is the definitions directory; inside the section function it is not, so D keeps it.
_SAVES_SECTION = (
    'D=$1; s saves eval \'for f in "$D"/save/*.save; do [ -e "$f" ] && printf "%s\\n" "${f##*/}"; done; :\'; '
)


@attrs.frozen
class _Section:
    rc: int
    out: str


def _sections(text: str) -> dict[str, _Section]:
    """Split the output of a script built with ``_SECTION_FN`` into its sections."""
    found: dict[str, _Section] = {}
    for chunk in text.split(_MARK + " ")[1:]:
        name, _, rest = chunk.partition("\n")
        body, _, tail = rest.rpartition("\n" + _RC + " ")
        try:
            rc = int(tail.split()[0])
        except (ValueError, IndexError):
            raise OperationFailedError(f"unreadable answer from the Xen host (section {quote(name)})") from None
        found[name] = _Section(rc, body)
    return found


def _saved_uuids(sec: Mapping[str, _Section]) -> frozenset[str]:
    """The UUIDs that have a managed save image, from the ``saves`` section (:data:`_SAVES_SECTION`)."""
    section = sec.get("saves")
    if section is None or section.rc != 0:
        return frozenset()
    return frozenset(
        line.removesuffix(_SAVE_SUFFIX) for line in section.out.splitlines() if line.endswith(_SAVE_SUFFIX)
    )


def _state(flags: frozenset[str]) -> DomainState:
    """libvirt's view of xl's flags (as its libxl driver reports them): blocked is running."""
    if "dying" in flags or "shutdown" in flags:
        return DomainState.SHUTDOWN
    if "crashed" in flags:
        return DomainState.CRASHED
    if "paused" in flags:
        return DomainState.PAUSED
    return DomainState.RUNNING


def default_bridge(xl_conf: str | None) -> str:
    """The bridge xl gives a vif without ``bridge=``: xl.conf's last ``vif.default.bridge``, else ``xenbr0``."""
    found = _DEFAULT_BRIDGE_RE.findall(xl_conf or "")
    return found[-1] if found and found[-1] else XL_DEFAULT_BRIDGE


@attrs.frozen
class _HostNet:
    """What a NIC's network is resolved against: the host's links (None: not read) and xl's default bridge."""

    links: HostLinks | None
    default_bridge: str

    def network_of(self, bridge: str | None) -> str | None:
        """The listed network of a vif on ``bridge`` (None or ``default``: xl's default bridge): the bridge's
        name when the host has a Linux bridge by that name, else None (a missing bridge, an Open vSwitch one)."""
        name = self.default_bridge if bridge in (None, "", "default") else bridge
        link = self.links.get(name) if self.links is not None else None
        return name if link is not None and link.is_bridge else None

    def network_of_vif(self, domid: int, devid: int, bridge: str | None) -> str | None:
        """The listed network of a running domain's vif: the bridge its back-end ``vifDOMID.DEVID`` is a port of
        (the kernel's word, whatever xl.conf says now), None when that is no bridge; a vif without a back-end
        link yet falls back to its configuration (:meth:`network_of`)."""
        port = self.links.get(f"vif{domid}.{devid}") if self.links is not None else None
        if port is None:
            return self.network_of(bridge)
        master = self.links.get(port.master) if self.links is not None and port.master else None
        return port.master if master is not None and master.is_bridge else None

    @classmethod
    def from_sections(cls, sec: Mapping[str, _Section], where: str, *, strict: bool = True) -> _HostNet:
        """From the sections of :data:`_NET_SECTIONS` (``addr`` may be absent: the links alone).

        A failed ``ip`` (missing on the host, or unreadable output) raises OperationFailedError when ``strict``
        (a listing of networks); otherwise the links are unknown and every NIC's network is None (a domain's NICs,
        the inventory: a dom0 without iproute2 still lists its domains).
        """
        xlconf = sec["xlconf"].out if "xlconf" in sec and sec["xlconf"].rc == 0 else None
        link = sec.get("link")
        if link is None:
            return cls(None, default_bridge(xlconf))
        try:
            for key in ("link", "addr"):
                if key in sec and sec[key].rc != 0:
                    if sec[key].rc == _COMMAND_NOT_FOUND:
                        raise OperationFailedError(f"xen networks: {IP_MISSING} (on {where})")
                    raise OperationFailedError(f"xen networks: iproute2's ip failed on {where} (exit {sec[key].rc})")
            addr = sec["addr"].out if "addr" in sec else "[]"
            return cls(HostLinks.from_ip_json(link.out, addr), default_bridge(xlconf))
        except OperationFailedError:
            if strict:
                raise
            return cls(None, default_bridge(xlconf))


@attrs.frozen
class _Probe:
    """What the Xen host knows about one domain name: its running instance and/or its definition."""

    name: str
    running: _xl.ListEntry | None
    config: Mapping[str, Any] | None  # xl list -l's config (only when asked for)
    spec: DomainSpec | None
    uuid: str | None  # of the definition
    aliases: Mapping[str, str]
    saved: frozenset[str] = frozenset()  # the UUIDs with a managed save image on the host

    @property
    def managed_save(self) -> bool:
        """Whether this domain's definition has a managed save image (a running domain's is stale)."""
        return self.uuid is not None and self.uuid in self.saved

    @property
    def exists(self) -> bool:
        return self.running is not None or self.spec is not None

    @property
    def ref(self) -> DomainRef:
        if self.running is not None and self.running.uuid:
            return DomainRef(self.name, self.running.uuid)
        assert self.uuid is not None
        return DomainRef(self.name, self.uuid)

    def target_of(self, vdev: str) -> str:
        """The name a disk was given (``vdb``) for its Xen name (``xvdb``)."""
        if vdev in self.aliases:
            return self.aliases[vdev]
        if self.spec is not None:
            for disk in self.spec.disks:
                if _cfg.xen_vdev(disk.target) == vdev:
                    return disk.target
        return vdev


def _disk_infos(probe: _Probe) -> list[DiskInfo]:
    if probe.config is not None:
        return [
            DiskInfo(
                target=probe.target_of(str(d.get("vdev", ""))),
                path=str(d.get("pdev_path", "")),
                format=str(d.get("format", "raw")),
                bus="xen",
                readonly=d.get("readwrite", 0) != 1,
            )
            for d in _xl.config_disks(probe.config)
        ]
    assert probe.spec is not None
    return [DiskInfo(d.target, d.path, d.format, bus=d.bus, readonly=d.readonly) for d in probe.spec.disks]


def _nic_infos(probe: _Probe, net: _HostNet) -> list[NicInfo]:
    """A running domain's vifs from ``xl list -l``, each on the bridge its back-end link is a port of (``xl list
    -l`` leaves ``bridge`` out when the configuration did); a shut-off one's from its definition, on the bridge
    it names or xl's default one. ``network`` is None when that is no bridge of the host (``_HostNet``)."""
    if probe.config is not None and probe.running is not None:
        domid = probe.running.domid
        nics = [n for n in probe.config.get("nics", []) if isinstance(n, Mapping)]
        return [
            NicInfo(
                mac=n.get("mac"),
                network=net.network_of_vif(domid, int(n.get("devid", index)), n.get("bridge")),
                model=n.get("model", "netfront"),
            )
            for index, n in enumerate(nics)
        ]
    assert probe.spec is not None
    return [NicInfo(mac=n.mac, network=net.network_of(n.network), model=n.model) for n in probe.spec.nics]


def _spec_from_config(name: str, uuid: str, config: Mapping[str, Any]) -> DomainSpec:
    """A spec for a domain xl runs without a definition of ours (created by hand, or restored)."""
    c_info, b_info = config.get("c_info", {}), config.get("b_info", {})
    gtype = str(c_info.get("type", "pv"))
    xen: dict[str, Any] = {"type": gtype}
    for key in ("kernel", "ramdisk", "cmdline"):
        if isinstance(b_info.get(key), str):
            xen[key] = b_info[key]
    max_kb, target_kb = int(b_info.get("max_memkb", 0)), int(b_info.get("target_memkb", 0))
    if max_kb:
        xen["maxmem_mib"] = max(1, max_kb // 1024)
    if b_info.get("max_vcpus"):
        xen["maxvcpus"] = int(b_info["max_vcpus"])
    disks = [
        DiskSpec(
            str(d.get("vdev")),
            str(d.get("pdev_path")),
            format=str(d.get("format", "raw")),
            bus="xen",
            readonly=d.get("readwrite", 0) != 1,
        )
        for d in _xl.config_disks(config)
    ]
    nics = [
        NicSpec(network=str(n.get("bridge", "default")), mac=n.get("mac"))
        for n in config.get("nics", [])
        if isinstance(n, Mapping)
    ]
    return DomainSpec(
        name=name,
        memory_bytes=max(1, target_kb // 1024) * MiB,
        vcpus=max(1, len(b_info.get("avail_vcpus", [0]))),
        disks=tuple(disks),
        nics=tuple(nics),
        uuid=uuid,
        os_type="hvm" if gtype == "hvm" else "xen",
        extra={"xen": xen},
    )


class XenDriver(XenMigration, Driver):
    """Xen through ``xl``, on the Xen host (``xen:///``) or over ssh (``xen+ssh://``)."""

    name: ClassVar[str] = "xen"
    description: ClassVar[str] = "Xen through its xl toolstack (Xen 4.17), on the dom0 or over ssh"
    capabilities: ClassVar[Capabilities] = Capabilities.of(
        Capability.DOMAIN_DEFINE,
        Capability.DOMAIN_START,
        Capability.DOMAIN_SHUTDOWN,
        Capability.DOMAIN_DESTROY,
        Capability.DOMAIN_REBOOT,
        Capability.DOMAIN_SUSPEND,
        Capability.DOMAIN_SAVE,
        Capability.DOMAIN_DISK_HOTPLUG,
        Capability.EVENTS,
        Capability.STORAGE_POOL,
        Capability.STORAGE_VOLUME,
        Capability.STORAGE_VOLUME_RESIZE,
        Capability.NETWORK,
        Capability.DOMAIN_MIGRATE,
        Capability.DOMAIN_MIGRATE_LIVE,
        Capability.DOMAIN_MANAGED_SAVE,
        notes={
            Capability.DOMAIN_REBOOT: "xl reboot -F; xl re-creates the domain (on_reboot=restart)",
            Capability.EVENTS: f"polled every {_EVENT_INTERVAL:g} s: xl list -v and the definitions (no event stream)",
            Capability.STORAGE_POOL: "directory pools on the Xen host (libvirt's dir pool): default is <dir>/images",
            Capability.STORAGE_VOLUME: "raw and qcow2, made by qemu-img on the Xen host; no backing images",
            Capability.DOMAIN_MIGRATE: "xl migrate between two connections of one dom0 (dir= apart); not between "
            "dom0s; a PV guest needs shadow paging in Xen (virt_caps), PVH and HVM do not",
            Capability.DOMAIN_MIGRATE_LIVE: "xl migrate is always live; the source domain is always destroyed",
            Capability.NETWORK: "the dom0's Linux bridges (ip -json), attachments from the vifs; one round trip",
            Capability.DOMAIN_MANAGED_SAVE: "xl save to <dir>/save/<uuid>.save on the Xen host (libvirt's libxl "
            "driver); start is xl restore of it, then the image is removed",
        },
    )
    uri_examples: ClassVar[tuple[str, ...]] = (
        "xen:///",
        "xen+ssh://root@xenhost/",
        "xen+ssh://root@127.0.0.1:2222/?keyfile=/path/id_ed25519&known_hosts=/path/known_hosts",
    )
    install_hint: ClassVar[str] = (
        "the Xen host needs xl (Debian: apt-get install xen-utils-4.17, booted under the Xen hypervisor); "
        "xen+ssh:// needs an OpenSSH client here"
    )

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if uri.path not in ("", "/"):
            raise InvalidArgumentError(f"xen URIs have no path (use {uri.scheme}:///), got {quote(uri.path)}")
        directory = uri.param("dir") or DEFAULT_DIR
        if not _DIR_OK.match(directory) or ".." in directory.split("/"):
            raise InvalidArgumentError(f"dir={quote(directory)}: an absolute path of letters, digits and _ . / + -")
        self._dir = directory.rstrip("/") or "/"
        user = options.credentials.username if options.credentials is not None else None
        self._timeout = options.timeout if options.timeout is not None else 120.0
        self._slow = max(self._timeout, _SLOW)
        self._poller: EventPoller | None = None
        # The URI's user wins over the credentials' (the transport's rule); opening is bounded by timeout=.
        self._t = CommandTransport(
            uri,
            user=user,
            default_timeout=self._timeout,
            connect_timeout=options.timeout if options.timeout is not None else 30.0,
        )
        try:
            self._t.connect()
            found = self._t.run(["sh", "-c", _CHECK_HOST], check=False)
        except VirtabsError:
            self._t.close()
            raise
        if found.returncode == 3:
            self._t.close()
            raise ConnectError(f"no xl on {self._t.where}: {self.install_hint}")
        if found.returncode != 0:
            self._t.close()
            raise ConnectError(
                f"{self._t.where} is not a Xen dom0 (no control_d in /proc/xen/capabilities): "
                "boot it under the Xen hypervisor"
            )
        self._has_qemu_img = "qemu-img" in found.out.split()
        self._has_ip = "ip" in found.out.split()
        self._pools = Pools(self._dir, self._sh, self._t.where)

    def connection_capabilities(self) -> Capabilities:
        """The storage capabilities need ``qemu-img`` on the Xen host, ``network`` iproute2's ``ip``; without them
        they are dropped, saying so."""
        caps = type(self).capabilities
        if not self._has_qemu_img:
            caps = caps.without(
                Capability.STORAGE_POOL,
                Capability.STORAGE_VOLUME,
                Capability.STORAGE_VOLUME_RESIZE,
                reason=f"no qemu-img on {self._t.where} (Debian: apt-get install qemu-utils)",
            )
        if not self._has_ip:
            caps = caps.without(Capability.NETWORK, reason=f"{IP_MISSING} (on {self._t.where})")
        return caps

    def close(self) -> None:
        """Stop the event poller, if any, and the ssh master connection (a no-op locally)."""
        self.stop_events()
        self._t.close()

    # --- events -------------------------------------------------------------------------

    def _event_snapshot(self) -> dict[DomainRef, DomainState]:
        """Every domain's state in one round trip (``xl list -v`` and the definitions)."""
        return {
            probe.ref: _state(probe.running.flags) if probe.running is not None else DomainState.SHUTOFF
            for probe in self._all().values()
        }

    def start_events(self) -> None:
        """Start polling the host: xl has no event stream, so changes are seen by diffing snapshots."""
        if self._poller is None:
            self._poller = EventPoller(
                self._event_snapshot, self.emit, interval=_EVENT_INTERVAL, name="virtabs-xen-events"
            )
            self._poller.start()

    def stop_events(self) -> None:
        """Stop polling."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()

    # --- running xl -------------------------------------------------------------------

    def _xl(self, args: Sequence[str], what: str, *, name: str | None = None, slow: bool = False) -> str:
        """Run ``xl ARGS``; a refusal becomes the matching virtabs error naming ``what``."""
        result = self._t.run(["xl", *args], check=False, timeout=self._slow if slow else None)
        if result.returncode != 0:
            raise self._error(result.err, what, name)
        return result.out

    @staticmethod
    def _error(stderr: str, what: str, name: str | None) -> VirtabsError:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        detail = "; ".join(lines[-4:]) if lines else "(no message)"
        if "is an invalid domain identifier" in stderr and name is not None:
            return NoDomainError(f"domain {quote(name)} not found (xl: {detail})")
        if "already exists" in stderr:
            return OperationInvalidError(f"{what}: {detail}")
        if "not connected" in stderr or "must be less than or equal to" in stderr or "Invalid argument" in stderr:
            return InvalidArgumentError(f"{what}: {detail}")
        return OperationFailedError(f"{what} failed: {detail}")

    def _script(self, body: str, *args: str, slow: bool = False) -> dict[str, _Section]:
        """Run a ``sh -c`` script built from ``s NAME CMD...`` sections, with ``args`` as ``$1...``."""
        result = self._t.run(
            ["sh", "-c", _SECTION_FN + body + " exit 0", "virtabs-xen", *args],
            check=False,
            timeout=self._slow if slow else None,
        )
        if result.returncode != 0:
            raise OperationFailedError(
                f"query on {self._t.where} failed (exit {result.returncode}): {result.err.strip()[-500:]}"
            )
        return _sections(result.out)

    def _sh(self, script: str, args: list[str]) -> CommandResult:
        """Run ``sh -c SCRIPT virtabs-xen ARGS...`` on the Xen host (slow: qemu-img may write a whole image)."""
        return self._t.run(["sh", "-c", script, "virtabs-xen", *args], check=False, timeout=self._slow)

    def _cfg_path(self, name: str) -> str:
        return posixpath.join(self._dir, f"{name}.cfg")

    def _alias_path(self, name: str) -> str:
        return posixpath.join(self._dir, f"{name}.aliases")

    def _probe(self, name: str, *, long: bool = False) -> _Probe:
        """One round trip: ``xl list -v NAME`` (and ``xl list -l NAME``), the definition and the aliases."""
        return self._probe_net(name, long=long)[0]

    def _probe_net(self, name: str, *, long: bool = False, net: bool = False) -> tuple[_Probe, _HostNet]:
        """:meth:`_probe`, and (``net``) the host's links and xl.conf in the same round trip."""
        if not name:
            return _Probe(name, None, None, None, None, {}), _HostNet(None, XL_DEFAULT_BRIDGE)
        # "--": xl parses with getopt_long (GNU, permuting), so a name like "-h" after it is a name, not an option
        body = 's list xl list -v -- "$2"; '
        if _FILE_NAME_OK.match(name):  # a name that cannot be one of ours has no files to read
            body += 's cfg cat "$1/$2.cfg"; s aliases cat "$1/$2.aliases"; ' + _SAVES_SECTION
        if long:
            body += 's long xl list -l -- "$2"; '
        if net:  # a NIC's network: the links alone (no addresses) and xl.conf's default bridge
            body += _LINK_SECTIONS
        sec = self._script(body, self._dir, name)
        running = None
        if "list" in sec and sec["list"].rc == 0:
            entries = [e for e in _xl.parse_list(sec["list"].out) if e.name == name and e.domid != 0]
            running = entries[0] if entries else None
        spec, uuid = None, None
        if "cfg" in sec and sec["cfg"].rc == 0:
            parsed = _cfg.spec_from_config(sec["cfg"].out)
            if parsed is not None:
                spec, uuid = parsed
        aliases: dict[str, str] = {}
        if "aliases" in sec and sec["aliases"].rc == 0:
            try:
                raw = json.loads(sec["aliases"].out)
                aliases = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            except ValueError:
                aliases = {}
        config = None
        if running is not None and long and sec.get("long", _Section(1, "")).rc == 0:
            entries_long = _xl.parse_list_long(sec["long"].out)
            config = _xl.domain_config(entries_long[0]) if entries_long else None
        host_net = _HostNet.from_sections(sec, self._t.where, strict=False)
        return _Probe(name, running, config, spec, uuid, aliases, _saved_uuids(sec)), host_net

    def _need(self, dom: DomainRef, *, long: bool = False) -> _Probe:
        probe = self._probe(dom.name, long=long)
        if not probe.exists:
            raise NoDomainError(f"domain {quote(dom.name)} not found")
        return probe

    # --- host and lookups ---------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """``xl info``: host name, Xen version, physical CPUs and memory."""
        info = _xl.parse_info(self._xl(["info"], f"xl info on {self._t.where}"))
        return HostInfo(
            hostname=info["host"],
            hypervisor="xen",
            hypervisor_version=info["xen_version"],
            cpus=int(info["nr_cpus"]),
            memory_bytes=int(info["total_memory"]) * MiB,
            arch=info.get("machine", "x86_64"),
        )

    _BULK = (
        's list xl list -v; for f in "$1"/*.cfg; do [ -f "$f" ] && s "cfg:$f" head -n 3 "$f"; done; '
        'for f in "$1"/*.aliases; do [ -f "$f" ] && s "aliases:$f" cat "$f"; done; ' + _SAVES_SECTION
    )

    def _all(self, *, long: bool = False) -> dict[str, _Probe]:
        """Every domain the host knows, by name, in one round trip."""
        return self._scan(long=long)[0]

    def _scan(self, *, long: bool = False, net: str = "") -> tuple[dict[str, _Probe], _HostNet]:
        """Every domain the host knows, by name, and the host's interfaces and xl.conf: one round trip.

        ``net`` is ``""`` (no links: every NIC's network None), ``"links"`` (what NICs need) or ``"bridges"`` (the
        addresses too, for a listing of networks).
        """
        sections = {"": "", "links": _LINK_SECTIONS, "bridges": _NET_SECTIONS}[net]
        body = self._BULK + ("s long xl list -l; " if long else "") + sections
        sec = self._script(body, self._dir)
        net_info = _HostNet.from_sections(sec, self._t.where, strict=net == "bridges")
        return self._probes_from(sec, long=long), net_info

    def _probes_from(self, sec: Mapping[str, _Section], *, long: bool) -> dict[str, _Probe]:
        running = {
            e.name: e for e in (_xl.parse_list(sec["list"].out) if sec.get("list", _Section(1, "")).rc == 0 else [])
        }
        running.pop("Domain-0", None)
        running = {n: e for n, e in running.items() if e.domid != 0}
        configs: dict[int, Mapping[str, Any]] = {}
        if long and sec.get("long", _Section(1, "")).rc == 0:
            configs = {e["domid"]: _xl.domain_config(e) for e in _xl.parse_list_long(sec["long"].out)}
        defined: dict[str, tuple[DomainSpec, str]] = {}
        aliases: dict[str, dict[str, str]] = {}
        for key, section in sec.items():
            base = posixpath.basename(key)
            if key.startswith("cfg:") and section.rc == 0:
                parsed = _cfg.spec_from_config(section.out)
                if parsed is not None and f"{parsed[0].name}.cfg" == base:
                    defined[parsed[0].name] = parsed
            elif key.startswith("aliases:") and section.rc == 0:
                try:
                    raw = json.loads(section.out)
                except ValueError:
                    continue
                if isinstance(raw, dict):
                    aliases[base.removesuffix(".aliases")] = {str(k): str(v) for k, v in raw.items()}
        probes = {}
        saved = _saved_uuids(sec)
        for name in sorted(set(running) | set(defined)):
            entry = running.get(name)
            spec, uuid = defined.get(name, (None, None))
            config = configs.get(entry.domid) if entry is not None else None
            probes[name] = _Probe(name, entry, config, spec, uuid, aliases.get(name, {}), saved)
        return probes

    def list_domains(self) -> list[DomainRef]:
        """Running domains (``xl list -v``, Domain-0 left out) and defined ones (the xl.cfg files)."""
        return [probe.ref for probe in self._all().values()]

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """By name: one probe; by UUID: a search of :meth:`list_domains`."""
        try:
            _uuid.UUID(name_or_uuid)
            is_uuid = True
        except ValueError:
            is_uuid = False
        if not is_uuid:
            probe = self._probe(name_or_uuid)
            if probe.exists:
                return probe.ref
            raise NoDomainError(f"domain {quote(name_or_uuid)} not found")
        wanted = str(_uuid.UUID(name_or_uuid))
        for ref in self.list_domains():
            if ref.uuid == wanted:
                return ref
        raise NoDomainError(f"domain {quote(name_or_uuid)} not found")

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State flags, vCPUs, memory and CPU time from ``xl list -v``; a definition alone is shut off."""
        probe = self._need(dom)
        if probe.running is not None:
            entry = probe.running
            if probe.spec is not None:
                maxmem = probe.spec.extra.get("xen", {}).get("maxmem_mib", -(-probe.spec.memory_bytes // MiB)) * MiB
            else:
                config = self._probe(dom.name, long=True).config or {}
                maxmem = int(config.get("b_info", {}).get("max_memkb", entry.memory_mib * 1024)) * 1024
            return DomainInfo(
                name=dom.name,
                uuid=probe.ref.uuid,
                state=_state(entry.flags),
                native_state=entry.state,
                vcpus=entry.vcpus,
                memory_bytes=entry.memory_mib * MiB,
                max_memory_bytes=max(maxmem, entry.memory_mib * MiB),
                cpu_time_ns=int(entry.cpu_time_s * 1e9),
            )
        assert probe.spec is not None
        spec = probe.spec
        memory = -(-spec.memory_bytes // MiB) * MiB
        return DomainInfo(
            name=dom.name,
            uuid=probe.ref.uuid,
            state=DomainState.SHUTOFF,
            native_state="shutoff",
            vcpus=spec.vcpus,
            memory_bytes=memory,
            max_memory_bytes=max(memory, spec.extra.get("xen", {}).get("maxmem_mib", 0) * MiB),
        )

    def domain_status(self, dom: DomainRef) -> DomainStatus:
        """The state from one probe; a domain xl runs without a definition of ours is transient (no block jobs)."""
        probe = self._need(dom)
        state = _state(probe.running.flags) if probe.running is not None else DomainState.SHUTOFF
        return DomainStatus(state, persistent=probe.spec is not None)

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The definition this driver keeps; for a domain xl runs without one, what ``xl list -l`` says."""
        probe = self._need(dom, long=True)
        if probe.spec is not None:
            return probe.spec
        assert probe.running is not None
        return _spec_from_config(dom.name, probe.ref.uuid, probe.config or {})

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """A running domain's disks from ``xl list -l``; a shut-off one's from its definition."""
        return _disk_infos(self._need(dom, long=True))

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """A running domain's vifs from ``xl list -l``; a shut-off one's from its definition; each NIC's network
        the dom0 bridge it is on (``_HostNet.network_of``): one round trip."""
        probe, net = self._probe_net(dom.name, long=True, net=True)
        if not probe.exists:
            raise NoDomainError(f"domain {quote(dom.name)} not found")
        return _nic_infos(probe, net)

    # --- definitions --------------------------------------------------------------------

    def _write_definition(self, spec: DomainSpec, uuid: str) -> None:
        text = _cfg.render_config(spec, uuid)
        self._t.write_file(self._cfg_path(spec.name), text.encode(), mode=0o600, make_parents=True)

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Write ``<dir>/<name>.cfg`` atomically; a defined name, or a UUID already in use, is refused."""
        if spec.uuid is not None:  # one round trip for every name and UUID the host knows
            for probe in self._all().values():
                if probe.ref.uuid == spec.uuid and probe.name != spec.name:
                    raise OperationInvalidError(
                        f"domain {quote(spec.name)}: UUID {spec.uuid} is already used by domain {quote(probe.name)}"
                    )
                if probe.name == spec.name and probe.spec is not None:
                    raise OperationInvalidError(f"domain {quote(spec.name)} is already defined")
        elif self._t.run(["test", "-e", self._cfg_path(spec.name)], check=False).returncode == 0:
            raise OperationInvalidError(f"domain {quote(spec.name)} is already defined")
        uuid = spec.uuid or str(_uuid.uuid4())
        self._write_definition(attrs.evolve(spec, uuid=uuid), uuid)
        return DomainRef(spec.name, uuid)

    def undefine(self, dom: DomainRef) -> None:
        """Remove the xl.cfg file (and the disk-name aliases) of a shut-off domain, in one round trip."""
        script = '[ -e "$1" ] || exit 3; rm -f -- "$1" "$2"'
        argv = ["sh", "-c", script, "virtabs-xen", self._cfg_path(dom.name), self._alias_path(dom.name)]
        result = self._t.run(argv, check=False)
        if result.returncode == 3:
            raise NoDomainError(f"domain {quote(dom.name)} has no definition to remove")
        if result.returncode != 0:
            raise OperationFailedError(f"undefine of domain {quote(dom.name)} failed: {result.err.strip()[-500:]}")

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, dom: DomainRef, paused: bool) -> None:
        """``xl create [-p] <dir>/<name>.cfg``; with a managed save image, ``xl restore [-p]`` of it instead."""
        probe = self._need(dom)
        if probe.spec is None:
            raise OperationInvalidError(f"domain {quote(dom.name)} has no definition to start")
        if probe.running is None and probe.managed_save:
            self._resume_managed_save(probe, paused)
            return
        # hot-plugged disks do not survive a restart: their names go with the old run (same round trip)
        argv = ["sh", "-c", 'rm -f -- "$1"; shift; exec xl "$@"', "virtabs-xen", self._alias_path(dom.name)]
        argv += ["create", *(["-p"] if paused else []), self._cfg_path(dom.name)]
        result = self._t.run(argv, check=False, timeout=self._slow)
        if result.returncode != 0:
            raise self._error(result.err, f"start of domain {quote(dom.name)}", dom.name)

    def shutdown(self, dom: DomainRef) -> None:
        """``xl shutdown -F``: ask the guest (PV control, or the ACPI button for HVM) and return."""
        self._xl(["shutdown", "-F", "--", dom.name], f"shutdown of domain {quote(dom.name)}", name=dom.name)

    def destroy(self, dom: DomainRef) -> None:
        """``xl destroy``."""
        self._xl(["destroy", "--", dom.name], f"destroy of domain {quote(dom.name)}", name=dom.name, slow=True)

    def reboot(self, dom: DomainRef) -> None:
        """``xl reboot -F``: ask the guest to reboot (PV control node, or ACPI for HVM); xl's daemon of the
        domain then re-creates it (``on_reboot = "restart"``, the default of the files this driver writes)."""
        self._xl(["reboot", "-F", "--", dom.name], f"reboot of domain {quote(dom.name)}", name=dom.name)

    def suspend(self, dom: DomainRef) -> None:
        """``xl pause``."""
        self._xl(["pause", "--", dom.name], f"suspend of domain {quote(dom.name)}", name=dom.name)

    def resume(self, dom: DomainRef) -> None:
        """``xl unpause``."""
        self._xl(["unpause", "--", dom.name], f"resume of domain {quote(dom.name)}", name=dom.name)

    def save(self, dom: DomainRef, path: str) -> None:
        """``xl save NAME PATH`` (a path on the Xen host); the domain stops, its definition stays."""
        self._xl(
            ["save", "--", dom.name, path],
            f"save of domain {quote(dom.name)} to {quote(path)}",
            name=dom.name,
            slow=True,
        )

    def restore(self, path: str) -> DomainRef:
        """``xl restore PATH``; the domain that appears is the restored one."""
        before = {e.domid for e in _xl.parse_list(self._xl(["list"], "xl list"))}
        self._xl(["restore", "--", path], f"restore from {quote(path)}", slow=True)
        fresh = [e for e in _xl.parse_list(self._xl(["list", "-v"], "xl list -v")) if e.domid not in before]
        if len(fresh) != 1 or fresh[0].uuid is None:
            raise OperationFailedError(f"restore from {quote(path)}: cannot tell which domain was restored")
        return DomainRef(fresh[0].name, fresh[0].uuid)

    # --- managed save (libvirt's libxl driver: xl save to a file of its state dir, xl restore at start) ------

    def _managed_save_path(self, uuid: str) -> str:
        return posixpath.join(self._dir, SAVE_DIR, uuid + _SAVE_SUFFIX)

    def managed_save(self, dom: DomainRef) -> None:
        """``xl save`` into ``<dir>/save/<uuid>.save`` (under a temporary name, renamed once complete): one round
        trip. The domain stops; its definition and its disk-name aliases stay for the resume."""
        probe = self._need(dom)
        if probe.spec is None or probe.uuid is None:  # the gate refuses a transient domain; a race is refused here
            raise OperationInvalidError(f"managed save of domain {quote(dom.name)}: it has no definition")
        if probe.running is None:
            raise OperationInvalidError(f"managed save of domain {quote(dom.name)}: it is not running")
        image = self._managed_save_path(probe.uuid)
        script = (
            'mkdir -p -m 700 -- "$(dirname -- "$1")" || exit 1; '
            'xl save -- "$2" "$1.part" || { rc=$?; rm -f -- "$1.part"; exit $rc; }; '
            'mv -f -- "$1.part" "$1"'
        )
        result = self._t.run(["sh", "-c", script, "virtabs-xen", image, dom.name], check=False, timeout=self._slow)
        if result.returncode != 0:
            raise self._error(result.err, f"managed save of domain {quote(dom.name)}", dom.name)

    def has_managed_save(self, dom: DomainRef) -> bool:
        """Whether the definition's UUID has an image in ``<dir>/save`` (one round trip, no process for it)."""
        probe = self._need(dom)
        return probe.running is None and probe.managed_save

    def managed_save_remove(self, dom: DomainRef) -> None:
        """Remove the domain's managed save image; none there is nothing to do."""
        probe = self._need(dom)
        if probe.uuid is None:
            return
        result = self._t.run(["rm", "-f", "--", self._managed_save_path(probe.uuid)], check=False)
        if result.returncode != 0:
            raise OperationFailedError(
                f"managed save removal of domain {quote(dom.name)} failed: {result.err.strip()[-500:]}"
            )

    def _resume_managed_save(self, probe: _Probe, paused: bool) -> None:
        """``xl restore [-p] IMAGE`` then the image removed, in one round trip. As libvirt's libxl driver, the
        domain runs afterwards unless ``paused`` (whatever it was when saved); the configuration is the one saved
        in the image (a disk hot-plugged before the save is there again, so its alias stays). A failed restore
        keeps the image (``managed_save_remove`` discards it)."""
        assert probe.uuid is not None
        image = self._managed_save_path(probe.uuid)
        script = 'img=$1; shift; xl "$@" || exit $?; rm -f -- "$img"'
        argv = ["sh", "-c", script, "virtabs-xen", image, "restore", *(["-p"] if paused else []), "--", image]
        result = self._t.run(argv, check=False, timeout=self._slow)
        if result.returncode != 0:
            raise self._error(result.err, f"start of domain {quote(probe.name)} from its managed save", probe.name)

    # --- disks --------------------------------------------------------------------------

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """Running: ``xl block-attach`` (hot-plug). Shut off: the disk is added to the definition."""
        probe = self._need(dom)
        vdev = _cfg.xen_vdev(disk.target)
        # a hot-plugged disk is served as the domain's other disks are (its definition's disk_backend)
        spec_string = _cfg.disk_spec_string(disk, _cfg.disk_backend(probe.spec) if probe.spec is not None else None)
        if probe.running is None:
            assert probe.spec is not None and probe.uuid is not None
            self._write_definition(attrs.evolve(probe.spec, disks=(*probe.spec.disks, disk)), probe.uuid)
            return
        what = f"attach of disk {quote(disk.target)} to {quote(dom.name)}"
        self._xl(["block-attach", "--", dom.name, spec_string], what, slow=True)
        if vdev != disk.target:
            aliases = {**probe.aliases, vdev: disk.target}
            self._t.write_file(self._alias_path(dom.name), json.dumps(aliases).encode(), mode=0o600)

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """Running: ``xl block-detach``. Shut off: the disk is removed from the definition."""
        probe = self._need(dom)
        vdev = _cfg.xen_vdev(target)
        if probe.running is None:
            assert probe.spec is not None and probe.uuid is not None
            disks = tuple(d for d in probe.spec.disks if d.target != target)
            if len(disks) == len(probe.spec.disks):
                raise InvalidArgumentError(f"domain {quote(dom.name)} has no disk {quote(target)}")
            self._write_definition(attrs.evolve(probe.spec, disks=disks), probe.uuid)
            return
        self._xl(
            ["block-detach", "--", dom.name, vdev], f"detach of disk {quote(target)} from {quote(dom.name)}", slow=True
        )
        if vdev in probe.aliases:
            aliases = {k: v for k, v in probe.aliases.items() if k != vdev}
            self._t.write_file(self._alias_path(dom.name), json.dumps(aliases).encode(), mode=0o600)

    # --- extras without an SPI operation --------------------------------------------------

    def ex_set_vcpus(self, dom: DomainRef, count: int) -> None:
        """``xl vcpu-set``: the number of online vCPUs of a running domain (up to its maxvcpus)."""
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            raise InvalidArgumentError(f"vCPU count must be a positive integer, got {quote(count)}")
        self._xl(
            ["vcpu-set", "--", dom.name, str(count)], f"vcpu-set of domain {quote(dom.name)} to {count}", name=dom.name
        )

    def ex_set_memory(self, dom: DomainRef, memory_bytes: int) -> None:
        """``xl mem-set``: the balloon target of a running domain (up to its maxmem), rounded up to MiB."""
        if not isinstance(memory_bytes, int) or isinstance(memory_bytes, bool) or memory_bytes <= 0:
            raise InvalidArgumentError(f"memory must be a positive number of bytes, got {quote(memory_bytes)}")
        mib = -(-memory_bytes // MiB)
        self._xl(
            ["mem-set", "--", dom.name, f"{mib}m"], f"mem-set of domain {quote(dom.name)} to {mib} MiB", name=dom.name
        )

    # --- inventory in bulk ----------------------------------------------------------------

    def inventory(self) -> list[DomainRecord]:
        """Every domain with disks and vifs in one round trip: ``xl list -v``, ``xl list -l``, the definitions,
        and the dom0's links and xl.conf for the vifs' networks."""
        probes, net = self._scan(long=True, net="links")
        return self._records(probes, net)

    def _records(self, probes: Mapping[str, _Probe], net: _HostNet) -> list[DomainRecord]:
        records = []
        # None where managed save is not declared (DomainRecord.managed_save), whatever the directory holds
        managed_save = Capability.DOMAIN_MANAGED_SAVE in self.connection_capabilities().supported
        for probe in probes.values():
            if probe.running is not None and probe.config is None:
                continue  # gone between xl list and xl list -l
            info_state = _state(probe.running.flags) if probe.running is not None else DomainState.SHUTOFF
            if probe.running is not None:
                vcpus, memory = probe.running.vcpus, probe.running.memory_mib * MiB
                native = probe.running.state
                gtype = str((probe.config or {}).get("c_info", {}).get("type", "pv"))
            else:
                assert probe.spec is not None
                vcpus, memory, native = probe.spec.vcpus, -(-probe.spec.memory_bytes // MiB) * MiB, "shutoff"
                gtype = _cfg.guest_type(probe.spec)
            records.append(
                DomainRecord(
                    name=probe.name,
                    uuid=probe.ref.uuid,
                    state=info_state,
                    native_state=native,
                    vcpus=vcpus,
                    memory_bytes=memory,
                    os_type="hvm" if gtype == "hvm" else "xen",
                    autostart=None,
                    disks=_disk_infos(probe),
                    nics=_nic_infos(probe, net),
                    managed_save=(probe.running is None and probe.managed_save) if managed_save else None,
                    extra={"xen": {"type": gtype, "domid": probe.running.domid if probe.running else None}},
                )
            )
        return records

    # --- storage: directory pools on the Xen host -------------------------------------------

    def list_storage_pools(self) -> list[PoolInfo]:
        """``default`` (``<dir>/images``) and every ``<dir>/pools/NAME.dir`` on the Xen host."""
        return self._pools.list_pools()

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """A pool by name; NoStoragePoolError when there is none."""
        return self._pools.lookup_pool(name)

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """The pool's regular files, read by ``qemu-img info`` with their recorded format (one round trip)."""
        return self._pools.list_volumes(pool)

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A volume by name; NoStorageVolumeError when there is none."""
        return self._pools.lookup_volume(pool, name)

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        """``qemu-img create`` on the Xen host; an existing name is refused."""
        capacity_bytes = image_volume_capacity(pool, name, capacity_bytes, format)
        return self._pools.create_volume(pool, name, capacity_bytes, format, backing)

    def delete_volume(self, pool: str, name: str) -> None:
        """Remove the volume's file."""
        self._pools.delete_volume(pool, name)

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``qemu-img resize`` on the Xen host."""
        return self._pools.resize_volume(pool, name, capacity_bytes)

    # --- networks: the dom0's Linux bridges ---------------------------------------------------

    def list_networks(self) -> list[NetworkInfo]:
        """Every Linux bridge of the dom0 (``ip -json``), each vif an attachment of the bridge it is on: ONE
        round trip whatever the number of bridges, domains and vifs (the inventory's script with the two
        iproute2 commands and xl.conf added)."""
        probes, net = self._scan(long=True, net="bridges")
        assert net.links is not None
        return networks_with_attachments(net.links.bridges, self._records(probes, net))

    def lookup_network(self, name_or_id: str) -> NetworkInfo:
        """A bridge by name (Linux bridges have no id): a search of :meth:`list_networks`."""
        return find_network(self.list_networks(), name_or_id)

    def inventory_networks(self, records: list[DomainRecord]) -> list[NetworkInfo]:
        """The bridges alone (one round trip: the two iproute2 commands), attachments from ``records``."""
        sec = self._script(_NET_SECTIONS)
        net = _HostNet.from_sections(sec, self._t.where)
        assert net.links is not None
        return networks_with_attachments(net.links.bridges, records)

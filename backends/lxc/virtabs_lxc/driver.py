"""The LXC driver: system containers through liblxc's Python binding.

URIs: ``lxc:///`` (liblxc's default lxcpath, ``/var/lib/lxc`` as root) and ``lxc:///?path=DIR`` (an lxcpath
of its own); ``rootfs_dir=DIR`` adds a directory where root file systems may lie besides the lxcpath
(:mod:`virtabs_lxc._rootfs`: a container's root file system must lie inside one of the two). liblxc is
imported when a connection opens, never when this module is imported.

A container is a domain. Its definition is liblxc's own configuration file ``<lxcpath>/<name>/config``
(see :mod:`virtabs_lxc._config` for how a :class:`DomainSpec` maps onto it); virtabs adds
``<lxcpath>/<name>/virtabs.json`` beside it with the UUID and whether the root file system belongs to the
container. Containers made by other tools have no such file: their UUID is derived from the lxcpath and the
name (stable), and their root file system counts as theirs only when it lies inside the container's directory.

Undefining never deletes a root file system the user supplied (``extra["lxc"]["rootfs"]``): ``lxc-destroy``
(``Container.destroy``) removes the rootfs even outside the lxcpath, so for such containers the rootfs key is
dropped from the configuration before liblxc removes the container's directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import tempfile
import threading
import uuid as _uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from virtabs.spi import (
    IP_MISSING,
    URI,
    Capabilities,
    Capability,
    ConnectError,
    ConnectOptions,
    Deadline,
    DiskInfo,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    DomainState,
    DomainStatus,
    Driver,
    DriverUnavailableError,
    ErrorMap,
    EventPoller,
    HostInfo,
    HostIp,
    HostLink,
    InvalidArgumentError,
    NetworkInfo,
    NicInfo,
    NicSpec,
    NoDomainError,
    NoSnapshotError,
    OperationFailedError,
    OperationInvalidError,
    OperationTimeoutError,
    Snapshot,
    quote,
)

from ._cgroup import read_usage
from ._config import (
    MANAGED_KEYS,
    MANAGED_PREFIXES,
    ConfigError,
    ContainerConfig,
    parse_config,
    render_config,
    settings_from_extra,
    spec_values,
    split_init_command,
)
from ._networks import NicFacts, list_networks, network_of_nic
from ._rootfs import confine_rootfs, resolve_rootfs_dir
from ._snapshots import SnapshotError, SnapshotRecord, SnapshotStore

__all__ = ["LxcDriver", "lxc_state"]

FREEZE_ATTEMPT_SECONDS = 10.0
"""How long one ``lxc-freeze`` may take before it is stopped, the cgroup thawed and the freeze tried again."""

INSTALL_HINT = "apt-get install lxc lxc-dev pkg-config && pip install virtabs-lxc (liblxc's Python binding `lxc`)"
META_FILE = "virtabs.json"
#: UUIDs of containers that virtabs did not define: uuid5(this namespace, "<lxcpath>/<name>").
UUID_NAMESPACE = _uuid.UUID("0e5b7a36-5c1e-4f8e-9a43-4c9f1f0f2c11")

_STATES: Mapping[str, DomainState] = {
    "STOPPED": DomainState.SHUTOFF,
    "STARTING": DomainState.RUNNING,
    "RUNNING": DomainState.RUNNING,
    "STOPPING": DomainState.SHUTDOWN,
    "ABORTING": DomainState.SHUTDOWN,
    "FREEZING": DomainState.RUNNING,
    "FROZEN": DomainState.PAUSED,
    "THAWED": DomainState.RUNNING,
}


def _nic_info(nic: NicFacts, links: dict[str, HostLink | None], ips: tuple[str, ...] = ()) -> NicInfo:
    """The NIC as ``nics()`` and the inventory report it; ``links`` caches /sys/class/net reads."""
    return NicInfo(mac=nic.mac, network=network_of_nic(nic, links), model=nic.type, ips=ips)


def lxc_state(native: str) -> DomainState:
    """liblxc's state word (``RUNNING``, ``FROZEN`` ...) as a :class:`DomainState`."""
    return _STATES.get(native.upper(), DomainState.NOSTATE)


_errors = ErrorMap(
    [(ConfigError, InvalidArgumentError), (SnapshotError, OperationFailedError)], default=OperationFailedError
)


class LxcDriver(Driver):
    """LXC system containers through liblxc (``lxc:///``, ``lxc:///?path=DIR``).

    Lifecycle: define (from an existing root file system or an LXC template), start, shutdown (the
    container's halt signal), destroy (kill), reboot (its reboot signal), suspend/resume (cgroup freezer),
    undefine, file-system snapshots (rsync copy clones; no memory). Memory and CPU use come from the
    container's cgroups (v1 and v2 layouts). No block jobs, no save/restore, no storage pools. Events come
    from an :class:`EventPoller`.
    """

    name: ClassVar[str] = "lxc"
    description: ClassVar[str] = "LXC system containers through liblxc's Python binding"
    capabilities: ClassVar[Capabilities] = Capabilities.of(
        Capability.DOMAIN_DEFINE,
        Capability.DOMAIN_START,
        Capability.DOMAIN_SHUTDOWN,
        Capability.DOMAIN_DESTROY,
        Capability.DOMAIN_REBOOT,
        Capability.DOMAIN_SUSPEND,
        Capability.DOMAIN_SNAPSHOT,
        Capability.EVENTS,
        Capability.NETWORK,
        notes={
            Capability.DOMAIN_SNAPSHOT: "rsync copy of the rootfs (frozen while copied); no memory: a revert restarts",
            Capability.DOMAIN_SUSPEND: "cgroup freezer (lxc-freeze)",
            Capability.EVENTS: "polled every 0.25 s (liblxc has no event stream)",
            Capability.NETWORK: (
                "the host's bridges, macvlan:DEV/ipvlan:DEV, 'host' (type none) and 'none' (empty); "
                "iproute2's JSON: two commands per listing"
            ),
        },
    )
    uri_examples: ClassVar[tuple[str, ...]] = ("lxc:///", "lxc:///?path=/srv/lxc")
    install_hint: ClassVar[str] = INSTALL_HINT

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if uri.host:
            raise ConnectError(f"lxc: remote hosts are not supported ({quote(uri.host)}); use lxc:/// on the host")
        if uri.path not in ("", "/"):
            raise InvalidArgumentError(f"lxc: unexpected path {quote(uri.path)}; use lxc:/// or lxc:///?path=DIR")
        unknown = sorted(set(uri.params) - {"path", "rootfs_dir"})
        if unknown:
            raise InvalidArgumentError(f"lxc: unknown URI parameter(s) {', '.join(unknown)} (known: path, rootfs_dir)")
        try:
            import lxc  # type: ignore[import-untyped]
        except ImportError as exc:
            raise DriverUnavailableError(f"the lxc driver needs liblxc's Python binding: {INSTALL_HINT}") from exc
        self._lxc: Any = lxc
        path = uri.param("path") or str(lxc.default_config_path)
        if not os.path.isdir(path):
            raise ConnectError(f"lxc: the lxcpath {quote(path)} does not exist")
        self.lxcpath = os.path.realpath(path)
        rootfs_dir = uri.param("rootfs_dir")
        #: Where a root file system given in a definition may lie (:func:`confine_rootfs`).
        self.rootfs_roots: tuple[str, ...] = (self.lxcpath,) + (
            (resolve_rootfs_dir(rootfs_dir, self.lxcpath),) if rootfs_dir is not None else ()
        )
        self._cgroup_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        self._lock = threading.Lock()
        self._poller: EventPoller | None = None
        self._ip = HostIp("lxc networks", self.options.timeout or 60.0)

    def connection_capabilities(self) -> Capabilities:
        """The declaration, without ``network`` on a host lacking iproute2's ``ip`` (the listing reads the host's
        interfaces through it)."""
        if self._ip.available():
            return type(self).capabilities
        return type(self).capabilities.without(Capability.NETWORK, reason=IP_MISSING)

    # --- helpers ------------------------------------------------------------------------------------

    def _dir(self, name: str) -> str:
        return os.path.join(self.lxcpath, name)

    def _meta(self, name: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self._dir(name), META_FILE)) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, name: str, meta: Mapping[str, Any]) -> None:
        path = os.path.join(self._dir(name), META_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(dict(meta), f)
        os.replace(path + ".tmp", path)

    def _uuid(self, name: str, meta: Mapping[str, Any] | None = None) -> str:
        meta = self._meta(name) if meta is None else meta
        value = meta.get("uuid")
        if isinstance(value, str):
            return value
        return str(_uuid.uuid5(UUID_NAMESPACE, os.path.join(self.lxcpath, name)))

    def _config(self, name: str) -> ContainerConfig:
        try:
            with open(os.path.join(self._dir(name), "config")) as f:
                return parse_config(f.read())
        except FileNotFoundError:
            raise NoDomainError(f"domain {quote(name)} not found in lxcpath {quote(self.lxcpath)}") from None

    def _container(self, dom: DomainRef) -> Any:
        container = self._lxc.Container(dom.name, self.lxcpath)
        if not container.defined and not container.running:
            raise NoDomainError(f"domain {quote(dom.name)} not found in lxcpath {quote(self.lxcpath)}")
        if self._uuid(dom.name) != dom.uuid:
            raise NoDomainError(f"domain {quote(dom.name)} (uuid {dom.uuid}) not found: the name now has another UUID")
        return container

    def _rootfs_owned(self, name: str, config: ContainerConfig, meta: Mapping[str, Any]) -> bool:
        owned = meta.get("rootfs_owned")
        if isinstance(owned, bool):
            return owned
        rootfs = config.rootfs
        if rootfs is None:
            return False
        inside = os.path.realpath(rootfs)
        return inside.startswith(os.path.realpath(self._dir(name)) + os.sep)

    def _native_states(self) -> dict[str, str]:
        """Every container's liblxc state word: defined ones from the directory scan, active ones asked."""
        names = self._lxc.list_containers(config_path=self.lxcpath)
        active = set(self._lxc.list_containers(active=True, defined=False, config_path=self.lxcpath))
        states = {}
        for name in names:
            states[name] = self._lxc.Container(name, self.lxcpath).state if name in active else "STOPPED"
        return states

    def _host_memory(self) -> int:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
        raise OperationFailedError("lxc: /proc/meminfo has no MemTotal")

    @staticmethod
    def _cgroup_item(container: Any, key: str) -> str | None:
        try:
            value = container.get_cgroup_item(key)
        except KeyError:
            return None
        return value if isinstance(value, str) and value != "" else None

    # --- host ---------------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """The host itself: containers share its kernel, CPUs and memory."""
        return HostInfo(
            hostname=socket.gethostname(),
            hypervisor="lxc",
            hypervisor_version=str(self._lxc.version),
            cpus=os.cpu_count() or 1,
            memory_bytes=self._host_memory(),
            arch=platform.machine(),
        )

    # --- reads --------------------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """Every container of the lxcpath (one directory scan, one UUID file per container)."""
        names = self._lxc.list_containers(config_path=self.lxcpath)
        return [DomainRef(name, self._uuid(name)) for name in names]

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State from liblxc; memory and CPU time from the cgroups of a running container."""
        container = self._container(dom)
        config = self._config(dom.name)
        native = str(container.state)
        state = lxc_state(native)
        limit, vcpus = spec_values(config)
        host_memory = self._host_memory()
        max_memory = limit or host_memory
        memory, cpu_ns = max_memory, 0
        if state.is_active:
            usage = read_usage(lambda key: self._cgroup_item(container, key))
            memory = usage.memory_bytes if usage.memory_bytes is not None else max_memory
            cpu_ns = usage.cpu_time_ns or 0
        return DomainInfo(
            name=dom.name,
            uuid=dom.uuid,
            state=state,
            native_state=native,
            vcpus=vcpus or os.cpu_count() or 1,
            memory_bytes=memory,
            max_memory_bytes=max_memory,
            cpu_time_ns=cpu_ns,
        )

    def domain_status(self, dom: DomainRef) -> DomainStatus:
        """liblxc's state alone (no cgroup reads); containers have no block jobs."""
        return DomainStatus(lxc_state(str(self._container(dom).state)))

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The definition read back from the configuration file."""
        self._container(dom)
        config = self._config(dom.name)
        meta = self._meta(dom.name)
        memory, vcpus = spec_values(config)
        lxc_extra: dict[str, Any] = {}
        if meta.get("template"):
            lxc_extra["template"] = meta["template"]
            if meta.get("template_args"):
                lxc_extra["template_args"] = list(meta["template_args"])
        elif config.rootfs:
            lxc_extra["rootfs"] = config.rootfs
        init = config.get("lxc.init.cmd")
        if init:
            lxc_extra["init"] = split_init_command(init)
        passthrough: dict[str, Any] = {}
        for key, value in config.items:
            if key in MANAGED_KEYS or key.startswith(MANAGED_PREFIXES):
                continue
            passthrough.setdefault(key, []).append(value)
        if passthrough:
            lxc_extra["config"] = {k: v[0] if len(v) == 1 else v for k, v in passthrough.items()}
        return DomainSpec(
            name=dom.name,
            memory_bytes=memory or self._host_memory(),
            vcpus=vcpus or os.cpu_count() or 1,
            nics=tuple(NicSpec(network=link, mac=mac, model=kind) for link, mac, kind in config.nics()),
            uuid=dom.uuid,
            os_type="exe",
            extra={"lxc": lxc_extra},
        )

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """None: a container has a root file system (in ``domain_spec().extra``), not block disks."""
        self._container(dom)
        return []

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """The configured interfaces, with their addresses while the container runs; ``network`` is the listed
        network each is on, None when it is on none the host knows (``_networks``)."""
        container = self._container(dom)
        config = self._config(dom.name)
        running = bool(container.running)
        out = []
        links: dict[str, HostLink | None] = {}
        for nic in config.nic_facts():
            ips: tuple[str, ...] = ()
            if running and nic.type == "veth":
                name = container.get_running_config_item(f"lxc.net.{nic.index}.veth.pair")
                with contextlib.suppress(Exception):
                    ips = tuple(container.get_ips(interface=name) if name else ())
            out.append(_nic_info(nic, links, ips))
        return out

    def inventory(self) -> list[DomainRecord]:
        """Every container from one scan: configuration files, UUID files and the active ones' states."""
        states = self._native_states()
        records = []
        links: dict[str, HostLink | None] = {}  # each interface the NICs name read once from /sys/class/net
        for name, native in sorted(states.items()):
            errors: dict[str, str] = {}
            meta = self._meta(name)
            try:
                config = self._config(name)
            except NoDomainError as exc:
                errors["config"] = str(exc)
                config = ContainerConfig()
            memory, vcpus = spec_values(config)
            records.append(
                DomainRecord(
                    name=name,
                    uuid=self._uuid(name, meta),
                    state=lxc_state(native),
                    native_state=native,
                    vcpus=vcpus or os.cpu_count() or 1,
                    memory_bytes=memory,
                    os_type="exe",
                    autostart=config.get("lxc.start.auto") == "1",
                    nics=[_nic_info(nic, links) for nic in config.nic_facts()],
                    snapshot_count=SnapshotStore(self._dir(name)).count(),
                    extra={"rootfs": config.rootfs, "lxcpath": self.lxcpath},
                    field_errors=errors,
                )
            )
        return records

    def list_networks(self) -> list[NetworkInfo]:
        """The host's bridges, ``macvlan:DEV``/``ipvlan:DEV``, ``host`` and ``none``, with the containers' NICs on
        them: two ``ip -json`` commands and one scan of the lxcpath, whatever the number of networks and NICs."""
        containers = []
        for name in self._lxc.list_containers(config_path=self.lxcpath):
            try:
                config = self._config(name)
            except NoDomainError:
                continue  # removed since the scan: not a container any more
            containers.append((self._uuid(name), name, config.nic_facts()))
        return list_networks(containers, self._ip)

    def autostart(self, dom: DomainRef) -> bool | None:
        """``lxc.start.auto``."""
        self._container(dom)
        return self._config(dom.name).get("lxc.start.auto") == "1"

    # --- lifecycle ----------------------------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """Write the container's configuration (existing rootfs) or create it from an LXC template."""
        name = spec.name
        if spec.os_type != "exe":
            raise InvalidArgumentError(
                f"domain {quote(name)}: LXC domains are containers, os_type must be 'exe' (got {quote(spec.os_type)})"
            )
        if spec.disks:
            raise InvalidArgumentError(
                f"domain {quote(name)}: LXC containers have no block disks; give the root file system as "
                "extra['lxc']['rootfs'] or extra['lxc']['template']"
            )
        with _errors(f"definition of domain {quote(name)}"):
            settings = settings_from_extra(name, spec.extra)
        domain_uuid = spec.uuid or str(_uuid.uuid4())
        with self._lock:
            if self._lxc.Container(name, self.lxcpath).defined or os.path.exists(self._dir(name)):
                raise OperationFailedError(f"domain {quote(name)} already exists in lxcpath {quote(self.lxcpath)}")
            if any(ref.uuid == domain_uuid for ref in self.list_domains()):
                raise OperationFailedError(f"domain {quote(name)}: UUID {domain_uuid} is already used")
            rootfs = self._confined_rootfs(name, settings.rootfs)
            with _errors(f"definition of domain {quote(name)}"):
                text = render_config(
                    name=name,
                    rootfs=rootfs,
                    settings=settings,
                    memory_bytes=spec.memory_bytes,
                    vcpus=spec.vcpus,
                    nics=[(nic.network, nic.mac) for nic in spec.nics],
                    cgroup_v2=self._cgroup_v2,
                )
            self._check_rootfs_key(name, text, rootfs)
            meta: dict[str, Any] = {"uuid": domain_uuid, "rootfs_owned": settings.rootfs is None}
            if settings.template is not None:
                meta["template"] = settings.template
                meta["template_args"] = list(settings.template_args)
                self._create_from_template(name, text, settings.template, settings.template_args)
            else:
                os.mkdir(self._dir(name), 0o750)
                with open(os.path.join(self._dir(name), "config"), "w") as f:
                    f.write(text)
            with open(os.path.join(self._dir(name), META_FILE), "w") as f:
                json.dump(meta, f)
        return DomainRef(name, domain_uuid)

    def _confined_rootfs(self, name: str, requested: str | None) -> str | None:
        """``requested`` resolved and confined to the connection's roots (None for a template's own rootfs)."""
        if requested is None:
            return None
        containers: list[tuple[str, str | None]] = []
        for other in self._lxc.list_containers(config_path=self.lxcpath):
            try:
                other_rootfs = self._config(other).rootfs
            except NoDomainError:
                other_rootfs = None
            containers.append((self._dir(other), other_rootfs))
        return confine_rootfs(name, requested, lxcpath=self.lxcpath, roots=self.rootfs_roots, containers=containers)

    @staticmethod
    def _check_rootfs_key(name: str, text: str, rootfs: str | None) -> None:
        """The configuration about to be written names the checked root file system and nothing else (liblxc
        takes a key's last value, so an ``extra["lxc"]["config"]`` key could otherwise name another)."""
        named = parse_config(text).all("lxc.rootfs.path")
        if named != ([f"dir:{rootfs}"] if rootfs is not None else []):
            raise InvalidArgumentError(
                f"domain {quote(name)}: the root file system is given by extra['lxc']['rootfs'] or made by the "
                "template, not by an lxc.rootfs.path key"
            )

    def _create_from_template(self, name: str, text: str, template: str, args: tuple[str, ...]) -> None:
        container = self._lxc.Container(name, self.lxcpath)
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
            conf.write(text)
            conf.flush()
            if not container.load_config(conf.name):
                raise InvalidArgumentError(f"domain {quote(name)}: liblxc refused the generated configuration")
        if not container.create(template, self._lxc.LXC_CREATE_QUIET, tuple(args)):
            with contextlib.suppress(Exception):
                if container.defined:
                    container.destroy()
            raise OperationFailedError(f"domain {quote(name)}: the LXC template {quote(template)} failed")

    def undefine(self, dom: DomainRef) -> None:
        """Remove the container; a root file system the user supplied is left untouched."""
        container = self._container(dom)
        config = self._config(dom.name)
        meta = self._meta(dom.name)
        with self._lock:
            if not self._rootfs_owned(dom.name, config, meta) and config.rootfs is not None:
                # liblxc's destroy deletes lxc.rootfs.path wherever it is: take the key away first.
                kept = [(k, v) for k, v in config.items if k != "lxc.rootfs.path"]
                with open(os.path.join(self._dir(dom.name), "config"), "w") as f:
                    f.write("".join(f"{k} = {v}\n" for k, v in kept))
                container = self._lxc.Container(dom.name, self.lxcpath)
            if not container.destroy():
                raise OperationFailedError(f"LXC could not destroy the definition of domain {quote(dom.name)}")

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Start the container (daemonized); freeze it right away when ``paused``."""
        container = self._container(dom)
        if not container.start(close_fds=True):
            raise OperationFailedError(f"LXC could not start domain {quote(dom.name)}")
        if paused:
            self._freeze(dom, "after starting it")

    def shutdown(self, dom: DomainRef) -> None:
        """Send the container's halt signal (``lxc.signal.halt``) to its init and return; thaw it first."""
        container = self._container(dom)
        if container.state == "FROZEN":
            self._lxc_tool("lxc-unfreeze", dom, f"thaw of domain {quote(dom.name)} to shut it down")
        if not container.shutdown(0):
            raise OperationFailedError(f"LXC could not signal domain {quote(dom.name)} to shut down")

    def destroy(self, dom: DomainRef) -> None:
        """Kill every process of the container (also a frozen one)."""
        if not self._container(dom).stop():
            raise OperationFailedError(f"LXC could not stop domain {quote(dom.name)}")

    def reboot(self, dom: DomainRef) -> None:
        """Send the container's reboot signal (``lxc.signal.reboot``), thawing it first; liblxc restarts it."""
        container = self._container(dom)
        if container.state == "FROZEN":
            self._lxc_tool("lxc-unfreeze", dom, f"thaw of domain {quote(dom.name)} to reboot it")
        # lxc-stop --reboot --nowait sends the reboot signal and returns, as liblxc's reboot() does, but in a
        # child process that the connection's timeout can stop: in-process, liblxc waited on the container's
        # command socket for ever once in CI (a reboot of a container frozen just before).
        self._lxc_tool("lxc-stop", dom, f"reboot of domain {quote(dom.name)}", "--reboot", "--nowait")

    def suspend(self, dom: DomainRef) -> None:
        """Freeze the container's cgroup."""
        self._container(dom)  # NoDomainError first
        self._freeze(dom)

    def _freeze(self, dom: DomainRef, why: str = "") -> None:
        """Freeze the container's cgroup with ``lxc-freeze``, bounded by the connection's timeout.

        liblxc's freeze waits for the freezer without a limit and without giving Python's signal
        handlers a chance (seen here once: a container frozen right after its start never reached
        FROZEN, and the call slept forever). In a child process it can be stopped: an attempt that
        takes longer than ``FREEZE_ATTEMPT_SECONDS`` is killed and the cgroup thawed, then tried again
        until the connection's timeout (60 s without one).
        """
        what = f"freeze of domain {quote(dom.name)}" + (f" {why}" if why else "")
        deadline = Deadline(self.options.timeout or 60.0)
        argv = ["-n", dom.name, "-P", self.lxcpath]
        while True:
            limit = deadline.remaining(FREEZE_ATTEMPT_SECONDS) or 0.0
            try:
                res = subprocess.run(["lxc-freeze", *argv], capture_output=True, text=True, timeout=limit, check=False)
            except FileNotFoundError:
                raise DriverUnavailableError(f"{what}: lxc-freeze is missing; {INSTALL_HINT}") from None
            except subprocess.TimeoutExpired:
                subprocess.run(["lxc-unfreeze", *argv], capture_output=True, timeout=30, check=False)
                if deadline.expired:
                    raise OperationTimeoutError(f"{what} did not finish within the connection's timeout") from None
                continue
            if res.returncode != 0:
                detail = res.stderr.strip() or "lxc-freeze failed"
                raise OperationFailedError(f"LXC could not complete the {what}: {detail}")
            return

    def resume(self, dom: DomainRef) -> None:
        """Thaw the container's cgroup."""
        self._container(dom)  # NoDomainError first
        self._lxc_tool("lxc-unfreeze", dom, f"thaw of domain {quote(dom.name)}")

    def _lxc_tool(self, tool: str, dom: DomainRef, what: str, *extra: str) -> None:
        """Run an LXC tool on the container in a child process, bounded by the connection's timeout (60 s
        without one): liblxc's in-process calls can wait on a container for ever, beyond any signal."""
        argv = [tool, "-n", dom.name, "-P", self.lxcpath, *extra]
        try:
            limit = self.options.timeout or 60.0
            res = subprocess.run(argv, capture_output=True, text=True, timeout=limit, check=False)
        except FileNotFoundError:
            raise DriverUnavailableError(f"{what}: {tool} is missing; {INSTALL_HINT}") from None
        except subprocess.TimeoutExpired:
            raise OperationTimeoutError(f"{what} did not finish within the connection's timeout") from None
        if res.returncode != 0:
            detail = res.stderr.strip()[:500] or f"{tool} failed"
            raise OperationFailedError(f"LXC could not complete the {what}: {detail}")

    # --- snapshots ----------------------------------------------------------------------------------

    def _snapshot(self, dom: DomainRef, record: SnapshotRecord) -> Snapshot:
        return Snapshot(
            name=record.name,
            domain=dom.name,
            created_at=record.created_at,
            state=lxc_state(record.state),
            parent=record.parent,
            kind="copy",
        )

    def _store(self, dom: DomainRef) -> SnapshotStore:
        return SnapshotStore(self._dir(dom.name))

    def _record(self, dom: DomainRef, name: str) -> SnapshotRecord:
        store = self._store(dom)
        if not store.exists(name):
            raise NoSnapshotError(f"domain {quote(dom.name)} has no snapshot {quote(name)}")
        with _errors(f"snapshot {quote(name)} of domain {quote(dom.name)}"):
            return store.load(name)

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """Copy the rootfs (and the configuration) with rsync; a running container is frozen meanwhile."""
        container = self._container(dom)
        config = self._config(dom.name)
        if config.rootfs is None or not os.path.isdir(config.rootfs):
            raise OperationFailedError(f"domain {quote(dom.name)} has no root file system directory to snapshot")
        store = self._store(dom)
        if os.path.exists(store.path(name)):
            raise OperationInvalidError(f"domain {quote(dom.name)} already has a snapshot {quote(name)}")
        with open(os.path.join(self._dir(dom.name), "config")) as f:
            config_text = f.read()
        meta = self._meta(dom.name)
        native = str(container.state)
        froze = native == "RUNNING"
        if froze:
            self._freeze(dom, f"for snapshot {quote(name)}")
        try:
            with _errors(f"snapshot {quote(name)} of domain {quote(dom.name)}"):
                parent = meta.get("current_snapshot")
                record = store.create(
                    name, config.rootfs, config_text, native, parent if store.exists(str(parent)) else None
                )
        finally:
            if froze:
                container.unfreeze()
        meta.setdefault("uuid", dom.uuid)
        meta["current_snapshot"] = name
        self._write_meta(dom.name, meta)
        return self._snapshot(dom, record)

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """The snapshots, oldest first."""
        self._container(dom)
        with _errors(f"snapshots of domain {quote(dom.name)}"):
            return [self._snapshot(dom, r) for r in self._store(dom).records()]

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """Stop the container, put the snapshot's rootfs and configuration back, start it again if it ran then."""
        container = self._container(dom)
        record = self._record(dom, name)
        rootfs = self._config(dom.name).rootfs
        if rootfs is None:
            raise OperationFailedError(f"domain {quote(dom.name)} has no root file system to revert")
        if container.running and not (container.stop() and container.wait("STOPPED", 30)):
            raise OperationFailedError(
                f"LXC could not stop domain {quote(dom.name)} to revert to snapshot {quote(name)}"
            )
        with _errors(f"revert of domain {quote(dom.name)} to snapshot {quote(name)}"):
            config_text = self._store(dom).restore_rootfs(name, rootfs)
        with open(os.path.join(self._dir(dom.name), "config"), "w") as f:
            f.write(config_text)
        meta = self._meta(dom.name)
        meta.setdefault("uuid", dom.uuid)
        meta["current_snapshot"] = name
        self._write_meta(dom.name, meta)
        state = lxc_state(record.state)
        if state.is_active:
            self.start(dom, paused=state == DomainState.PAUSED)

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """Remove the snapshot's copy; its children's parent becomes its parent."""
        self._container(dom)
        record = self._record(dom, name)
        with _errors(f"delete of snapshot {quote(name)} of domain {quote(dom.name)}"):
            self._store(dom).delete(name)
        meta = self._meta(dom.name)
        if meta.get("current_snapshot") == name:
            meta["current_snapshot"] = record.parent
            self._write_meta(dom.name, meta)

    # --- events -------------------------------------------------------------------------------------

    def _event_snapshot(self) -> dict[DomainRef, DomainState]:
        return {DomainRef(name, self._uuid(name)): lxc_state(native) for name, native in self._native_states().items()}

    def start_events(self) -> None:
        """Start polling the lxcpath for state changes."""
        if self._poller is None:
            self._poller = EventPoller(self._event_snapshot, self.emit, interval=0.25, name="virtabs-lxc-events")
            self._poller.start()

    def stop_events(self) -> None:
        """Stop polling."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()

    def close(self) -> None:
        """Stop the event poller, if any."""
        self.stop_events()

"""The VirtualBox driver: ``VBoxManage`` on this host (``vbox:///session``) or over ssh
(``vbox+ssh://user@host/session``), as Vagrant and Packer drive VirtualBox.

Every call is one ``VBoxManage`` invocation through the command transport of the driver toolkit; bulk reads
(listing with details, inventory, event polling) are one host round trip for all machines (a fixed
``sh -c`` script runs ``list hdds``, ``list vms`` and one ``showvminfo`` per machine).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import ipaddress
import posixpath
import re
import threading
from collections.abc import Mapping
from typing import ClassVar

from virtabs.spi import (
    URI,
    Capabilities,
    ConnectError,
    ConnectOptions,
    DiskInfo,
    DiskSpec,
    DomainInfo,
    DomainRecord,
    DomainRef,
    DomainSpec,
    DomainState,
    Driver,
    EventPoller,
    HostInfo,
    InvalidArgumentError,
    NetworkAttachment,
    NetworkInfo,
    NetworkKind,
    NetworkSubnet,
    NicInfo,
    NicSpec,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    PoolInfo,
    Snapshot,
    VirtabsError,
    VolumeInfo,
    image_volume_capacity,
    poll_until,
    quote,
)

from ._migration import VboxMigration
from ._parse import (
    MIB,
    Attachment,
    DhcpServer,
    HostInterface,
    Medium,
    Nic,
    VmInfo,
    host_basename,
    host_dirname,
    host_join,
    parse_colon_blocks,
    parse_list_vms,
    parse_version,
    slot_for_target,
    target_for,
)
from ._transport import CommandTransport
from ._vboxmanage import Batch, VBoxManage

__all__ = ["VboxDriver"]

POOL = "default"
FORMATS = {"vdi": "VDI", "vmdk": "VMDK", "vhd": "VHD", "qcow2": "QCOW", "qed": "QED", "raw": "RAW"}
"""virtabs volume format -> VirtualBox storage format backend (``createmedium --format``)."""
NATIVE_FORMATS = {v: k for k, v in FORMATS.items()} | {"VHDX": "vhdx"}
BUS_CONTROLLERS = {"ide": ("ide", "PIIX4"), "scsi": ("scsi", "LsiLogic")}
"""DiskSpec.bus -> (storagectl --add, --controller); every other bus becomes SATA/AHCI, the hot-pluggable one."""
CONTROLLER_BUS = {
    "PIIX3": "ide",
    "PIIX4": "ide",
    "ICH6": "ide",
    "IntelAhci": "sata",
    "LsiLogic": "scsi",
    "BusLogic": "scsi",
    "LsiLogicSas": "scsi",
    "VirtioSCSI": "virtio",
    "NVMe": "nvme",
}
NIC_MODELS = {"virtio": "virtio", "e1000": "82540EM", "e1000e": "82545EM", "pcnet": "Am79C973", "rtl8139": "82540EM"}
NIC_MODELS_BACK = {
    "virtio": "virtio",
    "82540EM": "e1000",
    "82543GC": "e1000",
    "82545EM": "e1000e",
    "Am79C970A": "pcnet",
    "Am79C973": "pcnet",
    "Am79C960": "pcnet",
}
NAT_NETWORKS = frozenset({"user", "default", "nat"})
NAT_NAME = "user"
"""The network every adapter attached to NAT (VirtualBox's per-machine NAT engine) is on."""
_ATTACHED = {
    "bridged": "bridged",
    "hostonly": "hostonly",
    "intnet": "intnet",
    "natnetwork": "natnetwork",
    "hostonlynetwork": "hostonlynet",
}
"""Adapter attachment types on a network named by the adapter's target (``nat`` is :data:`NAT_NAME`; ``null``,
``generic`` and ``cloud`` adapters are on no network the host lists)."""
_SNAP_META = re.compile(r"^virtabs: created (\S+) state (\w+)")


def _mac_native(mac: str) -> str:
    return mac.replace(":", "").upper()


def _mac_portable(mac: str | None) -> str | None:
    if not mac or len(mac) != 12:
        return None
    mac = mac.lower()
    return ":".join(mac[i : i + 2] for i in range(0, 12, 2))


_SAVED = ("saved", "aborted-saved")
"""The machine states that hold a saved state (a managed save: ``startvm`` resumes it)."""


class VboxDriver(VboxMigration, Driver):
    """VirtualBox through ``VBoxManage``, locally or over one multiplexed ssh connection.

    No live block copy, pull or commit (VirtualBox has none: disks move or clone only offline);
    snapshots, SATA disk hot-plug, one storage pool (the media registry), polled events and live
    migration by teleporting (shared storage only).
    """

    name: ClassVar[str] = "vbox"
    description: ClassVar[str] = "VirtualBox through VBoxManage, locally or over ssh (no block jobs)"
    capabilities: ClassVar[Capabilities] = Capabilities.of(
        "domain.define",
        "domain.start",
        "domain.shutdown",
        "domain.destroy",
        "domain.reboot",
        "domain.suspend",
        "domain.managed_save",
        "domain.snapshot",
        "domain.disk_hotplug",
        "storage.pool",
        "storage.volume",
        "storage.volume.resize",
        "events",
        "network",
        "domain.migrate",
        "domain.migrate.live",
        "domain.migrate.keep_source",
        "domain.migrate.max_downtime",
        "domain.migrate.offline",
        notes={
            "domain.migrate": "teleporting: the destination defines the machine and waits as a teleporter target "
            "(modifyvm --teleporter on, startvm), the source runs controlvm teleport; shared storage only",
            "domain.migrate.live": "controlvm teleport moves a running or paused machine",
            "domain.migrate.keep_source": "the teleported source stays registered (state teleported, shut off) "
            "unless UNDEFINE_SOURCE",
            "domain.migrate.offline": "the destination defines the shut-off machine from the spec (shared disks)",
            "domain.migrate.max_downtime": "controlvm teleport --maxdowntime (VirtualBox's default 250 ms); "
            "VBoxManage reports no downtime afterwards",
            "domain.managed_save": "controlvm savestate into the machine's Snapshots folder; discardstate removes it",
            "domain.start": "start paused = startvm, then controlvm pause (VirtualBox cannot start paused)",
            "domain.reboot": "controlvm reset: a hard reset (VirtualBox has no guest-cooperative reboot)",
            "domain.snapshot": "reverting an active domain powers it off, restores, and starts it again "
            "from the snapshot's saved state",
            "domain.disk_hotplug": "live only on SATA (AHCI) ports; virtio/sata disks are SATA in VirtualBox",
            "storage.pool": "one pool 'default': the media registry (list hdds), path = default machine folder",
            "storage.volume": "createmedium formats VDI, VMDK, VHD, QCOW (qcow2), QED, RAW",
            "storage.volume.resize": "modifymedium --resizebyte: grow only",
            "events": "polled: one bulk host call every 0.5 s (VBoxManage has no event stream)",
            "network": "host-only and bridged interfaces, internal networks, NAT networks and the per-machine "
            "NAT ('user'), with their adapters, in one host call; read-only",
        },
    )
    uri_examples: ClassVar[tuple[str, ...]] = (
        "vbox:///session",
        "vbox+ssh://user@host/session",
        "vbox+ssh://user@host:2222/session?keyfile=/home/me/.ssh/id_ed25519&known_hosts=/home/me/.ssh/known_hosts",
    )
    install_hint: ClassVar[str] = "install VirtualBox (VBoxManage on PATH) on the host the URI names"

    event_interval: ClassVar[float] = 0.5

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if uri.path.rstrip("/") != "/session":
            raise InvalidArgumentError(
                f"unsupported path {quote(uri.path)} in {uri.scheme}:// URI: VirtualBox has per-user machines only, "
                "use vbox:///session or vbox+ssh://[user@]host/session"
            )
        user = options.credentials.username if options.credentials is not None else None
        self._transport = CommandTransport(
            uri,
            user=user,  # the URI's user wins over it (the transport's rule)
            default_timeout=options.timeout if options.timeout is not None else 300.0,
            connect_timeout=options.timeout if options.timeout is not None else 30.0,
        )
        self._vbm = VBoxManage(self._transport)
        self._lock = threading.Lock()
        self._poller: EventPoller | None = None
        self._pool_path: str | None = None
        self._pool_made = False
        try:
            self._transport.connect()
            version = self._vbm.raw(["--version"], timeout=60)
        except VirtabsError:
            self._transport.close()
            raise
        number = parse_version(version.out)
        if version.returncode != 0 or number is None:
            self._transport.close()
            detail = (version.err or version.out).strip()
            raise ConnectError(f"VBoxManage on {self._transport.where} does not work: {detail}")
        self._version = number

    # --- connection ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the event poller and the ssh master."""
        self.stop_events()
        self._transport.close()

    def host_info(self) -> HostInfo:
        """``list hostinfo``, ``--version`` (read at connect) and ``uname -nm``."""
        facts = {}
        for block in parse_colon_blocks(self._vbm("list", "hostinfo", what="host information")):
            facts.update(block)
        uname = self._transport.run(["uname", "-nm"], timeout=60).out.split()
        memory = facts.get("Memory size", "0 MByte").split()[0]
        return HostInfo(
            hostname=uname[0] if uname else self._transport.where,
            hypervisor="VirtualBox",
            hypervisor_version=self._version,
            cpus=int(facts.get("Processor online count", facts.get("Processor count", "0")) or 0),
            memory_bytes=int(memory) * MIB if memory.isdigit() else 0,
            arch=uname[1] if len(uname) > 1 else "x86_64",
            cpu_model=facts.get("Processor#0 description"),
        )

    # --- reads -----------------------------------------------------------------------------------

    def list_domains(self) -> list[DomainRef]:
        """``list vms``: one call."""
        out = self._vbm("list", "vms", what="list of machines")
        return [DomainRef(name, uuid) for name, uuid in parse_list_vms(out)]

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        """``showvminfo <name|uuid>``: NoDomainError when VirtualBox knows no such machine."""
        info = self._vbm.machine(name_or_uuid)
        return DomainRef(info.name, info.uuid)

    def _info(self, dom: DomainRef) -> VmInfo:
        return self._vbm.machine(dom.uuid)

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State, vCPUs and memory from ``showvminfo`` (VirtualBox reports no CPU time)."""
        return self._domain_info(self._info(dom))

    @staticmethod
    def _domain_info(info: VmInfo) -> DomainInfo:
        return DomainInfo(
            name=info.name,
            uuid=info.uuid,
            state=info.state,
            native_state=info.native_state,
            vcpus=info.cpus,
            memory_bytes=info.memory_mib * MIB,
            max_memory_bytes=info.memory_mib * MIB,
        )

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The machine's settings as a DomainSpec (``extra["vbox"]["ostype"]`` keeps the OS type)."""
        info = self._info(dom)
        disks = tuple(
            DiskSpec(target, att.path or "", format="raw", bus=CONTROLLER_BUS.get(att.controller_type, "sata"))
            for target, att in self._targets(info)
            if att.path
        )
        return DomainSpec(
            name=info.name,
            memory_bytes=info.memory_mib * MIB,
            vcpus=info.cpus,
            disks=tuple(self._with_format(d, info) for d in disks),
            nics=tuple(
                NicSpec(network=self._network(n), mac=_mac_portable(n.mac), model=self._model(n) or "e1000")
                for n in info.nics
            ),
            uuid=info.uuid,
            extra={"vbox": {"ostype": info.ostype}},
        )

    def _with_format(self, disk: DiskSpec, info: VmInfo) -> DiskSpec:
        ext = posixpath.splitext(host_basename(disk.path))[1].lower().lstrip(".")
        fmt = {"vdi": "vdi", "vmdk": "vmdk", "vhd": "vhd", "qcow": "qcow2", "qcow2": "qcow2", "qed": "qed"}.get(ext)
        return DiskSpec(disk.target, disk.path, format=fmt or "raw", bus=disk.bus) if fmt else disk

    @staticmethod
    def _targets(info: VmInfo) -> list[tuple[str, Attachment]]:
        """Target names of the hard disks (DVD and floppy slots are not disks: an ISO is neither a writable
        disk nor a reason to move the next disk's name)."""
        taken: list[str] = []
        result = []
        for att in info.attachments:
            if att.kind != "hdd":
                continue
            target = target_for(att, taken)
            taken.append(target)
            result.append((target, att))
        return result

    @staticmethod
    def _network(nic: Nic) -> str:
        if nic.type == "nat":
            return "user"
        return nic.target or nic.type

    @staticmethod
    def _listed_network(nic: Nic) -> str | None:
        """The name of the network :meth:`list_networks` lists the adapter on; None when it is on none."""
        if nic.type == "nat":
            return NAT_NAME
        return (nic.target or None) if nic.type in _ATTACHED else None

    @staticmethod
    def _model(nic: Nic) -> str | None:
        return NIC_MODELS_BACK.get(nic.model or "", nic.model)

    def _disk_infos(self, info: VmInfo, media: Mapping[str, Medium]) -> list[DiskInfo]:
        disks = []
        for target, att in self._targets(info):
            if not att.path:
                continue
            medium = media.get(att.medium_uuid or "")
            chain: list[str] = []
            parent = medium.parent if medium else None
            while parent is not None and parent in media and len(chain) < 64:
                chain.append(media[parent].location)
                parent = media[parent].parent
            disks.append(
                DiskInfo(
                    target=target,
                    path=att.path,
                    format=NATIVE_FORMATS.get(medium.format, medium.format.lower()) if medium else "raw",
                    bus=CONTROLLER_BUS.get(att.controller_type, "sata"),
                    capacity_bytes=medium.capacity_bytes if medium else None,
                    backing_chain=tuple(chain),
                    pool=POOL if medium else None,
                )
            )
        return disks

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """Attachments from ``showvminfo`` with formats and sizes from ``list hdds``: one host call."""
        batch = self._vbm.batch([dom.uuid], media=True)
        info = batch.machines.get(dom.uuid)
        if info is None:
            info = self._info(dom)  # raises NoDomainError
        return self._disk_infos(info, {m.uuid: m for m in batch.media})

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """Adapters ``nic1..nicN`` (MACs in aa:bb:... form; NAT is network ``user``)."""
        return [self._nic_info(n) for n in self._info(dom).nics]

    def _nic_info(self, nic: Nic) -> NicInfo:
        return NicInfo(mac=_mac_portable(nic.mac), network=self._listed_network(nic), model=self._model(nic))

    # --- networks --------------------------------------------------------------------------------

    def list_networks(self) -> list[NetworkInfo]:
        """Host-only and bridged interfaces, internal networks, NAT networks and the per-machine NAT (``user``),
        each with the machines' adapters on it: ONE host call (``list hostonlyifs``, ``bridgedifs``,
        ``intnets``, ``--long natnets``, ``list vms`` and ``showvminfo`` of each machine, in one script)."""
        return _networks(self._vbm.batch(None, media=False, networks=True))

    def inventory(self) -> list[DomainRecord]:
        """Every machine with disks, NICs and snapshot count: one host call for all of them."""
        batch = self._vbm.batch(None, media=True)
        media = {m.uuid: m for m in batch.media}
        records = []
        for name, uuid in batch.listed:
            info = batch.machines.get(uuid)
            if info is None:
                continue  # vanished between "list vms" and "showvminfo"
            records.append(
                DomainRecord(
                    name=info.name or name,
                    uuid=uuid,
                    state=info.state,
                    native_state=info.native_state,
                    vcpus=info.cpus,
                    memory_bytes=info.memory_mib * MIB,
                    os_type="hvm",
                    autostart=None,
                    disks=tuple(self._disk_infos(info, media)),
                    nics=tuple(self._nic_info(n) for n in info.nics),
                    snapshot_count=len(info.snapshots),
                    extra={"vbox": {"ostype": info.ostype}},
                    managed_save=info.native_state in _SAVED,
                )
            )
        return records

    # --- define / undefine ------------------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """``createvm --register``, ``modifyvm``, ``storagectl`` per target prefix, ``storageattach`` per disk.

        A failure half-way removes the half-made machine again (its disks are detached first, never deleted).
        """
        if spec.memory_bytes % MIB:
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: VirtualBox memory is whole MiB, not {spec.memory_bytes} bytes"
            )
        for name, uuid in self._listed():
            if name == spec.name or (spec.uuid and uuid == spec.uuid.lower()):
                raise OperationInvalidError(f"domain {quote(spec.name)} already exists with uuid {uuid}")
        vbox_extra = spec.extra.get("vbox", {})
        ostype = str(vbox_extra.get("ostype", "Other_64")) if isinstance(vbox_extra, Mapping) else "Other_64"
        args = ["createvm", "--name", spec.name, "--ostype", ostype, "--register"]
        if spec.uuid:
            args += ["--uuid", spec.uuid]
        out = self._vbm(*args, what=f"define domain {quote(spec.name)}")
        match = re.search(r"^UUID: ([0-9a-fA-F-]+)$", out, re.M)
        if not match:
            raise OperationFailedError(
                f"define domain {quote(spec.name)}: createvm printed no UUID: {quote(out.strip())}"
            )
        ref = DomainRef(spec.name, match.group(1).lower())
        try:
            self._configure(ref, spec)
        except BaseException:
            with contextlib.suppress(VirtabsError):
                self._remove(ref)
            raise
        return ref

    def _listed(self) -> list[tuple[str, str]]:
        return parse_list_vms(self._vbm("list", "vms", what="list of machines"))

    def _configure(self, ref: DomainRef, spec: DomainSpec) -> None:
        what = f"define domain {quote(spec.name)}"
        modify = ["modifyvm", ref.uuid, "--memory", str(spec.memory_bytes // MIB), "--cpus", str(spec.vcpus)]
        for index, nic in enumerate(spec.nics, 1):
            if nic.network in NAT_NETWORKS:
                modify += [f"--nic{index}", "nat"]
            else:
                modify += [f"--nic{index}", "intnet", f"--intnet{index}", nic.network]
            modify += [f"--macaddress{index}", _mac_native(nic.mac) if nic.mac else "auto"]
            modify += [f"--nictype{index}", NIC_MODELS.get(nic.model, "82540EM")]
        self._vbm(*modify, what=what)
        controllers: dict[str, str] = {}
        for disk in spec.disks:
            prefix = slot_for_target(disk.target)[0]
            if prefix not in controllers:
                add, ctype = BUS_CONTROLLERS.get(disk.bus, ("sata", "IntelAhci"))
                controllers[prefix] = ctype
                ports = max(slot_for_target(d.target)[1] for d in spec.disks if slot_for_target(d.target)[0] == prefix)
                self._vbm(
                    "storagectl", ref.uuid, "--name", prefix, "--add", add, "--controller", ctype,
                    *(["--portcount", str(ports + 1)] if add != "ide" else []),
                    what=what,
                )  # fmt: skip
        for disk in spec.disks:
            self._attach(ref, disk, controllers[slot_for_target(disk.target)[0]], what)

    def _attach(self, ref: DomainRef, disk: DiskSpec, controller_type: str, what: str) -> None:
        prefix, port, device = slot_for_target(disk.target)
        args = ["storageattach", ref.uuid, "--storagectl", prefix, "--port", str(port), "--device", str(device)]
        args += ["--type", "hdd", "--medium", disk.path]
        if controller_type == "IntelAhci":
            args += ["--hotpluggable", "on"]
        self._vbm(*args, what=f"{what}: disk {quote(disk.target)} ({disk.path})")

    def _remove(self, ref: DomainRef) -> None:
        """Delete the snapshots, detach every hard disk, then ``unregistervm --delete``: no disk is deleted.

        ``unregistervm --delete`` is ``IMachine::unregister(CleanupMode_DetachAllReturnHardDisksOnly)``
        then ``deleteConfig`` on every hard disk it returned: those attached now *and those the snapshots
        hold* (the base images and the differencing images). So the snapshots go first, leaves first
        (``snapshot delete`` merges each differencing image back, the disk keeps its current content),
        then the current attachments are detached, and nothing is left for ``--delete`` but the settings.
        """
        info = self._vbm.machine(ref.uuid)
        what = f"undefine domain {quote(ref.name)}"
        if info.native_state in _SAVED:
            self._vbm("discardstate", ref.uuid, what=what)
        left = list(info.snapshots)
        while left:
            parents = {s.parent_uuid for s in left}
            leaves = [s for s in left if s.uuid not in parents]
            for snap in leaves:
                self._vbm("snapshot", ref.uuid, "delete", snap.uuid, what=f"{what}: delete snapshot {snap.name!r}")
            left = [s for s in left if s not in leaves]
        if info.snapshots:
            info = self._vbm.machine(ref.uuid)  # merging moved the attachments back to the base images
        for att in info.attachments:
            if att.path:
                self._vbm(
                    "storageattach", ref.uuid, "--storagectl", att.controller, "--port", str(att.port),
                    "--device", str(att.device), "--medium", "none", what=what,
                )  # fmt: skip
        self._vbm("unregistervm", ref.uuid, "--delete", what=what)

    def undefine(self, dom: DomainRef) -> None:
        """Remove the machine, its snapshots and its settings folder; its disk images stay (as volumes of the
        pool), holding the current content (the snapshots' differencing images are merged into them)."""
        self._remove(dom)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, dom: DomainRef, paused: bool) -> None:
        """``startvm --type headless`` (a saved state is resumed from); then ``controlvm pause`` if asked.

        A machine that arrived by teleport keeps ``teleporterenabled="on"`` (VirtualBox refuses ``modifyvm``
        while it runs), with which ``startvm`` would wait for another teleport instead of booting: it is
        turned off first (``modifyvm --teleporter off``)."""
        if self._info(dom).teleporter_enabled:
            self._vbm("modifyvm", dom.uuid, "--teleporter", "off", what=f"start domain {quote(dom.name)}")
        self._vbm("startvm", dom.uuid, "--type", "headless", what=f"start domain {quote(dom.name)}")
        if paused:
            self._vbm("controlvm", dom.uuid, "pause", what=f"pause domain {quote(dom.name)} after start")

    def managed_save(self, dom: DomainRef) -> None:
        """``controlvm savestate``: VirtualBox keeps the state in the machine's folder; ``startvm`` resumes it."""
        self._vbm("controlvm", dom.uuid, "savestate", what=f"managed save of domain {dom.name!r}")

    def has_managed_save(self, dom: DomainRef) -> bool:
        """The machine is in state ``saved`` (or ``aborted-saved``)."""
        return self._info(dom).native_state in _SAVED

    def managed_save_remove(self, dom: DomainRef) -> None:
        """``discardstate`` (only when there is a saved state: VirtualBox refuses it otherwise)."""
        if self.has_managed_save(dom):
            self._vbm("discardstate", dom.uuid, what=f"managed save removal of domain {dom.name!r}")

    def shutdown(self, dom: DomainRef) -> None:
        """``controlvm acpipowerbutton``: the guest decides; the core waits."""
        self._vbm("controlvm", dom.uuid, "acpipowerbutton", what=f"shut down domain {quote(dom.name)}")

    def destroy(self, dom: DomainRef) -> None:
        """``controlvm poweroff``."""
        self._vbm("controlvm", dom.uuid, "poweroff", what=f"destroy domain {quote(dom.name)}")

    def reboot(self, dom: DomainRef) -> None:
        """``controlvm reset`` (hard)."""
        self._vbm("controlvm", dom.uuid, "reset", what=f"reboot domain {quote(dom.name)}")

    def suspend(self, dom: DomainRef) -> None:
        """``controlvm pause``."""
        self._vbm("controlvm", dom.uuid, "pause", what=f"suspend domain {quote(dom.name)}")

    def resume(self, dom: DomainRef) -> None:
        """``controlvm resume``."""
        self._vbm("controlvm", dom.uuid, "resume", what=f"resume domain {quote(dom.name)}")

    # --- snapshots -------------------------------------------------------------------------------

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """``snapshot take`` (``--live`` for an active domain); virtabs' creation time and state go into
        the snapshot's description, which VirtualBox's machine-readable output does not otherwise give."""
        info = self._info(dom)
        if any(s.name == name for s in info.snapshots):
            raise OperationInvalidError(f"domain {quote(dom.name)} already has a snapshot {quote(name)}")
        created = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
        state = info.state
        description = f"virtabs: created {created.isoformat()} state {state.name.lower()}"
        args = ["snapshot", dom.uuid, "take", name, "--description", description]
        if state.is_active:
            args.append("--live")
        self._vbm(*args, what=f"snapshot {quote(name)} of domain {quote(dom.name)}")
        parent = next((s.name for s in info.snapshots if s.uuid == info.current_snapshot), None)
        return Snapshot(name=name, domain=dom.name, created_at=created, state=state, parent=parent)

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """The snapshot tree from ``showvminfo`` (parents before children)."""
        info = self._info(dom)
        names = {s.uuid: s.name for s in info.snapshots}
        result = []
        for snap in info.snapshots:
            created, state = _snapshot_meta(snap.description)
            result.append(
                Snapshot(
                    name=snap.name,
                    domain=info.name,
                    created_at=created,
                    state=state,
                    parent=names.get(snap.parent_uuid or ""),
                )
            )
        return result

    def _snapshot(self, dom: DomainRef, name: str) -> tuple[VmInfo, str, DomainState]:
        info = self._info(dom)
        for snap in info.snapshots:
            if snap.name == name:
                return info, snap.uuid, _snapshot_meta(snap.description)[1]
        raise NoSnapshotError(f"domain {quote(dom.name)} has no snapshot {quote(name)}")

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """``snapshot restore`` (VirtualBox needs the machine off: an active one is powered off first);
        a snapshot taken while active is started again from its saved state, paused if it was paused."""
        info, snap_uuid, snap_state = self._snapshot(dom, name)
        what = f"revert domain {quote(dom.name)} to snapshot {quote(name)}"
        if info.state.is_active:
            self._vbm("controlvm", dom.uuid, "poweroff", what=what)
            poll_until(
                lambda: not self._info(dom).state.is_active,
                timeout=60,
                what=f"domain {quote(dom.name)} not powered off for the revert",
            )
        self._vbm("snapshot", dom.uuid, "restore", snap_uuid, what=what)
        if self._info(dom).native_state == "saved":
            self._vbm("startvm", dom.uuid, "--type", "headless", what=what)
            if snap_state == DomainState.PAUSED:
                self._vbm("controlvm", dom.uuid, "pause", what=what)

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """``snapshot delete`` (also live: VirtualBox merges the differencing images)."""
        _info, snap_uuid, _state = self._snapshot(dom, name)
        self._vbm(
            "snapshot", dom.uuid, "delete", snap_uuid, what=f"delete snapshot {quote(name)} of domain {quote(dom.name)}"
        )

    # --- disks -----------------------------------------------------------------------------------

    def attach_disk(self, dom: DomainRef, disk: DiskSpec) -> None:
        """``storageattach`` on the target's controller (added first when the domain is off); live only
        on a SATA (AHCI) controller, where virtabs marks every port hot-pluggable."""
        info = self._info(dom)
        what = f"attach disk {quote(disk.target)} to domain {quote(dom.name)}"
        if disk.target in dict(self._targets(info)):
            raise InvalidArgumentError(f"domain {quote(dom.name)} already has a disk {quote(disk.target)}")
        prefix = slot_for_target(disk.target)[0]
        ctype = dict(info.controllers).get(prefix)
        if ctype is None:
            if info.state.is_active:
                raise OperationInvalidError(
                    f"{what}: domain has no controller {quote(prefix)} and VirtualBox adds controllers only to a "
                    "machine that is off"
                )
            add, ctype = BUS_CONTROLLERS.get(disk.bus, ("sata", "IntelAhci"))
            self._vbm("storagectl", dom.uuid, "--name", prefix, "--add", add, "--controller", ctype, what=what)
        elif info.state.is_active and ctype != "IntelAhci":
            raise OperationInvalidError(
                f"{what}: controller {quote(prefix)} ({ctype}) is not hot-pluggable (only SATA is)"
            )
        self._attach(dom, disk, ctype, what)

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        """``storageattach --medium none`` (the image stays)."""
        info = self._info(dom)
        att = dict(self._targets(info)).get(target)
        if att is None or not att.path:
            raise InvalidArgumentError(f"disk {quote(target)} not found in domain {quote(dom.name)}")
        self._vbm(
            "storageattach", dom.uuid, "--storagectl", att.controller, "--port", str(att.port),
            "--device", str(att.device), "--medium", "none",
            what=f"detach disk {quote(target)} from domain {quote(dom.name)}",
        )  # fmt: skip

    # --- storage ---------------------------------------------------------------------------------

    def _pool_dir(self) -> str:
        """The default machine folder (``list systemproperties``, read once per connection)."""
        with self._lock:
            if self._pool_path is None:
                props = {}
                for block in parse_colon_blocks(self._vbm("list", "systemproperties", what="system properties")):
                    props.update(block)
                folder = props.get("Default machine folder")
                if not folder:
                    raise OperationFailedError(f"VBoxManage on {self._transport.where} names no default machine folder")
                self._pool_path = folder
            return self._pool_path

    def _make_pool_dir(self, folder: str) -> None:
        """``mkdir -p`` the default machine folder before the connection's first image goes there (reads
        never need it to exist, so they cost no ``mkdir``)."""
        with self._lock:
            if self._pool_made:
                return
        self._transport.run(["mkdir", "-p", "--", folder], timeout=60)
        with self._lock:
            self._pool_made = True

    def _check_pool(self, pool: str) -> str:
        if pool != POOL:
            raise NoStoragePoolError(f"storage pool {quote(pool)} not found (VirtualBox has one: {quote(POOL)})")
        return self._pool_dir()

    def list_storage_pools(self) -> list[PoolInfo]:
        """The one pool: VirtualBox's media registry, rooted at the default machine folder."""
        return [self._pool_info()]

    def _pool_info(self) -> PoolInfo:
        return PoolInfo(
            name=POOL,
            type="vbox-media",
            capacity_bytes=None,
            allocation_bytes=None,
            available_bytes=None,
            path=self._pool_dir(),
        )

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """``default``, or NoStoragePoolError."""
        self._check_pool(name)
        return self._pool_info()

    def _media(self) -> list[Medium]:
        out = self._vbm("list", "hdds", what="list of hard disks")
        return [Medium.from_block(b) for b in parse_colon_blocks(out) if "UUID" in b]

    @staticmethod
    def _volume(medium: Medium, media: Mapping[str, Medium]) -> VolumeInfo:
        """The volume of a registered hard disk, named by its file name (the host's path rules)."""
        chain: list[str] = []
        parent = medium.parent
        while parent is not None and parent in media and len(chain) < 64:
            chain.append(media[parent].location)
            parent = media[parent].parent
        return VolumeInfo(
            name=host_basename(medium.location),
            pool=POOL,
            path=medium.location,
            format=NATIVE_FORMATS.get(medium.format, medium.format.lower()),
            capacity_bytes=medium.capacity_bytes,
            backing_chain=tuple(chain),
        )

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """Every registered hard disk (``list hdds``), named by its file name."""
        self._check_pool(pool)
        media = self._media()
        by_uuid = {m.uuid: m for m in media}
        seen: set[str] = set()
        result = []
        for medium in media:
            vol = self._volume(medium, by_uuid)
            if vol.name not in seen:  # two files of one name in different folders: the first one
                seen.add(vol.name)
                result.append(vol)
        return result

    def _find(self, pool: str, name: str) -> tuple[Medium, dict[str, Medium]]:
        folder = self._check_pool(pool)
        media = self._media()
        named = self._named(media, name, folder)
        if named is None:
            raise NoStorageVolumeError(f"storage volume {quote(name)} not found in pool {quote(pool)}")
        return named, {m.uuid: m for m in media}

    @staticmethod
    def _named(media: list[Medium], name: str, folder: str) -> Medium | None:
        """The medium whose file name is ``name`` (split by the host's path rules), one in ``folder`` first."""
        named = [m for m in media if host_basename(m.location) == name]
        named.sort(key=lambda m: host_dirname(m.location) != host_dirname(host_join(folder, name)))
        return named[0] if named else None

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """A registered hard disk by file name (one in the pool's folder first)."""
        medium, media = self._find(pool, name)
        return self._volume(medium, media)

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        """``createmedium disk --filename <pool dir>/<name> --sizebyte N --format F`` (``--diffparent`` for
        a backing image: a VirtualBox differencing image, as large as its parent)."""
        capacity_bytes = image_volume_capacity(pool, name, capacity_bytes, format)
        folder = self._check_pool(pool)
        native = FORMATS.get(format)
        if native is None:
            raise InvalidArgumentError(
                f"volume {quote(name)}: VirtualBox cannot create {quote(format)} images (it can: {', '.join(sorted(FORMATS))})"
            )
        self._make_pool_dir(folder)
        path = host_join(folder, name)
        args = ["createmedium", "disk", "--filename", path, "--format", native]
        if backing:
            args += ["--diffparent", backing]
        else:
            args += ["--sizebyte", str(capacity_bytes)]
        self._vbm(*args, what=f"create volume {quote(name)} in pool {quote(pool)}")
        return self.lookup_volume(pool, name)

    def delete_volume(self, pool: str, name: str) -> None:
        """``closemedium disk <uuid> --delete`` (refused by VirtualBox while attached or with children)."""
        medium, _ = self._find(pool, name)
        self._vbm(
            "closemedium", "disk", medium.uuid, "--delete", what=f"delete volume {quote(name)} in pool {quote(pool)}"
        )

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """``modifymedium disk <uuid> --resizebyte N`` (VirtualBox grows images only)."""
        medium, _ = self._find(pool, name)
        self._vbm(
            "modifymedium", "disk", medium.uuid, "--resizebyte", str(capacity_bytes),
            what=f"resize volume {quote(name)} in pool {quote(pool)}",
        )  # fmt: skip
        return self.lookup_volume(pool, name)

    # --- events ----------------------------------------------------------------------------------

    def _states(self) -> dict[DomainRef, DomainState]:
        batch = self._vbm.batch(None, media=False)
        return {
            DomainRef(info.name, uuid): info.state
            for _name, uuid in batch.listed
            if (info := batch.machines.get(uuid)) is not None
        }

    def start_events(self) -> None:
        """Poll all machines' states (one host call per round) and emit the differences."""
        with self._lock:
            if self._poller is None:
                self._poller = EventPoller(
                    self._states, self.emit, interval=self.event_interval, name="virtabs-vbox-events"
                )
                self._poller.start()

    def stop_events(self) -> None:
        """Stop polling."""
        with self._lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()


def _interface_subnets(i: HostInterface) -> tuple[NetworkSubnet, ...]:
    """The interface's IPv4 network and a global IPv6 one (a link-local ``fe80::`` address says nothing)."""
    subnets = []
    if i.ipv4 and i.netmask:
        with contextlib.suppress(ValueError):
            subnets.append(NetworkSubnet(str(ipaddress.ip_network(f"{i.ipv4}/{i.netmask}", strict=False))))
    if i.ipv6 and i.ipv6_prefix:
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(i.ipv6).is_link_local:
                subnets.append(NetworkSubnet(f"{i.ipv6}/{i.ipv6_prefix}"))
    return tuple(subnets)


def _with_dhcp(subnets: tuple[NetworkSubnet, ...], server: DhcpServer | None) -> tuple[NetworkSubnet, ...]:
    """``subnets`` with the DHCP range of ``server`` (an enabled one with a range): on the subnet that holds it,
    else as a subnet of its own (the server's address and mask: a host-only interface reconfigured after its
    DHCP server was set up serves a network the interface no longer has)."""
    if server is None or not server.enabled or not server.lower or not server.upper:
        return subnets
    try:
        first, last = ipaddress.ip_address(server.lower), ipaddress.ip_address(server.upper)
        for index, subnet in enumerate(subnets):
            network = ipaddress.ip_network(subnet.cidr)
            if first in network and last in network:
                ranges = (*subnet.dhcp_ranges, (server.lower, server.upper))
                updated = NetworkSubnet(subnet.cidr, gateway=subnet.gateway, dhcp_ranges=ranges)
                return (*subnets[:index], updated, *subnets[index + 1 :])
        own = ipaddress.ip_network(f"{server.server_ip or server.lower}/{server.netmask}", strict=False)
        return (*subnets, NetworkSubnet(str(own), dhcp_ranges=((server.lower, server.upper),)))
    except ValueError:
        return subnets


def _dhcp_extra(server: DhcpServer | None) -> dict[str, object]:
    """The DHCP server's address and whether it is enabled (``extra``), when the network has one."""
    if server is None:
        return {}
    extra: dict[str, object] = {"vbox.dhcp_enabled": server.enabled}
    if server.server_ip:
        extra["vbox.dhcp_server"] = server.server_ip
    return extra


def _networks(batch: Batch) -> list[NetworkInfo]:
    """The host's networks from one bulk read, attachments from every listed machine's adapters."""
    attached: dict[tuple[str, str], list[NetworkAttachment]] = {}
    for _name, uuid in batch.listed:
        info = batch.machines.get(uuid)
        if info is None:
            continue  # vanished between "list vms" and "showvminfo"
        for nic in info.nics:
            kind = "nat" if nic.type == "nat" else _ATTACHED.get(nic.type)
            target = NAT_NAME if nic.type == "nat" else nic.target
            if kind is not None and target:
                attached.setdefault((kind, target), []).append(
                    NetworkAttachment(uuid, info.name, _mac_portable(nic.mac))
                )
    nets = [
        NetworkInfo(
            name=NAT_NAME,
            id=None,
            kind=NetworkKind.USER,
            native_kind="nat",
            attachments=attached.get(("nat", NAT_NAME), ()),
        )
    ]
    servers = {d.network_name: d for d in batch.dhcpservers}
    for native, kind, interfaces in (
        ("hostonly", NetworkKind.HOST_ONLY, batch.hostonly),
        ("bridged", NetworkKind.BRIDGE, batch.bridged),
    ):
        for i in interfaces:
            server = servers.get(i.network_name) if native == "hostonly" else None
            extra: dict[str, object] = {"vbox.host_address": i.ipv4} if i.ipv4 else {}
            nets.append(
                NetworkInfo(
                    name=i.name,
                    id=i.guid,
                    kind=kind,
                    native_kind=native,
                    device=i.name,
                    subnets=_with_dhcp(_interface_subnets(i), server),
                    active=i.up,
                    attachments=attached.get((native, i.name), ()),
                    extra=extra | _dhcp_extra(server),
                )
            )
    for h in batch.hostonlynets:
        subnets: tuple[NetworkSubnet, ...] = ()
        if h.lower and h.netmask:
            with contextlib.suppress(ValueError):
                network = ipaddress.ip_network(f"{h.lower}/{h.netmask}", strict=False)
                ranges = ((h.lower, h.upper),) if h.upper else ()
                subnets = (NetworkSubnet(str(network), dhcp_ranges=ranges),)
        nets.append(
            NetworkInfo(
                name=h.name,
                id=h.guid,
                kind=NetworkKind.HOST_ONLY,
                native_kind="hostonlynet",
                subnets=subnets,
                active=h.enabled,
                attachments=attached.get(("hostonlynet", h.name), ()),
            )
        )
    for net in batch.natnets:
        nat_subnets: list[NetworkSubnet] = []
        if net.network:
            with contextlib.suppress(ValueError):
                nat_subnets.append(NetworkSubnet(net.network, gateway=net.gateway))
        if net.ipv6_prefix:
            with contextlib.suppress(ValueError):
                nat_subnets.append(NetworkSubnet(net.ipv6_prefix))
        server = servers.get(net.name)
        nets.append(
            NetworkInfo(
                name=net.name,
                id=None,
                kind=NetworkKind.NAT_NETWORK,
                native_kind="natnetwork",
                subnets=_with_dhcp(tuple(nat_subnets), server),
                active=net.enabled,
                attachments=attached.get(("natnetwork", net.name), ()),
                extra=({} if net.dhcp is None else {"vbox.dhcp": net.dhcp}) | _dhcp_extra(server),
            )
        )
    for name in batch.intnets:
        nets.append(
            NetworkInfo(
                name=name,
                id=None,
                kind=NetworkKind.INTERNAL_NETWORK,
                native_kind="intnet",
                attachments=attached.get(("intnet", name), ()),
            )
        )
    return nets


def _snapshot_meta(description: str) -> tuple[_dt.datetime, DomainState]:
    """Creation time and state virtabs wrote into a snapshot's description; epoch and SHUTOFF otherwise."""
    match = _SNAP_META.match(description)
    if match:
        try:
            created = _dt.datetime.fromisoformat(match.group(1))
            return created, DomainState[match.group(2).upper()]
        except (ValueError, KeyError):
            pass
    return _dt.datetime.fromtimestamp(0, _dt.UTC), DomainState.SHUTOFF

"""``example:///``: a complete, minimal virtabs driver over the in-memory host of :mod:`virtabs_example.host`.

This is the driver ``docs/writing-a-driver.md`` walks through. It imports nothing from virtabs
but :mod:`virtabs.spi`, and does only what a driver does: translate between virtabs' records and
the host's own API, and map the host's exceptions to virtabs errors (one :class:`ErrorMap`).
It never checks a capability, read-only mode or a domain's state: the core's gate has done that,
from the operation table, before any method here runs. The host still refuses what it cannot
do (it checks its own power states, as a real hypervisor does), and :data:`ERRORS` maps those
refusals to the errors the gate would have raised.

URIs: ``example:///`` (the host called ``default``) and ``example:///NAME`` (the host called
NAME). Every connection to one URI in a process shares its host. Driver-specific domain settings
live in ``DomainSpec.extra["example"]``: ``shutdown_seconds`` (how long the guest takes to honour a
graceful shutdown, default 0.1; ``None``: never).

Declared: define, start, shutdown, destroy, reboot, suspend, snapshots, storage pools and volumes,
and events (lifecycle only, found by polling: the host has no event stream). Not declared, so the
core refuses them before this driver is reached: save/restore, disk hot-plug and block jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

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
    ErrorMap,
    EventPoller,
    HostInfo,
    InvalidArgumentError,
    NicInfo,
    NicSpec,
    NoDomainError,
    NoSnapshotError,
    NoStoragePoolError,
    NoStorageVolumeError,
    OperationFailedError,
    OperationInvalidError,
    PoolInfo,
    Snapshot,
    VolumeInfo,
    image_volume_capacity,
    quote,
)

from . import host as native

__all__ = ["ERRORS", "POLL_INTERVAL", "STATES", "ExampleDriver"]

POLL_INTERVAL = 0.1
"""Seconds between two state snapshots of the event poller."""

STATES: Mapping[native.Power, DomainState] = {
    native.Power.OFF: DomainState.SHUTOFF,
    native.Power.RUNNING: DomainState.RUNNING,
    native.Power.PAUSED: DomainState.PAUSED,
    native.Power.STOPPING: DomainState.SHUTDOWN,
}
"""The host's power states as virtabs states (the host's own word goes to ``native_state``)."""


def _not_found(kind: str) -> Callable[[BaseException], bool]:
    return lambda exc: isinstance(exc, native.NotFound) and exc.kind == kind


ERRORS = ErrorMap(
    [
        (_not_found("machine"), NoDomainError),
        (_not_found("snapshot"), NoSnapshotError),
        (_not_found("pool"), NoStoragePoolError),
        (_not_found("volume"), NoStorageVolumeError),
        (native.AlreadyExists, OperationInvalidError),
        (native.InvalidState, OperationInvalidError),
        (native.BadRequest, InvalidArgumentError),
    ],
    default=OperationFailedError,
)
"""The host's exceptions -> virtabs errors, first match wins; anything else is OperationFailedError."""


class ExampleDriver(Driver):
    """A minimal third-party driver: lifecycle, snapshots, storage and polled events over an in-memory host."""

    name: ClassVar[str] = "example"
    description: ClassVar[str] = "In-memory example of a third-party driver (contrib/virtabs-example)"
    capabilities: ClassVar[Capabilities] = Capabilities.of(
        "domain.define",
        "domain.start",
        "domain.shutdown",
        "domain.destroy",
        "domain.reboot",
        "domain.suspend",
        "domain.snapshot",
        "storage.pool",
        "storage.volume",
        "storage.volume.resize",
        "events",
        notes={"events": "lifecycle events only, found by polling the host every 0.1 s (EventPoller)"},
    )
    uri_examples: ClassVar[tuple[str, ...]] = ("example:///", "example:///lab")
    install_hint: ClassVar[str] = "pip install virtabs-example"

    def __init__(self, uri: URI, options: ConnectOptions) -> None:
        super().__init__(uri, options)
        if uri.host:
            raise ConnectError(f"the example driver is local only; remove host {quote(uri.host)} from {uri}")
        self._host = native.connect(uri.path.strip("/") or "default")
        self._poller: EventPoller | None = None

    # --- connection and events ------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """The host's facts."""
        facts = self._host.facts()
        return HostInfo(
            hostname=facts.hostname,
            hypervisor="example",
            hypervisor_version=facts.version,
            cpus=facts.cpus,
            memory_bytes=facts.memory_bytes,
            arch=facts.arch,
        )

    def start_events(self) -> None:
        """The first subscriber arrived: poll the host's states and emit a LifecycleEvent per change."""
        self._poller = EventPoller(self._states, self.emit, interval=POLL_INTERVAL, name="virtabs-example-events")
        self._poller.start()

    def stop_events(self) -> None:
        """The last subscriber left: stop polling."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    def close(self) -> None:
        """Stop polling; the host itself lives on (other connections share it)."""
        self.stop_events()

    def _states(self) -> dict[DomainRef, DomainState]:
        return {DomainRef(m.name, m.uuid): STATES[m.power] for m in self._host.machines()}

    # --- domains: reads -----------------------------------------------------------------------
    # lookup_domain and domain_status keep the base class's defaults (find_domain over
    # list_domains; domain_info, as this driver has no block jobs).

    def list_domains(self) -> list[DomainRef]:
        """Every machine, in one host call."""
        return sorted((DomainRef(m.name, m.uuid) for m in self._host.machines()), key=lambda r: r.name)

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        """State, vCPUs, memory and CPU time."""
        with ERRORS(f"info of domain {quote(dom.name)}"):
            return _info(self._host.machine(dom.uuid))

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        """The definition, MACs filled in."""
        with ERRORS(f"definition of domain {quote(dom.name)}"):
            m = self._host.machine(dom.uuid)
        c = m.config
        return DomainSpec(
            name=m.name,
            uuid=m.uuid,
            memory_bytes=c.memory_bytes,
            vcpus=c.vcpus,
            disks=[DiskSpec(d.target, d.path, format=d.format, bus=d.bus, readonly=d.readonly) for d in c.disks],
            nics=[NicSpec(network=n.network, mac=n.mac, model=n.model) for n in c.nics],
            os_type=c.os_type,
            extra={"example": {"shutdown_seconds": c.shutdown_seconds}},
        )

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        """The disks, with size and backing chain where the path is a volume of the host."""
        with ERRORS(f"disks of domain {quote(dom.name)}"):
            m = self._host.machine(dom.uuid)
            volumes = {v.path: v for v in self._host.volumes()}
        return _disk_infos(m, volumes)

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        """The network interfaces (the host hands out no addresses)."""
        with ERRORS(f"interfaces of domain {quote(dom.name)}"):
            m = self._host.machine(dom.uuid)
        return [NicInfo(mac=n.mac, network=n.network, model=n.model) for n in m.config.nics]

    def inventory(self) -> list[DomainRecord]:
        """Every domain's record from two host calls (the contract kit fails an N+1 inventory)."""
        machines = self._host.machines()
        volumes = {v.path: v for v in self._host.volumes()}
        return [
            DomainRecord(
                name=m.name,
                uuid=m.uuid,
                state=STATES[m.power],
                native_state=m.power.value,
                vcpus=m.config.vcpus,
                memory_bytes=m.config.memory_bytes,
                os_type=m.config.os_type,
                autostart=None,
                disks=_disk_infos(m, volumes),
                nics=[NicInfo(mac=n.mac, network=n.network, model=n.model) for n in m.config.nics],
                snapshot_count=len(m.snapshots),
                extra={"boot_count": m.boot_count},
            )
            for m in sorted(machines, key=lambda m: m.name)
        ]

    # --- lifecycle ------------------------------------------------------------------------------

    def define_domain(self, spec: DomainSpec) -> DomainRef:
        """A new machine from the spec."""
        mine: Mapping[str, Any] = spec.extra.get("example") or {}
        seconds = mine.get("shutdown_seconds", 0.1)
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0):
            raise InvalidArgumentError(
                f"domain {quote(spec.name)}: extra.example.shutdown_seconds must be >= 0 or None"
            )
        config = native.Config(
            vcpus=spec.vcpus,
            memory_bytes=spec.memory_bytes,
            disks=[native.Disk(d.target, d.path, d.format, d.bus, d.readonly) for d in spec.disks],
            nics=[native.Nic(n.network, n.mac or "", n.model) for n in spec.nics],
            os_type=spec.os_type,
            shutdown_seconds=seconds,
        )
        with ERRORS(f"define of domain {quote(spec.name)}"):
            m = self._host.create_machine(spec.name, config, spec.uuid)
        return DomainRef(m.name, m.uuid)

    def undefine(self, dom: DomainRef) -> None:
        """Delete the machine (and its snapshots)."""
        with ERRORS(f"undefine of domain {quote(dom.name)}"):
            self._host.delete_machine(dom.uuid)

    def start(self, dom: DomainRef, paused: bool) -> None:
        """Power on."""
        with ERRORS(f"start of domain {quote(dom.name)}"):
            self._host.power_on(dom.uuid, paused=paused)

    def shutdown(self, dom: DomainRef) -> None:
        """Press the power button and return; the core waits if the caller asked it to."""
        with ERRORS(f"shutdown of domain {quote(dom.name)}"):
            self._host.acpi_shutdown(dom.uuid)

    def destroy(self, dom: DomainRef) -> None:
        """Pull the plug."""
        with ERRORS(f"destroy of domain {quote(dom.name)}"):
            self._host.power_off(dom.uuid)

    def reboot(self, dom: DomainRef) -> None:
        """Reset: CPU time starts over and the record's ``extra["boot_count"]`` grows by one."""
        with ERRORS(f"reboot of domain {quote(dom.name)}"):
            self._host.reset(dom.uuid)

    def suspend(self, dom: DomainRef) -> None:
        """Pause the vCPUs."""
        with ERRORS(f"suspend of domain {quote(dom.name)}"):
            self._host.pause(dom.uuid)

    def resume(self, dom: DomainRef) -> None:
        """Resume the vCPUs."""
        with ERRORS(f"resume of domain {quote(dom.name)}"):
            self._host.unpause(dom.uuid)

    # --- snapshots ----------------------------------------------------------------------------

    def create_snapshot(self, dom: DomainRef, name: str) -> Snapshot:
        """Keep the configuration and power state."""
        with ERRORS(f"snapshot {quote(name)} of domain {quote(dom.name)}"):
            return _snapshot(dom, self._host.take_snapshot(dom.uuid, name))

    def list_snapshots(self, dom: DomainRef) -> list[Snapshot]:
        """Oldest first."""
        with ERRORS(f"snapshot listing of domain {quote(dom.name)}"):
            return [_snapshot(dom, s) for s in self._host.snapshots(dom.uuid)]

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        """Back to the snapshot's configuration and power state."""
        with ERRORS(f"revert of domain {quote(dom.name)} to snapshot {quote(name)}"):
            self._host.revert(dom.uuid, name)

    def delete_snapshot(self, dom: DomainRef, name: str) -> None:
        """Forget the snapshot."""
        with ERRORS(f"delete of snapshot {quote(name)} of domain {quote(dom.name)}"):
            self._host.delete_snapshot(dom.uuid, name)

    # --- storage ----------------------------------------------------------------------------------

    def list_storage_pools(self) -> list[PoolInfo]:
        """Every pool, with its use."""
        volumes = self._host.volumes()
        return [_pool_info(p, volumes) for p in self._host.pools()]

    def lookup_storage_pool(self, name: str) -> PoolInfo:
        """One pool."""
        with ERRORS(f"lookup of pool {quote(name)}"):
            return _pool_info(self._host.pool(name), self._host.volumes(name))

    def list_volumes(self, pool: str) -> list[VolumeInfo]:
        """A pool's volumes."""
        with ERRORS(f"volume listing of pool {quote(pool)}"):
            volumes = {v.path: v for v in self._host.volumes()}
            return [_volume_info(v, volumes) for v in self._host.volumes(pool)]

    def lookup_volume(self, pool: str, name: str) -> VolumeInfo:
        """One volume."""
        with ERRORS(f"lookup of volume {quote(name)} in pool {quote(pool)}"):
            vol = self._host.volume(pool, name)
        return _volume_info(vol, {v.path: v for v in self._host.volumes()})

    def create_volume(
        self, pool: str, name: str, capacity_bytes: int | None, format: str, backing: str | None
    ) -> VolumeInfo:
        """A new volume."""
        capacity_bytes = image_volume_capacity(pool, name, capacity_bytes, format)
        with ERRORS(f"create of volume {quote(name)} in pool {quote(pool)}"):
            vol = self._host.create_volume(pool, name, capacity_bytes, format, backing)
        return _volume_info(vol, {v.path: v for v in self._host.volumes()})

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete a volume."""
        with ERRORS(f"delete of volume {quote(name)} in pool {quote(pool)}"):
            self._host.delete_volume(pool, name)

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        """Grow a volume."""
        with ERRORS(f"resize of volume {quote(name)} in pool {quote(pool)}"):
            vol = self._host.resize_volume(pool, name, capacity_bytes)
        return _volume_info(vol, {v.path: v for v in self._host.volumes()})


# --- translation: host objects -> virtabs records ------------------------------------------------------


def _info(m: native.Machine) -> DomainInfo:
    return DomainInfo(
        name=m.name,
        uuid=m.uuid,
        state=STATES[m.power],
        native_state=m.power.value,
        vcpus=m.config.vcpus,
        memory_bytes=m.config.memory_bytes,
        max_memory_bytes=m.config.memory_bytes,
        cpu_time_ns=m.cpu_ns,
    )


def _chain(path: str, volumes: Mapping[str, native.Volume]) -> tuple[str, ...]:
    """The images below ``path``, nearest first."""
    chain: list[str] = []
    backing = volumes[path].backing if path in volumes else None
    while backing is not None and backing not in chain:
        chain.append(backing)
        backing = volumes[backing].backing if backing in volumes else None
    return tuple(chain)


def _disk_infos(m: native.Machine, volumes: Mapping[str, native.Volume]) -> list[DiskInfo]:
    disks = []
    for d in m.config.disks:
        vol = volumes.get(d.path)
        disks.append(
            DiskInfo(
                target=d.target,
                path=d.path,
                format=vol.format if vol else d.format,
                bus=d.bus,
                readonly=d.readonly,
                capacity_bytes=vol.capacity_bytes if vol else None,
                allocation_bytes=vol.allocation_bytes if vol else None,
                backing_chain=_chain(d.path, volumes),
                pool=vol.pool if vol else None,
            )
        )
    return disks


def _snapshot(dom: DomainRef, s: native.SnapshotData) -> Snapshot:
    return Snapshot(name=s.name, domain=dom.name, created_at=s.created_at, state=STATES[s.power], parent=s.parent)


def _pool_info(p: native.Pool, volumes: list[native.Volume]) -> PoolInfo:
    used = sum(v.allocation_bytes for v in volumes if v.pool == p.name)
    return PoolInfo(
        name=p.name,
        type="memory",
        capacity_bytes=p.capacity_bytes,
        allocation_bytes=used,
        available_bytes=max(0, p.capacity_bytes - used),
        path=p.path,
        uuid=p.uuid,
    )


def _volume_info(v: native.Volume, volumes: Mapping[str, native.Volume]) -> VolumeInfo:
    return VolumeInfo(
        name=v.name,
        pool=v.pool,
        path=v.path,
        format=v.format,
        capacity_bytes=v.capacity_bytes,
        allocation_bytes=v.allocation_bytes,
        backing_chain=_chain(v.path, volumes),
    )

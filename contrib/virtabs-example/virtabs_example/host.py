"""The hypervisor this example drives: an in-memory host with its own API and its own exceptions.

It stands in for the SDK a real driver wraps (a REST client, pyvmomi, the docker package) and
knows nothing about virtabs: it has *machines* with a *power* state, raises its own exceptions
(:class:`NotFound`, :class:`AlreadyExists`, :class:`InvalidState`, :class:`BadRequest`) and checks
its own preconditions, as any real host does. :mod:`virtabs_example.driver` translates between
this API and :mod:`virtabs.spi`; that translation is the part a driver author writes.

Every caller of :func:`connect` with one name shares one host (like libvirt's ``test:///default``),
so a machine started through one virtabs connection is running for all of them. Nothing is written
to disk: a volume is a record with a path, not a file.

The simulated guest: :meth:`MemoryHost.acpi_shutdown` asks it to power off, and it does so
``shutdown_seconds`` later (a machine setting; ``None``: the guest ignores the request, like a
machine without an OS). CPU time accrues while the guest runs; :meth:`MemoryHost.reset` reboots it,
which restarts the count and bumps ``boot_count``.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import itertools
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Config",
    "Disk",
    "Facts",
    "HostError",
    "InvalidState",
    "Machine",
    "MemoryHost",
    "Nic",
    "NotFound",
    "Pool",
    "Power",
    "SnapshotData",
    "Volume",
    "connect",
]

GiB = 1 << 30
QCOW2_EMPTY = 196_608
"""What a new qcow2 image allocates: its metadata."""


class HostError(Exception):
    """Base class of everything the host raises."""


class NotFound(HostError):
    """No such object; ``kind`` is ``machine``, ``snapshot``, ``pool`` or ``volume``."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class AlreadyExists(HostError):
    """A name, UUID or path is taken."""


class InvalidState(HostError):
    """The machine's power state does not allow the request."""


class BadRequest(HostError):
    """The request makes no sense (a shrinking resize, an unknown backing file)."""


class Power(enum.Enum):
    """A machine's power state, in the host's own words."""

    OFF = "off"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    """Asked to power off; the guest has not finished yet."""


@dataclass
class Disk:
    """A disk of a machine."""

    target: str
    path: str
    format: str = "raw"
    bus: str = "virtio"
    readonly: bool = False


@dataclass
class Nic:
    """A network interface; an empty ``mac`` is assigned by the host."""

    network: str
    mac: str = ""
    model: str = "virtio"


@dataclass
class Config:
    """What a machine is made of (and what a snapshot keeps)."""

    vcpus: int
    memory_bytes: int
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    os_type: str = "hvm"
    shutdown_seconds: float | None = 0.1
    """How long the guest takes to honour an ACPI power-off; None: it never does."""


@dataclass
class SnapshotData:
    """A snapshot: the configuration and power state at the time."""

    name: str
    created_at: dt.datetime
    power: Power
    config: Config
    parent: str | None


@dataclass
class Machine:
    """A machine as the host reports it (a copy: changing it changes nothing)."""

    name: str
    uuid: str
    config: Config
    power: Power = Power.OFF
    boot_count: int = 0
    cpu_ns: int = 0
    running_since: float | None = None
    stop_at: float | None = None
    snapshots: dict[str, SnapshotData] = field(default_factory=dict)
    current_snapshot: str | None = None


@dataclass
class Pool:
    """A storage pool: a directory of volumes."""

    name: str
    path: str
    capacity_bytes: int
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))


@dataclass
class Volume:
    """A volume (a record; nothing is on disk)."""

    name: str
    pool: str
    path: str
    format: str
    capacity_bytes: int
    allocation_bytes: int
    backing: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the host says about itself."""

    hostname: str
    cpus: int
    memory_bytes: int
    arch: str
    version: str


class MemoryHost:
    """One in-memory host. Thread-safe (one lock); every result is a copy."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.RLock()
        self._machines: dict[str, Machine] = {}
        self._pools = {"default": Pool("default", f"/var/lib/virtabs-example/{name}/images", 100 * GiB)}
        self._volumes: dict[str, Volume] = {}
        self._macs = itertools.count(1)

    def facts(self) -> Facts:
        """Host name, CPUs, memory, architecture, version."""
        return Facts(f"example-{self.name}", 8, 16 * GiB, "x86_64", "1.0")

    # --- machines -------------------------------------------------------------------------

    def machines(self) -> list[Machine]:
        """Every machine, in one call."""
        with self._lock:
            return [self._copy(m) for m in self._machines.values()]

    def machine(self, uuid: str) -> Machine:
        """One machine by UUID."""
        with self._lock:
            return self._copy(self._get(uuid))

    def create_machine(self, name: str, config: Config, uuid: str | None = None) -> Machine:
        """A new machine, powered off."""
        with self._lock:
            if any(m.name == name for m in self._machines.values()):
                raise AlreadyExists(f"a machine called {name!r} exists")
            uuid = uuid or str(uuidlib.uuid4())
            if uuid in self._machines:
                raise AlreadyExists(f"uuid {uuid} belongs to machine {self._machines[uuid].name!r}")
            config = copy.deepcopy(config)
            for nic in config.nics:
                if not nic.mac:
                    n = next(self._macs)
                    nic.mac = f"52:54:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}"
            self._machines[uuid] = Machine(name, uuid, config)
            return self._copy(self._machines[uuid])

    def delete_machine(self, uuid: str) -> None:
        """Remove a powered-off machine and its snapshots."""
        with self._lock:
            m = self._get(uuid)
            self._expect(m, Power.OFF, "be deleted")
            del self._machines[uuid]

    def power_on(self, uuid: str, paused: bool = False) -> None:
        """Boot a machine (its vCPUs stopped when ``paused``)."""
        with self._lock:
            m = self._get(uuid)
            self._expect(m, Power.OFF, "power on")
            m.boot_count += 1
            m.cpu_ns = 0
            self._set_power(m, Power.PAUSED if paused else Power.RUNNING)

    def acpi_shutdown(self, uuid: str) -> None:
        """Press the power button; the guest powers off ``shutdown_seconds`` later (or never)."""
        with self._lock:
            m = self._get(uuid)
            self._expect(m, Power.RUNNING, "answer the power button")
            if m.config.shutdown_seconds is not None:
                m.stop_at = self._clock() + m.config.shutdown_seconds
                self._set_power(m, Power.STOPPING)

    def power_off(self, uuid: str) -> None:
        """Pull the plug."""
        with self._lock:
            m = self._get(uuid)
            if m.power is Power.OFF:
                raise InvalidState(f"machine {m.name!r} is already off")
            self._set_power(m, Power.OFF)

    def pause(self, uuid: str) -> None:
        """Stop the vCPUs."""
        with self._lock:
            m = self._get(uuid)
            self._expect(m, Power.RUNNING, "pause")
            self._set_power(m, Power.PAUSED)

    def unpause(self, uuid: str) -> None:
        """Restart the vCPUs."""
        with self._lock:
            m = self._get(uuid)
            self._expect(m, Power.PAUSED, "unpause")
            self._set_power(m, Power.RUNNING)

    def reset(self, uuid: str) -> None:
        """Reboot: the guest starts over (CPU time from zero, ``boot_count`` + 1); a pending power-off is dropped."""
        with self._lock:
            m = self._get(uuid)
            if m.power is Power.OFF:
                raise InvalidState(f"machine {m.name!r} is off")
            m.boot_count += 1
            m.cpu_ns, m.running_since, m.stop_at = 0, None, None
            self._set_power(m, Power.PAUSED if m.power is Power.PAUSED else Power.RUNNING)

    # --- snapshots ----------------------------------------------------------------------------

    def take_snapshot(self, uuid: str, name: str) -> SnapshotData:
        """Keep the configuration and power state under ``name``."""
        with self._lock:
            m = self._get(uuid)
            if name in m.snapshots:
                raise AlreadyExists(f"machine {m.name!r} already has a snapshot {name!r}")
            power = Power.RUNNING if m.power is Power.STOPPING else m.power
            snap = SnapshotData(name, dt.datetime.now(dt.UTC), power, copy.deepcopy(m.config), m.current_snapshot)
            m.snapshots[name] = snap
            m.current_snapshot = name
            return copy.deepcopy(snap)

    def snapshots(self, uuid: str) -> list[SnapshotData]:
        """A machine's snapshots, oldest first."""
        with self._lock:
            return [copy.deepcopy(s) for s in self._get(uuid).snapshots.values()]

    def revert(self, uuid: str, name: str) -> None:
        """Go back to a snapshot's configuration and power state."""
        with self._lock:
            m = self._get(uuid)
            snap = self._snapshot(m, name)
            if m.power is Power.OFF and snap.power is not Power.OFF:
                m.boot_count += 1
                m.cpu_ns = 0
            m.config = copy.deepcopy(snap.config)
            m.stop_at = None
            m.current_snapshot = name
            self._set_power(m, snap.power)

    def delete_snapshot(self, uuid: str, name: str) -> None:
        """Forget a snapshot (its children now descend from its parent)."""
        with self._lock:
            m = self._get(uuid)
            snap = self._snapshot(m, name)
            for other in m.snapshots.values():
                if other.parent == name:
                    other.parent = snap.parent
            del m.snapshots[name]
            if m.current_snapshot == name:
                m.current_snapshot = snap.parent

    # --- storage -------------------------------------------------------------------------------

    def pools(self) -> list[Pool]:
        """Every pool."""
        with self._lock:
            return [copy.copy(p) for p in self._pools.values()]

    def pool(self, name: str) -> Pool:
        """One pool by name."""
        with self._lock:
            return copy.copy(self._pool(name))

    def volumes(self, pool: str | None = None) -> list[Volume]:
        """The volumes of one pool, or of every pool, sorted by path."""
        with self._lock:
            if pool is not None:
                self._pool(pool)
            vols = [v for v in self._volumes.values() if pool is None or v.pool == pool]
            return [copy.copy(v) for v in sorted(vols, key=lambda v: v.path)]

    def volume(self, pool: str, name: str) -> Volume:
        """One volume by pool and name."""
        with self._lock:
            return copy.copy(self._volume(pool, name))

    def create_volume(self, pool: str, name: str, capacity_bytes: int, format: str, backing: str | None) -> Volume:
        """A new, empty volume (raw: fully allocated), optionally over a ``backing`` volume."""
        with self._lock:
            path = f"{self._pool(pool).path}/{name}"
            if path in self._volumes:
                raise AlreadyExists(f"volume {path!r} exists")
            if backing is not None and backing not in self._volumes:
                raise BadRequest(f"backing file {backing!r} is not a volume of this host")
            allocation = capacity_bytes if format == "raw" else min(QCOW2_EMPTY, capacity_bytes)
            self._volumes[path] = Volume(name, pool, path, format, capacity_bytes, allocation, backing)
            return copy.copy(self._volumes[path])

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete a volume no running machine uses."""
        with self._lock:
            vol = self._volume(pool, name)
            for m in self._machines.values():
                if m.power is not Power.OFF and any(d.path == vol.path for d in m.config.disks):
                    raise InvalidState(f"volume {vol.path!r} is in use by machine {m.name!r}")
            del self._volumes[vol.path]

    def resize_volume(self, pool: str, name: str, capacity_bytes: int) -> Volume:
        """Grow a volume (raw ones allocate the new space)."""
        with self._lock:
            vol = self._volume(pool, name)
            if capacity_bytes < vol.capacity_bytes:
                raise BadRequest(f"volume {vol.path!r} cannot shrink from {vol.capacity_bytes} to {capacity_bytes}")
            vol.capacity_bytes = capacity_bytes
            if vol.format == "raw":
                vol.allocation_bytes = capacity_bytes
            return copy.copy(vol)

    # --- internals -------------------------------------------------------------------------------

    def _get(self, uuid: str) -> Machine:
        m = self._machines.get(uuid)
        if m is None:
            raise NotFound("machine", uuid)
        if m.power is Power.STOPPING and m.stop_at is not None and self._clock() >= m.stop_at:
            self._set_power(m, Power.OFF, at=m.stop_at)  # the guest finished powering off
        return m

    def _copy(self, m: Machine) -> Machine:
        m = self._get(m.uuid)
        out = copy.deepcopy(m)
        if m.running_since is not None:
            out.cpu_ns += int((self._clock() - m.running_since) * 1e9)
        return out

    def _expect(self, m: Machine, power: Power, action: str) -> None:
        if m.power is not power:
            raise InvalidState(f"machine {m.name!r} is {m.power.value} and cannot {action}")

    def _set_power(self, m: Machine, power: Power, at: float | None = None) -> None:
        now = self._clock() if at is None else at
        if m.running_since is not None:
            m.cpu_ns += int((now - m.running_since) * 1e9)
        m.running_since = now if power in (Power.RUNNING, Power.STOPPING) else None
        if power is not Power.STOPPING:
            m.stop_at = None
        m.power = power

    def _snapshot(self, m: Machine, name: str) -> SnapshotData:
        if name not in m.snapshots:
            raise NotFound("snapshot", f"{m.name}/{name}")
        return m.snapshots[name]

    def _pool(self, name: str) -> Pool:
        if name not in self._pools:
            raise NotFound("pool", name)
        return self._pools[name]

    def _volume(self, pool: str, name: str) -> Volume:
        path = f"{self._pool(pool).path}/{name}"
        if path not in self._volumes:
            raise NotFound("volume", path)
        return self._volumes[path]


_HOSTS: dict[str, MemoryHost] = {}
_HOSTS_LOCK = threading.Lock()


def connect(name: str = "default") -> MemoryHost:
    """The host called ``name``: created on first use, then shared by every caller in this process."""
    with _HOSTS_LOCK:
        if name not in _HOSTS:
            _HOSTS[name] = MemoryHost(name)
        return _HOSTS[name]

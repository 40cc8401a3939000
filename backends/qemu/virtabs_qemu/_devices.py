"""Disk hot-plug: ``blockdev-add`` + ``device_add`` on a spare PCIe port, ``device_del`` + ``blockdev-del``.

The definition always follows (an inactive domain only changes its definition). The core has
checked that the target is free (attach) or exists and is not in a block copy (detach); a
definition with a target used twice is refused by :class:`DomainSpec` itself.
"""

from __future__ import annotations

import contextlib
import os

from virtabs.spi import (
    DiskSpec,
    DomainRef,
    DomainSpec,
    InvalidArgumentError,
    NotSupportedError,
    OperationFailedError,
    OperationTimeoutError,
    VirtabsError,
    quote,
)

from . import _img
from ._cmdline import HOTPLUG_PORTS, blockdev_nodes, device_for_disk, file_node_name, fmt_node_name
from ._process import Processes
from ._qmp import QMPClient, QMPError
from ._records import RunState
from ._session import Sessions, device_node
from ._store import DefinitionStore

__all__ = ["Devices"]


class Devices:
    """Disk attach and detach for the domains of one state root."""

    def __init__(self, store: DefinitionStore, processes: Processes, sessions: Sessions, timeout: float) -> None:
        self.store = store
        self.processes = processes
        self.sessions = sessions
        self.timeout = timeout

    def attach(self, dom: DomainRef, disk: DiskSpec) -> None:
        """Running: ``blockdev-add`` (file + format node) and ``device_add``. Always persisted."""
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            if not os.path.exists(disk.path):
                raise InvalidArgumentError(f"disk {disk.target}: image {disk.path} does not exist")
            _img.chain(disk.path, disk.format)
            disk = DiskSpec(
                target=disk.target,
                path=os.path.abspath(disk.path),
                format=disk.format,
                bus=disk.bus,
                readonly=disk.readonly,
            )
            base = defn.spec.to_dict()
            as_dict = DomainSpec.from_dict({**base, "disks": [disk]}).to_dict()["disks"][0]
            spec = DomainSpec.from_dict({**base, "disks": [*base["disks"], as_dict]})  # a used target is refused here
            if self.processes.pid(dom.name) is not None:
                run = self.store.run(dom.name)
                with self.sessions.open(dom.name) as q:
                    self._hotplug(q, dom.name, defn.spec, disk, run)
                self.store.save_run(dom.name, run)
            self.store.save(defn.with_spec(spec))

    def _hotplug(self, q: QMPClient, name: str, spec: DomainSpec, disk: DiskSpec, run: RunState) -> None:
        added: list[str] = []
        try:
            port = None
            if disk.bus == "virtio":
                free = run.free_ports(HOTPLUG_PORTS)
                if not free:
                    raise OperationFailedError(f"domain {quote(name)}: no free PCIe port for {disk.target}")
                port = free[0]
            elif disk.bus == "scsi":
                if not any(d.bus == "scsi" for d in spec.disks) and "scsi0" not in run.ports:
                    free = run.free_ports(HOTPLUG_PORTS)
                    if not free:
                        raise OperationFailedError(f"domain {quote(name)}: no free PCIe port for scsi0")
                    q.execute("device_add", {"driver": "virtio-scsi-pci", "id": "scsi0", "bus": free[0]})
                    run.ports["scsi0"] = free[0]
            else:
                raise NotSupportedError(f"hot-plug of {disk.bus} disk {disk.target} is not supported")
            for node in blockdev_nodes(disk):
                q.execute("blockdev-add", node)
                added.append(node["node-name"])
            q.execute("device_add", device_for_disk(disk, port))
        except BaseException:
            for node_name in reversed(added):
                with contextlib.suppress(QMPError, VirtabsError):
                    q.execute("blockdev-del", {"node-name": node_name})
            raise
        if port:
            run.ports[disk.target] = port

    def detach(self, dom: DomainRef, target: str) -> None:
        """Running: ``device_del``, wait for DEVICE_DELETED, ``blockdev-del``. Always persisted."""
        with self.store.lock(dom.name).hold():
            defn = self.store.get(dom)
            if self.processes.pid(dom.name) is not None:
                run = self.store.run(dom.name)
                with self.sessions.open(dom.name) as q:
                    inserted = device_node(q, target)
                    q.execute("device_del", {"id": target})
                    wait = min(self.timeout, 10.0)
                    if q.wait_event({"DEVICE_DELETED"}, wait, {"device": target}) is None:
                        raise OperationTimeoutError(
                            f"domain {quote(dom.name)}: the guest did not release disk {target} within {wait:g}s "
                            "(virtio-blk unplug needs the guest's cooperation); the removal stays requested"
                        )
                    for node in (inserted or {}).get("node-name"), fmt_node_name(target), file_node_name(target):
                        if node:
                            with contextlib.suppress(QMPError, VirtabsError):
                                q.execute("blockdev-del", {"node-name": node})
                run.ports.pop(target, None)
                self.store.save_run(dom.name, run)
            spec = defn.spec.to_dict()
            spec["disks"] = [d for d in spec["disks"] if d["target"] != target]
            self.store.save(defn.with_spec(DomainSpec.from_dict(spec)))

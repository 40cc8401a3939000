"""Node descriptions: the built-in ``test:///default`` node and the JSON loader.

The format is documented in :mod:`virtabs.drivers.test`.
"""

from __future__ import annotations

import json
import os.path
import time
import uuid as _uuid
from collections.abc import Mapping
from typing import Any

from .._errors import ConnectError, InvalidArgumentError, VirtabsError
from .._models import NetworkInfo, NetworkSubnet
from ._test_node import (
    DomainData,
    GiB,
    Image,
    ManagedSaveData,
    MiB,
    Node,
    Pool,
    check_format,
    make_spec,
    parse_state,
)

__all__ = ["DEFAULT_NETWORKS", "DEFAULT_NODE", "load_description", "read_description"]

DEFAULT_NETWORKS: tuple[Mapping[str, Any], ...] = (
    {
        "name": "default",
        "uuid": "dd8fe884-6c02-601e-7551-cca97df1c5df",
        "kind": "nat",
        "device": "virbr0",
        "subnets": [
            {
                "cidr": "192.168.122.0/24",
                "gateway": "192.168.122.1",
                "dhcp_ranges": [["192.168.122.2", "192.168.122.254"]],
            }
        ],
        "active": True,
        "autostart": False,
    },
)
"""The networks of a node whose description has no ``networks`` key: libvirt's test driver's ``default``
(``virsh -c test:///default net-dumpxml default`` with libvirt 9.0: forward mode nat, bridge virbr0,
192.168.122.1/24 leasing .2 to .254, active, no autostart)."""

DEFAULT_NODE: Mapping[str, Any] = {
    "host": {"hostname": "test-host", "cpus": 16, "memory_bytes": 16 * GiB, "arch": "x86_64", "cpu_model": "test-cpu"},
    "images": [
        {"path": "/guest/diskimage1", "format": "raw", "capacity_bytes": GiB, "allocation_bytes": GiB},
    ],
    "pools": [
        {
            "name": "default-pool",
            "type": "dir",
            "path": "/default-pool",
            "uuid": "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566",
            "capacity_bytes": 100 * GiB,
            "volumes": [
                {"name": "base.qcow2", "format": "qcow2", "capacity_bytes": 4 * GiB, "allocation_bytes": 512 * MiB},
                {
                    "name": "overlay.qcow2",
                    "format": "qcow2",
                    "capacity_bytes": 4 * GiB,
                    "allocation_bytes": 64 * MiB,
                    "backing": "/default-pool/base.qcow2",
                },
            ],
        }
    ],
    "domains": [
        {
            "name": "test",
            "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f",
            "memory_bytes": 2 * GiB,
            "max_memory_bytes": 8 * GiB,
            "vcpus": 2,
            "os_type": "hvm",
            "state": "running",
            "disks": [{"target": "vda", "path": "/guest/diskimage1", "format": "raw", "bus": "virtio"}],
            "nics": [{"mac": "52:54:00:a3:41:7e", "network": "default", "model": "virtio", "ips": ["192.168.122.2"]}],
        }
    ],
    "networks": list(DEFAULT_NETWORKS),
}
"""The built-in node of ``test:///default`` (in the JSON format)."""

_TOP_KEYS = {"host", "settings", "images", "pools", "domains", "networks"}
_HOST_KEYS = {"hostname", "cpus", "memory_bytes", "arch", "cpu_model"}
_SETTINGS_KEYS = {"unlimited_rate_bytes"}
_IMAGE_KEYS = {"path", "format", "capacity_bytes", "allocation_bytes", "backing"}
_VOLUME_KEYS = (_IMAGE_KEYS - {"path"}) | {"name"}
_POOL_KEYS = {"name", "type", "path", "uuid", "capacity_bytes", "active", "volumes"}
_DOMAIN_KEYS = {
    "name",
    "uuid",
    "memory_bytes",
    "max_memory_bytes",
    "vcpus",
    "os_type",
    "state",
    "autostart",
    "disks",
    "nics",
    "extra",
    "managed_save",
}
_MANAGED_SAVE_KEYS = {"paused", "cpu_time_ns"}
_DISK_KEYS = {"target", "path", "format", "bus", "readonly", "capacity_bytes", "allocation_bytes", "backing_chain"}
_NIC_KEYS = {"mac", "network", "model", "ips"}
_NETWORK_KEYS = {
    "name",
    "uuid",
    "kind",
    "native_kind",
    "device",
    "vlan_ids",
    "subnets",
    "active",
    "autostart",
    "extra",
}
_SUBNET_KEYS = {"cidr", "gateway", "dhcp_ranges"}


def read_description(path: str) -> Mapping[str, Any]:
    """Read and parse a JSON node file; ConnectError when unreadable, InvalidArgumentError when not JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConnectError(f"cannot open test node file '{path}': {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"test node file '{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"test node file '{path}' must hold a JSON object")
    return data


def _keys(what: str, data: Any, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"{what} must be an object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidArgumentError(f"{what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return data


def _size(what: str, value: Any, *, positive: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < (1 if positive else 0):
        raise InvalidArgumentError(f"{what} must be a {'positive' if positive else 'non-negative'} integer")
    return value


def _image(node: Node, what: str, data: Mapping[str, Any], path: str) -> None:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgumentError(f"{what}: path must be absolute, got {path!r}")
    fmt = str(data.get("format", "raw"))
    check_format(fmt, what)
    capacity = _size(f"{what}: capacity_bytes", data.get("capacity_bytes", GiB), positive=True)
    default_alloc = capacity if fmt == "raw" else 0
    allocation = _size(f"{what}: allocation_bytes", data.get("allocation_bytes", default_alloc))
    backing = data.get("backing")
    if backing is not None and (not isinstance(backing, str) or not backing.startswith("/")):
        raise InvalidArgumentError(f"{what}: backing must be an absolute path or null")
    if path in node.images:
        raise InvalidArgumentError(f"{what}: image '{path}' is described twice")
    node.images[path] = Image(path, fmt, capacity, min(allocation, capacity), backing)


def load_description(node: Node, data: Mapping[str, Any], source: str) -> None:
    """Fill an empty ``node`` from a description; InvalidArgumentError names the faulty part."""
    try:
        _load(node, data)
    except VirtabsError as exc:
        if source == "default":
            raise
        raise type(exc)(f"test node file '{source}': {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"test node file '{source}': {exc}") from None


def _load(node: Node, data: Mapping[str, Any]) -> None:
    _keys("node", data, _TOP_KEYS)
    host = dict(_keys("host", data.get("host", {}), _HOST_KEYS))
    node.host = {
        "hostname": str(host.get("hostname", "test-host")),
        "cpus": _size("host.cpus", host.get("cpus", 16), positive=True),
        "memory_bytes": _size("host.memory_bytes", host.get("memory_bytes", 16 * GiB), positive=True),
        "arch": str(host.get("arch", "x86_64")),
        "cpu_model": host.get("cpu_model"),
    }
    settings = _keys("settings", data.get("settings", {}), _SETTINGS_KEYS)
    if "unlimited_rate_bytes" in settings:
        node.unlimited_rate = _size("settings.unlimited_rate_bytes", settings["unlimited_rate_bytes"], positive=True)

    for i, img in enumerate(data.get("images", ())):
        what = f"images[{i}]"
        _image(node, what, _keys(what, img, _IMAGE_KEYS), img.get("path"))

    for i, raw_pool in enumerate(data.get("pools", ())):
        what = f"pools[{i}]"
        pool = _keys(what, raw_pool, _POOL_KEYS)
        name = pool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"{what}: a pool needs a name")
        path = str(pool.get("path", f"/{name}")).rstrip("/") or "/"
        if name in node.pools:
            raise InvalidArgumentError(f"{what}: pool '{name}' is described twice")
        node.pools[name] = Pool(
            name=name,
            type=str(pool.get("type", "dir")),
            path=path,
            capacity=_size(f"{what}: capacity_bytes", pool.get("capacity_bytes", 100 * GiB), positive=True),
            uuid=str(_uuid.UUID(str(pool["uuid"]))) if pool.get("uuid") else str(_uuid.uuid4()),
            active=bool(pool.get("active", True)),
        )
        for j, vol in enumerate(pool.get("volumes", ())):
            vwhat = f"{what}.volumes[{j}]"
            vol = _keys(vwhat, vol, _VOLUME_KEYS)
            vname = vol.get("name")
            if not isinstance(vname, str) or not vname or "/" in vname:
                raise InvalidArgumentError(f"{vwhat}: a volume needs a name without '/'")
            _image(node, vwhat, vol, f"{path.rstrip('/')}/{vname}")

    raw_networks = data.get("networks", DEFAULT_NETWORKS)
    if not isinstance(raw_networks, list | tuple):
        raise InvalidArgumentError("networks must be a list")
    for i, raw_network in enumerate(raw_networks):
        network = _network(f"networks[{i}]", raw_network)
        if network.name in node.networks:
            raise InvalidArgumentError(f"networks[{i}]: network '{network.name}' is described twice")
        node.networks[network.name] = network

    now = time.monotonic()
    for i, raw_dom in enumerate(data.get("domains", ())):
        what = f"domains[{i}]"
        dom = _keys(what, raw_dom, _DOMAIN_KEYS)
        disks = []
        for j, raw_disk in enumerate(dom.get("disks", ())):
            dwhat = f"{what}.disks[{j}]"
            disk = _keys(dwhat, raw_disk, _DISK_KEYS)
            disks.append({k: disk[k] for k in ("target", "path", "format", "bus", "readonly") if k in disk})
            _disk_images(node, dwhat, disk)
        nics = []
        ips: dict[str, tuple[str, ...]] = {}
        for j, raw_nic in enumerate(dom.get("nics", ())):
            nic = _keys(f"{what}.nics[{j}]", raw_nic, _NIC_KEYS)
            nics.append({k: nic[k] for k in ("mac", "network", "model") if k in nic})
            if nic.get("ips"):
                if not nic.get("mac"):
                    raise InvalidArgumentError(f"{what}.nics[{j}]: ips need a mac")
                ips[str(nic["mac"])] = tuple(str(ip) for ip in nic["ips"])
        spec_data = {k: dom[k] for k in ("name", "uuid", "memory_bytes", "vcpus", "os_type", "extra") if k in dom}
        spec = make_spec({**spec_data, "disks": disks, "nics": nics})
        if spec.uuid is None:
            spec = make_spec({**spec_data, "uuid": str(_uuid.uuid4()), "disks": disks, "nics": nics})
        node.check_free(spec.name, spec.uuid)
        spec = node.with_macs(spec)
        max_memory = _size(f"{what}: max_memory_bytes", dom.get("max_memory_bytes", spec.memory_bytes), positive=True)
        if max_memory < spec.memory_bytes:
            raise InvalidArgumentError(f"{what}: max_memory_bytes is below memory_bytes")
        state = parse_state(dom.get("state", "shutoff"))
        data_dom = DomainData(spec=spec, max_memory=max_memory, autostart=bool(dom.get("autostart", False)), ips=ips)
        data_dom.set_state(state, now)
        if dom.get("managed_save") is not None:
            saved = _keys(f"{what}.managed_save", dom["managed_save"], _MANAGED_SAVE_KEYS)
            if state.is_active:
                raise InvalidArgumentError(f"{what}: only a shut-off domain has a managed save image")
            cpu_ns = _size(f"{what}.managed_save.cpu_time_ns", saved.get("cpu_time_ns", 0), positive=False)
            data_dom.managed_save = ManagedSaveData(paused=bool(saved.get("paused", False)), cpu_ns=cpu_ns)
        node.add_domain(data_dom)
        if state.is_active:
            node.lease_ips(data_dom)

    for img in node.images.values():
        if img.backing is not None and img.backing not in node.images:
            raise InvalidArgumentError(f"image '{img.path}': backing image '{img.backing}' is not described")
        chain = node.chain(img.path)
        last = node.images[chain[-1]]
        if last.backing is not None:
            raise InvalidArgumentError(f"image '{img.path}': its backing chain loops")


def _network(what: str, raw: Any) -> NetworkInfo:
    data = _keys(what, raw, _NETWORK_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{what}: a network needs a name")
    kind = str(data.get("kind", "bridge"))
    subnets = []
    for j, raw_subnet in enumerate(data.get("subnets", ())):
        subnet = _keys(f"{what}.subnets[{j}]", raw_subnet, _SUBNET_KEYS)
        ranges = [tuple(pair) for pair in subnet.get("dhcp_ranges", ())]
        if any(len(pair) != 2 for pair in ranges):
            raise InvalidArgumentError(f"{what}.subnets[{j}]: a DHCP range is a [first, last] pair")
        try:
            subnets.append(NetworkSubnet(subnet.get("cidr", ""), subnet.get("gateway"), ranges))
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{what}.subnets[{j}]: {exc.message}") from None
    for flag in ("active", "autostart"):
        if not isinstance(data.get(flag, True), bool):
            raise InvalidArgumentError(f"{what}: {flag} must be true or false")
    if not isinstance(data.get("extra", {}), dict):
        raise InvalidArgumentError(f"{what}: extra must be an object")
    try:
        return NetworkInfo(
            name,
            str(_uuid.UUID(str(data["uuid"]))) if data.get("uuid") else str(_uuid.uuid4()),
            kind,
            str(data.get("native_kind", kind)),
            device=data.get("device"),
            vlan_ids=tuple(data.get("vlan_ids", ())),
            subnets=subnets,
            active=data.get("active", True),
            autostart=data.get("autostart", False),
            extra=data.get("extra", {}),
        )
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{what}: {exc.message}") from None


def _disk_images(node: Node, what: str, disk: Mapping[str, Any]) -> None:
    """Images a disk entry describes inline: its own and its backing chain (nearest first)."""
    path = disk.get("path")
    if not isinstance(path, str):
        raise InvalidArgumentError(f"{what}: a disk needs a path")
    chain = disk.get("backing_chain", ())
    if not isinstance(chain, list | tuple):
        raise InvalidArgumentError(f"{what}: backing_chain must be a list")
    entries: list[tuple[str, Mapping[str, Any]]] = []
    for k, item in enumerate(chain):
        if isinstance(item, str):
            entries.append((item, {}))
        else:
            item = _keys(f"{what}.backing_chain[{k}]", item, _IMAGE_KEYS - {"backing"})
            entries.append((str(item.get("path")), item))
    inline = any(k in disk for k in ("capacity_bytes", "allocation_bytes")) or entries
    if path not in node.images and inline:
        top = {
            "format": disk.get("format", "raw"),
            "capacity_bytes": disk.get("capacity_bytes", GiB),
            "backing": entries[0][0] if entries else None,
        }
        if "allocation_bytes" in disk:
            top["allocation_bytes"] = disk["allocation_bytes"]
        _image(node, what, top, path)
    elif path in node.images and inline and ("capacity_bytes" in disk or "allocation_bytes" in disk):
        raise InvalidArgumentError(f"{what}: image '{path}' is described twice")
    for k, (bpath, item) in enumerate(entries):
        if bpath in node.images:
            if item and set(item) - {"path"}:
                raise InvalidArgumentError(f"{what}: image '{bpath}' is described twice")
            continue
        below = entries[k + 1][0] if k + 1 < len(entries) else None
        spec = {key: value for key, value in item.items() if key != "path"}
        spec["backing"] = below
        spec.setdefault("capacity_bytes", disk.get("capacity_bytes", GiB))
        spec.setdefault("format", "qcow2")
        _image(node, f"{what}.backing_chain[{k}]", spec, bpath)


def node_path(path: str) -> str:
    """The key of a file node: its absolute, normalised path."""
    return os.path.abspath(path)

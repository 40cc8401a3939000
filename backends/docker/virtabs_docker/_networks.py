"""An engine's networks as :class:`~virtabs.spi.NetworkInfo` records (pure; no SDK import).

Two listings make every record, whatever the number of networks and containers: the engine's network
list and the container list (``GET /containers/json?all=1``, the one :meth:`DockerDriver.list_domains`
makes), whose ``NetworkSettings.Networks`` name each container's networks with their MACs. Docker's
``GET /networks`` comes without attachments (its ``Containers`` is filled by a per-network inspect only).

Podman's compatible ``GET /networks`` calls its default network ``bridge`` while its containers name it
``podman``, and it leaves out the bridge device: on Podman the driver reads libpod's own list
(``GET /libpod/networks/json``: ``name``, ``id``, ``driver``, ``network_interface``, ``subnets`` with
``lease_range``, ``internal``), parsed by :func:`libpod_network_records`.

=================================  ==========================  ==================================================
engine driver                      kind                        device
=================================  ==========================  ==================================================
``bridge``                         ``nat`` (``isolated`` when  ``com.docker.network.bridge.name``, else Docker's
                                   ``Internal``)               ``br-<id[:12]>``; Podman's ``network_interface``
``host``                           ``host``                    none
``null`` (Docker's ``none``)       ``none``                    none
``macvlan`` / ``ipvlan``           ``macvlan`` / ``ipvlan``    the ``parent`` option (Podman: ``network_interface``)
``overlay``                        ``overlay``                 none
anything else (plugins)            ``other``                   none
=================================  ==========================  ==================================================

A network's ``id`` is the engine's network id, ``active`` is True (an engine's network exists while it is
listed) and ``autostart`` None (no such notion). A subnet's ``dhcp_ranges`` is the IPAM allocation range
(Docker's ``IPRange``, Podman's ``lease_range``) when one narrows the subnet: the addresses the engine hands
out, as a DHCP range would. A container is attached to a network once per entry of its
``NetworkSettings.Networks`` (stopped ones too: the engine keeps the endpoint configuration; the MAC is
None until it runs, unless the container was created with one); the ``none`` network has no attachments,
as its containers have no NIC.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from virtabs.spi import NetworkAttachment, NetworkInfo, NetworkKind, NetworkSubnet

__all__ = ["container_networks", "docker_network_records", "libpod_network_records", "network_kind"]

_KINDS: Mapping[str, NetworkKind] = {
    "bridge": NetworkKind.NAT,
    "host": NetworkKind.HOST,
    "null": NetworkKind.NONE,
    "none": NetworkKind.NONE,
    "macvlan": NetworkKind.MACVLAN,
    "ipvlan": NetworkKind.IPVLAN,
    "overlay": NetworkKind.OVERLAY,
}

#: The engines' word for "no gateway" (Podman's compatible API prints Go's nil).
_NO_ADDRESS = ("", "<nil>")


def network_kind(driver: str, internal: bool) -> NetworkKind:
    """The portable kind of an engine network from its driver and its ``Internal`` flag."""
    kind = _KINDS.get(driver, NetworkKind.OTHER)
    if kind is NetworkKind.NAT and internal:
        return NetworkKind.ISOLATED
    return kind


def container_networks(entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The networks of one container of the listing (name -> endpoint settings), without ``none``."""
    networks = (entry.get("NetworkSettings") or {}).get("Networks") or {}
    return {str(name): settings or {} for name, settings in networks.items() if name != "none"}


def _address(value: object) -> str | None:
    text = str(value or "")
    return None if text in _NO_ADDRESS else text


def _allocation_range(subnet: str, first: str, last: str) -> tuple[str, str] | None:
    """``(first, last)`` when it narrows ``subnet``'s usable addresses, else None (the whole subnet)."""
    net = ipaddress.ip_network(subnet, strict=False)
    hosts_first = int(net.network_address) + 1
    hosts_last = int(net.broadcast_address) - (1 if net.version == 4 else 0)
    start, end = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
    if start <= hosts_first and end >= hosts_last:
        return None
    address = type(net.network_address)
    return str(address(max(start, hosts_first))), str(address(min(end, hosts_last)))


def _docker_subnet(config: Mapping[str, Any]) -> NetworkSubnet | None:
    cidr = _address(config.get("Subnet"))
    if cidr is None:
        return None
    ranges: tuple[tuple[str, str], ...] = ()
    ip_range = _address(config.get("IPRange"))
    if ip_range is not None:
        narrowed = ipaddress.ip_network(ip_range, strict=False)
        pair = _allocation_range(cidr, str(narrowed.network_address), str(narrowed.broadcast_address))
        ranges = (pair,) if pair is not None else ()
    return NetworkSubnet(cidr, _address(config.get("Gateway")), ranges)


def _libpod_subnet(entry: Mapping[str, Any]) -> NetworkSubnet | None:
    cidr = _address(entry.get("subnet"))
    if cidr is None:
        return None
    lease = entry.get("lease_range") or {}
    ranges: tuple[tuple[str, str], ...] = ()
    if lease.get("start_ip") or lease.get("end_ip"):
        net = ipaddress.ip_network(cidr, strict=False)
        start = str(lease.get("start_ip") or net.network_address + 1)
        end = str(lease.get("end_ip") or net.broadcast_address - 1)
        pair = _allocation_range(cidr, start, end)
        ranges = (pair,) if pair is not None else ()
    return NetworkSubnet(cidr, _address(entry.get("gateway")), ranges)


def _attachments(
    containers: Iterable[Mapping[str, Any]], domain_of: Callable[[Mapping[str, Any]], tuple[str, str]]
) -> dict[str, list[NetworkAttachment]]:
    """Network name -> the NICs on it, from the container listing."""
    by_network: dict[str, list[NetworkAttachment]] = {}
    for entry in containers:
        name, uuid = domain_of(entry)
        for network, settings in container_networks(entry).items():
            mac = _address(settings.get("MacAddress"))
            by_network.setdefault(network, []).append(NetworkAttachment(uuid, name, mac))
    return by_network


def docker_network_records(
    networks: Iterable[Mapping[str, Any]],
    containers: Iterable[Mapping[str, Any]],
    domain_of: Callable[[Mapping[str, Any]], tuple[str, str]],
) -> list[NetworkInfo]:
    """Records from Docker's ``GET /networks`` and the container listing; ``domain_of`` names a listing entry."""
    attached = _attachments(containers, domain_of)
    records = []
    for net in networks:
        name, net_id, driver = str(net["Name"]), str(net.get("Id") or ""), str(net.get("Driver") or "")
        options = net.get("Options") or {}
        device: str | None = None
        if driver == "bridge":
            device = options.get("com.docker.network.bridge.name") or (f"br-{net_id[:12]}" if net_id else None)
        elif driver in ("macvlan", "ipvlan"):
            device = options.get("parent") or None
        subnets = tuple(s for s in map(_docker_subnet, (net.get("IPAM") or {}).get("Config") or []) if s)
        records.append(
            NetworkInfo(
                name=name,
                id=net_id or None,
                kind=network_kind(driver, bool(net.get("Internal"))),
                native_kind=driver,
                device=device,
                subnets=subnets,
                active=True,
                autostart=None,
                attachments=tuple(attached.get(name, ())) if driver not in ("null", "none") else (),
                extra={"engine": "docker", "scope": net.get("Scope"), "ipv6": bool(net.get("EnableIPv6"))},
            )
        )
    return records


def libpod_network_records(
    networks: Iterable[Mapping[str, Any]],
    containers: Iterable[Mapping[str, Any]],
    domain_of: Callable[[Mapping[str, Any]], tuple[str, str]],
) -> list[NetworkInfo]:
    """Records from Podman's ``GET /libpod/networks/json`` and the (compatible) container listing."""
    attached = _attachments(containers, domain_of)
    records = []
    for net in networks:
        name, driver = str(net["name"]), str(net.get("driver") or "")
        subnets = tuple(s for s in map(_libpod_subnet, net.get("subnets") or []) if s)
        records.append(
            NetworkInfo(
                name=name,
                id=str(net.get("id") or "") or None,
                kind=network_kind(driver, bool(net.get("internal"))),
                native_kind=driver,
                device=net.get("network_interface") or None,
                subnets=subnets,
                active=True,
                autostart=None,
                attachments=tuple(attached.get(name, ())),
                extra={"engine": "podman", "ipv6": bool(net.get("ipv6_enabled")), "dns": bool(net.get("dns_enabled"))},
            )
        )
    return records

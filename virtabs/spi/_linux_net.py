"""Linux bridges as networks, from iproute2's JSON: for every backend whose host is Linux (QEMU, LXC, Xen's dom0).

Pure functions over the text of two commands, so a driver runs them where its host is (locally, or on a
``+ssh`` host through its :class:`CommandTransport`) and hands the output here::

    ip -json -details link show      # every link, its kind (linkinfo.info_kind) and its bridge (master)
    ip -json addr show               # every link's addresses

iproute2 has printed this JSON since 4.13 (2017); the fields read here are the same in 6.1
(``tests/linux_net/captured/``, captured on Debian 12 by ``tests/linux_net/capture.sh``).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from .._errors import OperationFailedError, quote
from .._flags import NetworkKind
from .._models import NetworkInfo, NetworkSubnet

__all__ = ["bridge_networks_from_ip_json"]

IP_LINK_ARGV = ("ip", "-json", "-details", "link", "show")
"""The command whose output is ``link_json``."""
IP_ADDR_ARGV = ("ip", "-json", "addr", "show")
"""The command whose output is ``addr_json``."""


def _links(text: str, command: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise OperationFailedError(f"'{' '.join(command)}' printed no JSON ({exc}): {quote(text)}") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise OperationFailedError(f"'{' '.join(command)}' printed JSON that is not a list of links: {quote(text)}")
    return value


def _subnets(addr_info: list[dict[str, Any]]) -> tuple[tuple[NetworkSubnet, ...], tuple[str, ...]]:
    subnets: list[NetworkSubnet] = []
    addresses: list[str] = []
    for addr in addr_info:
        if addr.get("family") not in ("inet", "inet6") or addr.get("scope") == "link":
            continue  # fe80::/64 is on every IPv6 link: it says nothing about the network
        interface = ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}")
        addresses.append(str(interface))
        subnet = NetworkSubnet(str(interface.network))
        if subnet not in subnets:
            subnets.append(subnet)
    return tuple(subnets), tuple(addresses)


def bridge_networks_from_ip_json(link_json: str, addr_json: str) -> list[NetworkInfo]:
    """Every Linux bridge of the host as a :class:`NetworkInfo`, in the kernel's order.

    ``link_json`` is the output of ``ip -json -details link show``, ``addr_json`` of ``ip -json addr show``.
    Each bridge is kind ``bridge``, ``native_kind`` ``"linux-bridge"``, ``device`` its name, ``active``
    whether it is administratively up (the ``UP`` flag, whatever the carrier), its subnets those of its
    global and host-scope addresses (link-local ones are left out); ``gateway``, DHCP ranges, VLANs,
    ``autostart`` and ``attachments`` are not the kernel's to know and stay empty or None: a driver that
    knows which of its guests' taps are ports fills ``attachments`` (``extra["ports"]`` lists the ports,
    ``extra["host_addresses"]`` the host's own addresses on the bridge, ``extra["mac"]`` its MAC).
    """
    links = _links(link_json, IP_LINK_ARGV)
    addresses_by_name = {link.get("ifname"): link.get("addr_info") or [] for link in _links(addr_json, IP_ADDR_ARGV)}
    ports: dict[str, list[str]] = {}
    for link in links:
        master = link.get("master")
        if isinstance(master, str) and link.get("ifname"):
            ports.setdefault(master, []).append(str(link["ifname"]))
    networks = []
    for link in links:
        if (link.get("linkinfo") or {}).get("info_kind") != "bridge":
            continue
        name = str(link["ifname"])
        subnets, host_addresses = _subnets(addresses_by_name.get(name, []))
        extra = {"ports": tuple(ports.get(name, ())), "host_addresses": host_addresses, "mac": link.get("address")}
        networks.append(
            NetworkInfo(
                name,
                None,
                NetworkKind.BRIDGE,
                "linux-bridge",
                device=name,
                subnets=subnets,
                active="UP" in (link.get("flags") or ()),
                autostart=None,
                extra=extra,
            )
        )
    return networks

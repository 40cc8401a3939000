"""Networks of an LXC host: its bridges, the host devices macvlan/ipvlan NICs sit on, ``host`` and ``none``.

Each ``lxc.net.N`` of a container's configuration is one NIC; its ``type`` says what it joins, and so which
listed network ``NicInfo.network`` names:

* ``veth`` with ``link`` = BR (a veth pair, its host end a port of the bridge BR): ``BR`` (kind ``bridge``)
  when BR is a bridge of the host;
* ``macvlan`` / ``ipvlan`` with ``link`` = DEV (a device on the host device DEV): ``macvlan:DEV`` /
  ``ipvlan:DEV`` (kind ``macvlan`` / ``ipvlan``) when DEV exists;
* ``none`` (no network namespace of its own: the host's stack): ``host`` (kind ``host``);
* ``empty``, or no NIC at all (a network namespace with loopback only): ``none`` (kind ``none``);
* ``veth`` without ``link``, ``phys``, ``vlan``, a bridge or device the host does not have: None, on no
  network the host manages (never an invented one).

``host`` and ``none`` are NICs of ``nics()`` and the inventory only (``mac`` None, ``model`` the type), so
that "which containers share the host's stack" and "which have no network" have an answer; the
definition (``domain_spec().nics``) is unchanged: a container without NICs still has none there.

:func:`list_networks` lists every bridge of the host (whether a container uses it or not), the
``macvlan:``/``ipvlan:`` networks containers are on, ``host`` and ``none``, with their attachments. The
host's facts come from netlink through iproute2, ``ip -json -details link show`` and ``ip -json addr
show``: TWO commands per listing, whatever the number of networks and NICs (run and parsed by the SPI's
:class:`~virtabs.spi.HostIp`). One container's NICs (:func:`network_of_nic`) are resolved from
``/sys/class/net`` instead (:meth:`~virtabs.spi.HostLink.from_sys`): file-system reads, no process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
from virtabs.spi import (
    HostIp,
    HostLink,
    NetworkAttachment,
    NetworkInfo,
    NetworkKind,
)

__all__ = [
    "HOST_NETWORK",
    "NO_NETWORK",
    "NicFacts",
    "list_networks",
    "network_of",
    "network_of_nic",
]

HOST_NETWORK = "host"
"""The network of containers with ``lxc.net.0.type = none`` (they use the host's network stack)."""
NO_NETWORK = "none"
"""The network of containers with ``lxc.net.0.type = empty`` or no NIC: loopback only."""

_ON_A_DEVICE = {"macvlan": NetworkKind.MACVLAN, "ipvlan": NetworkKind.IPVLAN}


@attrs.frozen
class NicFacts:
    """One NIC as the configuration file has it: ``lxc.net.N.type``, ``link`` and ``hwaddr`` (and N)."""

    type: str
    link: str | None
    mac: str | None
    index: int = 0


def network_of(nic: NicFacts, link_of: Callable[[str], HostLink | None]) -> str | None:
    """The listed network a NIC is on (module docstring), or None; ``link_of`` tells what the host has."""
    if nic.type == "none":
        return HOST_NETWORK
    if nic.type == "empty":
        return NO_NETWORK
    if not nic.link:
        return None
    link = link_of(nic.link)
    if link is None:
        return None
    if nic.type == "veth":
        return nic.link if link.is_bridge else None
    if nic.type in _ON_A_DEVICE:
        return f"{nic.type}:{nic.link}"
    return None


def network_of_nic(nic: NicFacts, cache: dict[str, HostLink | None]) -> str | None:
    """:func:`network_of` from ``/sys/class/net`` (no process); ``cache`` keeps each name read once."""

    def link_of(name: str) -> HostLink | None:
        if name not in cache:
            cache[name] = HostLink.from_sys(name)
        return cache[name]

    return network_of(nic, link_of)


def list_networks(containers: Iterable[tuple[str, str, list[NicFacts]]], ip: HostIp) -> list[NetworkInfo]:
    """Every network (module docstring) with its attachments, from ``(uuid, name, NICs)`` of each container.

    ``ip`` reads the host's links and bridges (two commands).
    """
    host = ip.read()
    links = host.links
    attached: dict[str, list[NetworkAttachment]] = {HOST_NETWORK: [], NO_NETWORK: []}
    for uuid, name, nics in containers:
        for nic in nics:
            network = network_of(nic, links.get)
            if network is not None:
                attached.setdefault(network, []).append(NetworkAttachment(uuid, name, nic.mac))
    out: list[NetworkInfo] = []
    for bridge in host.bridges:
        out.append(attrs.evolve(bridge, attachments=tuple(attached.pop(bridge.name, ()))))
    out.append(
        NetworkInfo(HOST_NETWORK, None, NetworkKind.HOST, "none", active=True, attachments=attached.pop(HOST_NETWORK))
    )
    out.append(
        NetworkInfo(NO_NETWORK, None, NetworkKind.NONE, "empty", active=True, attachments=attached.pop(NO_NETWORK))
    )
    for name in sorted(attached):  # macvlan:DEV and ipvlan:DEV (network_of names no other network)
        native, _, device = name.partition(":")
        out.append(
            NetworkInfo(
                name,
                None,
                _ON_A_DEVICE[native],
                native,
                device=device,
                active=links[device].up,
                attachments=tuple(attached[name]),
            )
        )
    return out

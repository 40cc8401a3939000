"""Networks of a state root: QEMU's user-mode network and the host bridges and taps its domains' NICs name.

A NIC's ``network`` word (``_cmdline``) says what it joins, and so which listed network it is on:

======================  ==================================================  ===================================
NIC word                QEMU                                                ``NicInfo.network``
======================  ==================================================  ===================================
``user``, ``default``   ``-netdev user`` (QEMU's built-in slirp stack)      ``user`` (kind ``user``)
``bridge:BR``           ``-netdev bridge,br=BR``: a tap QEMU's bridge       ``BR`` (kind ``bridge``) when BR is a
                        helper adds to the host bridge BR                   bridge of the host, else None
``tap:IF``              ``-netdev tap,ifname=IF``: the host tap IF          the bridge IF is a port of (kind
                                                                            ``bridge``); else ``IF`` (kind
                                                                            ``other``, native ``tap``) when IF
                                                                            is a tap of the host; else None
======================  ==================================================  ===================================

None says the NIC is on nothing the host knows as a network now (a bridge deleted since the domain was
defined, a tap QEMU creates when the domain starts and removes when it stops): never an invented one.

:meth:`HostNetworks.list` lists ``user`` (always: every QEMU has it) and the bridges and taps the root's
NICs are on, with their attachments (domain UUID and name, and the NIC's MAC). The host's facts come from
netlink through iproute2, ``ip -json -details link show`` and ``ip -json addr show``: TWO commands per
listing whatever the number of networks and NICs (run and parsed by the SPI's :class:`~virtabs.spi.HostIp`),
and the definitions are read in one pass over the
root's files. A single NIC (:meth:`HostNetworks.network_of_nic`, for ``nics()`` and the inventory) is
resolved from ``/sys/class/net`` instead (the SPI's :meth:`~virtabs.spi.HostLink.from_sys`): a few
file-system reads, no process.
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
    NetworkSubnet,
)

from ._cmdline import mac_for
from ._records import Definition

__all__ = [
    "USER_NETWORK",
    "HostNetworks",
    "network_of_word",
]

USER_NETWORK = "user"
"""The name of QEMU's user-mode network."""

USER_WORDS = frozenset({"user", "default"})
"""The NIC words ``_cmdline`` starts as ``-netdev user``."""

# QEMU's defaults for `-netdev user` with no options (qemu-options.hx: net=10.0.2.0/24, host= the 2nd
# address, dhcpstart= the 15th; ipv6-net=fec0::/64, ipv6-host= the 2nd); libslirp leases NB_BOOTP_CLIENTS
# = 16 addresses from dhcpstart. _cmdline passes none of these options, so they are the guests' network.
USER_SUBNETS = (
    NetworkSubnet("10.0.2.0/24", gateway="10.0.2.2", dhcp_ranges=(("10.0.2.15", "10.0.2.30"),)),
    NetworkSubnet("fec0::/64", gateway="fec0::2"),
)


def network_of_word(word: str, link_of: Callable[[str], HostLink | None]) -> str | None:
    """The listed network a NIC with this ``network`` word is on (module docstring), or None.

    ``link_of`` tells what the host has by a name (None: nothing).
    """
    if word in USER_WORDS:
        return USER_NETWORK
    kind, _, device = word.partition(":")
    if not device:
        return None
    link = link_of(device)
    if link is None:
        return None
    if kind == "bridge":
        return device if link.kind == "bridge" else None
    if kind == "tap" and link.kind == "tap":
        if link.master is not None:
            master = link_of(link.master)
            if master is not None and master.kind == "bridge":
                return link.master
        return device
    return None


class HostNetworks:
    """The networks of one state root's NICs, read from the host (module docstring)."""

    def __init__(self, definitions: Callable[[], Iterable[Definition]], timeout: float) -> None:
        self._definitions = definitions
        self.ip = HostIp("qemu networks", timeout)
        """iproute2 on this host (every host call of a listing goes through it)."""

    @staticmethod
    def network_of_nic(word: str, links: dict[str, HostLink | None] | None = None) -> str | None:
        """The network of one NIC from ``/sys/class/net`` (no process); ``links`` caches what was read."""
        cache: dict[str, HostLink | None] = {} if links is None else links

        def link_of(name: str) -> HostLink | None:
            if name not in cache:
                cache[name] = HostLink.from_sys(name)
            return cache[name]

        return network_of_word(word, link_of)

    def list(self) -> list[NetworkInfo]:
        """``user`` first, then the bridges and taps the NICs are on, by name; every NIC an attachment."""
        host = self.ip.read()
        links = host.links
        bridges = {net.name: net for net in host.bridges}
        attached: dict[str, list[NetworkAttachment]] = {USER_NETWORK: []}
        for defn in self._definitions():
            for index, nic in enumerate(defn.spec.nics):
                network = network_of_word(nic.network, links.get)
                if network is not None:
                    mac = nic.mac or mac_for(defn.uuid, index)
                    attached.setdefault(network, []).append(NetworkAttachment(defn.uuid, defn.name, mac))
        out = [
            NetworkInfo(
                USER_NETWORK,
                None,
                NetworkKind.USER,
                "user",
                subnets=USER_SUBNETS,
                active=True,
                attachments=tuple(attached.pop(USER_NETWORK)),
            )
        ]
        for name in sorted(attached):
            attachments = tuple(attached[name])
            if name in bridges:
                out.append(attrs.evolve(bridges[name], attachments=attachments))
            else:  # a tap of its own (network_of_word returns no other name)
                out.append(
                    NetworkInfo(
                        name,
                        None,
                        NetworkKind.OTHER,
                        "tap",
                        device=name,
                        active=links[name].up,
                        attachments=attachments,
                    )
                )
        return out

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
listing whatever the number of networks and NICs (parsed by the SPI's
:func:`~virtabs.spi.bridge_networks_from_ip_json`), and the definitions are read in one pass over the
root's files. A single NIC (:meth:`HostNetworks.network_of_nic`, for ``nics()`` and the inventory) is
resolved from ``/sys/class/net`` instead: a few file-system reads, no process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from virtabs.spi import (
    NetworkAttachment,
    NetworkInfo,
    NetworkKind,
    NetworkSubnet,
    OperationFailedError,
    bridge_networks_from_ip_json,
    quote,
    run_in_process_group,
)

from ._cmdline import mac_for
from ._records import Definition

__all__ = [
    "IP_ADDR_ARGV",
    "IP_LINK_ARGV",
    "IP_MISSING",
    "USER_NETWORK",
    "HostLink",
    "HostNetworks",
    "ip_available",
    "network_of_word",
]

USER_NETWORK = "user"
"""The name of QEMU's user-mode network."""

USER_WORDS = frozenset({"user", "default"})
"""The NIC words ``_cmdline`` starts as ``-netdev user``."""

IP_LINK_ARGV = ("ip", "-json", "-details", "link", "show")
"""Every link of the host with its kind (``linkinfo``) and bridge (``master``)."""
IP_ADDR_ARGV = ("ip", "-json", "addr", "show")
"""Every link's addresses."""

IP_MISSING = "iproute2's 'ip' is not on this host's PATH (apt install iproute2)"
"""Why a connection drops ``network`` on a host without ``ip``."""

SYS_CLASS_NET = "/sys/class/net"
"""Where the kernel shows each network interface (a parameter of :meth:`HostLink.from_sys` for tests)."""

IFF_TAP = 0x0002
"""``tun_flags`` bit of a tap (``linux/if_tun.h``); a tun device (layer 3) lacks it."""

# QEMU's defaults for `-netdev user` with no options (qemu-options.hx: net=10.0.2.0/24, host= the 2nd
# address, dhcpstart= the 15th; ipv6-net=fec0::/64, ipv6-host= the 2nd); libslirp leases NB_BOOTP_CLIENTS
# = 16 addresses from dhcpstart. _cmdline passes none of these options, so they are the guests' network.
USER_SUBNETS = (
    NetworkSubnet("10.0.2.0/24", gateway="10.0.2.2", dhcp_ranges=(("10.0.2.15", "10.0.2.30"),)),
    NetworkSubnet("fec0::/64", gateway="fec0::2"),
)


@attrs.frozen
class HostLink:
    """What the kernel says of one network interface: bridge, tap or other, its bridge, whether it is up."""

    kind: str
    """``bridge``, ``tap`` or ``other``."""
    master: str | None = None
    """The interface it is a port of (a bridge), if any."""
    up: bool = False

    @classmethod
    def from_ip_json(cls, link: Mapping[str, Any]) -> HostLink:
        """One element of ``ip -json -details link show``."""
        info = link.get("linkinfo") or {}
        kind = "other"
        if info.get("info_kind") == "bridge":
            kind = "bridge"
        elif info.get("info_kind") == "tun" and (info.get("info_data") or {}).get("type") == "tap":
            kind = "tap"
        master = link.get("master")
        return cls(kind, master if isinstance(master, str) else None, "UP" in (link.get("flags") or ()))

    @classmethod
    def from_sys(cls, name: str, sys_class_net: str = SYS_CLASS_NET) -> HostLink | None:
        """The interface ``name`` from ``/sys/class/net``, or None when the host has none by that name."""
        if not name or "/" in name or name in (".", ".."):
            return None
        base = os.path.join(sys_class_net, name)
        kind = "other"
        if os.path.isdir(os.path.join(base, "bridge")):
            kind = "bridge"
        else:
            try:
                with open(os.path.join(base, "tun_flags")) as fh:
                    if int(fh.read().strip(), 16) & IFF_TAP:
                        kind = "tap"
            except FileNotFoundError:
                if not os.path.isdir(base):
                    return None
            except (OSError, ValueError):
                pass
        try:
            master: str | None = os.path.basename(os.readlink(os.path.join(base, "master")))
        except OSError:
            master = None
        return cls(kind, master)


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


def ip_available() -> bool:
    """Whether iproute2's ``ip`` is on this host's PATH (``network`` is declared only then)."""
    return shutil.which("ip") is not None


def _run_ip(argv: tuple[str, ...], timeout: float) -> str:
    try:
        rc, out, err = run_in_process_group(list(argv), timeout)
    except FileNotFoundError:
        raise OperationFailedError(f"qemu networks: {IP_MISSING}") from None
    except subprocess.TimeoutExpired:
        raise OperationFailedError(f"qemu networks: '{' '.join(argv)}' did not answer within {timeout:g} s") from None
    if rc != 0:
        raise OperationFailedError(
            f"qemu networks: '{' '.join(argv)}' failed with exit status {rc}: {quote(err.decode(errors='replace'))}"
        )
    return out.decode(errors="replace")


def _links(text: str) -> dict[str, HostLink]:
    try:
        value = json.loads(text)
    except ValueError:
        raise OperationFailedError(f"'{' '.join(IP_LINK_ARGV)}' printed no JSON: {quote(text)}") from None
    if not isinstance(value, list):
        raise OperationFailedError(f"'{' '.join(IP_LINK_ARGV)}' printed JSON that is not a list: {quote(text)}")
    return {
        str(link["ifname"]): HostLink.from_ip_json(link)
        for link in value
        if isinstance(link, dict) and isinstance(link.get("ifname"), str)
    }


class HostNetworks:
    """The networks of one state root's NICs, read from the host (module docstring)."""

    def __init__(self, definitions: Callable[[], Iterable[Definition]], timeout: float) -> None:
        self._definitions = definitions
        self.timeout = timeout

    def run_ip(self, argv: tuple[str, ...]) -> str:
        """Run one iproute2 command on this host and return what it printed (every host call goes here)."""
        return _run_ip(argv, self.timeout)

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
        link_text = self.run_ip(IP_LINK_ARGV)
        addr_text = self.run_ip(IP_ADDR_ARGV)
        links = _links(link_text)
        bridges = {net.name: net for net in bridge_networks_from_ip_json(link_text, addr_text)}
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

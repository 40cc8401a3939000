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
show``: TWO commands per listing, whatever the number of networks and NICs (the bridges parsed by the
SPI's :func:`~virtabs.spi.bridge_networks_from_ip_json`). One container's NICs
(:func:`network_of_nic`) are resolved from ``/sys/class/net`` instead: file-system reads, no process.
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
    OperationFailedError,
    bridge_networks_from_ip_json,
    quote,
    run_in_process_group,
)

__all__ = [
    "HOST_NETWORK",
    "IP_ADDR_ARGV",
    "IP_LINK_ARGV",
    "IP_MISSING",
    "NO_NETWORK",
    "HostLink",
    "NicFacts",
    "ip_available",
    "list_networks",
    "network_of_nic",
]

HOST_NETWORK = "host"
"""The network of containers with ``lxc.net.0.type = none`` (they use the host's network stack)."""
NO_NETWORK = "none"
"""The network of containers with ``lxc.net.0.type = empty`` or no NIC: loopback only."""

IP_LINK_ARGV = ("ip", "-json", "-details", "link", "show")
"""Every link of the host with its kind (``linkinfo``) and bridge (``master``)."""
IP_ADDR_ARGV = ("ip", "-json", "addr", "show")
"""Every link's addresses."""

IP_MISSING = "iproute2's 'ip' is not on this host's PATH (apt install iproute2)"
"""Why a connection drops ``network`` on a host without ``ip``."""

SYS_CLASS_NET = "/sys/class/net"
"""Where the kernel shows each network interface."""

_ON_A_DEVICE = {"macvlan": NetworkKind.MACVLAN, "ipvlan": NetworkKind.IPVLAN}


@attrs.frozen
class NicFacts:
    """One NIC as the configuration file has it: ``lxc.net.N.type``, ``link`` and ``hwaddr`` (and N)."""

    type: str
    link: str | None
    mac: str | None
    index: int = 0


@attrs.frozen
class HostLink:
    """What the kernel says of one network interface: whether it is a bridge, whether it is up."""

    bridge: bool
    up: bool = False

    @classmethod
    def from_ip_json(cls, link: Mapping[str, Any]) -> HostLink:
        """One element of ``ip -json -details link show``."""
        kind = (link.get("linkinfo") or {}).get("info_kind")
        return cls(kind == "bridge", "UP" in (link.get("flags") or ()))

    @classmethod
    def from_sys(cls, name: str, sys_class_net: str = SYS_CLASS_NET) -> HostLink | None:
        """The interface ``name`` from ``/sys/class/net``, or None when the host has none by that name."""
        if not name or "/" in name or name in (".", ".."):
            return None
        base = os.path.join(sys_class_net, name)
        if not os.path.isdir(base):
            return None
        return cls(os.path.isdir(os.path.join(base, "bridge")))


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
        return nic.link if link.bridge else None
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


def ip_available() -> bool:
    """Whether iproute2's ``ip`` is on this host's PATH (``network`` is declared only then)."""
    return shutil.which("ip") is not None


def run_ip(argv: tuple[str, ...], timeout: float) -> str:
    """Run one iproute2 command on this host and return what it printed (every host call goes here)."""
    try:
        rc, out, err = run_in_process_group(list(argv), timeout)
    except FileNotFoundError:
        raise OperationFailedError(f"lxc networks: {IP_MISSING}") from None
    except subprocess.TimeoutExpired:
        raise OperationFailedError(f"lxc networks: '{' '.join(argv)}' did not answer within {timeout:g} s") from None
    if rc != 0:
        raise OperationFailedError(
            f"lxc networks: '{' '.join(argv)}' failed with exit status {rc}: {quote(err.decode(errors='replace'))}"
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


def list_networks(
    containers: Iterable[tuple[str, str, list[NicFacts]]], run: Callable[[tuple[str, ...]], str]
) -> list[NetworkInfo]:
    """Every network (module docstring) with its attachments, from ``(uuid, name, NICs)`` of each container.

    ``run`` runs one iproute2 command (:func:`run_ip`); it is called twice.
    """
    link_text = run(IP_LINK_ARGV)
    addr_text = run(IP_ADDR_ARGV)
    links = _links(link_text)
    attached: dict[str, list[NetworkAttachment]] = {HOST_NETWORK: [], NO_NETWORK: []}
    for uuid, name, nics in containers:
        for nic in nics:
            network = network_of(nic, links.get)
            if network is not None:
                attached.setdefault(network, []).append(NetworkAttachment(uuid, name, nic.mac))
    out: list[NetworkInfo] = []
    for bridge in bridge_networks_from_ip_json(link_text, addr_text):
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

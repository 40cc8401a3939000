"""Linux host links and bridges as networks, from iproute2: for every backend whose host is Linux (QEMU, LXC,
Xen's dom0).

Two commands say everything a listing needs, whatever the number of links and guests::

    ip -json -details link show      # every link, its kind (linkinfo.info_kind) and its bridge (master)
    ip -json addr show               # every link's addresses

:class:`HostIp` runs them where the host is (this machine, or a ``+ssh`` host through a
:class:`CommandTransport`) with one error mapping, and :meth:`HostIp.read` returns both parsed: the
:class:`HostLink` of every interface and the bridges as :class:`NetworkInfo`. The parsers are pure functions
over the commands' text (:func:`host_links_from_ip_json`, :func:`bridge_networks_from_ip_json`). A driver
keeps only how its NICs name a link. One interface can also be read from ``/sys/class/net``
(:meth:`HostLink.from_sys`: file-system reads, no process) where the host is this machine.

iproute2 has printed this JSON since 4.13 (2017); the fields read here are the same in 6.1
(``tests/linux_net/captured/``, captured on Debian 12 by ``tests/linux_net/capture.sh``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import OperationFailedError, OperationTimeoutError, quote
from .._flags import NetworkKind
from .._models import NetworkInfo, NetworkSubnet

if TYPE_CHECKING:
    from ._command import CommandTransport

__all__ = [
    "IP_ADDR_ARGV",
    "IP_LINK_ARGV",
    "IP_MISSING",
    "HostIp",
    "HostLink",
    "HostLinks",
    "bridge_networks_from_ip_json",
    "host_links_from_ip_json",
]

IP_LINK_ARGV = ("ip", "-json", "-details", "link", "show")
"""The command whose output is ``link_json``."""
IP_ADDR_ARGV = ("ip", "-json", "addr", "show")
"""The command whose output is ``addr_json``."""

IP_MISSING = "iproute2's 'ip' is not on this host's PATH (apt install iproute2)"
"""Why a connection drops ``network`` on a host without ``ip``."""

SYS_CLASS_NET = "/sys/class/net"
"""Where the kernel shows each network interface (a parameter of :meth:`HostLink.from_sys` for tests)."""

IFF_TAP = 0x0002
"""``tun_flags`` bit of a tap (``linux/if_tun.h``); a tun device (layer 3) lacks it."""

_COMMAND_NOT_FOUND = 127
"""A shell's exit status for a command it cannot find (how a missing ``ip`` shows over ssh)."""


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


@attrs.frozen
class HostLink:
    """What the kernel says of one network interface: bridge, tap or other, its bridge, whether it is up."""

    kind: str
    """``bridge``, ``tap`` or ``other``."""
    master: str | None = None
    """The interface it is a port of (a bridge), if any."""
    up: bool = False

    @property
    def is_bridge(self) -> bool:
        """True for a Linux bridge."""
        return self.kind == "bridge"

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
        """The interface ``name`` of this machine from ``/sys/class/net``, or None when it has none by that name."""
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


def host_links_from_ip_json(link_json: str) -> dict[str, HostLink]:
    """Every interface of ``ip -json -details link show``'s output by name."""
    return {
        str(link["ifname"]): HostLink.from_ip_json(link)
        for link in _links(link_json, IP_LINK_ARGV)
        if isinstance(link.get("ifname"), str)
    }


@attrs.frozen
class HostLinks:
    """One reading of a host's interfaces: every link by name and the bridges as networks (kernel order)."""

    links: Mapping[str, HostLink]
    bridges: tuple[NetworkInfo, ...]

    def get(self, name: str) -> HostLink | None:
        """The interface ``name``, or None when the host has none by that name."""
        return self.links.get(name)

    @classmethod
    def from_ip_json(cls, link_json: str, addr_json: str) -> HostLinks:
        """From the output of :data:`IP_LINK_ARGV` and :data:`IP_ADDR_ARGV` (however the driver ran them)."""
        return cls(host_links_from_ip_json(link_json), tuple(bridge_networks_from_ip_json(link_json, addr_json)))


class HostIp:
    """iproute2's ``ip`` on one Linux host: this machine, or the host of a :class:`CommandTransport`.

    ``what`` prefixes every error (``"qemu networks"``); ``timeout`` bounds each command. Every host call
    goes through :meth:`run` (a test counts them there).
    """

    def __init__(self, what: str, timeout: float, transport: CommandTransport | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self.transport = transport

    def available(self) -> bool:
        """Whether ``ip`` is on this machine's PATH (with a transport: assumed, a missing one fails :meth:`run`
        with :data:`IP_MISSING`)."""
        return self.transport is not None or shutil.which("ip") is not None

    def _failed(self, argv: Sequence[str], rc: int, err: bytes) -> OperationFailedError:
        if rc == _COMMAND_NOT_FOUND and self.transport is not None:
            return OperationFailedError(f"{self.what}: {IP_MISSING}")
        return OperationFailedError(
            f"{self.what}: '{' '.join(argv)}' failed with exit status {rc}: {quote(err.decode(errors='replace'))}"
        )

    def _timed_out(self, argv: Sequence[str]) -> OperationFailedError:
        return OperationFailedError(f"{self.what}: '{' '.join(argv)}' did not answer within {self.timeout:g} s")

    def run(self, argv: Sequence[str]) -> str:
        """Run one ``ip`` command on the host and return what it printed."""
        if self.transport is not None:
            try:
                result = self.transport.run(argv, timeout=self.timeout, check=False)
            except OperationTimeoutError:
                raise self._timed_out(argv) from None
            if result.returncode != 0:
                raise self._failed(argv, result.returncode, result.stderr)
            return result.out
        from ._command import run_in_process_group  # not at import: virtabs.spi imports _command lazily

        try:
            rc, out, err = run_in_process_group(list(argv), self.timeout)
        except FileNotFoundError:
            raise OperationFailedError(f"{self.what}: {IP_MISSING}") from None
        except subprocess.TimeoutExpired:
            raise self._timed_out(argv) from None
        if rc != 0:
            raise self._failed(argv, rc, err)
        return out.decode(errors="replace")

    def read(self) -> HostLinks:
        """The host's links and bridges: TWO commands (:data:`IP_LINK_ARGV`, :data:`IP_ADDR_ARGV`)."""
        link_text = self.run(IP_LINK_ARGV)
        return HostLinks.from_ip_json(link_text, self.run(IP_ADDR_ARGV))

""":class:`Network`: a virtual network of one connection (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import quote
from ._flags import NetworkKind
from ._models import NetworkInfo
from .spi import OPERATIONS

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Network"]


class Network:
    """A network of a connection: a bridge, switch, port group or engine network the host offers."""

    def __init__(self, conn: Connection, info: NetworkInfo) -> None:
        self._conn = conn
        self._info = info

    @property
    def name(self) -> str:
        """The network's name (what a NIC's ``network`` says)."""
        return self._info.name

    @property
    def id(self) -> str | None:
        """The host's stable identifier (a UUID where the hypervisor has one), or None."""
        return self._info.id

    @property
    def kind(self) -> NetworkKind:
        """The portable kind; ``last_info.native_kind`` keeps the host's word."""
        return self._info.kind

    @property
    def last_info(self) -> NetworkInfo:
        """The facts of the listing or lookup that made this handle (no host call; :meth:`info` refreshes)."""
        return self._info

    def __repr__(self) -> str:
        return f"<Network name={self.name!r} kind={self.kind.value!r}>"

    def info(self) -> NetworkInfo:
        """Fresh facts (subnets, VLANs, state, attached NICs), looked up by id when it has one."""
        key = self.id if self.id is not None else self.name
        with self._conn._gate(OPERATIONS["lookup_network"], f"info of network {quote(self.name)}") as call:
            self._info = call.driver.lookup_network(key)
        return self._info

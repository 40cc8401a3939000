"""Remote hosts without a daemon: ``DRIVER+ssh://[user@]host[:port]/PATH`` through ``virtabs-remote``.

ssh starts the helper (:func:`main`, the ``virtabs-remote`` command, also ``python3 -m virtabs.remote``)
on the remote host for the life of the connection; it serves that host's local driver over the
protocol of :mod:`virtabs.remote._protocol`. docs/remote.md describes the URIs, the protocol and the
faults.
"""

from __future__ import annotations

from ._helper import main
from ._protocol import MAX_FRAME, PROTOCOL_VERSION, ProtocolError

__all__ = ["MAX_FRAME", "NATIVE_SSH", "PROTOCOL_VERSION", "ProtocolError", "main"]

NATIVE_SSH = frozenset({"xen", "vbox", "docker"})
"""Drivers whose ``+ssh`` transport is their own (commands over the command transport, the docker SDK's
ssh); every other ``DRIVER+ssh://`` URI goes to the remote helper."""

"""Where the driver gets the command transport: the core's driver toolkit (``virtabs.spi``)."""

from __future__ import annotations

from virtabs.spi import CommandFailedError, CommandResult, CommandTransport

__all__ = ["CommandFailedError", "CommandResult", "CommandTransport"]

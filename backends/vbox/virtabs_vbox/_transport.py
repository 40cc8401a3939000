"""Where the driver gets the command transport: the core's driver toolkit (``virtabs.spi``).

``virtabs/spi/_command.py`` holds it; until ``virtabs.spi`` re-exports its names, they are imported from
there (the only place this package reaches past ``virtabs.spi``'s ``__all__``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtabs.spi._command import CommandFailedError, CommandResult, CommandTransport  # noqa: TID251
else:
    try:
        from virtabs.spi import CommandFailedError, CommandResult, CommandTransport
    except ImportError:  # before virtabs.spi re-exports them
        from virtabs.spi._command import CommandFailedError, CommandResult, CommandTransport  # noqa: TID251

__all__ = ["CommandFailedError", "CommandResult", "CommandTransport"]

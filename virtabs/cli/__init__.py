"""The ``virtabs`` command line: a virsh-like CLI over the portable API.

``virtabs [-c URI] [--timeout S] [-r] [--debug] COMMAND [ARGS]``; run
``virtabs --help`` for the commands and ``virtabs COMMAND --help`` for examples.

Structure: :data:`cli` (in :mod:`virtabs.cli._main`) is the click group. Each
topic module imported below adds its commands to it (``@cli.command(...)``).
Heavier commands are registered lazily with
:func:`~virtabs.cli._main.register_lazy_command`: they are imported only when
they run, so ``virtabs --help`` and ``virtabs list`` stay fast.
"""

from __future__ import annotations

from . import _blockjobs, _domains, _host, _storage
from ._main import CliState, cli, main, register_lazy_command

__all__ = ["CliState", "cli", "main"]

_COMMAND_MODULES = (_domains, _blockjobs, _storage, _host)

# `virtabs inventory`: the click command `inventory_command` of virtabs/cli/_inventory.py, imported on use.
register_lazy_command(
    "inventory",
    "virtabs.cli._inventory",
    "inventory_command",
    "Inventory every domain, disk, NIC and pool of one or more hosts.",
)

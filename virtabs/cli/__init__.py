"""The ``virtabs`` command line: a virsh-like CLI over the portable API.

``virtabs [-c URI] [--timeout S] [-r] [--debug] COMMAND [ARGS]``; run
``virtabs --help`` for the commands and ``virtabs COMMAND --help`` for examples.

Structure: :data:`cli` (in :mod:`virtabs.cli._main`) is the click group; each
topic module below adds its commands to it when imported. A new command module
registers itself the same way (``from ._main import cli`` then
``@cli.command("name")``) and is imported here.
"""

from __future__ import annotations

import importlib

from . import _blockjobs, _domains, _host, _storage
from ._main import CliState, cli, main

__all__ = ["CliState", "cli", "main"]

_COMMAND_MODULES = (_domains, _blockjobs, _storage, _host)


def _load_optional(name: str) -> None:
    """Import an optional command module of this package if it exists (it registers its own commands)."""
    try:
        importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise


# `virtabs inventory` lives in virtabs/cli/_inventory.py (it does `@cli.command("inventory")`).
_load_optional("_inventory")

"""Drivers shipped inside the ``virtabs`` distribution.

Only the in-memory reference driver lives here (:mod:`virtabs.drivers.test`,
URI scheme ``test``). It is registered through the ``virtabs.drivers``
entry-point group like every other driver; nothing here imports it eagerly.
"""

from __future__ import annotations

__all__: list[str] = []

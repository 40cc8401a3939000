"""The public API, gathered from its rooms.

======================  ====================================================
module                  what
======================  ====================================================
``_connection``         ``open()``, :class:`Connection`, :class:`Subscription`
``_domain``             :class:`Domain`: reads, lifecycle, snapshots, devices
``_blockjob``           block-job methods of Domain, :class:`BlockJob`
``_migration``          ``Domain.migrate``, :class:`MigrationJob`
``_storage``            :class:`StoragePool`, :class:`Volume`
``_network``            :class:`Network`
``_gate``               steps 1-5 of every call, driven by ``spi.OPERATIONS``
``_rules``              every rule, once
======================  ====================================================
"""

from __future__ import annotations

from ._blockjob import BlockJob
from ._connection import Connection, Subscription, open
from ._domain import Domain
from ._migration import MigrationJob
from ._network import Network
from ._storage import StoragePool, Volume

__all__ = [
    "BlockJob",
    "Connection",
    "Domain",
    "MigrationJob",
    "Network",
    "StoragePool",
    "Subscription",
    "Volume",
    "open",
]

"""The contract-kit target of the example driver (entry-point group ``virtabs.testing.targets``, name ``example``).

:class:`virtabs.testing.DefaultTarget` already fits: it defines domains from a plain DomainSpec whose
disk is a fresh volume of the ``default`` pool, and sweeps what a test leaves by name prefix. What the
target adds is a second door to the host: :meth:`ExampleTarget.boot_id` reads the machine's boot
counter from the host itself, so the kit can check a reboot without trusting the driver that did it.
"""

from __future__ import annotations

from virtabs import Connection, Domain
from virtabs.testing import DefaultTarget

from . import host

__all__ = ["ExampleTarget"]


class ExampleTarget(DefaultTarget):
    """Disposable domains on volumes of the host's ``default`` pool; the guest powers off 0.1 s after a shutdown."""

    job_timeout = 10.0
    """Bounds the kit's waits (there are no block jobs; a state change takes at most a poll interval)."""
    shutdown_timeout = 10.0

    def __init__(self) -> None:
        super().__init__(prefix="vtx", pool="default")

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """How many times the machine has booted, asked of the host directly (not through the driver)."""
        return host.connect(conn.parsed_uri.path.strip("/") or "default").machine(dom.uuid).boot_count

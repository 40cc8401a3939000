"""The contract-kit target of the example driver (entry-point group ``virtabs.testing.targets``, name ``example``).

:class:`virtabs.testing.DefaultTarget` already fits: it defines domains from a plain DomainSpec whose
disk is a fresh volume of the ``default`` pool, and sweeps what a test leaves by name prefix.
"""

from __future__ import annotations

from virtabs.testing import DefaultTarget

__all__ = ["ExampleTarget"]


class ExampleTarget(DefaultTarget):
    """Disposable domains on volumes of the host's ``default`` pool; the guest powers off 0.1 s after a shutdown."""

    job_timeout = 10.0
    """Bounds the kit's waits (there are no block jobs; a state change takes at most a poll interval)."""
    shutdown_timeout = 10.0

    def __init__(self) -> None:
        super().__init__(prefix="vtx", pool="default")

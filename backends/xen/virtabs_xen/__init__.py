"""virtabs-xen: Xen through its ``xl`` toolstack, on the Xen host (``xen:///``) or over ssh (``xen+ssh://``).

Importing this package imports nothing heavy; the driver lives in :mod:`virtabs_xen.driver`.
"""

__all__: list[str] = []

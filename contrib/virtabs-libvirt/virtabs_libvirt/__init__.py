"""virtabs-libvirt: libvirt itself as a virtabs driver.

Install it next to virtabs and open any libvirt URI with a ``libvirt+`` prefix::

    pip install virtabs-libvirt          # needs libvirt-python (apt: libvirt-dev pkg-config)
    >>> import virtabs
    >>> conn = virtabs.open("libvirt+test:///default")     # libvirt's own test driver, no daemon
    >>> conn = virtabs.open("libvirt+qemu:///system")      # a libvirtd

``libvirt:///?uri=qemu%2Bssh://root@host/system`` passes any other libvirt URI
verbatim. The driver is found only through its ``virtabs.drivers`` entry point
(``libvirt``); importing this package does not import libvirt.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"

"""The whole virtabs contract suite, run against the libvirt driver (the SQLAlchemy dialect pattern)."""

from virtabs.testing.suite import *  # noqa: F403

"""The contract target of the Docker driver: disposable containers running a shell loop.

Published through the entry-point group ``virtabs.testing.targets`` (name ``docker``). The image must
contain ``/bin/sh`` and ``sleep`` (busybox is enough): the command traps SIGTERM and exits, so a graceful
shutdown ends quickly. The image is ``$VIRTABS_DOCKER_IMAGE``, else ``busybox:latest``; the backend's own
tests import a busybox-static rootfs as ``virtabs/busybox:latest`` (no registry needed). Containers get
no network (``--network none``).
"""

from __future__ import annotations

import os

from virtabs import Connection, DomainSpec
from virtabs.testing import DefaultTarget

__all__ = ["SLEEPER", "DockerTarget"]

MiB = 1 << 20
#: keeps running; exits 0 on SIGTERM (the default stop signal)
SLEEPER = ("/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")


class DockerTarget(DefaultTarget):
    """Containers of ``image`` running :data:`SLEEPER`, 64 MiB, one CPU, no network."""

    job_timeout = 60.0
    shutdown_timeout = 30.0

    def __init__(self, image: str | None = None) -> None:
        super().__init__(prefix="vtdk", memory_bytes=64 * MiB)
        self.image = image or os.environ.get("VIRTABS_DOCKER_IMAGE", "busybox:latest")

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """A container definition (no disks: containers have none)."""
        return DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            os_type="exe",
            extra={"docker": {"image": self.image, "command": list(SLEEPER)}},
        )

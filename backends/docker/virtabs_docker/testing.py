"""The contract target of the Docker driver: disposable containers running a shell loop.

Published through the entry-point group ``virtabs.testing.targets`` (name ``docker``). The image must
contain ``/bin/sh`` and ``sleep`` (busybox is enough): the command traps SIGTERM and exits, so a graceful
shutdown ends quickly. The image is ``$VIRTABS_DOCKER_IMAGE``, else ``busybox:latest``; the backend's own
tests import a busybox-static rootfs as ``virtabs/busybox:latest`` (no registry needed). Containers get
no network (``--network none``) unless the target is given one (``network=``, else ``$VIRTABS_DOCKER_NETWORK``):
then each has one NIC on it, which the kit's network tests compare with the network's attachments. On an
engine without the image, every test that needs a container fails with one
:class:`~virtabs.testing.TargetUnavailable` saying how to provide it (the engine is asked once).
"""

from __future__ import annotations

import os
from typing import Any

from virtabs import Connection, Domain, DomainSpec, NicSpec
from virtabs.testing import DefaultTarget, TargetUnavailable

__all__ = ["SLEEPER", "DockerTarget"]

MiB = 1 << 20
#: keeps running; exits 0 on SIGTERM (the default stop signal)
SLEEPER = ("/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")


class DockerTarget(DefaultTarget):
    """Containers of ``image`` running :data:`SLEEPER`, 64 MiB, one CPU, on ``network`` (None: no network)."""

    job_timeout = 60.0
    shutdown_timeout = 30.0

    def __init__(self, image: str | None = None, base_url: str | None = None, network: str | None = None) -> None:
        super().__init__(prefix="vtdk", memory_bytes=64 * MiB)
        self.image = image or os.environ.get("VIRTABS_DOCKER_IMAGE", "busybox:latest")
        self.network = network or os.environ.get("VIRTABS_DOCKER_NETWORK") or None
        self.base_url = base_url
        self._client: Any = None
        self._image_missing: str | None = None
        self._image_checked = False

    def _engine(self, conn: Connection) -> Any:
        """A docker SDK client of its own (not the driver's) on the connection's engine."""
        if self._client is None:
            import docker  # type: ignore[import-untyped]

            uri = conn.parsed_uri
            base_url = self.base_url
            if base_url is None and uri.transport == "unix":
                base_url = f"unix://{uri.path}"
            elif base_url is None and uri.transport is None:
                base_url = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            if base_url is None:
                raise TargetUnavailable(f"DockerTarget needs base_url= for {conn.uri} (it reads the engine itself)")
            self._client = docker.APIClient(base_url=base_url, version="1.41")
        return self._client

    def boot_id(self, conn: Connection, dom: Domain) -> object:
        """When the container's current run began and its init's pid, read by the target's own engine client."""
        state = self._engine(conn).inspect_container(dom.name)["State"]
        return (state.get("StartedAt"), state.get("Pid"))

    def volume_format(self, conn: Connection, pool: str) -> str:
        """``dir``: the engine's pool ``volumes`` holds named volumes, which are directories (made without a size)."""
        return "dir"

    def close(self) -> None:
        """Close the target's own engine client."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def require_image(self, conn: Connection) -> None:
        """TargetUnavailable naming what to do when the engine lacks :attr:`image` (asked once per target)."""
        if not self._image_checked:
            import docker

            try:
                self._engine(conn).inspect_image(self.image)
            except docker.errors.ImageNotFound:
                self._image_missing = (
                    f"the Docker contract target needs the image {self.image!r} (with /bin/sh and sleep: busybox is "
                    f"enough) and the engine at {conn.uri} does not have it: pull it (docker pull {self.image}), "
                    "import one (a busybox-static rootfs: tar -C ROOTFS -c . | docker import - virtabs/busybox), "
                    "or name an image the engine has with VIRTABS_DOCKER_IMAGE=NAME"
                )
            self._image_checked = True
        if self._image_missing is not None:
            raise TargetUnavailable(self._image_missing)

    def domain_spec(self, conn: Connection, name: str) -> DomainSpec:
        """A container definition (no disks: containers have none) of an image the engine has, on :attr:`network`."""
        self.require_image(conn)
        return DomainSpec(
            name=name,
            memory_bytes=self.memory_bytes,
            vcpus=1,
            os_type="exe",
            nics=(NicSpec(network=self.network, model="veth"),) if self.network else (),
            extra={"docker": {"image": self.image, "command": list(SLEEPER)}},
        )

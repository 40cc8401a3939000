"""virtabs driver for Docker and Podman containers through the docker SDK."""

__all__: list[str] = []

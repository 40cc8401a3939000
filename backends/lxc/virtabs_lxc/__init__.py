"""virtabs driver for LXC containers (liblxc through its Python binding)."""

__all__: list[str] = []

"""virtabs driver for QEMU/KVM: daemonless, over QMP. The entry point is :class:`virtabs_qemu.driver.QemuDriver`."""

__all__ = ["__version__"]

__version__ = "0.1.0"

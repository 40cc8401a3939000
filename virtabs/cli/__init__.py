"""The ``virtabs`` command line: a virsh-like CLI over the portable API.

``virtabs [-c URI] [--timeout S] [-r] [--debug] COMMAND [ARGS]``; run
``virtabs --help`` for the commands and ``virtabs COMMAND --help`` for examples.

Structure: :data:`cli` (in :mod:`virtabs.cli._main`) is the click group. Every
subcommand is registered lazily (:data:`COMMANDS`, name -> topic module and short
help): ``virtabs --help`` lists them without importing any topic module, and
``virtabs list`` imports only the module that defines ``list`` (which adds its
commands to the group with ``@cli.command(...)``). ``tests/cli`` checks that
this table matches the commands the modules define.
"""

from __future__ import annotations

from ._main import CliState, cli, main, register_lazy_command

__all__ = ["COMMANDS", "CliState", "cli", "main"]

COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("list", "virtabs.cli._domains", "List domains with their UUID and state."),
    ("dominfo", "virtabs.cli._domains", "Show a domain's state, vCPUs, memory and CPU time."),
    ("domstate", "virtabs.cli._domains", "Print a domain's state (running, paused, shut off ...)."),
    ("start", "virtabs.cli._domains", "Start a defined (shut-off) domain."),
    ("shutdown", "virtabs.cli._domains", "Ask the guest to power off gracefully."),
    ("destroy", "virtabs.cli._domains", "Power a domain off at once (like pulling the plug)."),
    ("reboot", "virtabs.cli._domains", "Reboot a running domain."),
    ("suspend", "virtabs.cli._domains", "Pause a running domain's vCPUs (memory stays)."),
    ("resume", "virtabs.cli._domains", "Resume a paused domain."),
    ("save", "virtabs.cli._domains", "Save a running domain's memory to FILE and stop it."),
    ("restore", "virtabs.cli._domains", "Start a domain from a file written by 'save'."),
    (
        "managedsave",
        "virtabs.cli._domains",
        "Save a running domain where the host keeps it and stop it; 'start' resumes it.",
    ),
    (
        "managedsave-remove",
        "virtabs.cli._domains",
        "Discard a shut-off domain's managed save image (the next start boots).",
    ),
    ("define", "virtabs.cli._domains", "Define a domain from a JSON or YAML DomainSpec file ('-' reads stdin)."),
    ("undefine", "virtabs.cli._domains", "Remove the definition of a shut-off domain."),
    ("snapshot-create", "virtabs.cli._domains", "Take a snapshot of a domain called NAME."),
    ("snapshot-list", "virtabs.cli._domains", "List a domain's snapshots, oldest first."),
    ("snapshot-revert", "virtabs.cli._domains", "Revert a domain to its snapshot NAME."),
    ("snapshot-delete", "virtabs.cli._domains", "Delete a domain's snapshot NAME."),
    ("attach-disk", "virtabs.cli._domains", "Attach the image PATH to a domain as disk TARGET (vdb, sdc ...)."),
    ("detach-disk", "virtabs.cli._domains", "Detach disk TARGET (or the disk with that path) from a domain."),
    ("domblklist", "virtabs.cli._domains", "List a domain's disks: target, source image, format and backing chain."),
    ("domiflist", "virtabs.cli._domains", "List a domain's network interfaces: MAC, network, model and addresses."),
    ("blockpull", "virtabs.cli._blockjobs", "Fill DISK from its backing images (a pull job)."),
    ("blockcopy", "virtabs.cli._blockjobs", "Copy DISK into the file DEST, then mirror it until pivot or abort."),
    ("blockcommit", "virtabs.cli._blockjobs", "Merge the images of DISK down into a backing image (a commit job)."),
    ("blockjob", "virtabs.cli._blockjobs", "Show, re-limit, abort or pivot the block job on DISK."),
    (
        "migrate",
        "virtabs.cli._migrate",
        "Migrate DOMAIN to the host DEST_URI (the same driver); the rules are libvirt's.",
    ),
    ("pool-list", "virtabs.cli._storage", "List storage pools with their capacity and usage."),
    ("pool-info", "virtabs.cli._storage", "Show a storage pool's type, path, capacity and usage."),
    ("vol-list", "virtabs.cli._storage", "List the volumes of a storage pool."),
    (
        "vol-create",
        "virtabs.cli._storage",
        "Create volume NAME of SIZE (10G, 512M or bytes) in POOL; a directory volume (--format dir) takes no SIZE.",
    ),
    ("vol-delete", "virtabs.cli._storage", "Delete volume NAME from POOL."),
    ("net-list", "virtabs.cli._network", "List the host's networks: kind, device, VLANs, subnets and attached NICs."),
    (
        "net-info",
        "virtabs.cli._network",
        "Show a network (by name or id): kind, device, VLANs, subnets with DHCP ranges, attached NICs.",
    ),
    ("drivers", "virtabs.cli._host", "List installed drivers and their capability matrix (no driver is connected)."),
    ("capabilities", "virtabs.cli._host", "Show what the current connection's driver can do."),
    ("hostinfo", "virtabs.cli._host", "Show facts about the hypervisor host: CPUs, memory, hypervisor version."),
    ("version", "virtabs.cli._host", "Show the virtabs version, the driver and the hypervisor's version."),
)
"""``(name, module, short help)`` of every subcommand, in the order ``virtabs --help`` lists them."""

for _name, _module, _help in COMMANDS:
    register_lazy_command(_name, _module, None, _help)

# `virtabs inventory`: the click command `inventory_command` of virtabs/cli/_inventory.py, imported on use.
register_lazy_command(
    "inventory",
    "virtabs.cli._inventory",
    "inventory_command",
    "Inventory every domain, disk, NIC, pool and network of the given hosts (schema v3).",
)

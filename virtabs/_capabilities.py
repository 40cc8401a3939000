"""Capabilities: what a driver says it can do.

A :class:`Capability` is a closed set of stable dotted names. Each driver
declares a :class:`Capabilities` value (which capabilities, with a note where
support is partial); a connection may refine it after connecting (a host
version). The public API checks the capability *before* it calls the driver,
so an unsupported call raises :class:`~virtabs.NotSupportedError` without
touching the host.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping

import attrs

from ._errors import InvalidArgumentError, quote

__all__ = ["Capabilities", "Capability"]


class Capability(enum.StrEnum):
    """A named ability of a driver. Values are stable; never rename one."""

    DOMAIN_DEFINE = "domain.define"
    """define_domain and undefine."""
    DOMAIN_START = "domain.start"
    """start (also paused)."""
    DOMAIN_SHUTDOWN = "domain.shutdown"
    """Graceful (guest-cooperative) shutdown."""
    DOMAIN_DESTROY = "domain.destroy"
    """Hard power-off."""
    DOMAIN_REBOOT = "domain.reboot"
    """reboot."""
    DOMAIN_SUSPEND = "domain.suspend"
    """suspend and resume (pause the vCPUs, keep memory)."""
    DOMAIN_SAVE = "domain.save"
    """save to a file and restore from it."""
    DOMAIN_MANAGED_SAVE = "domain.managed_save"
    """managed_save, has_managed_save and managed_save_remove; start resumes a managed save."""
    DOMAIN_SNAPSHOT = "domain.snapshot"
    """create, list, revert and delete snapshots."""
    DOMAIN_DISK_HOTPLUG = "domain.disk_hotplug"
    """attach_disk and detach_disk."""
    BLOCK_PULL = "block.pull"
    """block_pull and block_rebase without COPY."""
    BLOCK_COPY = "block.copy"
    """block_copy / block_rebase with COPY; what a copy copies is one of the kinds below (at least one)."""
    # --- kinds of copy (issue 27): what lands at the destination. A driver declares the ones it does;
    # the gate refuses the others before the host is touched (virtabs._rules.copy_capabilities).
    BLOCK_COPY_FLATTEN = "block.copy.flatten"
    """The default copy (libvirt's): the whole backing chain flattened into one image at the destination."""
    BLOCK_COPY_MOVE_CHAIN = "block.copy.move_chain"
    """MOVE_CHAIN: the chain moves as it is, every layer kept (Hyper-V's Move-VMStorage, ESX's Storage vMotion)."""
    BLOCK_COPY_SHALLOW = "block.copy.shallow"
    """SHALLOW: only the top layer is copied; the destination keeps the source's backing (also a kind)."""
    # --- end of the kinds of copy
    BLOCK_COPY_REUSE_EXT = "block.copy.reuse_ext"
    """Copy into a pre-created destination (REUSE_EXT)."""
    BLOCK_COPY_RAW = "block.copy.raw"
    """Force a raw destination (COPY_RAW, or ``format="raw"``)."""
    BLOCK_COPY_DEV = "block.copy.dev"
    """Copy onto a block device (COPY_DEV)."""
    BLOCK_COPY_PIVOT = "block.copy.pivot"
    """The caller decides when a ready copy pivots or is cancelled."""
    BLOCK_COMMIT = "block.commit"
    """block_commit, including the active layer (two-phase)."""
    BLOCK_BANDWIDTH = "block.bandwidth"
    """A block job's speed can be limited: a non-zero bandwidth at start, and block_job_set_speed."""
    # --- migration (issue 23)
    DOMAIN_MIGRATE = "domain.migrate"
    """Domain.migrate to another connection of the same driver (the source and destination halves)."""
    DOMAIN_MIGRATE_LIVE = "domain.migrate.live"
    """LIVE: the guest keeps running while its memory is copied."""
    DOMAIN_MIGRATE_OFFLINE = "domain.migrate.offline"
    """OFFLINE: only the definition moves."""
    DOMAIN_MIGRATE_COPY_STORAGE = "domain.migrate.copy_storage"
    """NON_SHARED_DISK / NON_SHARED_INC: the disks are copied to the destination during the migration."""
    DOMAIN_MIGRATE_TUNNELLED = "domain.migrate.tunnelled"
    """TUNNELLED: the streams go through the connection's own channel."""
    # --- what a migration can be asked for besides its flags (issue 27): the core refuses an undeclared one
    # on the source before either host is touched (virtabs._rules.migration_source_capabilities).
    DOMAIN_MIGRATE_KEEP_SOURCE = "domain.migrate.keep_source"
    """Without UNDEFINE_SOURCE the source keeps its persistent definition, shut off (libvirt's semantics);
    not declared: a persistent domain migrates only with UNDEFINE_SOURCE."""
    DOMAIN_MIGRATE_ABORT = "domain.migrate.abort"
    """MigrationJob.abort: a migration under way can be cancelled (the source keeps running)."""
    DOMAIN_MIGRATE_BANDWIDTH = "domain.migrate.bandwidth"
    """A non-zero ``bandwidth``: the migration's rate can be limited."""
    DOMAIN_MIGRATE_MAX_DOWNTIME = "domain.migrate.max_downtime"
    """A ``max_downtime``: the guest's pause at the switch can be bounded."""
    # --- end of what a migration can be asked for
    STORAGE_POOL = "storage.pool"
    """List and look up storage pools."""
    STORAGE_VOLUME = "storage.volume"
    """Create, inspect and delete volumes."""
    STORAGE_VOLUME_RESIZE = "storage.volume.resize"
    """Grow a volume (resize_volume)."""
    NETWORK = "network"
    """List and look up the host's networks (list_networks, lookup_network): read-only."""
    EVENTS = "events"
    """Lifecycle and block-job events through ``Connection.subscribe``."""

    @classmethod
    def parse(cls, name: str | Capability) -> Capability:
        """The capability called ``name``; a misspelt name is an error."""
        if isinstance(name, Capability):
            return name
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(c.value for c in cls)
            raise InvalidArgumentError(f"unknown capability {quote(name)}; known capabilities: {known}") from None


BLOCK_JOB_CAPABILITIES = frozenset({Capability.BLOCK_PULL, Capability.BLOCK_COPY, Capability.BLOCK_COMMIT})
COPY_KINDS = (Capability.BLOCK_COPY_FLATTEN, Capability.BLOCK_COPY_SHALLOW, Capability.BLOCK_COPY_MOVE_CHAIN)
"""The kinds of copy: a driver declaring ``block.copy`` declares at least one of them."""


def _parse_all(names: Iterable[Capability | str]) -> frozenset[Capability]:
    return frozenset(Capability.parse(n) for n in names)


def _freeze_notes(notes: Mapping[Capability | str, str]) -> Mapping[Capability, str]:
    return {Capability.parse(k): v for k, v in notes.items()}


@attrs.frozen
class Capabilities:
    """A driver's declared capabilities, with notes where support is partial.

    >>> caps = Capabilities.of("domain.start", "block.copy", notes={"block.copy": "qcow2 only"})
    >>> Capability.BLOCK_COPY in caps
    True
    """

    supported: frozenset[Capability] = attrs.field(converter=_parse_all)
    notes: Mapping[Capability, str] = attrs.field(factory=dict, converter=_freeze_notes)
    dropped: Mapping[Capability, str] = attrs.field(factory=dict, converter=_freeze_notes)
    """Capabilities a connection removed from its driver class's declaration, each with the reason."""

    def __attrs_post_init__(self) -> None:
        stray = set(self.notes) - self.supported
        if stray:
            names = ", ".join(sorted(stray))
            raise InvalidArgumentError(f"notes given for undeclared capabilities: {names}")
        both = set(self.dropped) & self.supported
        if both:
            raise InvalidArgumentError(f"capabilities both supported and dropped: {', '.join(sorted(both))}")
        for cap in self.supported:
            parent = _parent(cap)
            if parent is not None and parent not in self.supported:
                raise InvalidArgumentError(f"capability {quote(cap.value)} declared without {quote(parent.value)}")
        if Capability.BLOCK_COPY in self.supported and not self.supported.intersection(COPY_KINDS):
            kinds = ", ".join(k.value for k in COPY_KINDS)
            raise InvalidArgumentError(f"capability 'block.copy' declared without a kind of copy (one of {kinds})")

    @classmethod
    def of(cls, *names: Capability | str, notes: Mapping[Capability | str, str] | None = None) -> Capabilities:
        """Build a declaration from capability names."""
        return cls(frozenset(Capability.parse(n) for n in names), dict(notes or {}))

    @classmethod
    def all(cls, notes: Mapping[Capability | str, str] | None = None) -> Capabilities:
        """Every capability (what the reference ``test`` driver declares)."""
        return cls(frozenset(Capability), dict(notes or {}))

    def without(self, *names: Capability | str, reason: str | None = None) -> Capabilities:
        """A copy with ``names`` (and their sub-capabilities) removed; for refining after connect.

        A connection that drops what its driver class declares says why (``reason``): the
        contract kit's report shows it, and a drop without a reason is reported as such.
        """
        drop = {Capability.parse(n) for n in names}
        keep = {c for c in self.supported if not any(c == d or c.value.startswith(d.value + ".") for d in drop)}
        dropped: dict[Capability | str, str] = {cap: why for cap, why in self.dropped.items()}
        if reason is not None:
            dropped.update({c: reason for c in self.supported - keep})
        return Capabilities(frozenset(keep), {k: v for k, v in self.notes.items() if k in keep}, dropped)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return Capability.parse(item) in self.supported
        return False

    def __iter__(self) -> Iterator[Capability]:
        return iter(sorted(self.supported, key=lambda c: c.value))

    def __len__(self) -> int:
        return len(self.supported)

    def note(self, cap: Capability | str) -> str | None:
        """The partial-support note for ``cap``, if any."""
        return self.notes.get(Capability.parse(cap))

    def as_dict(self) -> dict[str, dict[str, object]]:
        """``{name: {"supported": bool, "note": str | None}}`` for every capability."""
        return {
            c.value: {"supported": c in self.supported, "note": self.notes.get(c)}
            for c in sorted(Capability, key=lambda c: c.value)
        }


def _parent(cap: Capability) -> Capability | None:
    head, _, _ = cap.value.rpartition(".")
    if not head or "." not in head:
        return None
    try:
        return Capability(head)
    except ValueError:
        return None

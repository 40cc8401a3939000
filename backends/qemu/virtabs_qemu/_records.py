"""Typed records of the driver's persistent state, and their JSON forms on disk.

* :class:`Definition`: ``<config>/domains/<name>.json`` (the spec, its UUID, snapshot metadata);
* :class:`RunState`: ``<run>/<name>/run.json`` (hot-plug ports and block-job records of a running QEMU);
* :class:`JobRecord`: one block job as this driver started it (what to do when QEMU concludes it);
* :class:`SaveHeader`: the header of a saved-state file.

The JSON layout is the one earlier versions wrote (``to_json``/``from_json`` round-trip it), so
state written by another process or an older version of the driver keeps working.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal

from virtabs.spi import BlockJobType, DomainRef, DomainSpec, DomainState, Snapshot

__all__ = ["Definition", "JobKind", "JobRecord", "RunState", "SaveHeader", "SnapshotMeta", "now_iso"]

JobKind = Literal["pull", "copy", "commit", "active_commit"]

JOB_PREFIX = "vtb-"
"""QEMU job ids of this driver: ``vtb-<disk target>`` (one job per disk, as QEMU's ids are unique)."""

_KIND_TYPES: dict[str, BlockJobType] = {
    "pull": BlockJobType.PULL,
    "copy": BlockJobType.COPY,
    "commit": BlockJobType.COMMIT,
    "active_commit": BlockJobType.ACTIVE_COMMIT,
}


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return _dt.datetime.now(_dt.UTC).isoformat()


def job_id(target: str) -> str:
    """The QEMU job id of the job on disk ``target``."""
    return f"{JOB_PREFIX}{target}"


@dataclass
class SnapshotMeta:
    """An internal snapshot as the definition records it."""

    name: str
    created: str
    state: DomainState
    parent: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The on-disk form."""
        return {"name": self.name, "created": self.created, "state": int(self.state), "parent": self.parent}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotMeta:
        """Read the on-disk form."""
        return cls(str(data["name"]), str(data["created"]), DomainState(data["state"]), data.get("parent"))

    def snapshot(self, domain: str) -> Snapshot:
        """The public record."""
        created = _dt.datetime.fromisoformat(self.created)
        return Snapshot(
            name=self.name, domain=domain, created_at=created, state=self.state, parent=self.parent, kind="internal"
        )


@dataclass
class Definition:
    """A persistent domain: its spec (with UUID), snapshot metadata and the current snapshot."""

    uuid: str
    spec: DomainSpec
    snapshots: list[SnapshotMeta] = field(default_factory=list)
    current_snapshot: str | None = None
    created: str = field(default_factory=now_iso)
    version: int = 1
    migration_token: str | None = None
    """Set by the incoming migration that made this definition (its prepare), until its finish: a discard
    removes a destination only when it carries the discard's own token (a late discard of an earlier
    migration never touches a newer one of the same name)."""

    @property
    def name(self) -> str:
        """The domain's name."""
        return self.spec.name

    @property
    def ref(self) -> DomainRef:
        """The domain's reference."""
        return DomainRef(name=self.spec.name, uuid=self.uuid)

    def snapshot(self, name: str) -> SnapshotMeta | None:
        """The snapshot called ``name``, or None."""
        return next((s for s in self.snapshots if s.name == name), None)

    def with_spec(self, spec: DomainSpec) -> Definition:
        """A copy with another spec (the same UUID and snapshots)."""
        return dataclasses.replace(self, spec=spec)

    def to_json(self) -> dict[str, Any]:
        """The on-disk form."""
        data: dict[str, Any] = {
            "uuid": self.uuid,
            "spec": self.spec.to_dict(),
            "snapshots": [s.to_json() for s in self.snapshots],
            "created": self.created,
            "version": self.version,
        }
        if self.current_snapshot is not None:
            data["current_snapshot"] = self.current_snapshot
        if self.migration_token is not None:
            data["migration_token"] = self.migration_token
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Definition:
        """Read the on-disk form (InvalidArgumentError from DomainSpec when it is not a definition)."""
        return cls(
            uuid=str(data["uuid"]),
            spec=DomainSpec.from_dict(data["spec"]),
            snapshots=[SnapshotMeta.from_json(s) for s in data.get("snapshots", [])],
            current_snapshot=data.get("current_snapshot"),
            created=str(data.get("created", "")),
            version=int(data.get("version", 1)),
            migration_token=None if data.get("migration_token") is None else str(data["migration_token"]),
        )


@dataclass
class JobRecord:
    """A block job this driver started: written before QEMU gets the command, removed once finished.

    ``intent`` is ``"pivot"`` or ``"abort"`` once a process asked QEMU to end the job.
    The paths say how to settle the definition when QEMU concludes the job.
    """

    kind: JobKind
    id: str
    started: str = field(default_factory=now_iso)
    intent: str | None = None
    base: str | None = None
    base_format: str | None = None
    top: str | None = None
    delete: list[str] = field(default_factory=list)
    dest: str | None = None
    dest_format: str | None = None
    source: str | None = None
    source_node: str | None = None
    target_node: str | None = None

    @property
    def type(self) -> BlockJobType:
        """The public job type."""
        return _KIND_TYPES[self.kind]

    def to_json(self) -> dict[str, Any]:
        """The on-disk form (unset fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != []}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobRecord:
        """Read the on-disk form; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunState:
    """Runtime facts of a running QEMU: hot-plug port of each disk, block-job records by disk.

    ``pivot_failures`` holds, by disk, why QEMU failed a pivot, until ``block_job_info`` of that
    disk has reported it once (whichever process settled the job).
    """

    ports: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    started: str | None = None
    pid: int | None = None
    pivot_failures: dict[str, str] = field(default_factory=dict)

    def free_ports(self, ports: tuple[str, ...]) -> list[str]:
        """The hot-plug ports of ``ports`` no device uses."""
        used = set(self.ports.values())
        return [p for p in ports if p not in used]

    def to_json(self) -> dict[str, Any]:
        """The on-disk form."""
        return {
            "ports": dict(self.ports),
            "jobs": {target: job.to_json() for target, job in self.jobs.items()},
            "started": self.started,
            "pid": self.pid,
            "pivot_failures": dict(self.pivot_failures),
        }

    @classmethod
    def from_json(cls, data: object) -> RunState:
        """Read the on-disk form (anything else, such as a missing file, is an empty state)."""
        if not isinstance(data, dict):
            return cls()
        jobs = data.get("jobs") or {}
        return cls(
            ports={str(k): str(v) for k, v in (data.get("ports") or {}).items()},
            jobs={str(t): JobRecord.from_json(j) for t, j in jobs.items() if isinstance(j, dict)},
            started=data.get("started"),
            pid=data.get("pid"),
            pivot_failures={str(k): str(v) for k, v in (data.get("pivot_failures") or {}).items()},
        )


@dataclass(frozen=True)
class SaveHeader:
    """What a saved-state file says about the domain it holds."""

    name: str
    uuid: str
    spec: DomainSpec
    running: bool
    saved: str = field(default_factory=now_iso)

    def to_json(self) -> dict[str, Any]:
        """The on-disk form."""
        return {"name": self.name, "uuid": self.uuid, "spec": self.spec.to_dict(), "running": self.running,
                "saved": self.saved}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SaveHeader:
        """Read the on-disk form."""
        return cls(
            name=str(data["name"]),
            uuid=str(data["uuid"]),
            spec=DomainSpec.from_dict(data["spec"]),
            running=bool(data.get("running", True)),
            saved=str(data.get("saved", "")),
        )

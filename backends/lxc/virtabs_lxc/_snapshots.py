"""Copy-clone snapshots of a container's root file system, kept in the container's own directory.

liblxc's ``snapshot()`` cannot serve here: it copy-clones only *stopped* containers whose rootfs path
contains the container's name, and its restore destroys the original container, rootfs included. So
virtabs copies with ``rsync`` itself:

``<lxcpath>/<name>/virtabs-snapshots/<snapshot>/``
    ``rootfs/`` (an ``rsync -aHx --numeric-ids`` copy), ``config`` (the container's configuration at that
    moment) and ``snapshot.json`` (creation time, the domain's state then, the parent snapshot).

A running container is frozen (cgroup freezer) while its rootfs is copied, so the copy is consistent as
far as the file system goes. No memory is kept: reverting to a snapshot taken while the container ran
puts the file system back (``rsync --delete``: files made after the snapshot go) and starts the container
afresh. The directory goes with the container when it is undefined.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["SNAPSHOT_DIR", "SnapshotError", "SnapshotRecord", "SnapshotStore", "rsync_tree"]

SNAPSHOT_DIR = "virtabs-snapshots"


class SnapshotError(RuntimeError):
    """rsync failed or a snapshot directory is damaged (the driver raises OperationFailedError)."""


@dataclass(frozen=True)
class SnapshotRecord:
    """One snapshot as stored: its name, when, the domain's state word then, and its parent."""

    name: str
    created_at: _dt.datetime
    state: str
    parent: str | None


def rsync_tree(source: str, dest: str, *, delete: bool) -> None:
    """Make ``dest`` a copy of ``source`` (both directories): hard links, devices, owners, one file system."""
    if shutil.which("rsync") is None:
        raise SnapshotError("rsync is not installed (apt-get install rsync)")
    os.makedirs(dest, exist_ok=True)
    args = ["rsync", "-aHx", "--numeric-ids"] + (["--delete"] if delete else [])
    result = subprocess.run([*args, source.rstrip("/") + "/", dest.rstrip("/") + "/"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SnapshotError(f"rsync {source} -> {dest} failed: {result.stderr.strip()[-500:]}")


class SnapshotStore:
    """The snapshots of the container whose directory is ``container_dir``."""

    def __init__(self, container_dir: str) -> None:
        self.root = os.path.join(container_dir, SNAPSHOT_DIR)

    def path(self, name: str) -> str:
        """The directory of snapshot ``name``."""
        return os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        """Whether snapshot ``name`` is complete (its ``snapshot.json`` is written last)."""
        return os.path.isfile(os.path.join(self.path(name), "snapshot.json"))

    def count(self) -> int:
        """How many complete snapshots there are (no file read beyond the directory listing)."""
        if not os.path.isdir(self.root):
            return 0
        return sum(1 for n in os.listdir(self.root) if not n.startswith(".") and self.exists(n))

    def records(self) -> list[SnapshotRecord]:
        """Every complete snapshot, oldest first."""
        if not os.path.isdir(self.root):
            return []
        out = [self.load(n) for n in os.listdir(self.root) if not n.startswith(".") and self.exists(n)]
        return sorted(out, key=lambda r: (r.created_at, r.name))

    def load(self, name: str) -> SnapshotRecord:
        """The record of snapshot ``name`` (which must exist)."""
        try:
            with open(os.path.join(self.path(name), "snapshot.json")) as f:
                data = json.load(f)
            return SnapshotRecord(
                name=name,
                created_at=_dt.datetime.fromisoformat(data["created_at"]),
                state=str(data["state"]),
                parent=data.get("parent"),
            )
        except (OSError, ValueError, KeyError) as exc:
            raise SnapshotError(f"snapshot {name!r} is damaged: {exc}") from None

    def create(self, name: str, rootfs: str, config_text: str, state: str, parent: str | None) -> SnapshotRecord:
        """Copy ``rootfs`` and the configuration into a new snapshot (the caller froze the container)."""
        tmp = os.path.join(self.root, f".tmp-{name}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        try:
            rsync_tree(rootfs, os.path.join(tmp, "rootfs"), delete=False)
            with open(os.path.join(tmp, "config"), "w") as f:
                f.write(config_text)
            record = SnapshotRecord(name, _dt.datetime.now(_dt.UTC), state, parent)
            with open(os.path.join(tmp, "snapshot.json"), "w") as f:
                json.dump({"created_at": record.created_at.isoformat(), "state": state, "parent": parent}, f)
            os.rename(tmp, self.path(name))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return record

    def restore_rootfs(self, name: str, rootfs: str) -> str:
        """Put snapshot ``name``'s file system back into ``rootfs``; return its configuration text."""
        rsync_tree(os.path.join(self.path(name), "rootfs"), rootfs, delete=True)
        with open(os.path.join(self.path(name), "config")) as f:
            return f.read()

    def delete(self, name: str) -> None:
        """Remove snapshot ``name``; its children now name its parent."""
        parent = self.load(name).parent
        for record in self.records():
            if record.parent == name:
                path = os.path.join(self.path(record.name), "snapshot.json")
                with open(path) as f:
                    data = json.load(f)
                data["parent"] = parent
                with open(path, "w") as f:
                    json.dump(data, f)
        shutil.rmtree(self.path(name))

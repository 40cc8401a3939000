"""File-backed test nodes: ``test:///ABSOLUTE/PATH.json`` keeps its state between processes.

A :class:`FileSync` replaces the node's in-process ``RLock``. Taking it the
first time (depth 0 -> 1) also takes an exclusive ``flock`` on ``PATH.lock``
and reloads the node when the file changed since this process last read or
wrote it; releasing it the last time writes the node back when the section
changed it (:meth:`FileSync.mark_dirty`, which every ``Node.txn`` and every
changing driver method calls) and its description differs from the file (temp file in the same directory, ``fsync``, ``rename``,
``fsync`` of the directory), then drops the ``flock``. Two processes working
on the same file therefore serialise their operations and never lose an update.

What is saved is the node description (host, settings, images, pools, domains
with their state, autostart and addresses). Block jobs and snapshots live in
the memory of the process that made them: a reload (another process changed
the file) ends this process's jobs silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from .._errors import ConnectError, OperationFailedError
from ._test_node import UNLIMITED_RATE, DomainData, Node

__all__ = ["FileSync", "dump_description", "stat_key"]


def _plain(value: Any) -> Any:
    """JSON-ready copy of a (possibly frozen) mapping or sequence."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def dump_description(node: Node) -> dict[str, Any]:
    """The node as a description :func:`~virtabs.drivers._test_json.load_description` reads back.

    Every image goes to ``images`` (a pool's volumes are the images in its directory),
    so pools are written without ``volumes``.
    """
    out: dict[str, Any] = {"host": {k: v for k, v in node.host.items() if v is not None}}
    if node.unlimited_rate != UNLIMITED_RATE:
        out["settings"] = {"unlimited_rate_bytes": node.unlimited_rate}
    out["images"] = [
        {
            "path": img.path,
            "format": img.format,
            "capacity_bytes": img.capacity,
            "allocation_bytes": img.allocation,
            "backing": img.backing,
        }
        for img in sorted(node.images.values(), key=lambda i: i.path)
    ]
    out["pools"] = [
        {
            "name": p.name,
            "type": p.type,
            "path": p.path,
            "uuid": p.uuid,
            "capacity_bytes": p.capacity,
            "active": p.active,
        }
        for p in sorted(node.pools.values(), key=lambda p: p.name)
    ]
    out["networks"] = [
        {
            "name": n.name,
            "uuid": n.id,
            "kind": n.kind.value,
            "native_kind": n.native_kind,
            "device": n.device,
            "vlan_ids": list(n.vlan_ids),
            "subnets": [
                {"cidr": s.cidr, "gateway": s.gateway, "dhcp_ranges": [list(r) for r in s.dhcp_ranges]}
                for s in n.subnets
            ],
            "active": n.active,
            "autostart": n.autostart,
            **({"extra": _plain(n.extra)} if n.extra else {}),
        }
        for n in sorted(node.networks.values(), key=lambda n: n.name)
    ]
    domains = []
    for dom in sorted(node.domains.values(), key=lambda d: d.name):
        spec = dom.spec
        nics = []
        for nic in spec.nics:
            entry: dict[str, Any] = {"mac": nic.mac, "network": nic.network, "model": nic.model}
            if nic.mac is not None and dom.ips.get(nic.mac):
                entry["ips"] = list(dom.ips[nic.mac])
            nics.append(entry)
        domains.append(
            {
                "name": spec.name,
                "uuid": spec.uuid,
                "memory_bytes": spec.memory_bytes,
                "max_memory_bytes": dom.max_memory,
                "vcpus": spec.vcpus,
                "os_type": spec.os_type,
                "state": dom.state.name.lower(),
                "autostart": dom.autostart,
                "extra": _plain(spec.extra),
                "disks": [
                    {"target": d.target, "path": d.path, "format": d.format, "bus": d.bus, "readonly": d.readonly}
                    for d in spec.disks
                ],
                "nics": nics,
                **_managed_save_entry(dom),
            }
        )
    out["domains"] = domains
    return out


def _managed_save_entry(dom: DomainData) -> dict[str, Any]:
    saved = dom.managed_save
    if saved is None:
        return {}
    return {"managed_save": {"paused": saved.paused, "cpu_time_ns": saved.cpu_ns}}


def stat_key(path: str) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from the next (inode, size, mtime, ctime); None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileSync:
    """The lock of a file-backed node: an ``RLock`` plus the file's ``flock``, reload and save (see module doc)."""

    def __init__(self, node: Node, path: str, seen: tuple[int, int, int, int] | None = None) -> None:
        self._rlock = threading.RLock()
        self._node = node
        self._path = path
        self._lock_path = path + ".lock"
        self._depth = 0
        self._dirty = False
        self._fd: int | None = None
        # the file's stat key when ``node`` was read from it (None: unknown, so the first acquire reloads
        # and no update is missed)
        self._seen = seen
        # the node's text as last loaded or saved; computed on the first change (reads never serialise)
        self._saved: str | None = None

    def _text(self) -> str:
        return json.dumps(dump_description(self._node), indent=1, sort_keys=True) + "\n"

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (and, outermost, the file lock; reload when the file changed)."""
        if not self._rlock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth == 1:
            try:
                self._enter()
            except BaseException:
                self._depth -= 1
                self._unlock_file()
                self._rlock.release()
                raise
        return True

    def release(self) -> None:
        """Release the lock (outermost: save when the node changed, then drop the file lock)."""
        try:
            if self._depth == 1:
                try:
                    self._save()
                finally:
                    self._unlock_file()
        finally:
            self._depth -= 1
            self._rlock.release()

    def mark_dirty(self) -> None:
        """The node is about to change in this locked section: write it back when the outermost release comes.

        Called before the change (``Node.txn`` and every changing driver method do), so the first call
        records the text as loaded, against which the save compares.
        """
        if self._saved is None:
            self._saved = self._text()
        self._dirty = True

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- the file ---------------------------------------------------------------

    def _enter(self) -> None:
        self._dirty = False
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConnectError(
                f"cannot open the lock file of test node '{self._path}': {exc.strerror or exc}"
            ) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        seen = stat_key(self._path)
        if seen != self._seen:
            from ._test_json import read_description

            description = read_description(self._path)
            self._node.reset(description)  # re-enters this lock: depth > 1, no recursion into _enter
            self._seen = seen
            self._saved = None

    def _unlock_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _save(self) -> None:
        if not self._dirty:  # reads (the common case) cost no serialisation
            return
        self._dirty = False
        text = self._text()
        if text == self._saved:
            return
        directory = os.path.dirname(self._path) or "."
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=".virtabs-test-", suffix=".json", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.chmod(tmp, os.stat(self._path).st_mode & 0o7777)
            except OSError:
                os.chmod(tmp, 0o644)
            os.replace(tmp, self._path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise OperationFailedError(f"cannot save test node '{self._path}': {exc.strerror or exc}") from None
        try:
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
        self._saved = text
        self._seen = stat_key(self._path)

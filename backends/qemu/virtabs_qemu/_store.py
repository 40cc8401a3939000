"""The definition store: domain definitions, runtime records and the locks that guard them.

Definitions are JSON files (one per domain) written atomically; runtime facts of a running
QEMU live next to its pidfile. Every change of one domain happens under its
:class:`~virtabs_qemu._state.DomainLock` (threads and processes); define and undefine also
take the store's global lock so names and UUIDs stay unique.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import threading
import time
from typing import Any

from virtabs.spi import DomainRef, NoDomainError, OperationFailedError, OperationInvalidError, VirtabsError, quote

from ._cmdline import LEASE_SOCKETS, lease_socket
from ._records import Definition, RunState
from ._state import DomainLock, StateDirs, file_lock, read_json, write_json_atomic

__all__ = ["DefinitionStore", "parse_definition"]

_log = logging.getLogger("virtabs.qemu")

RACY_NS = 100_000_000
"""A file changed this recently (ns) is read again even when its stat looks unchanged: two writes within
one tick of the file system's clock can leave the same size, time and (reused) inode number."""

_StatKey = tuple[int, int, int, int, int]


def stat_key(path: str) -> _StatKey | None:
    """What identifies one version of the file at ``path`` (None: no file); None too when it changed too
    recently to be told apart from a next version (see :data:`RACY_NS`)."""
    try:
        st = os.stat(path)
    except OSError:  # no file (the reader then says so), or one that cannot be read: never kept
        return None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < RACY_NS:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


EXIT_WAIT = 5.0
"""How long :meth:`DefinitionStore.cleanup_runtime` waits for a dying QEMU's last thread."""


def wait_exited(pid: int, timeout: float) -> bool:
    """Wait until QEMU ``pid`` has exited completely (every thread: what ``waitpid`` and a pidfd report,
    and when its sockets are closed); True when it has or it is no QEMU (pid reused or unknown)."""
    if pid <= 0:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if not fh.read(64).split(b"(", 1)[-1].startswith(b"qemu"):
                return True
        fd = os.pidfd_open(pid)
    except OSError:  # gone (or no pidfd support: nothing better to wait on)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(fd)


# What a definition file of the wrong shape raises while it is read (a VirtabsError too: DomainSpec's checks).
_BAD_RECORD = (OSError, ValueError, KeyError, TypeError, AttributeError, VirtabsError)


def parse_definition(path: str) -> Definition:
    """The definition in the file at ``path``; OperationFailedError naming the file when it is not one
    (not JSON, not an object, a missing key, a wrong type, a directory named ``*.json``, unreadable)."""
    try:
        with open(path, "rb") as fh:
            data: Any = json.loads(fh.read())
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        if not isinstance(data.get("uuid"), str) or not isinstance(data.get("spec"), dict):
            raise TypeError("'uuid' must be a string and 'spec' an object")
        if not isinstance(data.get("snapshots", []), list):
            raise TypeError("'snapshots' must be a list")
        return Definition.from_json(data)
    except (*_BAD_RECORD, RecursionError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise OperationFailedError(
            f"domain definition {path} is unreadable ({type(exc).__name__}: {exc}); fix or remove the file"
        ) from None


def read_json_quiet(path: str) -> Any:
    """The JSON in ``path``, or None when it cannot be read as JSON."""
    try:
        return read_json(path)
    except (OSError, ValueError, RecursionError):
        return None


class DefinitionStore:
    """Definitions, runtime records and locks of one state root."""

    def __init__(self, dirs: StateDirs) -> None:
        self.dirs = dirs
        self._locks: dict[str, DomainLock] = {}
        self._locks_guard = threading.Lock()
        self._warned: set[str] = set()
        self._views: dict[str, tuple[_StatKey, str, Definition]] = {}
        self._run_views: dict[str, tuple[_StatKey, str, RunState]] = {}

    # --- locks --------------------------------------------------------------------------

    def lock(self, name: str) -> DomainLock:
        """The per-domain lock of ``name`` (one object per name and connection)."""
        with self._locks_guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = DomainLock(self.dirs.lockfile(name), timeout=self.dirs.lock_timeout)
            return lock

    def global_lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock of the name and UUID space (define, undefine)."""
        return file_lock(
            os.path.join(self.dirs.domains, ".lock"), self.dirs.lock_timeout, "the domain definitions (define/undefine)"
        )

    # --- definitions --------------------------------------------------------------------

    def load(self, name: str) -> Definition:
        """The definition of ``name``; NoDomainError when there is none, OperationFailedError naming the file
        when it cannot be read as one."""
        if not name or "/" in name or name.startswith("."):
            raise NoDomainError(f"no domain named {quote(name)}")
        try:
            return parse_definition(self.dirs.domain_file(name))
        except FileNotFoundError:
            raise NoDomainError(f"no domain named {quote(name)}") from None

    def get(self, dom: DomainRef) -> Definition:
        """The definition ``dom`` refers to; NoDomainError if it is gone or was redefined with another UUID."""
        defn = self.load(dom.name)
        if dom.uuid and defn.uuid != dom.uuid:
            raise NoDomainError(f"domain {quote(dom.name)} with UUID {dom.uuid} no longer exists")
        return defn

    def view(self, dom: DomainRef) -> Definition:
        """Like :meth:`get`, for reading only: the parsed file is kept, keyed by its stat (mtime, ctime, size,
        inode), so a read does not parse JSON again while the file is unchanged; a define, undefine or
        change by any process changes the stat and is seen. Never mutate the result."""
        name = dom.name
        cached = self._views.get(name)
        if cached is not None and cached[0] == stat_key(cached[1]):
            defn = cached[2]
        else:
            path = self.dirs.domain_file(name) if name and "/" not in name and not name.startswith(".") else ""
            key = stat_key(path) if path else None
            defn = self.load(name)
            if key is not None:
                self._views[name] = (key, path, defn)
            else:
                self._views.pop(name, None)
        if dom.uuid and defn.uuid != dom.uuid:
            raise NoDomainError(f"domain {quote(dom.name)} with UUID {dom.uuid} no longer exists")
        return defn

    def save(self, defn: Definition) -> None:
        """Persist ``defn`` atomically."""
        write_json_atomic(self.dirs.domain_file(defn.name), defn.to_json())

    def scan(self) -> tuple[list[Definition], dict[str, str]]:
        """Every readable definition by name, and ``{name: reason}`` of the files that are not one.

        One bad record never hides the rest: each is skipped with a warning naming its file.
        """
        try:
            names = sorted(os.listdir(self.dirs.domains))
        except FileNotFoundError:
            return [], {}
        out: list[Definition] = []
        bad: dict[str, str] = {}
        for fname in names:
            if not fname.endswith(".json") or fname.startswith("."):
                continue
            try:
                out.append(parse_definition(os.path.join(self.dirs.domains, fname)))
            except FileNotFoundError:  # undefined meanwhile
                continue
            except OperationFailedError as exc:
                if str(exc) not in self._warned:  # once per file and reason, not at every poll
                    self._warned.add(str(exc))
                    _log.warning("skipping %s", exc)
                bad[fname[:-5]] = str(exc)
        return out, bad

    def all(self) -> list[Definition]:
        """Every readable definition, by name (unreadable files skipped with a warning naming them)."""
        return self.scan()[0]

    def lookup(self, name_or_uuid: str) -> Definition:
        """By name (one file read), then by UUID."""
        with contextlib.suppress(NoDomainError):
            return self.load(name_or_uuid)
        wanted = name_or_uuid.lower()
        for defn in self.all():
            if defn.uuid == wanted:
                return defn
        raise NoDomainError(f"no domain with name or UUID {quote(name_or_uuid)}")

    def add(self, defn: Definition) -> None:
        """Persist a new definition; a name or UUID already defined is refused (under the global lock)."""
        with self.global_lock():
            if os.path.lexists(self.dirs.domain_file(defn.name)):
                existing = read_json_quiet(self.dirs.domain_file(defn.name))
                uuid = existing.get("uuid") if isinstance(existing, dict) else "unknown: an unreadable file"
                raise OperationInvalidError(f"a domain named {quote(defn.name)} already exists (UUID {uuid})")
            for other in self.all():
                if other.uuid == defn.uuid:
                    raise OperationInvalidError(f"UUID {defn.uuid} is already used by domain {quote(other.name)}")
            self.save(defn)

    def remove(self, name: str) -> None:
        """Delete the definition and every runtime file of ``name`` (the caller holds its lock)."""
        self.cleanup_runtime(name)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dirs.run_dir(name))
        os.unlink(self.dirs.domain_file(name))

    # --- runtime records ------------------------------------------------------------------

    def run(self, name: str) -> RunState:
        """The runtime record of ``name`` (empty when QEMU is not running or has none)."""
        return RunState.from_json(read_json(self.dirs.runfile(name)))

    def run_view(self, name: str) -> RunState:
        """Like :meth:`run`, for reading only, kept while the file's stat is unchanged. Never mutate it."""
        cached = self._run_views.get(name)
        if cached is not None and cached[0] == stat_key(cached[1]):
            return cached[2]
        path = self.dirs.runfile(name)
        key = stat_key(path)
        run = self.run(name)
        if key is not None:
            self._run_views[name] = (key, path, run)
        return run

    def save_run(self, name: str, run: RunState) -> None:
        """Persist the runtime record of ``name`` atomically."""
        write_json_atomic(self.dirs.runfile(name), run.to_json())

    def cleanup_runtime(self, name: str) -> None:
        """Remove the pidfile, QMP sockets and runtime record of a QEMU that is gone (lease lock files stay:
        a process may still hold one).

        First waits (a few seconds at most) until that QEMU has exited completely: its main thread can be a
        zombie while other threads still hold its sockets open, and a leased monitor learns of the exit
        when they close. So once a destroy or save returns, every leased read sees the domain gone."""
        with contextlib.suppress(OSError, ValueError), open(self.dirs.pidfile(name)) as fh:
            wait_exited(int(fh.read().strip() or "0"), EXIT_WAIT)
        sock = self.dirs.qmp_socket(name)
        leases = [lease_socket(sock, i) for i in range(LEASE_SOCKETS)]
        for path in (self.dirs.pidfile(name), sock, self.dirs.runfile(name), *leases):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

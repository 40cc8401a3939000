"""The definition store: domain definitions, runtime records and the locks that guard them.

Definitions are JSON files (one per domain) written atomically; runtime facts of a running
QEMU live next to its pidfile. Every change of one domain happens under its
:class:`~virtabs_qemu._state.DomainLock` (threads and processes); define and undefine also
take the store's global lock so names and UUIDs stay unique.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading

from virtabs.spi import DomainRef, NoDomainError, OperationInvalidError, VirtabsError

from ._records import Definition, RunState
from ._state import DomainLock, StateDirs, file_lock, read_json, write_json_atomic

__all__ = ["DefinitionStore"]


class DefinitionStore:
    """Definitions, runtime records and locks of one state root."""

    def __init__(self, dirs: StateDirs) -> None:
        self.dirs = dirs
        self._locks: dict[str, DomainLock] = {}
        self._locks_guard = threading.Lock()

    # --- locks --------------------------------------------------------------------------

    def lock(self, name: str) -> DomainLock:
        """The per-domain lock of ``name`` (one object per name and connection)."""
        with self._locks_guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = DomainLock(self.dirs.lockfile(name))
            return lock

    def global_lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock of the name and UUID space (define, undefine)."""
        return file_lock(os.path.join(self.dirs.domains, ".lock"))

    # --- definitions --------------------------------------------------------------------

    def load(self, name: str) -> Definition:
        """The definition of ``name``; NoDomainError when there is none."""
        data = read_json(self.dirs.domain_file(name)) if name and "/" not in name else None
        if not isinstance(data, dict):
            raise NoDomainError(f"no domain named {name!r}")
        return Definition.from_json(data)

    def get(self, dom: DomainRef) -> Definition:
        """The definition ``dom`` refers to; NoDomainError if it is gone or was redefined with another UUID."""
        defn = self.load(dom.name)
        if dom.uuid and defn.uuid != dom.uuid:
            raise NoDomainError(f"domain {dom.name!r} with UUID {dom.uuid} no longer exists")
        return defn

    def save(self, defn: Definition) -> None:
        """Persist ``defn`` atomically."""
        write_json_atomic(self.dirs.domain_file(defn.name), defn.to_json())

    def all(self) -> list[Definition]:
        """Every readable definition, by name."""
        try:
            names = sorted(os.listdir(self.dirs.domains))
        except FileNotFoundError:
            return []
        out = []
        for fname in names:
            if not fname.endswith(".json") or fname.startswith("."):
                continue
            data = None
            with contextlib.suppress(ValueError):
                data = read_json(os.path.join(self.dirs.domains, fname))
            if isinstance(data, dict):
                with contextlib.suppress(VirtabsError, KeyError, ValueError, TypeError):
                    out.append(Definition.from_json(data))
        return out

    def lookup(self, name_or_uuid: str) -> Definition:
        """By name (one file read), then by UUID."""
        with contextlib.suppress(NoDomainError):
            return self.load(name_or_uuid)
        wanted = name_or_uuid.lower()
        for defn in self.all():
            if defn.uuid == wanted:
                return defn
        raise NoDomainError(f"no domain with name or UUID {name_or_uuid!r}")

    def add(self, defn: Definition) -> None:
        """Persist a new definition; a name or UUID already defined is refused (under the global lock)."""
        with self.global_lock():
            existing = read_json(self.dirs.domain_file(defn.name))
            if isinstance(existing, dict):
                raise OperationInvalidError(
                    f"a domain named {defn.name!r} already exists (UUID {existing.get('uuid')})"
                )
            for other in self.all():
                if other.uuid == defn.uuid:
                    raise OperationInvalidError(f"UUID {defn.uuid} is already used by domain {other.name!r}")
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

    def save_run(self, name: str, run: RunState) -> None:
        """Persist the runtime record of ``name`` atomically."""
        write_json_atomic(self.dirs.runfile(name), run.to_json())

    def cleanup_runtime(self, name: str) -> None:
        """Remove the pidfile, QMP socket and runtime record of a QEMU that is gone."""
        for path in (self.dirs.pidfile(name), self.dirs.qmp_socket(name), self.dirs.runfile(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

"""QEMU processes: the emulator binary and what it offers, spawning, finding and ending a domain's QEMU.

A running domain is one daemonized QEMU whose ``-pidfile`` lives in the domain's runtime
directory. QEMU keeps that pidfile locked (``lockf``) for its whole life and removes it on every
clean exit, which gives three facts without asking QEMU anything:

* a live process whose command line names the pidfile is the domain's QEMU (:meth:`Processes.pid`);
* a pidfile without a live QEMU is a crash (:meth:`Processes.crashed`);
* a second QEMU for the same domain is refused by QEMU itself ("Cannot lock pid file"),
  atomically, which is how a start racing another start fails (:data:`PIDFILE_LOCKED`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Sequence

from virtabs.spi import (
    Capabilities,
    Capability,
    Deadline,
    OperationFailedError,
    OperationTimeoutError,
    quote,
    run_in_process_group,
)

from ._state import StateDirs

__all__ = ["PIDFILE_LOCKED", "SPAWN_TIMEOUT", "Emulator", "Processes", "alive", "cpu_time_ns", "run_bounded", "trim"]

PIDFILE_LOCKED = "Cannot lock pid file"
"""QEMU's refusal to start while another QEMU holds the domain's pidfile."""

SPAWN_TIMEOUT = 60.0
"""How long a daemonizing QEMU may take to start on a connection opened without a timeout."""

ASK_TIMEOUT = 30.0
"""How long ``-version`` and the ``query-commands`` probe may take without a connection timeout."""

NEEDS_COMMANDS: dict[Capability, frozenset[str]] = {
    Capability.DOMAIN_SHUTDOWN: frozenset({"system_powerdown"}),
    Capability.DOMAIN_REBOOT: frozenset({"system_reset"}),
    Capability.DOMAIN_SUSPEND: frozenset({"stop", "cont"}),
    Capability.DOMAIN_SAVE: frozenset({"migrate", "query-migrate"}),
    Capability.DOMAIN_MANAGED_SAVE: frozenset({"migrate", "query-migrate"}),
    Capability.DOMAIN_SNAPSHOT: frozenset({"human-monitor-command"}),
    Capability.DOMAIN_DISK_HOTPLUG: frozenset({"blockdev-add", "blockdev-del", "device_add", "device_del"}),
    Capability.BLOCK_PULL: frozenset({"block-stream", "query-jobs", "job-dismiss", "block-job-cancel"}),
    Capability.BLOCK_COPY: frozenset({"drive-mirror", "query-jobs", "job-dismiss", "job-complete"}),
    Capability.BLOCK_COMMIT: frozenset({"block-commit", "query-jobs", "job-dismiss", "job-complete"}),
    # migration (issue 23)
    Capability.DOMAIN_MIGRATE: frozenset({"migrate", "migrate-incoming", "migrate-continue", "migrate_cancel"}),
    Capability.DOMAIN_MIGRATE_COPY_STORAGE: frozenset(
        {"nbd-server-start", "nbd-server-stop", "block-export-add", "blockdev-mirror", "query-jobs", "job-dismiss"}
    ),
    Capability.DOMAIN_MIGRATE_ABORT: frozenset({"migrate_cancel", "block-job-cancel"}),
    Capability.DOMAIN_MIGRATE_BANDWIDTH: frozenset({"migrate-set-parameters"}),
    Capability.DOMAIN_MIGRATE_MAX_DOWNTIME: frozenset({"migrate-set-parameters"}),
    Capability.BLOCK_BANDWIDTH: frozenset({"block-job-set-speed"}),
}
"""The QMP commands each capability needs; an emulator lacking one loses the capability."""

_ALL_COMMANDS = frozenset().union(*NEEDS_COMMANDS.values())
_Key = tuple[str, int, int]
_COMMANDS: dict[_Key, frozenset[str]] = {}
_VERSIONS: dict[_Key, tuple[int, int, int]] = {}


def emulator_cache_dir() -> str:
    """Where the emulators' answers are kept between processes: the user's cache (``$XDG_CACHE_HOME``, else
    ``~/.cache``), never a state root, so that a read-only connection writes nothing to the host it reads."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(home, "virtabs", "qemu")


def _binary_key(path: str) -> _Key:
    """Cache key of an emulator binary: its path, size and modification time (a new build is asked again)."""
    try:
        st = os.stat(path)
    except OSError:
        return (path, 0, 0)
    return (path, st.st_size, st.st_mtime_ns)


class Emulator:
    """One ``qemu-system-*`` binary: its version and QMP commands (asked once per binary and process, and
    kept in ``cache_dir`` for the next process, as libvirt keeps its QEMU capabilities cache)."""

    def __init__(self, path: str, accel: str, timeout: float | None = None, cache_dir: str | None = None) -> None:
        self.path = path
        self.accel = accel
        self.limit = ASK_TIMEOUT if timeout is None else timeout
        """How long asking the binary may take: the connection's timeout, else :data:`ASK_TIMEOUT`."""
        self.cache_dir = cache_dir
        """Where the answers are kept between processes (a remote helper is a new process per connection);
        None keeps them in memory only."""

    def _cache_file(self) -> str | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(os.fsencode(self.path)).hexdigest()[:16]
        return os.path.join(self.cache_dir, f"emulator-{digest}.json")

    def _read_cache(self, key: _Key) -> frozenset[str] | None:
        """The commands kept for this very binary (same path, size and mtime), else None."""
        file = self._cache_file()
        if file is None:
            return None
        try:
            with open(file, encoding="utf-8") as f:
                kept = json.load(f)
            if [kept["path"], kept["size"], kept["mtime_ns"]] != list(key):
                return None  # another build of the binary: ask again
            major, minor, micro = (int(v) for v in kept["version"])
            commands = kept["commands"]
            if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
                return None
        except (OSError, ValueError, KeyError, TypeError):  # absent, torn or foreign: ask the binary
            return None
        _VERSIONS[key] = (major, minor, micro)
        return frozenset(commands)

    def _write_cache(self, key: _Key, commands: frozenset[str]) -> None:
        file = self._cache_file()
        version = _VERSIONS.get(key)
        if file is None or not commands or version is None:
            return
        kept = {"path": key[0], "size": key[1], "mtime_ns": key[2], "version": version, "commands": sorted(commands)}
        tmp = f"{file}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(file), mode=0o700, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(kept, f)
            os.replace(tmp, file)  # readers see the old file or the whole new one
        except OSError:  # a read-only root: the next process asks the binary again
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def version(self) -> tuple[int, int, int]:
        """The emulator's version, from ``-version`` (cached per binary)."""
        key = _binary_key(self.path)
        cached = _VERSIONS.get(key)
        if cached is not None:
            return cached
        try:
            out = run_bounded([self.path, "-version"], self.limit).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OperationFailedError(f"cannot run {self.path} -version: {exc}") from None
        word = out.split("version", 1)[-1].split()[0] if "version" in out else "0.0.0"
        parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in word.split(".")[:3]]
        parts += [0] * (3 - len(parts))
        version = _VERSIONS[key] = (parts[0], parts[1], parts[2])
        return version

    def qmp_commands(self) -> frozenset[str]:
        """The QMP commands (``query-commands`` of a throw-away ``-machine none`` QEMU), cached per binary."""
        key = _binary_key(self.path)
        cached = _COMMANDS.get(key) or self._read_cache(key)
        if cached is not None:
            _COMMANDS[key] = cached
            return cached
        script = "".join(
            json.dumps({"execute": c}) + "\n" for c in ("qmp_capabilities", "query-version", "query-commands", "quit")
        )
        try:
            res = run_bounded(
                [self.path, "-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio"],
                self.limit,
                input=script,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OperationFailedError(f"cannot query the commands of {self.path}: {exc}") from None
        names: set[str] = set()
        for line in res.stdout.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                msg = json.loads(line)
                ret = msg.get("return") if isinstance(msg, dict) else None
                if isinstance(ret, list):
                    names.update(str(c.get("name")) for c in ret if isinstance(c, dict))
                elif isinstance(ret, dict) and "qemu" in ret:
                    q = ret["qemu"]
                    _VERSIONS[key] = (int(q["major"]), int(q["minor"]), int(q["micro"]))
        result = _COMMANDS[key] = frozenset(names)
        self._write_cache(key, result)
        return result

    def capabilities(self, declared: Capabilities) -> Capabilities:
        """``declared`` minus what this emulator lacks; block jobs also need QEMU >= 4.2 (``job-dismiss``)."""
        commands = self.qmp_commands() or _ALL_COMMANDS  # could not ask: the version check still applies
        drop = [cap for cap, needed in NEEDS_COMMANDS.items() if not needed <= commands]
        if self.version() < (4, 2, 0):
            drop += [Capability.BLOCK_PULL, Capability.BLOCK_COPY, Capability.BLOCK_COMMIT]
        return declared.without(*drop) if drop else declared


class Processes:
    """The QEMU processes of one state root."""

    def __init__(self, dirs: StateDirs, timeout: float, host_timeout: float | None = None) -> None:
        self.dirs = dirs
        self.timeout = timeout
        self.host_timeout = host_timeout
        """The connection's timeout as given (None: none given), bounding every host command: ``qemu-img``
        (:func:`_img.qemu_img`) and QEMU's start (:meth:`spawn`); None keeps each command's own default."""

    def pid(self, name: str) -> int | None:
        """The pid of the domain's live QEMU, or None (a dead or foreign pid is None)."""
        pidfile = self.dirs.pidfile(name)
        try:
            with open(pidfile) as fh:
                pid = int(fh.read().strip() or "0")
        except (FileNotFoundError, ValueError):
            return None
        if pid <= 0 or not alive(pid):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            return None
        return pid if os.fsencode(pidfile) in cmdline else None

    def crashed(self, name: str) -> bool:
        """A pidfile that outlived its QEMU: QEMU removes it on every clean exit."""
        return os.path.exists(self.dirs.pidfile(name)) and self.pid(name) is None

    def pidfile_held(self, name: str) -> bool:
        """True while a QEMU holds the domain's pidfile lock (QEMU's own word that it runs).

        Only call it under the domain lock: a QEMU starting at that instant would find the lock taken.
        """
        try:
            fd = os.open(self.dirs.pidfile(name), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def spawn(self, name: str, argv: list[str]) -> str | None:
        """Run the daemonizing QEMU command line; the failure (QEMU's stderr) or None once it runs.

        QEMU's parent exits once the daemon has written its pidfile and opened its QMP socket; that whole wait
        is bounded by the connection's timeout (:data:`SPAWN_TIMEOUT` without one): past it the start's process
        group is killed and OperationTimeoutError names the domain and the limit (the caller reaps the daemon).
        """
        limit = SPAWN_TIMEOUT if self.host_timeout is None else self.host_timeout
        try:
            res = run_bounded(argv, limit, cwd="/")
        except subprocess.TimeoutExpired:
            raise OperationTimeoutError(
                f"domain {quote(name)}: QEMU did not finish starting within {limit:g}s (the connection's timeout); "
                "it was stopped"
            ) from None
        except OSError as exc:
            return str(exc)
        if res.returncode != 0:
            return res.stderr.strip() or f"exit status {res.returncode}"
        if self.pid(name) is None:
            return "QEMU exited right after starting"
        return None

    def reap(self, name: str) -> None:
        """After a failed or interrupted start: kill the QEMU the start left behind (only ours: its command line
        names this domain's pidfile, found also before it wrote the pidfile), then remove runtime files.

        Only call it under the domain lock after making sure no other QEMU of the domain ran before the start.
        """
        pidfile = self.dirs.pidfile(name)
        for pid in self._by_pidfile(pidfile):
            self.kill(name, pid)
        for path in (pidfile, self.dirs.qmp_socket(name), self.dirs.runfile(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @staticmethod
    def _by_pidfile(pidfile: str) -> list[int]:
        """Live processes whose command line names ``pidfile`` as an argument (the domain's QEMUs)."""
        needle = os.fsencode(pidfile)
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    argv = fh.read().split(b"\0")
            except OSError:
                continue
            if needle in argv and alive(int(entry)):
                found.append(int(entry))
        return found

    def wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``pid`` to exit; True when it has."""
        deadline = Deadline(timeout)
        while alive(pid):
            if deadline.expired:
                return False
            deadline.sleep(0.05)
        return True

    def kill(self, name: str, pid: int) -> None:
        """Make sure QEMU ``pid`` is gone: SIGTERM, then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if self.wait_gone(pid, wait):
                return
        raise OperationFailedError(f"domain {quote(name)}: QEMU process {pid} does not die")


def run_bounded(
    argv: list[str],
    timeout: float,
    *,
    cwd: str | None = None,
    input: str | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[str]:
    """:func:`virtabs.spi.run_in_process_group` with text in and out: past ``timeout`` seconds, or on
    SIGINT, the command's whole process group is killed before subprocess.TimeoutExpired (or the
    interruption) propagates."""
    code, out, err = run_in_process_group(
        argv, timeout, cwd=cwd, input=None if input is None else input.encode(), pass_fds=pass_fds
    )
    return subprocess.CompletedProcess(argv, code, out.decode(errors="replace"), err.decode(errors="replace"))


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def cpu_time_ns(pid: int) -> int:
    """User + system CPU time of ``pid`` in nanoseconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[-1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def trim(text: str, limit: int = 2000) -> str:
    """``text`` cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "..."

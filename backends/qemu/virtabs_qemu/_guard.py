"""The guard of a migration step: a small process that undoes the step when the process driving it dies.

libvirtd sees a client die mid-migration (its connection's close callbacks) and cleans up; daemonless
QEMU has no daemon to see it. So the source's perform and the destination, from its prepare to its
finish, each start a guard: ``python -m virtabs_qemu._guard URI TIMEOUT ROLE ...`` with a pipe on its
stdin, in a session of its own (a signal to the client's process group does not reach it). The driving
process writes ``done`` when the step has ended either way (perform returned, or raised after its own
rollback; finish ran); the guard then exits. When the pipe ends without ``done``, the driving process
died inside the step, and the guard opens the same state root and does what the step's own rollback
would have done:

``source NAME TARGET...`` (perform; then ``running 1`` or ``running 0``: whether the guest ran before)
    the migration cancelled if QEMU still runs it (at ``pre-switchover`` QEMU waits for a
    ``migrate-continue`` that will never come), the mirrors cancelled with force and their NBD nodes
    deleted, and the guest resumed if it ran, also after a memory copy that completed: perform had not
    returned, so no finish ran and the destination never continues.
``destination NAME TOKEN`` (prepare to finish; then a ``created PATH`` line per image it made)
    the destination discarded, by its token: nothing of a newer migration of the same name is touched.

So a client killed at any point before perform returned leaves the guest running on the source only,
and no destination domain, image or QEMU. Not guarded: the moment between perform's return and
finish's ``cont``; a client killed there leaves the destination discarded and the source paused (the
source cannot tell whether finish ran; libvirtd leaves it paused at its PERFORM3_DONE phase too).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading

__all__ = ["DONE", "Guard", "main"]

_log = logging.getLogger(__name__)

DONE = "done"
"""The line that tells the guard the step ended and there is nothing to undo."""


class Guard:
    """The driving process's end of one guard: :meth:`note` a line, :meth:`done` at the end of the step."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc

    @classmethod
    def start(cls, uri: str, timeout: float, args: list[str]) -> Guard | None:
        """Start the guard of ``args`` (see the module docstring); None (logged) if no process can start."""
        argv = [sys.executable, "-m", "virtabs_qemu._guard", uri, str(timeout), *args]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            _log.warning("no guard for the migration step %s: %s", args[:2], exc)
            return None
        return cls(proc)

    def note(self, line: str) -> None:
        """Tell the guard ``line`` (a ``created PATH``)."""
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            stdin.write(line.encode("utf-8", "surrogateescape") + b"\n")
            stdin.flush()

    def done(self) -> None:
        """The step has ended: the guard exits without touching anything (reaped in the background)."""
        self.note(DONE)
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        threading.Thread(target=self._proc.wait, name="virtabs-guard-reaper", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Wait for the end of stdin; undo the step unless ``done`` came first."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    uri, timeout, role, name = args[0], float(args[1]), args[2], args[3]
    created: list[str] = []
    running = False
    for raw in sys.stdin.buffer:
        line = raw.rstrip(b"\n").decode("utf-8", "surrogateescape")
        if line == DONE:
            return 0
        if line.startswith("created "):
            created.append(line[len("created ") :])
        elif line.startswith("running "):
            running = line == "running 1"
    from virtabs.spi import ConnectOptions, parse_uri

    from .driver import QemuDriver

    driver = QemuDriver(parse_uri(uri), ConnectOptions(timeout=timeout))
    try:
        if role == "source":
            driver.migrations.recover_source(name, running, args[4:])
        elif role == "destination":
            driver.migrations.discard(name, created, args[4])
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Events: lifecycle events of the driver's own actions, block-job READY, and a poller for the rest.

The driver emits a lifecycle event for each action it performs (define, start, suspend ...). What
happens without it (the guest powers off, QEMU is killed, a job concludes while nobody asks) is
found by a poller thread that runs while someone subscribes: every 0.25 s it reads each domain's
state and reconciles the block jobs of running ones, through the driver's own status read
(:attr:`Events.read_status`: the connection's leased monitor first, so a domain whose main monitor
another client holds, for a long save say, delays nobody's events). The poller waits for no domain
lock: a domain locked by another process is skipped for that round.

The toolkit's ``EventPoller`` is not used: it reports every state change it sees, including those
the driver has already emitted for its own actions (it would send STARTED twice), and it knows
nothing of block jobs. This poller remembers the states the driver's own events imply
(:meth:`Events.note_state`) and only reports the changes nobody announced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from virtabs.spi import (
    BlockJobEvent,
    BlockJobStatus,
    DomainState,
    Event,
    LifecycleEvent,
    LifecycleEventType,
    NoDomainError,
    VirtabsError,
)

from ._records import JOB_PREFIX, Definition
from ._session import Sessions
from ._state import lock_waits_at_most
from ._store import DefinitionStore

__all__ = ["Events"]

_log = logging.getLogger("virtabs.qemu")

POLL_INTERVAL = 0.25


class Events:
    """Emits the driver's events and runs the poller."""

    def __init__(self, store: DefinitionStore, sessions: Sessions, emit: Callable[[Event], None]) -> None:
        self.store = store
        self.sessions = sessions
        self.emit = emit
        self.read_status: Callable[[Definition], DomainState] = lambda defn: self.sessions.state(defn.name)[0]
        """A domain's state, its concluded block jobs settled on the way (the driver sets its
        ``domain_status``: leased monitor first, one QMP session otherwise)."""
        self._ready_emitted: set[tuple[str, str, str]] = set()
        self._last_states: dict[str, DomainState] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        sessions.on_events = self.dispatch

    # --- emitting ----------------------------------------------------------------------------

    def lifecycle(self, defn: Definition, kind: LifecycleEventType, detail: str = "") -> None:
        """Emit a lifecycle event for an action of this driver, and remember the state it implies."""
        try:
            self.emit(LifecycleEvent(domain=defn.name, uuid=defn.uuid, type=kind, detail=detail))
        finally:
            self.note_state(defn.name, kind)

    def note_state(self, name: str, kind: LifecycleEventType) -> None:
        """The poller will not report again a change this event announced."""
        if kind in (LifecycleEventType.STARTED, LifecycleEventType.RESUMED):
            self._last_states[name] = DomainState.RUNNING
        elif kind == LifecycleEventType.SUSPENDED:
            self._last_states[name] = DomainState.PAUSED
        elif kind in (LifecycleEventType.STOPPED, LifecycleEventType.UNDEFINED, LifecycleEventType.CRASHED):
            self._last_states[name] = DomainState.SHUTOFF

    def job_ready(self, name: str, target: str, started: str | None = None) -> None:
        """Emit READY for the job on ``target`` once per job (QMP event or a poll that sees it ready).

        ``started`` (the job record's) skips reading anything when READY was emitted already."""
        if started is not None and (name, target, started) in self._ready_emitted:
            return
        try:
            defn = self.store.load(name)
        except NoDomainError:
            return
        job = self.store.run(name).jobs.get(target)
        if job is None:
            return
        key = (name, target, job.started)
        if key in self._ready_emitted:
            return
        self._ready_emitted.add(key)
        self.emit(
            BlockJobEvent(domain=name, uuid=defn.uuid, disk=target, job_type=job.type, status=BlockJobStatus.READY)
        )

    def dispatch(self, name: str, events: list[dict[str, Any]]) -> None:
        """QMP events received during a session: BLOCK_JOB_READY of this driver's jobs."""
        for ev in events:
            if ev.get("event") == "BLOCK_JOB_READY":
                dev = str(ev.get("data", {}).get("device", ""))
                if dev.startswith(JOB_PREFIX):
                    self.job_ready(name, dev[len(JOB_PREFIX) :])

    # --- the poller ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the poller (the current states are the baseline: no events for them)."""
        if self._poller is not None:
            return
        self._stop.clear()
        for defn in self.store.all():
            try:
                with lock_waits_at_most(0):  # a domain locked elsewhere gets its baseline at the first round
                    self._last_states[defn.name] = self.read_status(defn)
            except VirtabsError as exc:
                _log.debug("qemu event poller: domain %s: %s", defn.name, exc)
        self._poller = threading.Thread(target=self._loop, name="virtabs-qemu-events", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop the poller and wait for it. Idempotent."""
        thread, self._poller = self._poller, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                self.poll_once()
            except Exception:
                _log.exception("qemu event poller: iteration failed")

    def poll_once(self) -> None:
        """One round over every domain."""
        for defn in self.store.all():
            if self._stop.is_set():
                return
            try:
                self._poll_domain(defn.name)
            except VirtabsError as exc:
                _log.debug("qemu event poller: domain %s: %s", defn.name, exc)
            except Exception:
                _log.exception("qemu event poller: domain %s", defn.name)

    def _poll_domain(self, name: str) -> None:
        """State and block jobs of one domain."""
        try:
            defn = self.store.load(name)
        except NoDomainError:
            return
        with lock_waits_at_most(0):  # locked by another process (a long save there): tried again next round
            state = self.read_status(defn)
        last = self._last_states.get(name)
        if last is not None and last.is_active and not state.is_active:
            crashed = state == DomainState.CRASHED
            kind = LifecycleEventType.CRASHED if crashed else LifecycleEventType.STOPPED
            self.lifecycle(defn, kind, "crashed" if crashed else "shutdown")
        self._last_states[name] = state

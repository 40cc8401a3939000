"""Lifecycle events from vSphere's own change feed: a PropertyCollector filter and ``WaitForUpdatesEx``.

A dedicated PropertyCollector watches ``name``, ``config.uuid`` and ``runtime.powerState`` of every VM in
the driver's ContainerView. The first ``WaitForUpdatesEx`` returns the current state (the baseline: no
events); later ones return only what changed, and block until something does (long poll, at most
:data:`WAIT_SECONDS`), so an idle connection costs one SOAP call per ``WAIT_SECONDS``.

Imported by the driver when the first subscriber arrives (it imports pyVmomi through ``_session``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from virtabs.spi import Event, LifecycleEvent, LifecycleEventType

from ._session import PC, Session, vim

__all__ = ["WAIT_SECONDS", "VmWatcher"]

log = logging.getLogger("virtabs.esx")

WAIT_SECONDS = 2
"""Longest a WaitForUpdatesEx call blocks (also how long stopping may take)."""

_PROPS = ["name", "config.uuid", "runtime.powerState"]


def _transition(before: str | None, after: str | None) -> tuple[LifecycleEventType, str] | None:
    if before == after or after is None:
        return None
    if after == "poweredOn":
        return LifecycleEventType.STARTED, "resumed from suspend" if before == "suspended" else "booted"
    if after == "suspended":
        return LifecycleEventType.STOPPED, "suspended to disk"
    if after == "poweredOff" and before is not None:
        return LifecycleEventType.STOPPED, "powered off"
    return None


class VmWatcher:
    """A background thread turning VM property changes into :class:`LifecycleEvent`s.

    ``tick`` is called after every wait (the driver polls its Storage vMotion jobs there).
    """

    def __init__(self, session: Session, view: Any, emit: Callable[[Event], None], tick: Callable[[], None]) -> None:
        self._session = session
        self._emit = emit
        self._tick = tick
        self._stop = threading.Event()
        self._known: dict[str, dict[str, Any]] = {}  # moref id -> last seen properties
        self._pc = session.pc.CreatePropertyCollector()
        traverse = PC.TraversalSpec(name="view", type=vim.view.ContainerView, path="view", skip=False)
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])],
            propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=_PROPS)],
        )
        self._pc.CreateFilter(spec, partialUpdates=False)
        self._version = ""
        self._wait()  # the baseline, before start_events returns: no events for it
        self._thread = threading.Thread(target=self._run, name="virtabs-esx-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the long poll and the thread; destroy the collector (its filter goes with it)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self._pc.CancelWaitForUpdates()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=WAIT_SECONDS * 3)
        with contextlib.suppress(Exception):
            self._pc.DestroyPropertyCollector()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._wait()
            except Exception as exc:  # a cancelled wait, a lost connection: log, retry unless stopping
                if self._stop.is_set():
                    return
                log.warning("esx events: WaitForUpdatesEx failed: %s", exc)
                self._stop.wait(WAIT_SECONDS)
            with contextlib.suppress(Exception):
                self._tick()

    def _wait(self) -> None:
        baseline = self._version == ""
        update = self._pc.WaitForUpdatesEx(self._version, PC.WaitOptions(maxWaitSeconds=WAIT_SECONDS))
        if update is None:
            return
        self._version = update.version
        for filter_set in update.filterSet or []:
            for change in filter_set.objectSet or []:
                self._apply(change, baseline)

    def _apply(self, change: Any, baseline: bool) -> None:
        key = change.obj._moId
        before = dict(self._known.get(key, {}))
        after = dict(before)
        for prop in change.changeSet or []:
            if prop.op == "remove":
                after.pop(prop.name, None)
            else:
                after[prop.name] = prop.val
        kind = change.kind
        if kind == "leave":
            self._known.pop(key, None)
        else:
            self._known[key] = after
        if baseline:
            return
        name, uuid = after.get("name") or before.get("name"), after.get("config.uuid") or before.get("config.uuid")
        if not name or not uuid:
            return
        events: list[tuple[LifecycleEventType, str]] = []
        if kind == "enter":
            events.append((LifecycleEventType.DEFINED, "added"))
            started = _transition("poweredOff", after.get("runtime.powerState"))
            if started is not None and started[0] is LifecycleEventType.STARTED:
                events.append(started)
        elif kind == "leave":
            events.append((LifecycleEventType.UNDEFINED, "removed"))
        else:
            moved = _transition(before.get("runtime.powerState"), after.get("runtime.powerState"))
            if moved is not None:
                events.append(moved)
        for event_type, detail in events:
            try:
                self._emit(LifecycleEvent(name, uuid, event_type, detail=detail))
            except Exception:
                log.exception("esx events: event sink raised")

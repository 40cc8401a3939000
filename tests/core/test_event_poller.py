"""The SPI's EventPoller: one lifecycle event per state change between two snapshots."""

from __future__ import annotations

from virtabs import DomainState, LifecycleEvent, LifecycleEventType
from virtabs.spi import DomainRef, EventPoller

REF = DomainRef("d1", "0d9c3a4e-5b7f-4d3c-9a6e-2f1b8c7d6e5a")


def events_for(*states: DomainState | None) -> list[LifecycleEventType]:
    """The events the poller emits while the domain goes through ``states`` (None: not there)."""
    frames = iter(states)
    emitted: list[LifecycleEventType] = []

    def snapshot() -> dict[DomainRef, DomainState]:
        state = next(frames)
        return {} if state is None else {REF: state}

    def emit(event: object) -> None:
        assert isinstance(event, LifecycleEvent) and (event.domain, event.uuid) == (REF.name, REF.uuid)
        emitted.append(event.type)

    poller = EventPoller(snapshot, emit, interval=3600)
    poller._last = poller._take()  # the baseline, as start() takes it (without a thread)
    for _ in states[1:]:
        poller.poll_once()
    return emitted


def test_a_domain_started_paused_is_started_then_resumed() -> None:
    """Shut off to paused is a start (xl create builds a domain paused; a start paused too), not a suspend."""
    assert events_for(DomainState.SHUTOFF, DomainState.PAUSED, DomainState.RUNNING) == [
        LifecycleEventType.STARTED,
        LifecycleEventType.RESUMED,
    ]


def test_a_running_domain_paused_is_suspended() -> None:
    assert events_for(DomainState.RUNNING, DomainState.PAUSED, DomainState.RUNNING, DomainState.SHUTOFF) == [
        LifecycleEventType.SUSPENDED,
        LifecycleEventType.RESUMED,
        LifecycleEventType.STOPPED,
    ]


def test_defined_started_crashed_undefined() -> None:
    assert events_for(None, DomainState.SHUTOFF, DomainState.RUNNING, DomainState.CRASHED, None) == [
        LifecycleEventType.DEFINED,
        LifecycleEventType.STARTED,
        LifecycleEventType.CRASHED,
        LifecycleEventType.UNDEFINED,
    ]

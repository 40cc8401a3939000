"""virtabs.spi.OneCommandMigrations: the job a driver reports for a migration its host runs as one command."""

from __future__ import annotations

import threading

import pytest

from virtabs.spi import OneCommandMigrations, OperationFailedError

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_nothing_before_a_migration() -> None:
    assert OneCommandMigrations().info(UUID) is None


def test_a_command_under_way_then_completed() -> None:
    migrations = OneCommandMigrations()
    inside = threading.Event()
    release = threading.Event()
    seen = []

    def perform() -> None:
        with migrations.running(UUID, "storage", 512 << 20):
            inside.set()
            release.wait()

    worker = threading.Thread(target=perform)
    worker.start()
    inside.wait()
    seen.append(migrations.info(UUID))
    release.set()
    worker.join()
    during, after = seen[0], migrations.info(UUID)
    assert during is not None and after is not None
    assert (during.phase, during.memory_total, during.memory_processed, during.memory_remaining) == (
        "storage",
        512 << 20,
        0,
        512 << 20,
    )
    assert (after.phase, after.memory_processed, after.memory_remaining) == ("completed", 512 << 20, 0)
    assert after.elapsed_ms is not None and during.elapsed_ms is not None and after.elapsed_ms >= during.elapsed_ms
    assert migrations.info(UUID) == after  # ended: its time no longer runs


def test_a_command_that_raises_is_failed_and_the_error_goes_on() -> None:
    migrations = OneCommandMigrations()
    with pytest.raises(OperationFailedError, match="refused"), migrations.running(UUID, "memory", 1 << 30):
        raise OperationFailedError("refused by the host")
    info = migrations.info(UUID)
    assert info is not None
    assert (info.phase, info.memory_processed, info.memory_remaining) == ("failed", 0, 1 << 30)


def test_begin_and_end_keep_the_last_migration_of_each_domain() -> None:
    migrations = OneCommandMigrations()
    other = "0b5f6a2e-1111-4c1d-9e8f-000000000001"
    migrations.begin(UUID, "memory", 10)
    migrations.end(UUID, False)
    migrations.begin(UUID, "memory", 20)
    migrations.end(UUID, True)
    migrations.begin(other, "memory", 30)
    first, second = migrations.info(UUID), migrations.info(other)
    assert first is not None and (first.phase, first.memory_total) == ("completed", 20)
    assert second is not None and (second.phase, second.memory_processed) == ("memory", 0)

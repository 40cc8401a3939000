"""``virtabs migrate`` (issue 23) between the default test node and a JSON node."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

import virtabs
from virtabs import DomainState

Run = Callable[..., Result]


@pytest.fixture
def dest(tmp_path: Path) -> str:
    node = tmp_path / "dest.json"
    node.write_text("{}")
    return f"test://{node}"


def test_migrate_live_with_storage(run: Run, dest: str) -> None:
    result = run("migrate", "test", dest, "--live", "--copy-storage-all", "--persistent", "--undefinesource")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Migration completed")
    with virtabs.open(dest) as there, virtabs.open("test:///default") as here:
        assert there.lookup_domain("test").state() == DomainState.RUNNING
        assert here.list_domains() == []


def test_migrate_rules_are_the_cores(run: Run, dest: str) -> None:
    result = run("migrate", "test", dest, "--copy-storage-all", "--copy-storage-inc")
    assert result.exit_code == 1
    assert "mutually exclusive" in result.stderr and "INVALID_ARG" in result.stderr
    result = run("migrate", "test", dest, "--offline")
    assert result.exit_code == 1 and "PERSIST_DEST" in result.stderr


def test_ctrl_c_aborts_and_the_source_keeps_running(run: Run, dest: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtabs import _migration

    real_wait = _migration.MigrationJob.wait
    calls: list[int] = []

    def interrupted_once(self: _migration.MigrationJob, *args: object, **kwargs: object) -> virtabs.Domain:
        calls.append(1)
        if len(calls) == 1:
            while self.info().phase == "setup":  # Ctrl-C while the copy runs
                pass
            raise KeyboardInterrupt
        return real_wait(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_migration.MigrationJob, "wait", interrupted_once)
    result = run("migrate", "test", dest, "--live", "--copy-storage-all", "--persistent", "--bandwidth", "1")
    assert result.exit_code == 130
    assert len(calls) == 2  # the abort waited for the rollback
    with virtabs.open(dest) as there, virtabs.open("test:///default") as here:
        assert here.lookup_domain("test").state() == DomainState.RUNNING
        assert there.list_domains() == []


def test_timeout_aborts(run: Run, dest: str) -> None:
    result = run("migrate", "test", dest, "--live", "--persistent", "--bandwidth", "1", "--timeout", "0.3")
    assert result.exit_code == 1
    assert "the migration was aborted" in result.stderr
    with virtabs.open(dest) as there, virtabs.open("test:///default") as here:
        assert here.lookup_domain("test").state() == DomainState.RUNNING
        assert there.list_domains() == []


NO_ABORT = "test:///default?without=domain.migrate.abort"


def test_ctrl_c_where_the_source_cannot_cancel_says_so_and_waits(
    run: Run, dest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtabs import _migration

    real_wait = _migration.MigrationJob.wait
    calls: list[int] = []

    def interrupted_once(self: _migration.MigrationJob, *args: object, **kwargs: object) -> virtabs.Domain:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_wait(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_migration.MigrationJob, "wait", interrupted_once)
    result = run("migrate", "test", dest, "--live", "--persistent", "--undefinesource", uri=NO_ABORT)
    assert result.exit_code == 0, result.output
    assert "cannot be cancelled" in result.stderr and "domain.migrate.abort" in result.stderr
    assert result.stdout.startswith("Migration completed")
    with virtabs.open(dest) as there, virtabs.open("test:///default") as here:
        assert there.lookup_domain("test").state() == DomainState.RUNNING
        assert here.list_domains() == []


def test_timeout_is_refused_where_the_source_cannot_cancel(run: Run, dest: str) -> None:
    result = run("migrate", "test", dest, "--live", "--persistent", "--timeout", "5", uri=NO_ABORT)
    assert result.exit_code == 1
    assert "--timeout" in result.stderr and "domain.migrate.abort" in result.stderr
    with virtabs.open(dest) as there, virtabs.open("test:///default") as here:
        assert here.lookup_domain("test").state() == DomainState.RUNNING
        assert there.list_domains() == []

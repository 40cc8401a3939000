"""The public layer's rules, checked against a recording driver: what is refused never reaches the driver."""

from __future__ import annotations

import pytest

import virtabs
from virtabs import (
    BlockCommitFlags,
    BlockCopyFlags,
    BlockJobAbortFlags,
    BlockJobType,
    BlockRebaseFlags,
    Credentials,
    DomainState,
)
from virtabs._models import BlockJobInfo

from .conftest import HOST_TOUCHING, OpenRecording, all_but

F = BlockRebaseFlags


def touched(driver: object) -> set[str]:
    return set(driver.calls) & HOST_TOUCHING  # type: ignore[attr-defined]


@pytest.mark.parametrize("flag", [F.SHALLOW, F.REUSE_EXT, F.COPY_RAW, F.COPY_DEV, F.SHALLOW | F.REUSE_EXT])
def test_copy_only_flags_without_copy_are_invalid(open_recording: OpenRecording, flag: F) -> None:
    conn, driver = open_recording()
    dom = conn.lookup_domain("vm1")
    with pytest.raises(virtabs.InvalidArgumentError, match="requires a copy job") as err:
        dom.block_rebase("vda", "/img/base.qcow2", flags=flag)
    assert err.value.code == 8
    assert not touched(driver)


def test_copy_needs_a_destination(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="destination"):
        conn.lookup_domain("vm1").block_rebase("vda", None, flags=F.COPY)
    assert not touched(driver)


def test_relative_and_bandwidth_bytes_are_allowed_without_copy(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    conn.lookup_domain("vm1").block_rebase("vda", "/img/base.qcow2", bandwidth=5, flags=F.RELATIVE | F.BANDWIDTH_BYTES)
    assert driver.last_args == ("vda", "/img/base.qcow2", 5)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (F.COPY, dict(format=None, shallow=False, reuse_existing=False)),
        (F.COPY | F.COPY_RAW, dict(format="raw", shallow=False, reuse_existing=False)),
        (F.COPY | F.SHALLOW, dict(format=None, shallow=True, reuse_existing=False)),
        (F.COPY | F.REUSE_EXT, dict(format=None, shallow=False, reuse_existing=True)),
        (F.COPY | F.REUSE_EXT | F.SHALLOW, dict(format=None, shallow=True, reuse_existing=True)),
        (F.COPY | F.REUSE_EXT | F.SHALLOW | F.COPY_RAW, dict(format="raw", shallow=True, reuse_existing=True)),
        (F.COPY | F.REUSE_EXT | F.COPY_RAW, dict(format="raw", shallow=False, reuse_existing=True)),
    ],
)
def test_seed_combinations_reach_the_driver_normalised(
    open_recording: OpenRecording, flags: F, expected: dict[str, object]
) -> None:
    conn, driver = open_recording()
    job = conn.lookup_domain("vm1").block_rebase("vda", "/dst/copy", bandwidth=2, flags=flags)
    disk, request = driver.last_args
    assert disk == "vda"
    assert request.dest == "/dst/copy"
    assert request.bandwidth_bytes == 2 * 1024 * 1024
    for key, value in expected.items():
        assert getattr(request, key) == value, key
    assert job.type == BlockJobType.COPY and job.disk == "vda"


def test_shallow_raw_new_file_with_a_backing_chain_is_refused(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="raw"):
        conn.lookup_domain("vm1").block_rebase("vda", "/dst/copy", flags=F.COPY | F.SHALLOW | F.COPY_RAW)
    assert not touched(driver)


def test_relative_destination_is_refused(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="absolute"):
        conn.lookup_domain("vm1").block_copy("vda", "copy.qcow2")
    assert not touched(driver)


def test_second_job_on_a_disk_is_block_copy_active(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.job = BlockJobInfo(BlockJobType.PULL, 1, 10, 0, False, disk="vda")
    with pytest.raises(virtabs.BlockCopyActiveError) as err:
        conn.lookup_domain("vm1").block_copy("vda", "/dst/copy")
    assert err.value.code == 83
    assert "vda" in err.value.message
    assert not touched(driver)


def test_pivot_before_ready_is_block_copy_active(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.job = BlockJobInfo(BlockJobType.COPY, 5, 10, 0, False, disk="vda")
    with pytest.raises(virtabs.BlockCopyActiveError, match="not ready for pivot"):
        conn.lookup_domain("vm1").block_job_abort("vda", BlockJobAbortFlags.PIVOT)
    assert not touched(driver)


def test_pivot_of_a_pull_job_is_operation_invalid(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.job = BlockJobInfo(BlockJobType.PULL, 10, 10, 0, True, disk="vda")
    with pytest.raises(virtabs.OperationInvalidError, match="pull job does not support pivot") as err:
        conn.lookup_domain("vm1").block_job_abort("vda", BlockJobAbortFlags.PIVOT)
    assert err.value.code == 55
    assert not touched(driver)


def test_pivot_when_ready_dispatches_and_waits_unless_async(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.job = BlockJobInfo(BlockJobType.COPY, 10, 10, 0, True, disk="vda")
    dom = conn.lookup_domain("vm1")
    dom.block_job_abort("vda", BlockJobAbortFlags.PIVOT)
    assert driver.last_args == ("vda", True)
    assert driver.calls[-1] == "block_job_info", "the core waits for the job to end by polling it"
    driver.job = BlockJobInfo(BlockJobType.COPY, 10, 10, 0, True, disk="vda")
    driver.abort_ends_job = False
    driver.calls.clear()
    dom.block_job_abort("vda", BlockJobAbortFlags.ASYNC)
    assert driver.last_args == ("vda", False)
    assert driver.calls[-1] == "block_job_abort", "ASYNC returns without polling"


def test_abort_wait_is_bounded_by_the_connection_timeout(open_recording: OpenRecording) -> None:
    conn, driver = open_recording(timeout=0.2)
    driver.job = BlockJobInfo(BlockJobType.PULL, 1, 10, 0, False, disk="vda")
    driver.abort_ends_job = False  # a job that never goes away
    with pytest.raises(virtabs.OperationTimeoutError, match="has not ended after 0.2s"):
        conn.lookup_domain("vm1").block_job_abort("vda")


def test_abort_without_a_job_is_operation_invalid(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.OperationInvalidError, match="no active block job"):
        conn.lookup_domain("vm1").block_job_abort("vda")
    assert not touched(driver)


@pytest.mark.parametrize("action", ["save", "snapshot", "revert", "detach"])
def test_refusals_during_a_copy(open_recording: OpenRecording, action: str) -> None:
    conn, driver = open_recording()
    driver.job = BlockJobInfo(BlockJobType.COPY, 1, 10, 0, False, disk="vda")
    dom = conn.lookup_domain("vm1")
    calls = {
        "save": lambda: dom.save("/tmp/x.save"),
        "snapshot": lambda: dom.create_snapshot("s1"),
        "revert": lambda: dom.revert_to_snapshot("s1"),
        "detach": lambda: dom.detach_disk("vda"),
    }
    with pytest.raises(virtabs.BlockCopyActiveError):
        calls[action]()
    assert not touched(driver)


def test_progress_never_reports_done_before_ready(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.job = BlockJobInfo(BlockJobType.COPY, 10, 10, 0, False, disk="vda")
    info = conn.lookup_domain("vm1").block_job_info("vda")
    assert info is not None and info.cur == 9 and info.end == 10 and not info.ready


@pytest.mark.parametrize(
    ("bandwidth", "flags"),
    [(-1, F(0)), (1 << 44, F(0)), (1 << 63, F.BANDWIDTH_BYTES), (True, F(0)), ("5", F(0))],
)
def test_bandwidth_is_validated(open_recording: OpenRecording, bandwidth: object, flags: F) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="bandwidth"):
        conn.lookup_domain("vm1").block_rebase("vda", None, bandwidth=bandwidth, flags=flags)  # type: ignore[arg-type]
    assert not touched(driver)


def test_bandwidth_mib_and_bytes(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    dom = conn.lookup_domain("vm1")
    dom.block_pull("vda", bandwidth=3)
    assert driver.last_args[2] == 3 << 20
    driver.job = BlockJobInfo(BlockJobType.PULL, 1, 10, 0, False, disk="vda")
    dom.block_job_set_speed("vda", 4096, flags=1)
    assert driver.last_args == ("vda", 4096)


def test_unknown_flag_bits_are_invalid(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="unsupported flags 0x100"):
        conn.lookup_domain("vm1").block_rebase("vda", "/x", flags=0x100 | 8)
    assert not touched(driver)


def test_granularity_must_be_a_power_of_two(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="power of two"):
        conn.lookup_domain("vm1").block_copy("vda", "/dst/x", granularity=3000)
    conn.lookup_domain("vm1").block_copy("vda", "/dst/x", granularity=65536, flags=BlockCopyFlags.SYNCHRONOUS_WRITES)
    assert driver.last_args[1].granularity == 65536 and driver.last_args[1].synchronous_writes


def test_pull_base_must_be_in_the_chain(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    dom = conn.lookup_domain("vm1")
    with pytest.raises(virtabs.InvalidArgumentError, match="not in the disk's backing chain"):
        dom.block_pull("vda", base="/elsewhere.qcow2")
    dom.block_pull("vda", base="/img/base.qcow2")
    assert driver.last_args[1] == "/img/base.qcow2"


def test_unknown_disk_is_named(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    with pytest.raises(virtabs.InvalidArgumentError, match="has no disk 'vdz'"):
        conn.lookup_domain("vm1").block_pull("vdz")


def test_commit_rules(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    dom = conn.lookup_domain("vm1")
    with pytest.raises(virtabs.InvalidArgumentError, match="requires the ACTIVE flag"):
        dom.block_commit("vda")
    with pytest.raises(virtabs.InvalidArgumentError, match="ACTIVE flag requires top"):
        dom.block_commit("vda", top="/img/mid.qcow2", flags=BlockCommitFlags.ACTIVE)
    with pytest.raises(virtabs.InvalidArgumentError, match="SHALLOW requires base directly below"):
        dom.block_commit("vda", top="/img/top.qcow2", base="/img/base.qcow2", flags=BlockCommitFlags.SHALLOW | 4)
    assert not touched(driver)
    job = dom.block_commit("vda", flags=BlockCommitFlags.ACTIVE)
    assert job.type == BlockJobType.ACTIVE_COMMIT
    assert driver.last_args[1].base == "/img/base.qcow2" and driver.last_args[1].top is None
    job = dom.block_commit("vda", top="/img/mid.qcow2")
    assert job.type == BlockJobType.COMMIT
    assert driver.last_args[1].top == "/img/mid.qcow2"


def test_block_jobs_need_a_running_domain(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.state = DomainState.SHUTOFF
    with pytest.raises(virtabs.OperationInvalidError, match="is not running"):
        conn.lookup_domain("vm1").block_copy("vda", "/dst/x")
    assert not touched(driver)


def test_state_preconditions(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    dom = conn.lookup_domain("vm1")
    with pytest.raises(virtabs.OperationInvalidError, match="already running"):
        dom.start()
    with pytest.raises(virtabs.OperationInvalidError, match="not paused"):
        dom.resume()
    driver.state = DomainState.SHUTOFF
    with pytest.raises(virtabs.OperationInvalidError, match="not running"):
        dom.destroy()
    assert not touched(driver)
    dom.start()
    assert "start" in driver.calls


@pytest.mark.parametrize(
    ("missing", "call"),
    [
        ("block.copy", lambda d: d.block_rebase("vda", "/dst/x", flags=F.COPY)),
        ("block.copy.shallow", lambda d: d.block_rebase("vda", "/dst/x", flags=F.COPY | F.SHALLOW)),
        ("block.copy.reuse_ext", lambda d: d.block_copy("vda", "/dst/x", flags=BlockCopyFlags.REUSE_EXT)),
        ("block.copy.raw", lambda d: d.block_copy("vda", "/dst/x", format="raw")),
        ("block.pull", lambda d: d.block_pull("vda")),
        ("block.commit", lambda d: d.block_commit("vda", flags=BlockCommitFlags.ACTIVE)),
        ("domain.save", lambda d: d.save("/tmp/x")),
        ("domain.snapshot", lambda d: d.create_snapshot("s")),
        ("domain.start", lambda d: d.start()),
        ("domain.destroy", lambda d: d.destroy()),
    ],
)
def test_unsupported_is_refused_before_the_host(open_recording: OpenRecording, missing: str, call: object) -> None:
    conn, driver = open_recording(all_but(missing))
    with pytest.raises(virtabs.NotSupportedError, match=missing) as err:
        call(conn.lookup_domain("vm1"))  # type: ignore[operator]
    assert err.value.code == 3
    assert isinstance(err.value, NotImplementedError)
    assert not touched(driver)


def test_pivot_needs_the_pivot_capability(open_recording: OpenRecording) -> None:
    conn, driver = open_recording(all_but("block.copy.pivot"))
    driver.job = BlockJobInfo(BlockJobType.COPY, 10, 10, 0, True, disk="vda")
    with pytest.raises(virtabs.NotSupportedError, match="block.copy.pivot"):
        conn.lookup_domain("vm1").block_job_abort("vda", BlockJobAbortFlags.PIVOT)
    assert not touched(driver)


def test_readonly_connection_refuses_writes(open_recording: OpenRecording) -> None:
    conn, driver = open_recording(readonly=True)
    dom = conn.lookup_domain("vm1")
    assert dom.state() == DomainState.RUNNING
    with pytest.raises(virtabs.OperationDeniedError, match="read-only") as err:
        dom.destroy()
    assert isinstance(err.value, PermissionError)
    assert not touched(driver)


def test_raw_backend_exceptions_are_wrapped(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    driver.raise_on["destroy"] = KeyError("socket exploded")
    with pytest.raises(virtabs.OperationFailedError, match="destroy of domain 'vm1' failed") as err:
        conn.lookup_domain("vm1").destroy()
    assert isinstance(err.value.__cause__, KeyError)


def test_secrets_are_redacted_from_every_message(open_recording: OpenRecording) -> None:
    conn, driver = open_recording(credentials=Credentials("admin", "hunter2"))
    driver.raise_on["destroy"] = RuntimeError("login admin:hunter2 rejected")
    with pytest.raises(virtabs.OperationFailedError) as err:
        conn.lookup_domain("vm1").destroy()
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    driver.raise_on["start"] = virtabs.AuthError("password hunter2 is wrong")
    driver.state = DomainState.SHUTOFF
    with pytest.raises(virtabs.AuthError) as auth:
        conn.lookup_domain("vm1").start()
    assert "hunter2" not in auth.value.message and "hunter2" not in repr(auth.value)
    assert "hunter2" not in repr(conn)


def test_closed_connection_refuses_calls(open_recording: OpenRecording) -> None:
    conn, _ = open_recording()
    conn.close()
    conn.close()  # idempotent
    with pytest.raises(virtabs.OperationInvalidError, match="closed"):
        conn.list_domains()


def test_supports_rejects_misspelt_capabilities(open_recording: OpenRecording) -> None:
    conn, _ = open_recording()
    assert conn.supports("block.copy") is True
    with pytest.raises(virtabs.InvalidArgumentError, match="unknown capability 'block.cpy'"):
        conn.supports("block.cpy")


def test_wait_ready_times_out_with_operation_timeout(open_recording: OpenRecording) -> None:
    conn, driver = open_recording(all_but("events"))
    job = conn.lookup_domain("vm1").block_copy("vda", "/dst/x")
    driver.job = BlockJobInfo(BlockJobType.COPY, 1, 10, 0, False, disk="vda")
    with pytest.raises(virtabs.OperationTimeoutError, match="not ready after 0.05s") as err:
        job.wait_ready(0.05)
    assert isinstance(err.value, TimeoutError) and err.value.code == 68


def test_a_copy_without_pivot_switches_over_by_itself_and_wait_returns_when_it_ended(
    open_recording: OpenRecording,
) -> None:
    conn, driver = open_recording(all_but("block.copy.pivot"))
    job = conn.lookup_domain("vm1").block_copy("vda", "/img/copy.qcow2")
    assert not job.two_phase  # Storage vMotion, Move-VMStorage: no ready phase for the caller
    polls: list[int] = []

    def info(dom: object, disk: str) -> BlockJobInfo | None:
        polls.append(1)
        return BlockJobInfo(BlockJobType.COPY, len(polls), 10, 0, False, disk="vda") if len(polls) < 3 else None

    driver.block_job_info = info  # type: ignore[method-assign]
    job.wait(timeout=10)
    assert len(polls) == 3


def test_start_paused_needs_domain_suspend(open_recording: OpenRecording) -> None:
    conn, driver = open_recording(all_but("domain.suspend"))
    driver.state = DomainState.SHUTOFF
    with pytest.raises(virtabs.NotSupportedError, match="domain.suspend"):
        conn.lookup_domain("vm1").start(paused=True)
    assert not touched(driver)
    conn.lookup_domain("vm1").start()
    assert driver.calls[-1] == "start"


def test_destroy_clears_a_crashed_domain_but_not_a_shut_off_one(open_recording: OpenRecording) -> None:
    conn, driver = open_recording()
    dom = conn.lookup_domain("vm1")
    driver.state = DomainState.CRASHED
    dom.destroy()
    assert driver.calls[-1] == "destroy"
    driver.state = DomainState.SHUTOFF
    with pytest.raises(virtabs.OperationInvalidError, match="not running"):
        dom.destroy()
    assert driver.calls[-1] != "destroy"

"""The seam against real QEMU: the core's gate refuses before the driver runs, the driver reports
state and jobs from one QMP session, and QEMU's own atomic refusals become the core's error classes."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import virtabs
from qemu_helpers import chain_spec, make_driver
from virtabs import BlockCopyActiveError, BlockRebaseFlags, NotSupportedError, OperationDeniedError
from virtabs.spi import BlockCopyRequest, BlockJobType, DomainState, DomainStatus, OperationInvalidError

from virtabs_qemu import _qmp
from virtabs_qemu.driver import QemuDriver

OLD_QEMU = (
    "import json, sys\n"
    'print(json.dumps({"QMP": {"version": {}, "capabilities": []}}), flush=True)\n'
    "for line in sys.stdin:\n"
    '    cmd = json.loads(line)["execute"]\n'
    '    if cmd == "query-version":\n'
    '        ret = {"qemu": {"major": 4, "minor": 0, "micro": 0}, "package": ""}\n'
    '    elif cmd == "query-commands":\n'
    '        ret = [{"name": n} for n in ("stop", "cont", "system_reset", "system_powerdown", "quit")]\n'
    "    else:\n"
    "        ret = {}\n"
    '    print(json.dumps({"return": ret}), flush=True)\n'
)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the QemuDriver write methods that ran (a refused call must leave this empty)."""
    seen: list[str] = []
    for method in ("start", "save", "create_snapshot", "block_pull", "block_copy", "block_commit", "undefine"):
        real = getattr(QemuDriver, method)

        def spy(self: QemuDriver, *args: Any, _real: Any = real, _name: str = method, **kwargs: Any) -> Any:
            seen.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(QemuDriver, method, spy)
    return seen


@pytest.fixture
def qmp_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Socket paths of every QMP connection opened (one entry per connection)."""
    opened: list[str] = []
    real = _qmp.QMPClient.connect

    def counting(self: _qmp.QMPClient) -> _qmp.QMPClient:
        opened.append(self.path)
        return real(self)

    monkeypatch.setattr(_qmp.QMPClient, "connect", counting)
    return opened


def test_gate_refuses_what_this_emulator_lacks(root: Path, chain: dict[str, Path], calls: list[str]) -> None:
    """An emulator without block jobs, savevm or migrate: the gate says NotSupported, the driver never runs."""
    fake = root / "old-qemu"
    fake.write_text(f"#!{sys.executable}\n{OLD_QEMU}")
    fake.chmod(0o755)
    conn = virtabs.open(f"qemu:///embed?root={root}&emulator={fake}")
    assert not conn.supports("block.pull") and conn.supports("domain.suspend")
    dom = conn.define_domain(chain_spec("old", chain["snap2"]))
    calls.clear()
    with pytest.raises(NotSupportedError, match="block.pull"):
        dom.block_pull("vda")
    with pytest.raises(NotSupportedError, match="block.copy"):
        dom.block_rebase("vda", str(root / "copy.qcow2"), flags=BlockRebaseFlags.COPY)
    with pytest.raises(NotSupportedError, match="block.commit"):
        dom.block_commit("vda", flags=virtabs.BlockCommitFlags.ACTIVE)
    with pytest.raises(NotSupportedError, match="domain.save"):
        dom.save(str(root / "s.save"))
    with pytest.raises(NotSupportedError, match="domain.snapshot"):
        dom.create_snapshot("s1")
    assert calls == []


def test_gate_refuses_writes_on_a_readonly_connection(root: Path, chain: dict[str, Path], calls: list[str]) -> None:
    virtabs.open(f"qemu:///embed?root={root}").define_domain(chain_spec("ro", chain["snap2"]))
    dom = virtabs.open(f"qemu:///embed?root={root}", readonly=True).lookup_domain("ro")
    with pytest.raises(OperationDeniedError):
        dom.start()
    with pytest.raises(OperationDeniedError):
        dom.undefine()
    assert calls == [] and dom.state() == DomainState.SHUTOFF


def test_state_and_jobs_come_from_one_qmp_session(
    root: Path, chain: dict[str, Path], calls: list[str], qmp_connects: list[str]
) -> None:
    conn = virtabs.open(f"qemu:///embed?root={root}")
    dom = conn.define_domain(chain_spec("vm", chain["snap2"]))
    dom.start()
    dom.block_rebase("vda", str(chain["base"].parent / "slow.qcow2"), bandwidth=1, flags=BlockRebaseFlags.COPY)
    drv = make_driver(root)
    qmp_connects.clear()
    status = drv.domain_status(drv.lookup_domain("vm"))
    assert len(qmp_connects) <= 1  # none when the read is served by a leased monitor
    assert status.state == DomainState.RUNNING
    job = status.job_on("vda")
    assert job is not None and job.type == BlockJobType.COPY and not job.ready and job.cur < job.end
    # The gate's one question answers every rule: refused with one QMP session and no driver call.
    calls.clear()
    qmp_connects.clear()
    with pytest.raises(BlockCopyActiveError):
        dom.save(str(root / "s.save"))
    with pytest.raises(OperationInvalidError, match="already running"):
        dom.start()
    assert len(qmp_connects) <= 2  # at most one per refused call (none through a lease)
    with pytest.raises(BlockCopyActiveError):
        dom.block_pull("vda")
    assert calls == []
    dom.block_job_abort("vda")
    dom.destroy()
    assert drv.domain_status(drv.lookup_domain("vm")) == DomainStatus(DomainState.SHUTOFF)


def test_qemu_refusals_past_the_gate(root: Path, chain: dict[str, Path]) -> None:
    """What only QEMU can refuse atomically is refused by QEMU and mapped to the core's error classes."""
    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    with pytest.raises(OperationInvalidError, match="no active block job|not found"):
        drv.block_job_set_speed(ref, "vda", 0)
    with pytest.raises(OperationInvalidError):
        drv.block_job_abort(ref, "vda", pivot=False)
    drv.block_pull(ref, "vda", None, 1 << 20)
    # a second job on the disk: QEMU's refusal, and the first job's record survives it
    dest = chain["base"].parent / "c.qcow2"
    with pytest.raises(BlockCopyActiveError, match="'vda'"):
        drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(dest), format="qcow2"))
    info = drv.block_job_info(ref, "vda")
    assert info is not None and info.type == BlockJobType.PULL
    # a start racing a running QEMU: its pidfile lock refuses; the job and its record are untouched
    with pytest.raises(OperationInvalidError, match="already running"):
        drv.start(ref, paused=False)
    info = drv.block_job_info(ref, "vda")
    assert info is not None and info.type == BlockJobType.PULL
    drv.block_job_abort(ref, "vda", pivot=False)
    deadline = time.monotonic() + 60
    while drv.block_job_info(ref, "vda") is not None:
        assert time.monotonic() < deadline, "the cancel never concluded"
        time.sleep(0.05)
    # completing a copy that is not ready: QEMU's refusal is BlockCopyActiveError, the job goes on
    drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(dest), format="qcow2", bandwidth_bytes=1 << 20))
    with pytest.raises(BlockCopyActiveError):
        drv.block_job_abort(ref, "vda", pivot=True)
    info = drv.block_job_info(ref, "vda")
    assert info is not None and info.type == BlockJobType.COPY and not info.ready
    drv.block_job_set_speed(ref, "vda", 0)
    drv.block_job_abort(ref, "vda", pivot=False)
    drv.destroy(ref)


def test_throttled_copy_does_not_burst(root: Path, chain: dict[str, Path]) -> None:
    """QEMU's mirror would put 16 MiB in flight before its rate limit applies; the driver bounds buf-size."""
    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(chain["base"].parent / "t.qcow2"), bandwidth_bytes=1024))
    time.sleep(1.0)  # far longer than QEMU's first mirror iteration
    info = drv.block_job_info(ref, "vda")
    assert info is not None and info.cur <= 256 * 1024, f"a copy throttled to 1 KiB/s moved {info}"
    drv.block_job_abort(ref, "vda", pivot=False)
    drv.destroy(ref)


def test_one_qmp_connection_per_call(root: Path, chain: dict[str, Path], qmp_connects: list[str]) -> None:
    """No driver call opens a second QMP connection, also with a job to settle."""
    drv = make_driver(root)
    ref = drv.define_domain(chain_spec("vm", chain["snap2"]))
    drv.start(ref, paused=False)
    drv.block_copy(ref, "vda", BlockCopyRequest(dest=str(chain["base"].parent / "o.qcow2"), bandwidth_bytes=1024))
    calls = {
        "domain_info": lambda: drv.domain_info(ref),
        "domain_status": lambda: drv.domain_status(ref),
        "disks": lambda: drv.disks(ref),
        "block_job_info": lambda: drv.block_job_info(ref, "vda"),
        "block_jobs": lambda: drv.block_jobs(ref),
        "inventory": drv.inventory,
        "reboot": lambda: drv.reboot(ref),
        "suspend": lambda: drv.suspend(ref),
        "resume": lambda: drv.resume(ref),
        "block_job_set_speed": lambda: drv.block_job_set_speed(ref, "vda", 2048),
        "block_job_abort": lambda: drv.block_job_abort(ref, "vda", pivot=False),
    }
    for name, call in calls.items():
        qmp_connects.clear()
        call()
        assert len(qmp_connects) <= 1, f"{name} opened {len(qmp_connects)} QMP connections"
    drv.destroy(ref)

"""The gate's fast path for hot reads (``Gate.read``): the same steps and errors as the full gate.

``state()``, ``info()``, ``spec()``, ``disks()``, ``nics()`` and ``block_job_info()`` remember per
connection that steps 1 and 3 passed; these tests prove that nothing the full gate refuses or
translates slips through once a read has been served.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import virtabs
from virtabs import BlockRebaseFlags, DomainState
from virtabs.drivers.test import reset_default_node

CHAIN_SPEC = {
    "name": "chain",
    "memory_bytes": 256 << 20,
    "vcpus": 1,
    "disks": [{"target": "vda", "path": "/default-pool/overlay.qcow2", "format": "qcow2"}],
}


@pytest.fixture
def conn() -> Iterator[virtabs.Connection]:
    reset_default_node()
    with virtabs.open("test:///default") as c:
        yield c
    reset_default_node()


def test_closed_connection_refuses_a_read_that_passed_before(conn: virtabs.Connection) -> None:
    dom = conn.lookup_domain("test")
    assert dom.state() == DomainState.RUNNING
    assert dom.info().state == DomainState.RUNNING
    conn.close()
    for read in (dom.state, dom.info, dom.spec, dom.disks, dom.nics):
        with pytest.raises(virtabs.OperationInvalidError, match="closed"):
            read()


def test_undeclared_capability_is_refused_on_every_call() -> None:
    reset_default_node()
    with virtabs.open("test:///default?without=block.copy,block.pull,block.commit,block.copy.pivot") as c:
        dom = c.lookup_domain("test")
        for _ in range(2):
            with pytest.raises(virtabs.NotSupportedError, match="block"):
                dom.block_job_info("vda")
    reset_default_node()


def test_foreign_exception_becomes_operation_failed_naming_the_domain(
    conn: virtabs.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    dom = conn.lookup_domain("test")
    assert dom.state() == DomainState.RUNNING  # the row has passed once

    def broken(ref: object) -> object:
        raise RuntimeError("socket went away")

    monkeypatch.setattr(conn._gate.driver, "domain_status", broken)
    with pytest.raises(virtabs.OperationFailedError) as info:
        dom.state()
    assert "state of domain 'test'" in str(info.value)
    assert "socket went away" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_block_job_info_by_target_by_path_and_unknown(conn: virtabs.Connection) -> None:
    dom = conn.define_domain(CHAIN_SPEC)
    dom.start()
    assert dom.block_job_info("vda") is None
    assert dom.block_job_info("/default-pool/overlay.qcow2") is None
    dom.block_rebase("vda", "/default-pool/copy", flags=BlockRebaseFlags.COPY)
    by_target = dom.block_job_info("vda")
    by_path = dom.block_job_info("/default-pool/overlay.qcow2")
    assert by_target is not None and by_path is not None
    assert by_target.type == by_path.type == virtabs.BlockJobType.COPY
    for unknown in ("vdz", "/default-pool/nothing", "../vda"):
        with pytest.raises(virtabs.InvalidArgumentError, match="has no disk"):
            dom.block_job_info(unknown)

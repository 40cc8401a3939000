"""Fixtures for core tests: a recording driver that lets a test see exactly which driver methods ran."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import virtabs
from virtabs import Capabilities, Capability, Credentials, DomainState
from virtabs._api import Connection
from virtabs._models import (
    BlockCommitRequest,
    BlockCopyRequest,
    BlockJobInfo,
    DiskInfo,
    DomainInfo,
    DomainRef,
    DomainSpec,
    HostInfo,
    NicInfo,
)
from virtabs._uri import parse_uri
from virtabs.spi import Driver

DOM = DomainRef("vm1", str(uuid.UUID(int=1)))


class RecordingDriver(Driver):
    """A scripted driver: one running domain ``vm1`` with disk vda = top <- mid <- base."""

    name = "rec"
    capabilities = Capabilities.all()

    def __init__(self, uri: Any, options: Any) -> None:
        super().__init__(uri, options)
        self.calls: list[str] = []
        self.state = DomainState.RUNNING
        self.job: BlockJobInfo | None = None
        self.raise_on: dict[str, BaseException] = {}
        self.abort_ends_job = True

    def _record(self, name: str) -> None:
        self.calls.append(name)
        if name in self.raise_on:
            raise self.raise_on[name]

    def host_info(self) -> HostInfo:
        self._record("host_info")
        return HostInfo("h", "rec", "1", 1, 1)

    def list_domains(self) -> list[DomainRef]:
        self._record("list_domains")
        return [DOM]

    def lookup_domain(self, name_or_uuid: str) -> DomainRef:
        self._record("lookup_domain")
        if name_or_uuid in (DOM.name, DOM.uuid):
            return DOM
        raise virtabs.NoDomainError(f"domain {name_or_uuid!r} not found")

    def domain_info(self, dom: DomainRef) -> DomainInfo:
        self._record("domain_info")
        return DomainInfo(dom.name, dom.uuid, self.state, self.state.name.lower(), 1, 1 << 30, 1 << 30)

    def domain_spec(self, dom: DomainRef) -> DomainSpec:
        self._record("domain_spec")
        return DomainSpec(name=dom.name, memory_bytes=1 << 30, vcpus=1)

    def disks(self, dom: DomainRef) -> list[DiskInfo]:
        self._record("disks")
        return [DiskInfo("vda", "/img/top.qcow2", "qcow2", backing_chain=("/img/mid.qcow2", "/img/base.qcow2"))]

    def nics(self, dom: DomainRef) -> list[NicInfo]:
        self._record("nics")
        return []

    def start(self, dom: DomainRef, paused: bool) -> None:
        self._record("start")

    def destroy(self, dom: DomainRef) -> None:
        self._record("destroy")

    def save(self, dom: DomainRef, path: str) -> None:
        self._record("save")

    def create_snapshot(self, dom: DomainRef, name: str) -> Any:
        self._record("create_snapshot")

    def revert_to_snapshot(self, dom: DomainRef, name: str) -> None:
        self._record("revert_to_snapshot")

    def detach_disk(self, dom: DomainRef, target: str) -> None:
        self._record("detach_disk")

    def block_pull(self, dom: DomainRef, disk: str, base: str | None, bandwidth_bytes: int) -> None:
        self._record("block_pull")
        self.last_args: Any = (disk, base, bandwidth_bytes)

    def block_copy(self, dom: DomainRef, disk: str, request: BlockCopyRequest) -> None:
        self._record("block_copy")
        self.last_args = (disk, request)

    def block_commit(self, dom: DomainRef, disk: str, request: BlockCommitRequest) -> None:
        self._record("block_commit")
        self.last_args = (disk, request)

    def block_job_info(self, dom: DomainRef, disk: str) -> BlockJobInfo | None:
        self._record("block_job_info")
        return self.job if self.job is not None and disk == self.job.disk else None

    def block_job_abort(self, dom: DomainRef, disk: str, pivot: bool) -> None:
        self._record("block_job_abort")
        self.last_args = (disk, pivot)
        if self.abort_ends_job:
            self.job = None

    def block_job_set_speed(self, dom: DomainRef, disk: str, bandwidth_bytes: int) -> None:
        self._record("block_job_set_speed")
        self.last_args = (disk, bandwidth_bytes)


HOST_TOUCHING = {
    "start", "destroy", "save", "create_snapshot", "revert_to_snapshot", "detach_disk",
    "block_pull", "block_copy", "block_commit", "block_job_abort", "block_job_set_speed",
}  # fmt: skip


OpenRecording = Callable[..., tuple[Connection, RecordingDriver]]


@pytest.fixture
def open_recording() -> Iterator[OpenRecording]:
    """Open a Connection on a RecordingDriver (optionally with fewer capabilities)."""
    opened: list[Connection] = []

    def factory(
        caps: Capabilities | None = None,
        *,
        readonly: bool = False,
        credentials: Credentials | None = None,
        timeout: float | None = None,
    ) -> tuple[Connection, RecordingDriver]:
        cls: type[RecordingDriver] = RecordingDriver
        if caps is not None:
            cls = type("LimitedDriver", (RecordingDriver,), {"capabilities": caps})
        conn = Connection._open(cls, parse_uri("rec:///"), credentials, readonly, timeout)
        opened.append(conn)
        driver = conn._driver
        assert isinstance(driver, RecordingDriver)
        return conn, driver

    yield factory
    for conn in opened:
        conn.close()


def all_but(*names: str) -> Capabilities:
    """Every capability except ``names`` (and their sub-capabilities)."""
    return Capabilities.all().without(*names)


__all__ = ["DOM", "HOST_TOUCHING", "RecordingDriver", "all_but", "Capability"]

"""Contract tests that need no capability: the connection, lookups, reads, errors and the driver's shape."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable

import pytest

from ..._api import Connection, Domain
from ..._capabilities import Capability
from ..._errors import (
    InvalidArgumentError,
    NoDomainError,
    OperationDeniedError,
    OperationInvalidError,
)
from ..._flags import DomainState
from ..._models import DiskInfo, DomainInfo, DomainRecord, DomainSpec, HostInfo, NicInfo
from ...spi import SPI_METHODS, Driver
from ..contract import ABSENT_DOMAIN, Contract
from ..recorder import CallRecorder
from ._util import any_domain

__all__ = ["TestConnection", "TestDriverShape", "TestLookups", "assert_records_agree", "record_disagreements"]


class TestConnection:
    """The connection itself: host facts, capability declaration, read-only and closed connections."""

    def test_host_info(self, virtabs_contract: Contract) -> None:
        info = virtabs_contract.conn.host_info()
        assert isinstance(info, HostInfo)
        assert info.cpus > 0 and info.memory_bytes > 0
        assert info.hostname and info.hypervisor

    def test_host_facts_hold_every_running_guest(self, virtabs_contract: Contract) -> None:
        """What must hold between the host and its guests: a unit error in either side breaks it.

        A running guest's memory is backed by the host (memory in bytes, so a driver reading KiB or MiB as
        bytes reports a host smaller than its guests), and no guest has more vCPUs than the host has CPUs
        (on a host that overcommits, the driver reports the CPUs guests may use)."""
        c = virtabs_contract
        running = [d for d in c.conn.list_domains() if d.state().is_active]
        if not running and c.conn.supports(Capability.DOMAIN_START) and c.conn.supports(Capability.DOMAIN_DEFINE):
            running = [c.domain(running=True)]
        host = c.conn.host_info()
        assert host.memory_bytes >= 64 << 20, f"the host reports {host.memory_bytes} bytes of memory (units: bytes)"
        for dom in running:
            info = dom.info()
            assert info.memory_bytes <= host.memory_bytes, (
                f"running domain {dom.name!r} has {info.memory_bytes} bytes of memory, more than the host's "
                f"{host.memory_bytes} (one of them is not in bytes)"
            )
            assert info.vcpus <= host.cpus, f"domain {dom.name!r} has {info.vcpus} vCPUs, the host {host.cpus} CPUs"

    def test_capabilities_are_a_refinement_of_the_class_declaration(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        declared = type(conn._driver).capabilities.supported
        extra = sorted(c.value for c in conn.capabilities.supported - declared)
        assert not extra, f"the connection claims capabilities its driver class does not declare: {extra}"
        for cap in Capability:
            assert conn.supports(cap) == (cap in conn.capabilities.supported)
            assert conn.supports(cap.value) == conn.supports(cap)
        with pytest.raises(InvalidArgumentError):
            conn.supports("block.copyy")
        dropped = declared - conn.capabilities.supported
        reasons = getattr(conn.capabilities, "dropped", None)
        if dropped and reasons is not None:  # virtabs versions whose Capabilities carry reasons
            unexplained = sorted(c.value for c in dropped if not (reasons.get(c) or reasons.get(c.value)))
            assert not unexplained, f"the connection drops {unexplained} without saying why (Capabilities.dropped)"

    def test_readonly_connection_refuses_writes_before_the_host(
        self, virtabs_contract: Contract, virtabs_open: Callable[..., Connection]
    ) -> None:
        conn = virtabs_open(virtabs_contract.uri, readonly=True)
        try:
            assert conn.readonly
            dom = Domain(conn, ABSENT_DOMAIN)
            with CallRecorder(conn._driver) as rec:
                for call in (dom.destroy, dom.start, dom.suspend, dom.undefine):
                    with pytest.raises(OperationDeniedError):
                        call()
            assert rec.host_touching() == []
            conn.list_domains()  # reads still work
        finally:
            conn.close()

    def test_closed_connection_refuses_calls(
        self, virtabs_contract: Contract, virtabs_open: Callable[..., Connection]
    ) -> None:
        with virtabs_open(virtabs_contract.uri) as conn:
            assert not conn.closed
            assert conn.timeout is None or conn.timeout > 0
            assert conn.uri and conn.driver_name and conn.parsed_uri.driver
            assert repr(conn)
        assert conn.closed
        with pytest.raises(OperationInvalidError):
            conn.list_domains()
        conn.close()  # idempotent


class TestLookups:
    """Lookups by name and UUID, reads of a domain, and the errors for missing objects."""

    def test_lookup_by_name_and_by_uuid(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        dom = any_domain(virtabs_contract)
        by_name = conn.lookup_domain(dom.name)
        by_uuid = conn.lookup_domain(dom.uuid)
        assert by_name == by_uuid == dom
        assert (by_name.name, by_name.uuid) == (dom.name, dom.uuid)
        assert str(uuid.UUID(dom.uuid)) == dom.uuid
        assert by_name.connection is conn
        assert repr(by_name) and hash(by_name) == hash(by_uuid)

    def test_missing_domain_is_no_domain_error_42(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        for key in ("virtabs-contract-no-such-domain", str(uuid.uuid4())):
            with pytest.raises(NoDomainError) as exc:
                conn.lookup_domain(key)
            assert int(exc.value.code) == 42
            assert isinstance(exc.value, LookupError)
            assert key in exc.value.message, f"the message should name {key!r}: {exc.value.message!r}"

    def test_reads_of_a_vanished_domain_are_no_domain_error(self, virtabs_contract: Contract) -> None:
        gone = Domain(virtabs_contract.conn, ABSENT_DOMAIN)
        for call in (gone.info, gone.state, gone.spec, gone.disks, gone.nics):
            with pytest.raises(NoDomainError):
                call()

    def test_domain_reads(self, virtabs_contract: Contract) -> None:
        dom = any_domain(virtabs_contract)
        info = dom.info()
        assert isinstance(info, DomainInfo)
        assert (info.name, info.uuid) == (dom.name, dom.uuid)
        assert isinstance(info.state, DomainState) and info.native_state
        assert info.vcpus > 0 and info.memory_bytes > 0
        assert dom.state() == info.state
        spec = dom.spec()
        assert isinstance(spec, DomainSpec) and spec.name == dom.name
        disks = dom.disks()
        assert all(isinstance(d, DiskInfo) and d.target and d.path for d in disks)
        assert all(isinstance(n, NicInfo) for n in dom.nics())

    def test_list_domains_and_records_agree(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        dom = any_domain(virtabs_contract)
        domains = conn.list_domains()
        uuids, names = [d.uuid for d in domains], [d.name for d in domains]
        assert len(uuids) == len(set(uuids)), f"list_domains reports a domain twice: {sorted(names)}"
        assert len(names) == len(set(names)), f"list_domains reports two domains with one name: {sorted(names)}"
        listed = dict(zip(uuids, names, strict=True))
        assert listed.get(dom.uuid) == dom.name
        all_records = conn.domain_records()
        records = {r.uuid: r for r in all_records}
        assert len(records) == len(all_records), "domain_records reports a domain twice"
        assert set(records) == set(listed)
        record = records[dom.uuid]
        assert record.name == dom.name
        assert record.state == dom.state()
        record_problems = record_disagreements(record, dom)
        assert not record_problems, "domain_records disagrees with the per-domain calls:\n  " + "\n  ".join(
            record_problems
        )
        other = virtabs_contract.other_door()
        for uuid_, name in listed.items():
            assert other.lookup_domain(name).uuid == uuid_, f"listed {name!r} is another domain when looked up"
        assert sorted(d.uuid for d in other.list_domains()) == sorted(uuids)


class TestDriverShape:
    """The driver class against the SPI: same signatures, a name, no drift."""

    def test_overridden_spi_methods_keep_the_spi_signatures(self, virtabs_contract: Contract) -> None:
        problems = spi_signature_problems(type(virtabs_contract.conn._driver))
        assert not problems, "\n".join(problems)

    def test_driver_declares_a_name_matching_the_uri(self, virtabs_contract: Contract) -> None:
        cls = type(virtabs_contract.conn._driver)
        assert issubclass(cls, Driver)
        assert cls.name, f"{cls.__name__}.name is empty"
        assert cls.name == virtabs_contract.conn.parsed_uri.driver
        assert cls.__doc__, f"{cls.__name__} has no docstring"


def _disk_key(d: DiskInfo) -> tuple[object, ...]:
    return (d.target, d.path, d.format, d.bus, d.readonly, d.backing_chain, d.pool, d.capacity_bytes)


def _nic_key(n: NicInfo) -> tuple[object, ...]:
    return (n.mac, n.network, n.model)


def assert_records_agree(c: Contract, dom: Domain) -> None:
    """The bulk record of ``dom``, through another connection, agrees with ``dom``'s own calls."""
    other = c.other_door()
    records = [r for r in other.domain_records() if r.uuid == dom.uuid]
    assert len(records) == 1, f"domain_records lists domain {dom.name!r} {len(records)} times"
    problems = record_disagreements(records[0], other.lookup_domain(dom.uuid))
    assert not problems, "domain_records disagrees with the per-domain calls:\n  " + "\n  ".join(problems)


def record_disagreements(record: DomainRecord, dom: Domain) -> list[str]:
    """Every field of ``record`` (from the bulk hook) that differs from what ``dom``'s own calls report.

    A field the bulk hook could not read is None with its reason in ``field_errors`` (then it is not
    compared); None without a reason is a disagreement.
    """
    problems: list[str] = []
    info = dom.info()
    spec = dom.spec()

    def check(field: str, bulk: object, single: object, call: str) -> None:
        if bulk is None:
            if not record.field_errors.get(field):
                problems.append(f"{field}: None with no reason in field_errors ({call} reports {single!r})")
        elif bulk != single:
            problems.append(f"{field}: domain_records says {bulk!r}, {call} says {single!r}")

    check("state", record.state, info.state, "info()")
    # native_state is the hypervisor's own word, which may move between two reads of a domain whose state
    # does not (Xen: 'r-----' while on a CPU, '-b----' while it waits): present, but not compared
    if not record.native_state and not record.field_errors.get("native_state"):
        problems.append(f"native_state: empty with no reason in field_errors (info() says {info.native_state!r})")
    check("vcpus", record.vcpus, info.vcpus, "info()")
    # "current memory": a running guest's use may move between two reads, so the record may give the
    # current value or the configured one; a unit error matches neither
    memory_values = {info.memory_bytes, info.max_memory_bytes, spec.memory_bytes}
    if record.memory_bytes is not None and record.memory_bytes in memory_values:
        pass
    else:
        check("memory_bytes", record.memory_bytes, info.memory_bytes, "info()")
    check("os_type", record.os_type, spec.os_type, "spec()")
    disks = sorted(_disk_key(d) for d in dom.disks())
    bulk_disks = sorted(_disk_key(d) for d in record.disks)
    if record.disks or not record.field_errors.get("disks"):
        check("disks", bulk_disks, disks, "disks()")
    nics = sorted(_nic_key(n) for n in dom.nics())
    if record.nics or not record.field_errors.get("nics"):
        check("nics", sorted(_nic_key(n) for n in record.nics), nics, "nics()")
    if dom.connection.supports(Capability.DOMAIN_SNAPSHOT):
        check("snapshot_count", record.snapshot_count, len(dom.list_snapshots()), "len(list_snapshots())")
    return problems


def spi_signature_problems(cls: type[Driver]) -> list[str]:
    """Every SPI method ``cls`` overrides whose parameters differ from :class:`virtabs.spi.Driver`'s."""
    problems = []
    for name in SPI_METHODS:
        mine = getattr(cls, name, None)
        base = getattr(Driver, name)
        if mine is None or mine is base:
            continue
        if not callable(mine):
            problems.append(f"{cls.__name__}.{name} is not a method")
            continue
        want = [(p.name, p.kind, p.default) for p in inspect.signature(base).parameters.values()]
        got = [(p.name, p.kind, p.default) for p in inspect.signature(mine).parameters.values()]
        if want != got:
            problems.append(
                f"{cls.__name__}.{name}{inspect.signature(mine)} differs from Driver.{name}{inspect.signature(base)}"
            )
    return problems

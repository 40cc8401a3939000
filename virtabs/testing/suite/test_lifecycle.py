"""Contract tests of the domain lifecycle: define, start, suspend, destroy, shutdown, reboot, save.

Each state change is checked through another door than the one that made it:
a second connection, the bulk records, or the target (``boot_id`` for reboot).
"""

from __future__ import annotations

import pytest

from ..._api import Domain
from ..._errors import InvalidArgumentError, NoDomainError, OperationFailedError, OperationInvalidError, VirtabsError
from ..._flags import DomainState
from ..contract import Contract
from ..markers import requires

__all__ = ["TestDefine", "TestListing", "TestManagedSave", "TestPowerState", "TestSaveRestore"]

LISTING_DOMAINS = 100
LISTING_DOMAINS_MIN = 20
"""A target whose defines are slow (a nested hypervisor) may ask for fewer (``listing_domains``), never
fewer than this: 20 domains still make a per-domain call exceed the limit four times over."""
LISTING_CALL_LIMIT = 5
"""Driver calls allowed for one listing of ``LISTING_DOMAINS`` domains: a constant, never one per domain."""


DUPLICATE_ERRORS: tuple[type[VirtabsError], ...] = (OperationInvalidError, OperationFailedError)
"""How a define of a name or UUID already in use is refused: the operation is invalid (code 55, as the
test driver) or failed (code 9, libvirt's "domain ... already exists"); never a timeout, a connection
error, NotSupportedError or a bad argument, which say nothing about the duplicate."""


def assert_refused_as_duplicate(exc: VirtabsError, *names: str, also: tuple[type[VirtabsError], ...] = ()) -> None:
    """``exc`` refuses a define because the domain exists: one of :data:`DUPLICATE_ERRORS` (or ``also``),
    naming it."""
    allowed = DUPLICATE_ERRORS + also
    assert isinstance(exc, allowed) and not isinstance(exc, tuple(_NOT_DUPLICATE)), (
        f"a duplicate define must raise {' or '.join(c.__name__ for c in allowed)}, got "
        f"{type(exc).__name__} (code {int(exc.code)}): {exc.message}"
    )
    assert any(n in exc.message for n in names), f"the refusal should name {' or '.join(map(repr, names))}: {exc}"


_NOT_DUPLICATE: list[type[BaseException]] = [TimeoutError, ConnectionError, NotImplementedError]


def state_elsewhere(c: Contract, dom: Domain) -> DomainState:
    """The domain's state as a second connection and the bulk records see it (they must agree)."""
    other = c.other_door()
    state = other.lookup_domain(dom.uuid).state()
    records = [r for r in other.domain_records() if r.uuid == dom.uuid]
    assert len(records) == 1, f"domain_records lists domain {dom.name!r} {len(records)} times"
    assert records[0].state == state, f"domain_records says {records[0].state.name}, the lookup {state.name}"
    return state


class TestDefine:
    """domain.define: define, look up, read back and undefine."""

    @requires("domain.define")
    def test_define_lookup_undefine(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        spec = virtabs_contract.spec()
        dom = conn.define_domain(spec)
        assert dom.name == spec.name
        assert dom.state() == DomainState.SHUTOFF
        assert conn.lookup_domain(spec.name) == dom
        assert conn.lookup_domain(dom.uuid) == dom
        assert dom in conn.list_domains()
        other = virtabs_contract.other_door()
        assert other.lookup_domain(spec.name).uuid == dom.uuid, "another connection does not see the definition"
        back = other.lookup_domain(dom.uuid).spec()
        assert (back.name, back.vcpus, back.memory_bytes) == (spec.name, spec.vcpus, spec.memory_bytes)
        assert [d.target for d in back.disks] == [d.target for d in spec.disks]
        info = dom.info()
        assert (info.memory_bytes, info.vcpus) == (spec.memory_bytes, spec.vcpus), (
            f"defined with {spec.memory_bytes} bytes and {spec.vcpus} vCPUs, info() reports "
            f"{info.memory_bytes} bytes and {info.vcpus} (units: memory is bytes)"
        )
        dom.undefine()
        with pytest.raises(NoDomainError):
            conn.lookup_domain(spec.name)
        with pytest.raises(NoDomainError):
            other.lookup_domain(dom.uuid)
        assert dom not in conn.list_domains()
        assert dom.uuid not in {d.uuid for d in other.list_domains()}

    @requires("domain.define")
    def test_identities_stay_unique_across_define(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        doms = [conn.define_domain(virtabs_contract.spec("id")) for _ in range(3)]
        assert len({d.uuid for d in doms}) == 3, f"three defines gave UUIDs {[d.uuid for d in doms]}"
        first = doms[0].spec()
        clash = virtabs_contract.spec("clash")
        clash = type(clash)(
            name=clash.name,
            uuid=doms[0].uuid,
            memory_bytes=clash.memory_bytes,
            vcpus=clash.vcpus,
            disks=clash.disks,
            nics=clash.nics,
            os_type=clash.os_type,
            extra=clash.extra,
        )
        with pytest.raises(VirtabsError) as exc:
            conn.define_domain(clash)
        # a hypervisor that assigns UUIDs itself refuses any caller's UUID as an invalid argument
        assert_refused_as_duplicate(exc.value, clash.name, doms[0].uuid, first.name, also=(InvalidArgumentError,))
        listed = virtabs_contract.other_door().list_domains()
        assert [d.uuid for d in listed].count(doms[0].uuid) == 1
        assert conn.lookup_domain(doms[0].uuid).name == first.name, "a refused define renamed the domain"
        assert not [d for d in listed if d.name == clash.name], "a refused define left a domain behind"

    @requires("domain.define")
    def test_define_from_a_mapping_and_duplicate_name(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        spec = virtabs_contract.spec()
        dom = conn.define_domain(spec.to_dict())
        assert dom.name == spec.name
        with pytest.raises(VirtabsError) as exc:
            conn.define_domain(spec)  # a second domain with that name is refused, not merged
        assert_refused_as_duplicate(exc.value, spec.name)
        assert [d.name for d in conn.list_domains()].count(spec.name) == 1


class TestPowerState:
    """State transitions: start -> RUNNING, suspend -> PAUSED, resume, destroy/shutdown -> SHUTOFF, reboot."""

    @requires("domain.start")
    def test_start_makes_it_running(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=False)
        assert dom.state() == DomainState.SHUTOFF
        dom.start()
        assert dom.state() == DomainState.RUNNING
        assert state_elsewhere(virtabs_contract, dom) == DomainState.RUNNING
        with pytest.raises(OperationInvalidError):
            dom.start()

    @requires("domain.start", "domain.suspend")
    def test_start_paused(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=False)
        dom.start(paused=True)
        assert dom.state() == DomainState.PAUSED
        assert state_elsewhere(virtabs_contract, dom) == DomainState.PAUSED

    @requires("domain.suspend")
    def test_suspend_and_resume(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        dom.suspend()
        assert dom.state() == DomainState.PAUSED
        assert state_elsewhere(virtabs_contract, dom) == DomainState.PAUSED
        with pytest.raises(OperationInvalidError):
            dom.suspend()
        dom.resume()
        assert dom.state() == DomainState.RUNNING
        assert state_elsewhere(virtabs_contract, dom) == DomainState.RUNNING
        with pytest.raises(OperationInvalidError):
            dom.resume()

    @requires("domain.destroy")
    def test_destroy_makes_it_shutoff(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        dom.destroy()
        assert dom.state() == DomainState.SHUTOFF
        assert state_elsewhere(virtabs_contract, dom) == DomainState.SHUTOFF
        with pytest.raises(OperationInvalidError):
            dom.destroy()

    @requires("domain.shutdown")
    def test_shutdown_ends_in_shutoff(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        dom.shutdown()
        virtabs_contract.wait_state(dom, DomainState.SHUTOFF, virtabs_contract.shutdown_timeout)
        assert state_elsewhere(virtabs_contract, dom) == DomainState.SHUTOFF
        with pytest.raises(OperationInvalidError):
            dom.shutdown()

    @requires("domain.reboot")
    def test_reboot_boots_the_guest_again(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.domain(running=True)
        boot = c.boot_id(dom)
        dom.reboot()
        c.wait_until(lambda: c.boot_id(dom) != boot, f"the guest of {dom.name!r} to boot again (target boot_id)")
        c.wait_state(dom, DomainState.RUNNING)
        assert state_elsewhere(c, dom) == DomainState.RUNNING

    @requires("domain.define", "domain.start")
    def test_undefine_of_a_running_domain_is_refused(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=True)
        with pytest.raises(OperationInvalidError):
            dom.undefine()
        assert dom.state().is_active


class TestSaveRestore:
    """domain.save: save stops the domain, restore brings the same domain back running."""

    @requires("domain.save")
    def test_save_and_restore(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        dom = virtabs_contract.domain(running=True)
        path = virtabs_contract.save_path()
        dom.save(path)
        assert dom.state() == DomainState.SHUTOFF
        assert state_elsewhere(virtabs_contract, dom) == DomainState.SHUTOFF
        back = conn.restore(path)
        assert back.uuid == dom.uuid and back.name == dom.name
        assert back.state() == DomainState.RUNNING
        assert state_elsewhere(virtabs_contract, dom) == DomainState.RUNNING
        assert [d.uuid for d in virtabs_contract.other_door().list_domains()].count(dom.uuid) == 1


RUN_CLOCK_BEFORE_SAVE = 5.0
"""Seconds the guest's run clock must show before a managed save: more than the first reading after a boot
(a guest printing a tick a second shows 1, or 2 when read late), so a start that booted again cannot pass for a resume."""


def managed_save_elsewhere(c: Contract, dom: Domain) -> bool:
    """Whether a second connection and the bulk records see a managed save image (they must agree)."""
    other = c.other_door()
    seen = other.lookup_domain(dom.uuid).has_managed_save()
    records = [r for r in other.domain_records() if r.uuid == dom.uuid]
    assert len(records) == 1, f"domain_records lists domain {dom.name!r} {len(records)} times"
    assert records[0].managed_save == seen, f"domain_records says {records[0].managed_save}, the lookup {seen}"
    return seen


def running_clock(c: Contract, dom: Domain, at_least: float = 0.0) -> float:
    """The guest's run clock once it shows one (and at least ``at_least`` seconds)."""
    readings: list[float] = []

    def shows() -> bool:
        value = c.run_clock(dom)
        if value is None or value < at_least:
            return False
        readings.append(value)
        return True

    c.wait_until(shows, f"the run clock of the guest of {dom.name!r} to show {at_least} s (target run_clock)")
    return readings[-1]


class TestManagedSave:
    """domain.managed_save: the host keeps the state, start resumes it (the guest's run clock continues)."""

    @requires("domain.managed_save", "domain.start")
    def test_managed_save_then_start_resumes_the_guest(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.domain(running=True)
        assert not dom.has_managed_save()
        before = running_clock(c, dom, RUN_CLOCK_BEFORE_SAVE)
        dom.managed_save()
        assert dom.state() == DomainState.SHUTOFF
        assert state_elsewhere(c, dom) == DomainState.SHUTOFF
        assert dom.has_managed_save() and managed_save_elsewhere(c, dom)
        info = dom.info()
        assert (info.state, info.state_reason) == (DomainState.SHUTOFF, "saved"), info
        with pytest.raises(OperationInvalidError):
            dom.managed_save()  # nothing runs to save
        dom.start()
        assert dom.state() == DomainState.RUNNING
        assert state_elsewhere(c, dom) == DomainState.RUNNING
        assert not dom.has_managed_save() and not managed_save_elsewhere(c, dom), "start left the image behind"
        assert dom.info().state_reason is None
        after = running_clock(c, dom)
        if after < before:  # "not observable" only where the target declares guest.resume (a simulator)
            raise c.effect_missing(
                "guest.resume",
                f"the guest's run clock showed {before} s before the managed save and {after} s after start: "
                "it booted again instead of resuming",
            )

    @requires("domain.managed_save", "domain.start")
    def test_managed_save_remove_makes_start_boot(self, virtabs_contract: Contract) -> None:
        c = virtabs_contract
        dom = c.domain(running=True)
        before = running_clock(c, dom, RUN_CLOCK_BEFORE_SAVE)
        dom.managed_save()
        dom.managed_save_remove()
        assert not dom.has_managed_save() and not managed_save_elsewhere(c, dom)
        assert dom.info().state_reason is None
        dom.managed_save_remove()  # none there: nothing to do, as in libvirt
        dom.start()
        after = running_clock(c, dom)
        assert after < before, f"the run clock went on from {before} s to {after} s: start resumed a removed image"

    @requires("domain.managed_save", "domain.define")
    def test_undefine_is_refused_while_a_managed_save_image_exists(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        dom = virtabs_contract.domain(running=True)
        dom.managed_save()
        with pytest.raises(OperationInvalidError):
            dom.undefine()  # libvirt refuses it without VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        assert conn.lookup_domain(dom.uuid) == dom and dom.has_managed_save()
        dom.managed_save_remove()
        dom.undefine()
        assert dom.uuid not in {d.uuid for d in virtabs_contract.other_door().list_domains()}

    @requires("domain.managed_save")
    def test_managed_save_of_a_shut_off_domain_is_refused(self, virtabs_contract: Contract) -> None:
        dom = virtabs_contract.domain(running=False)
        with pytest.raises(OperationInvalidError):
            dom.managed_save()
        assert not dom.has_managed_save()
        assert dom.state() == DomainState.SHUTOFF


class TestListing:
    """Listing is one bulk driver call, not one call per domain (no N+1)."""

    @requires("domain.define")
    def test_listing_100_domains_costs_a_constant_number_of_driver_calls(self, virtabs_contract: Contract) -> None:
        conn = virtabs_contract.conn
        names = set()
        count = max(LISTING_DOMAINS_MIN, int(getattr(virtabs_contract.target, "listing_domains", LISTING_DOMAINS)))
        for _ in range(count):
            names.add(conn.define_domain(virtabs_contract.spec("n")).name)
        with virtabs_contract.record() as rec:
            listed = conn.list_domains()
        assert names <= {d.name for d in listed}
        assert rec.count() <= LISTING_CALL_LIMIT, f"list_domains made {rec.count()} driver calls: {rec.names()[:12]}"
        with virtabs_contract.record() as rec:
            records = conn.domain_records()
        assert names <= {r.name for r in records}
        assert rec.count() <= LISTING_CALL_LIMIT, (
            f"domain_records made {rec.count()} driver calls for {len(records)} domains "
            f"(override Driver.inventory with a bulk query): {rec.names()[:12]}"
        )

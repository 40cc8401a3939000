"""The in-memory host on its own (no virtabs), with a hand-driven clock: power, CPU time, snapshots, volumes."""

from __future__ import annotations

import pytest

from virtabs_example import host as native

MiB = 1 << 20


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def host(clock: Clock) -> native.MemoryHost:
    return native.MemoryHost("unit", clock=clock)


def machine(host: native.MemoryHost, name: str = "m1", shutdown_seconds: float | None = 5.0) -> str:
    config = native.Config(
        vcpus=1, memory_bytes=64 * MiB, nics=[native.Nic("default")], shutdown_seconds=shutdown_seconds
    )
    return host.create_machine(name, config).uuid


def test_cpu_time_accrues_only_while_running_and_a_reset_restarts_it(host: native.MemoryHost, clock: Clock) -> None:
    uuid = machine(host)
    host.power_on(uuid)
    clock.now += 3
    assert host.machine(uuid).cpu_ns == 3_000_000_000
    host.pause(uuid)
    clock.now += 10
    assert host.machine(uuid).cpu_ns == 3_000_000_000
    host.unpause(uuid)
    clock.now += 1
    m = host.machine(uuid)
    assert (m.cpu_ns, m.boot_count) == (4_000_000_000, 1)
    host.reset(uuid)
    clock.now += 0.5
    m = host.machine(uuid)
    assert (m.cpu_ns, m.boot_count, m.power) == (500_000_000, 2, native.Power.RUNNING)


def test_the_guest_powers_off_shutdown_seconds_after_the_button(host: native.MemoryHost, clock: Clock) -> None:
    uuid = machine(host, shutdown_seconds=5.0)
    host.power_on(uuid)
    clock.now += 1
    host.acpi_shutdown(uuid)
    clock.now += 4.9
    assert host.machine(uuid).power is native.Power.STOPPING
    clock.now += 0.2
    m = host.machine(uuid)
    assert m.power is native.Power.OFF
    assert m.cpu_ns == 6_000_000_000  # counted up to the moment the guest finished, not to now


def test_a_guest_without_acpi_ignores_the_button(host: native.MemoryHost, clock: Clock) -> None:
    uuid = machine(host, shutdown_seconds=None)
    host.power_on(uuid)
    host.acpi_shutdown(uuid)
    clock.now += 3600
    assert host.machine(uuid).power is native.Power.RUNNING


def test_the_host_checks_its_own_power_states(host: native.MemoryHost) -> None:
    uuid = machine(host)
    for refused in (host.pause, host.unpause, host.acpi_shutdown, host.power_off, host.reset):
        with pytest.raises(native.InvalidState, match="'m1'"):
            refused(uuid)
    host.power_on(uuid, paused=True)
    with pytest.raises(native.InvalidState, match="paused and cannot answer the power button"):
        host.acpi_shutdown(uuid)
    with pytest.raises(native.InvalidState):
        host.power_on(uuid)
    with pytest.raises(native.InvalidState):
        host.delete_machine(uuid)
    with pytest.raises(native.NotFound) as exc:
        host.machine("no-such-uuid")
    assert (exc.value.kind, exc.value.key) == ("machine", "no-such-uuid")


def test_names_and_uuids_are_unique_and_macs_are_assigned(host: native.MemoryHost) -> None:
    uuid = machine(host)
    with pytest.raises(native.AlreadyExists):
        machine(host)
    config = native.Config(vcpus=1, memory_bytes=MiB)
    with pytest.raises(native.AlreadyExists):
        host.create_machine("other", config, uuid=uuid)
    second = host.machine(machine(host, "m2"))
    assert host.machine(uuid).config.nics[0].mac != second.config.nics[0].mac
    assert second.config.nics[0].mac.startswith("52:54:00:")


def test_results_are_copies(host: native.MemoryHost) -> None:
    uuid = machine(host)
    host.machine(uuid).config.vcpus = 99
    assert host.machine(uuid).config.vcpus == 1


def test_revert_restores_configuration_and_power_and_delete_relinks_children(host: native.MemoryHost) -> None:
    uuid = machine(host)
    host.take_snapshot(uuid, "off")
    host.power_on(uuid)
    s2 = host.take_snapshot(uuid, "on")
    assert (s2.parent, s2.power) == ("off", native.Power.RUNNING)
    host.power_off(uuid)
    host.revert(uuid, "on")
    m = host.machine(uuid)
    assert (m.power, m.boot_count, m.current_snapshot) == (native.Power.RUNNING, 2, "on")
    host.revert(uuid, "off")
    assert host.machine(uuid).power is native.Power.OFF
    host.delete_snapshot(uuid, "off")
    assert [(s.name, s.parent) for s in host.snapshots(uuid)] == [("on", None)]
    with pytest.raises(native.NotFound, match="m1/off"):
        host.revert(uuid, "off")


def test_volumes_chain_grow_and_are_not_deleted_under_a_running_machine(host: native.MemoryHost) -> None:
    base = host.create_volume("default", "base.qcow2", 64 * MiB, "qcow2", None)
    top = host.create_volume("default", "top.qcow2", 64 * MiB, "qcow2", base.path)
    assert top.backing == base.path and top.allocation_bytes == native.QCOW2_EMPTY
    with pytest.raises(native.BadRequest, match="cannot shrink"):
        host.resize_volume("default", "top.qcow2", MiB)
    raw = host.create_volume("default", "disk.raw", 8 * MiB, "raw", None)
    assert host.resize_volume("default", "disk.raw", 16 * MiB).allocation_bytes == 16 * MiB
    with pytest.raises(native.BadRequest, match="not a volume"):
        host.create_volume("default", "x.qcow2", MiB, "qcow2", "/nowhere/base.qcow2")
    with pytest.raises(native.AlreadyExists):
        host.create_volume("default", "disk.raw", MiB, "raw", None)
    config = native.Config(vcpus=1, memory_bytes=MiB, disks=[native.Disk("vda", raw.path)])
    uuid = host.create_machine("user", config).uuid
    host.power_on(uuid)
    with pytest.raises(native.InvalidState, match="in use by machine 'user'"):
        host.delete_volume("default", "disk.raw")
    host.power_off(uuid)
    host.delete_volume("default", "disk.raw")
    assert [v.name for v in host.volumes("default")] == ["base.qcow2", "top.qcow2"]
    with pytest.raises(native.NotFound) as exc:
        host.volumes("nope")
    assert exc.value.kind == "pool"


def test_connect_shares_one_host_per_name() -> None:
    assert native.connect("unit-shared") is native.connect("unit-shared")
    assert native.connect("unit-shared") is not native.connect("unit-other")

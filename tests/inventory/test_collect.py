"""collect(): parallel hosts, per-host timeout, failures isolated, bulk hook, null + field_errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import virtabs
import virtabs.inventory as inv
from virtabs import ErrorCode
from virtabs.drivers.test import TestDriver
from virtabs.spi import Driver

from .conftest import DriverCalls


def test_default_uri_is_the_test_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VIRTABS_DEFAULT_URI", raising=False)
    monkeypatch.setenv("VIRTABS_CONFIG", str(tmp_path / "absent.toml"))
    result = inv.collect()
    assert result.exit_status == 0
    (host,) = result.hosts
    assert host.uri == "test:///default"
    assert host.driver == "test"
    assert [d.name for d in host.domains] == ["test"]
    doc = result.to_dict()
    inv.validate(doc)
    dom = doc["hosts"][0]["domains"][0]
    assert dom["state"] == "running"
    assert dom["memory_bytes"] == 2 * 1024**3
    assert dom["disks"][0]["capacity_bytes"] == 1024**3
    assert dom["nics"][0]["ips"] == ["192.168.122.2"]
    assert doc["hosts"][0]["pools"][0]["name"] == "default-pool"
    assert [v["name"] for v in doc["hosts"][0]["pools"][0]["volumes"]] == ["base.qcow2", "overlay.qcow2"]


def test_dead_host_in_ten_leaves_nine_complete(make_node: Callable[..., str], tmp_path: Path) -> None:
    uris = [make_node(f"h{i}", domains=20, seed=i) for i in range(9)]
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    hosts = [*uris[:4], f"test://{bad}", *uris[4:]]
    result = inv.collect(hosts, concurrency=4)
    assert result.exit_status == 3
    assert [h.uri for h in result.hosts] == hosts  # input order, whatever the completion order
    assert result.summary() == {"hosts": 10, "hosts_ok": 9, "hosts_failed": 1, "domains": 180}
    failed = result.hosts[4]
    assert failed.error is not None and failed.domains == ()
    assert failed.error.code in (int(ErrorCode.NO_CONNECT), int(ErrorCode.INVALID_ARG))
    for host in result.ok_hosts:
        assert len(host.domains) == 20
        assert host.hostname == host.uri.rsplit("/", 1)[1].removesuffix(".json")
        assert host.pools is not None and host.pools[0].volumes is not None
    inv.validate(result.to_dict())


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("test:///nonexistent/file.json", ErrorCode.NO_CONNECT),
        ("nosuchdriver:///x", ErrorCode.DRIVER_NOT_FOUND),
        ("not a uri", ErrorCode.INVALID_ARG),
    ],
)
def test_each_kind_of_dead_host_is_reported(uri: str, code: ErrorCode) -> None:
    result = inv.collect(["test:///default", uri])
    assert result.exit_status == 3
    dead = result.hosts[1]
    assert dead.error is not None
    assert dead.error.code == int(code)
    assert dead.error.code_name == code.name
    assert dead.error.message
    doc = result.to_dict()
    inv.validate(doc)
    assert doc["hosts"][1]["domains"] == []
    assert doc["hosts"][0]["error"] is None


def test_all_failed_is_exit_status_1() -> None:
    result = inv.collect(["nosuchdriver:///a", "test:///nonexistent/x.json"])
    assert result.exit_status == 1
    assert result.summary()["hosts_failed"] == 2


def test_a_password_never_reaches_the_output() -> None:
    result = inv.collect(["esx://root:hunter2@vc.example.com/?token=abc&no_verify=1"])
    text = inv.to_json(result)
    assert "hunter2" not in text and "abc" not in text
    assert result.hosts[0].uri == "esx://root:***@vc.example.com/?token=***&no_verify=1"
    assert result.hosts[0].error is not None


class _Gate(threading.Event):
    """Holds a host's inventory until set; counts the held calls that have returned."""

    returned = 0


def _slow_for(monkeypatch: pytest.MonkeyPatch, marker: str, seconds: float) -> _Gate:
    released = _Gate()
    original = TestDriver.inventory

    def slow(self: TestDriver) -> Any:
        if marker in str(self.uri):
            try:
                released.wait(seconds)
            finally:
                released.returned += 1
        return original(self)

    monkeypatch.setattr(TestDriver, "inventory", slow)
    return released


def test_a_hanging_host_times_out_and_the_others_finish(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    released = _slow_for(monkeypatch, "stuck", 30)
    uris = [make_node("fast1"), make_node("stuck"), make_node("fast2")]
    try:
        result = inv.collect(uris, timeout=1.5, concurrency=3)
        # collect came back while the stuck host's inventory was still held: it did not wait for it
        still_held = released.returned == 0
    finally:
        released.set()
    assert still_held, "collect returned only after the stuck host's inventory did"
    assert result.exit_status == 3
    stuck = result.hosts[1]
    assert stuck.error is not None
    assert stuck.error.code == 68 and stuck.error.code_name == "OPERATION_TIMEOUT"
    assert "1.5s" in stuck.error.message
    assert stuck.uri == uris[1]
    assert [len(h.domains) for h in result.hosts] == [3, 0, 3]
    inv.validate(result.to_dict())


def test_a_host_may_have_its_own_timeout(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    released = _slow_for(monkeypatch, "slowish", 1.0)
    uri = make_node("slowish")
    try:
        result = inv.collect([inv.HostTarget(uri, name="patient", timeout=20)], timeout=0.2)
    finally:
        released.set()
    assert result.exit_status == 0
    assert result.hosts[0].name == "patient"


def test_timed_out_hosts_free_their_slot(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    released = _slow_for(monkeypatch, "stuck", 30)
    uris = [make_node("stuck-a"), make_node("stuck-b"), make_node("ok-c"), make_node("ok-d")]
    try:
        result = inv.collect(uris, timeout=1.5, concurrency=2)
    finally:
        released.set()
    assert [h.ok for h in result.hosts] == [False, False, True, True]


def test_hosts_run_in_parallel(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    original = TestDriver.inventory
    active = 0
    peak = 0
    lock = threading.Condition()

    def slow(self: TestDriver) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            lock.notify_all()
            lock.wait_for(lambda: peak >= 4, timeout=10)  # the first four meet; later ones pass through
        try:
            return original(self)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(TestDriver, "inventory", slow)
    uris = [make_node(f"p{i}", domains=1, seed=i) for i in range(8)]
    result = inv.collect(uris, concurrency=4)
    assert result.exit_status == 0
    assert peak == 4  # really concurrent, and bounded by concurrency


def test_hosts_of_a_local_reader_run_one_at_a_time(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TestDriver.inventory
    active = 0
    peak = 0
    lock = threading.Lock()

    def slow(self: TestDriver) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            time.sleep(0.4)  # long enough that parallel threads would overlap
            return original(self)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(TestDriver, "inventory", slow)
    monkeypatch.setattr(TestDriver, "local_reads", True)
    uris = [make_node(f"l{i}", domains=1, seed=i) for i in range(4)]
    # each host takes 0.4 s, all four 1.6 s: waiting its turn must not count against its 1.2 s timeout
    result = inv.collect(uris, concurrency=4, timeout=1.2)
    assert result.exit_status == 0
    assert [h.ok for h in result.hosts] == [True] * 4
    assert peak == 1
    monkeypatch.setattr(TestDriver, "local_reads", False)
    peak = 0
    assert inv.collect(uris, concurrency=4, timeout=5).exit_status == 0
    assert peak > 1  # the control: the same hosts overlap when the driver does not read locally


def test_the_bulk_hook_is_one_call_per_host(make_node: Callable[..., str], driver_calls: DriverCalls) -> None:
    uris = [make_node(f"b{i}", domains=50, seed=i) for i in range(3)]
    result = inv.collect(uris)
    assert result.domain_count == 150
    assert driver_calls.of("inventory") == {uri: 1 for uri in uris}
    for per_domain in ("domain_info", "domain_spec", "disks", "nics", "autostart", "list_snapshots", "block_jobs"):
        assert driver_calls.of(per_domain) == {}, per_domain
    for uri in uris:  # pools: one listing plus one volume listing per pool, no per-volume lookups
        assert driver_calls.per_uri(uri).get("list_volumes") == 1
        assert "lookup_volume" not in driver_calls.per_uri(uri)


def test_the_generic_fallback_is_used_without_a_bulk_hook(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch, driver_calls: DriverCalls
) -> None:
    monkeypatch.setattr(TestDriver, "inventory", Driver.inventory)
    uri = make_node("fallback", domains=4)
    result = inv.collect([uri])
    assert result.exit_status == 0 and result.domain_count == 4
    assert driver_calls.of("domain_info") == {uri: 4}
    inv.validate(result.to_dict())


def test_unreadable_values_are_null_with_a_reason(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generic fallback with failing per-domain reads: nulls, reasons, never strings in their place."""
    monkeypatch.setattr(TestDriver, "inventory", Driver.inventory)

    def broken(self: TestDriver, dom: Any) -> Any:
        raise virtabs.OperationFailedError(f"disk listing of {dom.name} exploded")

    def broken_info(self: TestDriver, dom: Any) -> Any:
        raise virtabs.ConnectError("host went away while reading info")

    monkeypatch.setattr(TestDriver, "disks", broken)
    monkeypatch.setattr(TestDriver, "domain_info", broken_info)
    result = inv.collect([make_node("flaky", domains=2)])
    doc = result.to_dict()
    inv.validate(doc)
    dom = doc["hosts"][0]["domains"][0]
    assert dom["disks"] is None
    assert dom["field_errors"]["disks"].startswith("OPERATION_FAILED: ")
    for key in ("state", "native_state", "vcpus", "memory_bytes"):
        assert dom[key] is None
        assert dom["field_errors"][key].startswith("NO_CONNECT: ")
    assert dom["nics"] is not None  # what could be read is still there
    assert dom["block_jobs"] == []


def _all_nulls_explained(obj: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    return [k for k, v in obj.items() if v is None and k not in skip and k not in obj.get("field_errors", {})]


def test_every_null_has_a_reason(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TestDriver, "inventory", Driver.inventory)
    monkeypatch.setattr(TestDriver, "autostart", Driver.autostart)  # "no such notion": None
    result = inv.collect([make_node("nulls", domains=3)])
    doc = result.to_dict()
    for host in doc["hosts"]:
        assert _all_nulls_explained(host, skip=("name", "error")) == []
        for dom in host["domains"]:
            assert dom["autostart"] is None and "NO_SUPPORT" in dom["field_errors"]["autostart"]
            assert _all_nulls_explained(dom) == []
            for disk in dom["disks"]:
                for key in ("capacity_bytes", "allocation_bytes"):
                    assert disk[key] is not None or f"disks.{disk['target']}.{key}" in dom["field_errors"]
        for pool in host["pools"]:
            assert _all_nulls_explained(pool) == []


def test_a_driver_without_pools(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    caps = TestDriver.capabilities.without("storage.pool")
    monkeypatch.setattr(TestDriver, "connection_capabilities", lambda self: caps)
    result = inv.collect([make_node("nopools")])
    doc = result.to_dict()
    inv.validate(doc)
    assert doc["hosts"][0]["pools"] is None
    assert doc["hosts"][0]["field_errors"]["pools"].startswith("NO_SUPPORT")
    assert result.exit_status == 0


def test_pools_can_be_skipped(make_node: Callable[..., str]) -> None:
    doc = inv.collect([make_node("skip")], pools=False).to_dict()
    inv.validate(doc)
    assert doc["hosts"][0]["pools"] is None
    assert "pools" in doc["hosts"][0]["field_errors"]


def test_a_driver_bug_becomes_an_internal_error(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: TestDriver) -> Any:
        raise RecursionError("driver bug")

    monkeypatch.setattr(TestDriver, "host_info", boom)
    monkeypatch.setattr(TestDriver, "inventory", boom)
    result = inv.collect([make_node("buggy"), "test:///default"])
    assert result.hosts[0].error is not None
    assert result.hosts[0].error.code_name in ("OPERATION_FAILED", "INTERNAL_ERROR")
    assert result.hosts[0].field_errors["hostname"]  # host_info failed too: reason kept
    assert result.hosts[1].ok is False  # same driver class, same bug
    inv.validate(result.to_dict())


def test_config_aliases_and_duplicates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[aliases]\nlab = "test:///default"\n')
    monkeypatch.setenv("VIRTABS_CONFIG", str(config))
    result = inv.collect(["lab", "lab"])
    assert len(result.hosts) == 1
    assert result.hosts[0].uri == "test:///default"
    assert result.hosts[0].name == "lab"


@pytest.mark.parametrize(
    "kwargs", [{"concurrency": 0}, {"concurrency": True}, {"timeout": 0}, {"timeout": -1}, {"timeout": float("nan")}]
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(virtabs.InvalidArgumentError):
        inv.collect(["test:///default"], **kwargs)


def test_progress_callback_sees_every_host(make_node: Callable[..., str]) -> None:
    seen: list[str] = []
    uris = [make_node(f"cb{i}", seed=i) for i in range(5)]
    inv.collect([*uris, "nosuch:///x"], on_host_done=lambda h: seen.append(h.uri))
    assert sorted(seen) == sorted([*uris, "nosuch:///x"])


def test_times_are_utc_iso(make_node: Callable[..., str]) -> None:
    doc = inv.collect([make_node("t")]).to_dict()
    assert doc["generated_at"].endswith("Z")
    assert doc["hosts"][0]["collected_at"].endswith("Z")
    assert doc["generated_at"] <= doc["hosts"][0]["collected_at"]
    json.dumps(doc)  # plain data


def test_a_failing_close_does_not_lose_the_data(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    def bad_close(self: TestDriver) -> None:
        raise virtabs.OperationFailedError("socket already gone")

    monkeypatch.setattr(TestDriver, "close", bad_close)
    result = inv.collect([make_node("closing")])
    assert result.exit_status == 0 and result.domain_count == 3


def test_a_failed_domain_listing_keeps_the_host_facts(
    make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: TestDriver) -> Any:
        raise virtabs.AuthError("not allowed to list domains")

    monkeypatch.setattr(TestDriver, "inventory", refuse)
    result = inv.collect([make_node("authz"), "test:///default"])
    host = result.hosts[0]
    assert host.error is not None and host.error.code == 45 and host.error.code_name == "AUTH_FAILED"
    assert host.hostname == "authz" and host.cpus == 32
    assert result.exit_status == 1
    inv.validate(result.to_dict())


def test_call_timeout_reaches_the_driver(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float | None] = []
    original = TestDriver.__init__

    def spy(self: TestDriver, uri: Any, options: Any) -> None:
        seen.append(options.timeout)
        original(self, uri, options)

    monkeypatch.setattr(TestDriver, "__init__", spy)
    inv.collect([make_node("ct1")], timeout=40)
    inv.collect([make_node("ct2")], timeout=40, call_timeout=3)
    assert seen == [40, 3]


def test_uuids_are_canonical(make_node: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    import attrs

    original = TestDriver.inventory

    def shouting(self: TestDriver) -> Any:
        return [attrs.evolve(r, uuid=r.uuid.upper()) for r in original(self)]

    monkeypatch.setattr(TestDriver, "inventory", shouting)
    doc = inv.collect([make_node("upper")]).to_dict()
    inv.validate(doc)
    assert all(d["uuid"] == d["uuid"].lower() for d in doc["hosts"][0]["domains"])

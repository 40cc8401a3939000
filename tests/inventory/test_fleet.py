"""The simulated fleet: the test driver's test-only ``latency_ms`` and ``forget`` parameters, and the
generator of node files (virtabs.testing.fleet)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import virtabs
import virtabs.drivers.test as test_driver
import virtabs.inventory as inv
from virtabs.testing.fleet import HANGING_LATENCY_MS, make_fleet
from virtabs.testing.plugin import in_ci


def test_latency_ms_sleeps_before_connecting_and_every_host_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(test_driver.time, "sleep", slept.append)
    (uri,) = make_fleet(tmp_path, hosts=1, domains=2, latency_ms=20)
    with virtabs.open(uri, readonly=True) as conn:
        assert slept == [0.02]  # the connection's round trip
        conn.host_info()
        assert slept == [0.02, 0.02]
        records = conn.domain_records()
        assert len(records) == 2
        assert slept == [0.02] * 3  # one bulk call for every domain
    with virtabs.open("test:///default", readonly=True) as conn:
        conn.host_info()
    assert slept == [0.02] * 3  # no parameter, no latency


@pytest.mark.parametrize("value", ["-1", "x", "nan", "inf"])
def test_latency_ms_must_be_a_non_negative_number(value: str) -> None:
    with pytest.raises(virtabs.InvalidArgumentError, match="latency_ms"):
        virtabs.open(f"test:///default?latency_ms={value}")


def test_forget_drops_the_node_when_its_last_connection_closes(tmp_path: Path) -> None:
    (uri,) = make_fleet(tmp_path, hosts=1, domains=1)
    assert uri.endswith("?forget=1")
    first = virtabs.open(uri, readonly=True)
    second = virtabs.open(uri, readonly=True)
    node = test_driver.get_node(uri)
    first.close()
    assert test_driver.get_node(uri) is node  # one connection still open
    second.close()
    assert test_driver.get_node(uri) is not node  # read again from the file
    kept = tmp_path / "kept.json"
    kept.write_text((tmp_path / "host00000.json").read_text())
    with virtabs.open(f"test://{kept}", readonly=True):
        node = test_driver.get_node(f"test://{kept}")
    assert test_driver.get_node(f"test://{kept}") is node  # without forget=1 the process keeps it


def test_fleet_has_dead_and_hanging_hosts_reported_not_fatal(tmp_path: Path) -> None:
    uris = make_fleet(tmp_path, hosts=4, domains=3, dead=1, hanging=1)
    assert (tmp_path / "hosts.txt").read_text().split() == uris
    assert f"latency_ms={HANGING_LATENCY_MS}" in uris[-1]
    result = inv.collect(uris, timeout=2, concurrency=8)
    by_uri = {h.uri: h for h in result.hosts}
    assert [h.ok for h in result.hosts] == [True] * 4 + [False, False]
    assert by_uri[uris[4]].error is not None and by_uri[uris[4]].error.code_name == "NO_CONNECT"
    assert by_uri[uris[5]].error is not None and by_uri[uris[5]].error.code_name == "OPERATION_TIMEOUT"
    assert result.domain_count == 12
    hosts, _settings = inv.load_hosts_file(tmp_path / "hosts.yaml")
    assert [h.uri for h in hosts] == uris


def test_a_host_that_never_answers_on_the_network_is_reported_and_the_fleet_is_not_held_up(
    tmp_path: Path,
) -> None:
    """A real TCP peer that accepts and never answers (a loopback listener), among simulated hosts."""
    try:
        import virtabs_docker  # noqa: F401  (the docker+tcp driver)
    except ImportError:
        if in_ci():
            raise
        pytest.skip("needs the docker backend (virtabs-docker)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        silent = f"docker+tcp://127.0.0.1:{port}?tls=0"
        uris = make_fleet(tmp_path, hosts=3, domains=2)
        result = inv.collect([*uris, silent], timeout=2, call_timeout=60)  # the run's deadline, not the socket's
    finally:
        listener.close()
    assert [h.ok for h in result.hosts] == [True, True, True, False]
    error = result.hosts[3].error
    assert error is not None and error.code_name == "OPERATION_TIMEOUT", error
    assert result.domain_count == 6

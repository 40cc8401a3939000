"""Issue 24 with issue 22: one inventory over a mixed fleet.

Simulated hosts (test-driver node files with a set latency, ``virtabs.testing.fleet``), real remote hosts
(``test+ssh://`` through the loopback sshd, each serving a node file of the same shape through the
``virtabs-remote`` helper), a dead host (a node file that does not exist), a hanging simulated host (an
hour per call) and a silent ssh peer (a loopback listener that accepts TCP and never sends a banner).
The remote hosts' records must be exactly what a local read of the same node files gives, and every
failure must be reported on its own host without holding up the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import virtabs.inventory as inv
from virtabs.testing.fleet import fleet_node, make_fleet
from virtabs.testing.listeners import SilentListener


def _remote_node(directory: Path, host: str, seed: int) -> Path:
    path = directory / f"{host}.json"
    path.write_text(json.dumps(fleet_node(host, domains=3, seed=seed)))
    return path


def test_one_inventory_over_simulated_remote_dead_and_silent_hosts(sshd: object, tmp_path: Path) -> None:
    simulated = make_fleet(tmp_path / "sim", hosts=3, domains=2, latency_ms=5, dead=1, hanging=1)
    *fleet, dead, hanging = simulated
    nodes = [_remote_node(tmp_path, f"remote{i}", seed=100 + i) for i in range(2)]
    remote = [sshd.uri("test", str(node)) for node in nodes]  # type: ignore[attr-defined]
    with SilentListener() as silent:
        host, port = silent.address.rsplit(":", 1)
        silent_uri = f"test+ssh://root@{host}:{port}{nodes[0]}?no_verify=1"
        hosts = [*fleet, *remote, dead, hanging, silent_uri]
        result = inv.collect(hosts, concurrency=8, timeout=15)

    by_uri = {h.uri: h for h in result.hosts}
    assert len(result.hosts) == len(hosts)
    for uri in fleet:
        got = by_uri[inv.host_key(inv.HostTarget(uri))[0]]
        assert got.ok and len(got.domains) == 2, got.error

    # The remote hosts give exactly what a local read of the same node files gives.
    local = inv.collect([f"test://{node}" for node in nodes], timeout=60)
    for uri, node, mine in zip(remote, nodes, local.hosts, strict=True):
        got = by_uri[inv.host_key(inv.HostTarget(uri))[0]]
        assert got.ok, got.error
        assert got.driver == "test" and mine.ok
        assert got.domains == mine.domains, f"{node.name}: remote records differ from the local read"
        assert [d.name for d in got.domains] == [f"{node.stem}-vm{i:03d}" for i in range(3)]

    failed = {u: by_uri[inv.host_key(inv.HostTarget(u))[0]] for u in (dead, hanging, silent_uri)}
    assert all(not h.ok for h in failed.values())
    assert failed[dead].error is not None and failed[dead].error.code_name == "NO_CONNECT"
    assert failed[hanging].error is not None and failed[hanging].error.code_name == "OPERATION_TIMEOUT"
    silent_error = failed[silent_uri].error
    assert silent_error is not None and silent_error.code_name in ("NO_CONNECT", "OPERATION_TIMEOUT")
    assert "127.0.0.1" in silent_error.message, silent_error.message
